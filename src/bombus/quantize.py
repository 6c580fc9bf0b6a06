"""Weight-only quantised layers: drop-in replacements for `nn.Linear` / `nn.Embedding`, packed once at load
time, that run PyTorch's own CPU kernels.

* `Int4Linear`: 4-bit weights in groups along the input, `w = (q - 8) * scale + zero` (tinygemm's layout,
  which GGUF's Q4_0 and Q4_1 blocks map onto exactly), through `aten._weight_int4pack_mm_for_cpu`.
* `Int8Linear`: 8-bit weights with one scale per output row, through `aten._weight_int8pack_mm`.
* `DynamicInt8Linear`: 8-bit weights with one scale per output row, activations quantised per call
  (fbgemm's `quantized::linear_dynamic`: the fastest int8 kernel measured here, float32 in and out).
* `quantize_model`: every Linear layer of a float model made int8 or int4 (`load_model(..., quantize=)`).
* `Int8Embedding`: int8 values with a scale per group of columns (GGUF's Q8_0 blocks), looked up exactly.
* `TiedInt8Linear`: an LM head over its tied `Int8Embedding`'s own rows (one int8 copy of the vocabulary),
  activations quantised per row per call, through `aten._int_mm`.
* `RescoredHead`: an LM head whose best logits are recomputed exactly after a quantised pass.

The int4 and `Int8Linear` kernels are fast only with bfloat16 activations (measured on AVX-512 without AMX:
float32 or float16 activations are 10-50x slower), so those layers cast their input to bfloat16 and their
output back to the input's dtype; the rest of the model keeps its dtype. CPU only: on other devices load
dequantised weights.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .layers.linear import ONEDNN, Linear

QUANTIZE_MODES = ("int8", "int4")

_ACT = torch.bfloat16
_INT4_ROWS = 16  # the int4 packing wants a multiple of 16 output rows: padded with zero rows


def _require_cpu(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type != "cpu":
        raise ConfigError(f"bombus' int4/int8 layers run PyTorch's CPU kernels; device {device} is not supported "
                          f"(load the weights dequantised instead, e.g. quantize='dequantize')")


class Int4Linear(nn.Module):
    """`nn.Linear` with 4-bit weights: per row and per `group_size` inputs, `w = (q - 8) * scale + zero`
    with `q` in [0, 15]. `scale` and `zero` are stored in bfloat16 (the kernel's format)."""

    quantized = True  # not saved as a transformers checkpoint

    def __init__(self, in_features: int, out_features: int, *, group_size: int = 32, bias: bool = False,
                 device: torch.device | str | None = None):
        super().__init__()
        _require_cpu(device)
        if group_size not in (32, 64, 128, 256) or in_features % group_size:
            raise ConfigError(f"Int4Linear: group_size must be 32, 64, 128 or 256 and divide in_features="
                              f"{in_features}; got {group_size}")
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        rows = -(-out_features // _INT4_ROWS) * _INT4_ROWS
        self.register_buffer("packed", torch.empty(rows, in_features // 2, dtype=torch.uint8, device=device))
        self.register_buffer("scales_and_zeros", torch.empty(in_features // group_size, rows, 2, dtype=_ACT,
                                                             device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, device=device), requires_grad=False) if bias else None

    @classmethod
    def from_groups(cls, q: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                    bias: torch.Tensor | None = None) -> Int4Linear:
        """Pack `q` (`[out, in]` integers in [0, 15]) with `scales`/`zeros` (`[out, in / group_size]`)."""
        out_features, in_features = q.shape
        layer = cls(in_features, out_features, group_size=in_features // scales.shape[1], bias=bias is not None)
        pad = layer.packed.shape[0] - out_features
        pairs = torch.stack([scales, zeros], dim=-1).to(_ACT)  # (N, G, 2)
        if pad:  # zero rows (q = 8 with a zero scale and zero), cut off again in forward
            pairs = F.pad(pairs, (0, 0, 0, 0, 0, pad))
        padded = torch.full((out_features + pad, in_features), 8, dtype=torch.int32)  # the kernel's input type
        padded[:out_features] = q
        layer.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(padded, 2)
        layer.scales_and_zeros = pairs.transpose(0, 1).contiguous()
        if bias is not None:
            layer.bias = nn.Parameter(bias.float(), requires_grad=False)
        return layer

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None = None, *, group_size: int = 32
                   ) -> Int4Linear:
        """Quantise a float `[out, in]` weight: per group, `scale = (max - min) / 15`, `zero` the value
        that q = 8 stands for, `q = round((w - min) / scale)`."""
        out_features, in_features = weight.shape
        q = torch.empty(out_features, in_features, dtype=torch.uint8)
        low = torch.empty(out_features, in_features // group_size)
        scales = torch.empty_like(low)
        step = max(1, (16 << 20) // (4 * in_features))  # rows at a time: float temporaries of ~16 MB, not the matrix
        for start in range(0, out_features, step):
            groups = weight[start:start + step].float().unflatten(-1, (-1, group_size))
            low[start:start + step], high = groups.amin(-1), groups.amax(-1)
            scales[start:start + step] = ((high - low[start:start + step]) / 15).clamp(min=1e-10)
            part = (groups - low[start:start + step, :, None]) / scales[start:start + step, :, None]
            q[start:start + step] = part.round().clamp(0, 15).flatten(-2)
        return cls.from_groups(q, scales, low + 8 * scales, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(_ACT)
        pairs = self.scales_and_zeros
        if pairs.dtype != _ACT:  # after a cast of the whole model, e.g. model.float()
            pairs = pairs.to(_ACT)
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, self.group_size, pairs)
        if out.shape[-1] != self.out_features:
            out = out[:, :self.out_features]
        if self.bias is not None:
            out = out.float() + self.bias
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}, "
                f"bias={self.bias is not None}")


def concat_int4(layers: list[Int4Linear]) -> Int4Linear | None:
    """One `Int4Linear` computing `layers` side by side (their outputs concatenated), or None when they do
    not fit together (other inputs or groups, padded rows, mixed biases).

    The packed weights are concatenated as they are: the CPU packing lays rows out in blocks (of 64 rows
    when the count allows), so this holds only for some shapes, and PyTorch does not promise the layout.
    Hence the check: the fused layer must give exactly the parts' outputs on a random input, else None."""
    first = layers[0]
    if not all(isinstance(layer, Int4Linear) and layer.in_features == first.in_features
               and layer.group_size == first.group_size and layer.out_features == layer.packed.shape[0]
               and (layer.bias is None) == (first.bias is None) for layer in layers):
        return None
    fused = Int4Linear(first.in_features, sum(layer.out_features for layer in layers), group_size=first.group_size)
    fused.packed = torch.cat([layer.packed for layer in layers])
    fused.scales_and_zeros = torch.cat([layer.scales_and_zeros for layer in layers], dim=1)
    if first.bias is not None:
        fused.bias = nn.Parameter(torch.cat([layer.bias for layer in layers]), requires_grad=False)
    probe = torch.randn(2, first.in_features, generator=torch.Generator().manual_seed(0))
    if not torch.equal(fused(probe), torch.cat([layer(probe) for layer in layers], dim=-1)):
        return None
    return fused


def fuse_projections(model: nn.Module) -> int:
    """Fuse the q/k/v and gate/up projections of every block whose projections are `Int4Linear`s (one
    kernel call instead of three, and two; ~5% of a small model's decode step). Returns how many fused."""
    from .layers.attention import Attention
    from .layers.transformer import MLP

    count = 0
    for module in model.modules():
        if isinstance(module, Attention) and not module.cross and module.qkv is None:
            fused = concat_int4([module.query, module.key, module.value])
            if fused is not None:
                module.fuse_qkv(fused)
                count += 1
        elif isinstance(module, MLP) and module.gated and module.gate_up is None:
            fused = concat_int4([module.gate, module.up])
            if fused is not None:
                module.fuse_gate_up(fused)
                count += 1
    return count


def int8_rows(weight: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8 quantisation of a float `[rows, columns]` weight: `(q int8, scale float32)`,
    `w ~ q * scale`. Works through `chunk` rows at a time, so a float32 copy never exists whole."""
    q = torch.empty(weight.shape, dtype=torch.int8)
    scales = torch.empty(weight.shape[0], dtype=torch.float32)
    for start in range(0, weight.shape[0], chunk):
        rows = weight[start:start + chunk].float()
        scale = (rows.abs().amax(-1) / 127).clamp(min=1e-10)
        q[start:start + chunk] = (rows / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
        scales[start:start + chunk] = scale
    return q, scales


class Int8Linear(nn.Module):
    """`nn.Linear` with int8 weights and one scale per output row: `w = q * scale`."""

    quantized = True  # not saved as a transformers checkpoint

    def __init__(self, q: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        _require_cpu(q.device)
        self.out_features, self.in_features = q.shape
        self.register_buffer("weight", q.to(torch.int8))
        self.register_buffer("scales", scales.to(_ACT))
        self.bias = nn.Parameter(bias.float(), requires_grad=False) if bias is not None else None

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> Int8Linear:
        return cls(*int8_rows(weight), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(_ACT)
        scales = self.scales if self.scales.dtype == _ACT else self.scales.to(_ACT)
        out = torch.ops.aten._weight_int8pack_mm(flat, self.weight, scales)
        if self.bias is not None:
            out = out.float() + self.bias
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Int8Embedding(nn.Module):
    """`nn.Embedding` over int8 values with a scale per `group_size` columns (GGUF's Q8_0 blocks: 32; one
    per row: the row width), looked up exactly: rows come out as `q * scale` in `dtype`."""

    quantized = True  # not saved as a transformers checkpoint

    def __init__(self, q: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.num_embeddings, self.embedding_dim = q.shape
        scales = scales.reshape(q.shape[0], -1)
        self.group_size = self.embedding_dim // scales.shape[1]
        self.register_buffer("weight", q.to(torch.int8))
        self.register_buffer("scales", scales)
        self.dtype = dtype

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        groups = F.embedding(ids, self.weight).float().unflatten(-1, (-1, self.group_size))
        rows = groups * F.embedding(ids, self.scales).float()[..., None]
        return rows.flatten(-2).to(self.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, group_size={self.group_size}"


class RescoredHead(nn.Module):
    """An LM head in two passes: `approx` (a fast quantised projection) scores the whole vocabulary, then
    the `top_k` best of each position are recomputed in float32 from `table`'s exact rows (an embedding
    of the same weight, usually the tied token embedding). Greedy choices and the head of the softmax then
    match the unquantised model's, where bf16 logits alone (steps of 0.125 near 30) would break near-ties
    arbitrarily; the rest of the vocabulary keeps the approximate scores."""

    quantized = True  # not saved as a transformers checkpoint

    def __init__(self, approx: nn.Module, table: nn.Module, top_k: int = 32):
        super().__init__()
        self.approx, self.table, self.top_k = approx, table, top_k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.approx(x).float()
        best = logits.topk(min(self.top_k, logits.shape[-1]), dim=-1).indices  # (..., k)
        rows = self.table(best).float()  # (..., k, hidden)
        exact = (rows @ x.float()[..., None]).squeeze(-1)
        return logits.scatter(-1, best, exact).to(x.dtype)


class DynamicInt8Linear(nn.Module):
    """`nn.Linear` with int8 weights (one symmetric scale per output row) whose float32 input is quantised
    to 8 bits per call (one scale per call): integer matmul, float32 output. Through fbgemm's
    `quantized::linear_dynamic`, the kernel `torch.ao.quantization.quantize_dynamic` uses, measured about
    1.3x faster than `aten._weight_int8pack_mm` at batch 1 here and far faster at larger batches. On CPUs
    without VNNI activations use 7 bits (`reduce_range`), which fbgemm's AVX2 path needs to avoid overflow."""

    quantized = True  # not saved as a transformers checkpoint

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        _require_cpu(weight.device)
        self.out_features, self.in_features = weight.shape
        q, scales = int8_rows(weight)
        with warnings.catch_warnings():  # PyTorch flags quantized tensors as deprecated; the kernels remain
            warnings.simplefilter("ignore")
            packed = torch._make_per_channel_quantized_tensor(q, scales.double(), torch.zeros(
                self.out_features, dtype=torch.long), 0)
            self._packed = torch.ops.quantized.linear_prepack(
                packed, None if bias is None else bias.detach().float().contiguous())
        self.has_bias = bias is not None
        self.reduce_range = not torch.cpu._is_vnni_supported()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if flat.dtype != torch.float32:
            flat = flat.float()
        out = torch.ops.quantized.linear_dynamic(flat.contiguous(), self._packed, self.reduce_range)
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.has_bias}"


class TiedInt8Linear(nn.Module):
    """An LM head tied to an `Int8Embedding` with one scale per row: it reads that embedding's int8 rows and
    scales in place (the same tensors: one copy of the vocabulary, not two), its float input quantised to
    8 bits per call with one symmetric scale per row: integer matmul (`aten._int_mm`, oneDNN), float32
    results times both scales. At one row as fast as fbgemm's packed `DynamicInt8Linear`, which cannot share
    its opaque packed copy; at 2-30 rows about 1.7-2x slower (docs/PERFORMANCE.md)."""

    quantized = True  # not saved as a transformers checkpoint

    def __init__(self, embedding: Int8Embedding, bias: torch.Tensor | None = None):
        super().__init__()
        _require_cpu(embedding.weight.device)
        if embedding.group_size != embedding.embedding_dim:
            raise ConfigError(f"TiedInt8Linear needs one scale per row; the embedding has groups of "
                              f"{embedding.group_size} of its {embedding.embedding_dim} columns")
        self.out_features, self.in_features = embedding.weight.shape
        self.register_buffer("weight", embedding.weight)  # the embedding's own tensors, not copies
        self.register_buffer("scales", embedding.scales)  # (out, 1)
        self.bias = nn.Parameter(bias.detach().float(), requires_grad=False) if bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).float()
        step = (flat.abs().amax(-1, keepdim=True) / 127).clamp_(min=1e-10)  # one scale per input row
        q = (flat / step).round_().to(torch.int8)
        out = (torch._int_mm(q, self.weight.t()) * step).mul_(self.scales.reshape(1, -1))  # int32 -> float32
        if self.bias is not None:
            out += self.bias
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantize_model(model: nn.Module, mode: str, *, group_size: int = 64) -> nn.Module:
    """Replace every `nn.Linear` of `model` (CPU, float weights) by a weight-only quantised one, in place:

    * "int8": `DynamicInt8Linear` (int8 weights per row, int8 activations per call, float32 results);
      an LM head tied to the token embedding becomes (where PyTorch has oneDNN) a `TiedInt8Linear` over the
      embedding's int8 rows (the vocabulary held once: GPT-2 small resident 0.40x -> 0.32x its float32
      bytes; a batch-8 decode step ~1-1.5 ms slower, batch 1 as fast);
    * "int4": `Int4Linear`, groups of `group_size` inputs (default 64; 32 where 64 does not divide the
      input width; a layer neither divides stays float) with a bfloat16 scale and zero each, bfloat16
      activations (an LM head's rows padded to a multiple of 16).

    Self-attention's q/k/v (and a gated MLP's gate/up) projections become one layer first: one kernel call
    and, for int8, one quantisation of their shared input instead of three.

    The token embedding (the LM head's tied source, or the encoder's word table) becomes an `Int8Embedding`
    with one scale per row, so no float32 copy of the vocabulary stays resident. Other embeddings, norms and
    biases keep their dtype. Quantised models run on CPU only and cannot `save_pretrained`. Returns `model`.
    """
    if mode not in QUANTIZE_MODES:
        raise ConfigError(f"quantize must be one of {', '.join(map(repr, QUANTIZE_MODES))} (or None for float "
                          f"weights), got {mode!r}")
    for name, param in model.named_parameters():
        _require_cpu(param.device)
    embeddings = getattr(model, "embeddings", None)
    token = getattr(embeddings, "token", None)
    with torch.no_grad():
        _fuse_float_projections(model)
        if isinstance(token, nn.Embedding):
            embeddings.token = Int8Embedding(*int8_rows(token.weight.detach()), dtype=token.weight.dtype)
        for parent in list(model.modules()):
            for child_name, child in list(parent.named_children()):
                if not isinstance(child, nn.Linear):
                    continue
                weight = child.weight.detach()
                if mode == "int8" and ONEDNN and isinstance(token, nn.Embedding) and child.weight is token.weight:
                    # the LM head tied to the embedding (without oneDNN, _int_mm is a slow reference loop)
                    new = TiedInt8Linear(embeddings.token, child.bias)
                elif mode == "int8":
                    new = DynamicInt8Linear(weight, child.bias)
                else:
                    groups = [g for g in (group_size, 32) if child.in_features % g == 0]
                    if not groups:
                        continue  # no group structure fits: left in float
                    new = Int4Linear.from_float(weight, child.bias, group_size=groups[0])
                setattr(parent, child_name, new)
    if hasattr(model, "tied"):
        model.tied = {}  # no float weight to tie any more: int8 heads share the buffers, int4 ones hold a copy
    return model


def _fuse_float_projections(model: nn.Module) -> None:
    """Fuse the float q/k/v projections of every self-attention, and gate/up of every gated MLP, into one
    `nn.Linear` each (weights and biases concatenated: outputs exactly the parts', side by side)."""
    from .layers.attention import Attention
    from .layers.transformer import MLP

    for module in list(model.modules()):
        if isinstance(module, Attention) and not module.cross and module.qkv is None:
            parts = [module.query, module.key, module.value]
            if all(type(p) in (nn.Linear, Linear) for p in parts):
                module.fuse_qkv(_concat_linear(parts))
        elif isinstance(module, MLP) and module.gated and module.gate_up is None:
            parts = [module.gate, module.up]
            if all(type(p) in (nn.Linear, Linear) for p in parts):
                module.fuse_gate_up(_concat_linear(parts))


def _concat_linear(parts: list[nn.Linear]) -> nn.Linear:
    weight = torch.cat([p.weight.detach() for p in parts])
    has_bias = any(p.bias is not None for p in parts)
    fused = Linear(weight.shape[1], weight.shape[0], bias=has_bias, device="meta")
    fused.weight = nn.Parameter(weight, requires_grad=False)
    if has_bias:
        fused.bias = nn.Parameter(torch.cat([p.bias.detach() if p.bias is not None else
                                             torch.zeros(p.out_features, dtype=weight.dtype) for p in parts]),
                                  requires_grad=False)
    return fused
