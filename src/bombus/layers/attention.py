"""Multi-head attention, written once for every family: self- or cross-attention, grouped-query heads,
optional rotary positions, a static KV cache, and equal paths — PyTorch SDPA by default, an eager path
when attention weights are requested or a head mask is given (or `implementation="eager"`), and SDPA's
flash kernel (`implementation="flash"`) where the inputs allow it."""

from __future__ import annotations

import contextlib
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .cache import Cache
from .linear import Linear
from .rotary import apply_rotary, rotate_half  # noqa: F401  (rotate_half re-exported: its old home)

# SDPA attends grouped-query heads without copying keys/values (`enable_gqa`) from PyTorch 2.5 on.
_SDPA_GQA = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 5)

IMPLEMENTATIONS = ("sdpa", "eager", "flash")


def flash_problem(device: torch.device, dtype: torch.dtype, *, masked: bool = False, head_dim: int = 64,
                  upcast: bool = False) -> str | None:
    """Why PyTorch's flash attention kernel cannot run these inputs, or None when it can."""
    if device.type != "cuda":
        return f"it runs on CUDA devices only and the model is on {device.type}"
    if dtype not in (torch.float16, torch.bfloat16) or upcast:
        what = "attention upcast to float32 (reorder_and_upcast_attn)" if upcast else f"the model is {dtype}"
        return f"it needs float16 or bfloat16 inputs and {what}"
    if head_dim > 256 or head_dim % 8:
        return f"it needs a head size that is a multiple of 8 up to 256, not {head_dim}"
    if masked:
        return ("it takes no arbitrary mask, and this call has one (padding in attention_mask, or a KV cache); "
                "drop the padding (equal-length rows) or use attention='sdpa'")
    return None


def check_implementation(implementation: str, device: torch.device, dtype: torch.dtype) -> None:
    """Raise `ConfigError` unless `implementation` is one of `IMPLEMENTATIONS` and can run a model on
    `device` in `dtype` (flash: CUDA, float16/bfloat16)."""
    from ..errors import ConfigError

    if implementation not in IMPLEMENTATIONS:
        raise ConfigError(f"attention={implementation!r} is not one of {', '.join(map(repr, IMPLEMENTATIONS))}")
    problem = flash_problem(device, dtype) if implementation == "flash" else None
    if problem is not None:
        raise ConfigError(f"attention='flash' cannot run this model: {problem}; load it with device='cuda', "
                          f"dtype=torch.float16 (or bfloat16), or use attention='sdpa'")


def _flash_kernel(q: torch.Tensor, bias: torch.Tensor | None, upcast: bool):
    """SDPA restricted to the flash kernel, or (with a warning saying why) SDPA's own choice."""
    problem = flash_problem(q.device, q.dtype, masked=bias is not None, head_dim=q.shape[-1], upcast=upcast)
    if problem is None:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(SDPBackend.FLASH_ATTENTION)
    warnings.warn(f"attention='flash' falls back to SDPA's other kernels for this call: {problem}", stacklevel=4)
    return contextlib.nullcontext()


