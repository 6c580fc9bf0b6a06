"""The transformer block (pre-norm or post-norm, dense or gated MLP, optional cross-attention) and the
stack of blocks, with ALBERT-style parameter sharing. Families configure these; they never copy them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .activations import activation
from .attention import Attention
from .cache import Cache
from .linear import Linear
from .masks import cache_bias, causal_bias, expand_head_mask, padding_bias
from .norms import norm


@dataclass(frozen=True)
class BlockOptions:
    """How a family's blocks are built.

    `norm_position`: "pre" (norm, then sublayer, then residual: GPT-2, LLaMA) or "post" (sublayer,
    residual, then norm: BERT family). `gated_mlp`: `down(act(gate(x)) * up(x))` (LLaMA) instead of
    `output(act(intermediate(x)))`. `attention_scale`: None for `head_dim ** -0.5`. `fused_qkv`: the
    self-attention's queries, keys and values are one projection (GPT-2's `c_attn`).
    """

    hidden_size: int
    num_heads: int
    intermediate_size: int
    activation: str = "gelu"
    norm: str = "layer_norm"
    norm_epsilon: float = 1e-5
    norm_position: str = "post"
    num_kv_heads: int | None = None
    head_dim: int | None = None
    attention_bias: bool = True
    attention_output_bias: bool = True
    mlp_bias: bool = True
    gated_mlp: bool = False
    cross_attention: bool = False
    cross_attention_size: int | None = None
    attention_scale: float | None = None
    upcast_attention: bool = False
    dropout: float = 0.0
    attention_dropout: float = 0.0
    fused_qkv: bool = False


class MLP(nn.Module):
    """Feed-forward sublayer: `output(act(intermediate(x)))`, or gated `down(act(gate(x)) * up(x))`."""

    def __init__(self, o: BlockOptions):
        super().__init__()
        self.gated = o.gated_mlp
        self.act = activation(o.activation)
        if self.gated:
            self.gate = Linear(o.hidden_size, o.intermediate_size, bias=o.mlp_bias)
            self.up = Linear(o.hidden_size, o.intermediate_size, bias=o.mlp_bias)
            self.down = Linear(o.intermediate_size, o.hidden_size, bias=o.mlp_bias)
        else:
            self.intermediate = Linear(o.hidden_size, o.intermediate_size, bias=o.mlp_bias)
            self.output = Linear(o.intermediate_size, o.hidden_size, bias=o.mlp_bias)
        self.gate_up: nn.Module | None = None  # see `fuse_gate_up`

    def fuse_gate_up(self, gate_up: nn.Module) -> None:
        """Compute the gate and up projections with one module whose output is the two concatenated (one
        matmul instead of two); like `Attention.fuse_qkv`, for quantised models, which are not saved."""
        self.gate_up = gate_up
        del self.gate, self.up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up is not None:
            gate, up = self.gate_up(x).chunk(2, dim=-1)
            return self.down(self.act(gate) * up)
        if self.gated:
            return self.down(self.act(self.gate(x)) * self.up(x))
        return self.output(self.act(self.intermediate(x)))


class Block(nn.Module):
    """Self-attention, optional cross-attention, MLP; each with a residual connection and a norm."""

    def __init__(self, o: BlockOptions, *, attention_scale: float | None = None):
        super().__init__()
        self.pre_norm = o.norm_position == "pre"
        scale = o.attention_scale if attention_scale is None else attention_scale
        common = dict(num_kv_heads=o.num_kv_heads, head_dim=o.head_dim, bias=o.attention_bias,
                      output_bias=o.attention_output_bias, scale=scale, dropout=o.attention_dropout,
                      upcast=o.upcast_attention)
        self.attention = Attention(o.hidden_size, o.num_heads, fused=o.fused_qkv, **common)
        self.attention_norm = norm(o.norm, o.hidden_size, o.norm_epsilon)
        if o.cross_attention:
            self.cross_attention = Attention(o.hidden_size, o.num_heads, kv_size=o.cross_attention_size,
                                             cross=True, **common)
            self.cross_attention_norm = norm(o.norm, o.hidden_size, o.norm_epsilon)
        self.mlp = MLP(o)
        self.mlp_norm = norm(o.norm, o.hidden_size, o.norm_epsilon)
        self.dropout = o.dropout

    def _residual(self, x, sublayer, norm_layer, **kwargs):
        if self.pre_norm:
            out, weights = sublayer(norm_layer(x), **kwargs)
            return x + self._dropout(out), weights
        out, weights = sublayer(x, **kwargs)
        return norm_layer(x + self._dropout(out)), weights

    def _dropout(self, x):
        # not even called in eval: at ~60 calls per decode step, a no-op call costs as much as an op
        return F.dropout(x, self.dropout, self.training) if self.training and self.dropout else x

    def forward(self, x, *, bias=None, causal=False, cache=None, layer=0, slots=None, kv_length=None, rotary=None,
                head_mask=None, encoder_state=None, encoder_bias=None, cross_head_mask=None,
                output_attentions=False):
        x, attention = self._residual(
            x, self.attention, self.attention_norm, bias=bias, causal=causal, cache=cache, layer=layer,
            slots=slots, kv_length=kv_length, rotary=rotary, head_mask=head_mask,
            output_attentions=output_attentions)
        cross_attention = None
        if hasattr(self, "cross_attention") and (
                encoder_state is not None or (cache is not None and cache.cross[layer] is not None)):
            x, cross_attention = self._residual(
                x, self.cross_attention, self.cross_attention_norm, bias=encoder_bias, kv_input=encoder_state,
                cache=cache, layer=layer, head_mask=cross_head_mask, output_attentions=output_attentions)
        x, _ = self._residual(x, lambda h: (self.mlp(h), None), self.mlp_norm)
        return x, attention, cross_attention


def _eager_cpu(cache: Cache) -> bool:
    """Whether the cache's offset can be read without a device sync or a graph break (a `RowCache`, whose rows
    each have their own offset, keeps its own slot window)."""
    return cache.offset.device.type == "cpu" and not torch.compiler.is_compiling() \
        and not getattr(cache, "rowwise", False)


class Transformer(nn.Module):
    """A stack of blocks. `groups[g]` is a list of blocks applied in turn; logical block i runs group
    `group_of[i]` (identity by default; ALBERT shares one group across many blocks). `final_norm` adds a
    norm after the last block (pre-norm models)."""

    def __init__(self, groups: list[list[Block]], *, group_of: list[int] | None = None,
                 final_norm: nn.Module | None = None):
        super().__init__()
        self.groups = nn.ModuleList(nn.ModuleList(g) for g in groups)
        self.group_of = group_of or list(range(len(groups)))
        self.final_norm = final_norm

    @property
    def num_layers(self) -> int:
        """Attention layers applied per forward (what a KV cache needs one slot per)."""
        return sum(len(self.groups[g]) for g in self.group_of)

    def forward(self, x, *, attention_mask=None, causal=False, cache: Cache | None = None, rotary=None,
                head_mask=None, encoder_state=None, encoder_attention_mask=None, cross_head_mask=None,
                output_hidden_states=False, output_attentions=False):
        """Run the blocks on `x` (`[batch, seq, hidden]`), masking padded keys per `attention_mask`
        (`[batch, seq]`; with a cache, the mask of the new tokens or of all tokens so far) and, when
        `causal`, future keys. With `cache`, keys/values go into the cache and attention covers it.

        `head_mask`/`cross_head_mask`: `[logical blocks, heads]` (or `[heads]` for all) multipliers of the
        attention heads, shared by a group's blocks.

        Returns `(x, hidden_states, attentions, cross_attentions)`; hidden states are the input and the
        output of every block applied (the last one after `final_norm`; with ALBERT-style groups of several
        blocks, each of them, as the reference records them), or () when not requested."""
        batch, length = x.shape[:2]
        slots = kv_length = None
        cache_causal = False
        if attention_mask is not None and cache is None and self.groups[0][0].attention.implementation == "flash" \
                and bool(attention_mask.all()):
            attention_mask = None  # nothing to mask: flash attention can run (it takes no mask)
        if cache is not None:
            new_mask = (torch.ones(batch, length, dtype=torch.bool, device=x.device) if attention_mask is None
                        else attention_mask[:, -length:])
            slots = cache.begin(new_mask)
            if _eager_cpu(cache):
                # Reading the offset is free here: attend over the used slots only, not the whole buffer, and
                # drop the mask when nothing is padded (SDPA's own causal mask for a prompt from slot 0).
                kv_length = int(cache.offset) + length
                used = cache.mask[:, :kv_length]
                if not bool(used.all()):
                    bias = cache_bias(used, slots, x.dtype)
                elif length == 1:
                    bias = None
                elif kv_length == length:
                    bias, cache_causal = None, True
                else:
                    bias = causal_bias(None, length, kv_length, x.dtype, x.device)
            else:  # compiled or on an accelerator: every shape fixed, the whole buffer under a mask
                bias = cache_bias(cache.mask, slots, x.dtype)
        elif causal and attention_mask is not None:
            bias = causal_bias(attention_mask, length, length, x.dtype, x.device)
        else:
            bias = padding_bias(attention_mask, x.dtype)
        encoder_bias = padding_bias(encoder_attention_mask, x.dtype)
        causal = (causal and cache is None) or cache_causal
        num_heads = self.groups[0][0].attention.num_heads
        head_mask = expand_head_mask(head_mask, len(self.group_of), num_heads, "attention_head_mask")
        cross_head_mask = expand_head_mask(cross_head_mask, len(self.group_of), num_heads,
                                           "cross_attention_head_mask")
        hidden_states, attentions, cross_attentions = [], [], []
        layer = 0
        for i, g in enumerate(self.group_of):
            for block in self.groups[g]:
                if output_hidden_states:
                    hidden_states.append(x)
                x, attention, cross = block(
                    x, bias=bias, causal=causal, cache=cache, layer=layer, slots=slots, kv_length=kv_length,
                    rotary=rotary,
                    head_mask=None if head_mask is None else head_mask[i],
                    encoder_state=encoder_state, encoder_bias=encoder_bias,
                    cross_head_mask=None if cross_head_mask is None else cross_head_mask[i],
                    output_attentions=output_attentions)
                layer += 1
                if output_attentions:
                    attentions.append(attention)
                    if cross is not None:
                        cross_attentions.append(cross)
        if self.final_norm is not None:
            x = self.final_norm(x)
        if output_hidden_states:
            hidden_states.append(x)
        if cache is not None:
            cache.advance(length)
        return x, tuple(hidden_states), tuple(attentions), tuple(cross_attentions)
