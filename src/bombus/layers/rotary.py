"""Rotary position embeddings (Su et al., 2021): the frequencies, their scaling kinds, and applying them.

The frequencies are computed on the fly from the spec's numbers (a handful of tiny ops per forward), so
they never live in a buffer that loading, `model.to(dtype)` or a checkpoint could disturb, and the cos/sin
tables are a function of the position ids only: one graph serves every decode step.

Scaling kinds, as transformers' `rope_type` (config.json `rope_scaling` / `rope_parameters`):
  * "default": `1 / base ** (2i / d)`.
  * "linear" (`factor`): frequencies divided by `factor` (positions stretched).
  * "dynamic" (`factor`): NTK-aware scaling. Within `max_positions` it is the default RoPE; a forward whose
    largest position p is beyond it uses the base `base * (factor * (p + 1) / max_positions - (factor - 1))
    ** (d / (d - 2))` for all its tokens. That is what transformers computes for that forward; transformers
    also remembers the largest length it has seen (stateful), which bombus does not: a shorter forward after
    a longer one goes back to the frequencies of its own length. Keys already in a cache keep the
    frequencies they were computed with (as in transformers), so cached decoding past `max_positions` is not
    equal to a full forward for this kind.
  * "llama3" (`factor`, `low_freq_factor`, `high_freq_factor`, `original_max_position_embeddings`): Llama
    3.1's per-frequency scaling — long wavelengths divided by `factor`, short ones kept, a smooth ramp
    between.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError

KINDS = ("default", "linear", "dynamic", "llama3")
_REQUIRED = {"linear": ("factor",), "dynamic": ("factor",),
             "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding (half-split layout). x: `[batch, heads, seq, head_dim]`, cos/sin:
    `[batch, seq, head_dim]`."""
    return x * cos[:, None] + rotate_half(x) * sin[:, None]


def check_scaling(scaling: dict | None) -> None:
    """Raise `ConfigError` unless `scaling` is None or a known kind with its parameters."""
    if scaling is None:
        return
    kind = scaling.get("rope_type")
    if kind not in KINDS:
        raise ConfigError(f"unsupported rope scaling kind {kind!r} (rope_scaling / rope_parameters 'rope_type'); "
                          f"bombus supports: {', '.join(KINDS)}")
    missing = [k for k in _REQUIRED.get(kind, ()) if scaling.get(k) is None]
    if missing:
        raise ConfigError(f"rope scaling {kind!r} needs {', '.join(missing)}; found {scaling}")


def inverse_frequencies(head_dim: int, base: float, scaling: dict | None = None,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """The `[head_dim // 2]` float32 inverse frequencies (for "dynamic": those within `max_positions`).
    The arithmetic follows transformers' `modeling_rope_utils` op for op, so the values are bit-identical."""
    kind = (scaling or {}).get("rope_type", "default")
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
    inv_freq = 1.0 / (base ** exponents)
    if kind == "linear":
        inv_freq = inv_freq / scaling["factor"]
    elif kind == "llama3":
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old_length = scaling["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old_length / low, old_length / high
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_length / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        inv_freq = torch.where(medium, smoothed, scaled)
    return inv_freq


class Rotary(nn.Module):
    """cos/sin tables `[batch, seq, head_dim]` of position ids, for `Attention(rotary=...)`. No parameters."""

    def __init__(self, head_dim: int, *, base: float = 10000.0, scaling: dict | None = None,
                 max_positions: int | None = None):
        super().__init__()
        check_scaling(scaling)
        if scaling is not None and scaling["rope_type"] == "dynamic" and not max_positions:
            raise ConfigError("dynamic rope scaling needs max_positions (the trained length)")
        self.head_dim, self.base, self.scaling, self.max_positions = head_dim, base, scaling, max_positions
        self.kind = (scaling or {}).get("rope_type", "default")

    def frequencies(self, positions: torch.Tensor) -> torch.Tensor:
        inv_freq = inverse_frequencies(self.head_dim, self.base, self.scaling, positions.device)
        if self.kind == "dynamic":
            factor, limit, dim = self.scaling["factor"], self.max_positions, self.head_dim
            length = (positions.max() + 1).clamp(min=limit)  # on the device: no host copy (CUDA graphs)
            base = self.base * ((factor * length / limit) - (factor - 1)) ** (dim / (dim - 2))
            exponents = torch.arange(0, dim, 2, dtype=torch.int64, device=positions.device).float() / dim
            inv_freq = torch.where(length > limit, 1.0 / (base ** exponents), inv_freq)
        return inv_freq

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """positions: `[batch, seq]` ids; returns `(cos, sin)` in `dtype`, computed in float32."""
        freqs = positions[..., None].float() * self.frequencies(positions)  # (B, T, hd/2)
        angles = torch.cat((freqs, freqs), dim=-1)
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base}, scaling={self.scaling}"