class Attention(nn.Module):
    """Attention of `hidden_size` queries over keys/values from the same input or (cross-attention) from
    `kv_size`-wide encoder states.

    Options: `num_heads`; `num_kv_heads` (grouped-query attention, default `num_heads`); `head_dim`
    (default `hidden_size // num_heads`); `bias` on the q/k/v projections; `output_bias` on the output
    projection; `scale` of the scores (default `head_dim ** -0.5`); `dropout` on the attention weights;
    `upcast` computes scores in float32 for half-precision inputs; `cross` marks cross-attention; `fused`
    (self-attention only) makes queries, keys and values one projection `qkv` whose output is the three
    side by side, as GPT-2's checkpoints store them (one matmul instead of three).
    """

    def __init__(self, hidden_size: int, num_heads: int, *, num_kv_heads: int | None = None,
                 head_dim: int | None = None, kv_size: int | None = None, bias: bool = True,
                 output_bias: bool = True, scale: float | None = None, dropout: float = 0.0,
                 upcast: bool = False, cross: bool = False, fused: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads or num_heads
        self.head_dim = head_dim or hidden_size // num_heads
        self.scale = self.head_dim ** -0.5 if scale is None else scale
        self.dropout = dropout
        self.upcast = upcast
        self.cross = cross
        self.implementation = "sdpa"  # one of IMPLEMENTATIONS; `Model.set_attention` sets it
        kv_size = kv_size or hidden_size
        self.qkv: nn.Module | None = None  # see `fuse_qkv`
        if fused and cross:
            raise ValueError("cross-attention reads keys and values from other states: only self-attention fuses")
        if fused:
            self.qkv = Linear(hidden_size, (num_heads + 2 * self.num_kv_heads) * self.head_dim, bias=bias)
        else:
            self.query = Linear(hidden_size, num_heads * self.head_dim, bias=bias)
            self.key = Linear(kv_size, self.num_kv_heads * self.head_dim, bias=bias)
            self.value = Linear(kv_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.output = Linear(num_heads * self.head_dim, hidden_size, bias=output_bias)

    def fuse_qkv(self, qkv: nn.Module) -> None:
        """Compute queries, keys and values with one module whose output is the three concatenated: one
        matmul (and, decoding, one kernel launch) instead of three. `query`, `key` and `value` go away, and
        with them the checkpoint mapping: for quantised models, which are not saved (`bombus.quantize`)."""
        if self.cross:
            raise ValueError("cross-attention reads keys and values from other states: only self-attention fuses")
        self.qkv = qkv
        del self.query, self.key, self.value

    def _heads(self, x: torch.Tensor, num_heads: int) -> torch.Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, num_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)

    def forward(
        self,
        x: torch.Tensor,
        *,
        bias: torch.Tensor | None = None,
        causal: bool = False,
        kv_input: torch.Tensor | None = None,
        cache: Cache | None = None,
        layer: int = 0,
        slots: torch.Tensor | None = None,
        kv_length: int | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        head_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: `[batch, seq, hidden]`. `bias`: additive mask broadcastable to `[batch, heads, seq, keys]`;
        `causal`: use SDPA's built-in causal mask instead (no bias, no cache). With `cache`, new keys and
        values are written at `slots` of layer `layer` and attention covers the whole cache, or its first
        `kv_length` slots when given (`bias` then covers those). Returns the
        output and, when `output_attentions` or `head_mask` is given, the attention weights."""
        if self.qkv is not None:  # fused self-attention projections
            sizes = [self.num_heads * self.head_dim] + [self.num_kv_heads * self.head_dim] * 2
            q, k, v = (self._heads(t, n) for t, n in zip(self.qkv(x).split(sizes, dim=-1),
                                                         (self.num_heads, self.num_kv_heads, self.num_kv_heads)))
        else:
            q = self._heads(self.query(x), self.num_heads)
        if self.cross:
            stored = cache.cross[layer] if cache is not None else None
            if stored is None:
                k = self._heads(self.key(kv_input), self.num_kv_heads)
                v = self._heads(self.value(kv_input), self.num_kv_heads)
                if cache is not None:
                    cache.cross[layer] = (k, v)
            else:
                k, v = stored
        else:
            if self.qkv is None:
                k = self._heads(self.key(x), self.num_kv_heads)
                v = self._heads(self.value(x), self.num_kv_heads)
            if rotary is not None:
                q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
            if cache is not None:
                k, v = cache.write(layer, slots, k, v)
                if kv_length is not None:
                    k, v = k[:, :, :kv_length], v[:, :, :kv_length]
        eager = output_attentions or head_mask is not None or self.implementation == "eager"
        if not eager and getattr(cache, "rowwise", False) and q.shape[-2] == 1 and not self.training:
            out = rowwise_attention(q, k, v, bias, self.scale)
            return self.output(out.to(q.dtype).transpose(1, 2).flatten(2)), None
        grouped = self.num_kv_heads != self.num_heads
        if grouped and (eager or not _SDPA_GQA):
            repeats = self.num_heads // self.num_kv_heads
            k, v = k.repeat_interleave(repeats, dim=1), v.repeat_interleave(repeats, dim=1)
            grouped = False

        dtype = q.dtype
        if self.upcast and dtype in (torch.float16, torch.bfloat16):
            q, k, v = q.float(), k.float(), v.float()
            bias = None if bias is None else bias.float()
        dropout = self.dropout if self.training else 0.0
        weights = None
        if eager:
            scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale
            if causal:
                scores = scores.masked_fill(
                    torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device).triu(1),
                    torch.finfo(scores.dtype).min)
            if bias is not None:
                scores = scores + bias
                if scores.dtype == torch.float16:  # score + the mask's minimum can overflow to -inf; a row with
                    scores = scores.clamp_min(torch.finfo(torch.float16).min)  # every key masked would be nan
            weights = F.dropout(scores.softmax(-1), dropout, self.training)
            if head_mask is not None:
                weights = weights * head_mask.to(weights.dtype)[None, :, None, None]
            out = torch.matmul(weights, v)
        else:
            gqa = {"enable_gqa": True} if grouped else {}  # K/V heads are shared, not copied
            with (_flash_kernel(q, bias, self.upcast) if self.implementation == "flash"
                  else contextlib.nullcontext()):
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout,
                                                     is_causal=causal and bias is None, scale=self.scale, **gqa)
        out = out.to(dtype).transpose(1, 2).flatten(2)  # (B, T, nh * hd)
        return self.output(out), weights


ROWWISE_BLOCK = 64  # keys per block of `rowwise_attention`'s weighted sum


def rowwise_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
                      scale: float) -> torch.Tensor:
    """Attention of one query per row (`q` `[batch, heads, 1, dim]`, `k`/`v` `[batch, kv_heads, keys, dim]`,
    grouped heads shared without copies), computed so that a row gets the same bits whatever the other rows
    hold, how many there are, and how many masked keys follow its own. Used for decode steps over a `RowCache`
    (continuous batching: a request's output equals its output alone). PyTorch's fused attention kernels split
    the work differently with the batch and round a row differently; so does a matrix product whose inner
    dimension (here the keys) changes length. So: scores are one small product per (row, KV head), over `dim`;
    the weighted sum of values is one product per block of `ROWWISE_BLOCK` keys (a fixed inner length), the
    blocks' results added in order. Masked keys (and keys padding the last block) add exact zeros."""
    batch, heads, _, dim = q.shape
    kv_heads, keys = k.shape[1], k.shape[2]
    group, pairs = heads // kv_heads, batch * kv_heads
    scores = torch.bmm(q.reshape(pairs, group, dim), k.reshape(pairs, keys, dim).transpose(1, 2)) * scale
    scores = scores.view(batch, kv_heads, group, keys)
    if bias is not None:  # [batch, 1, 1, keys]
        scores = scores + bias.reshape(bias.shape[0], 1, 1, bias.shape[-1])
    weights = scores.softmax(-1).view(pairs, group, keys)
    v = v.reshape(pairs, keys, dim)
    extra = -keys % ROWWISE_BLOCK
    if extra:
        weights, v = F.pad(weights, (0, extra)), F.pad(v, (0, 0, 0, extra))
    blocks = (keys + extra) // ROWWISE_BLOCK
    weights = weights.view(pairs, group, blocks, ROWWISE_BLOCK).transpose(1, 2)
    partial = torch.bmm(weights.reshape(pairs * blocks, group, ROWWISE_BLOCK),
                        v.reshape(pairs * blocks, ROWWISE_BLOCK, dim))
    return partial.view(pairs, blocks, group, dim).sum(1).view(batch, heads, 1, dim)
