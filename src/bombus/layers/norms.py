"""Normalisation layers: LayerNorm (GPT-2, BERT family) and RMSNorm (LLaMA family)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


_FUSED = hasattr(F, "rms_norm")  # PyTorch >= 2.4


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32 and cast back, as the LLaMA reference does."""

    def __init__(self, size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        if dtype == torch.float32 and _FUSED:  # one op instead of seven, same arithmetic
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def norm(kind: str, size: int, eps: float) -> nn.Module:
    """A normalisation layer: kind "layer_norm" or "rms_norm"."""
    if kind == "layer_norm":
        return nn.LayerNorm(size, eps=eps)
    if kind == "rms_norm":
        return RMSNorm(size, eps=eps)
    raise ConfigError(f"unknown norm {kind!r}; expected 'layer_norm' or 'rms_norm'")
