"""Input embeddings: token + learned position + token type, then optional norm, dropout and projection;
and the sinusoidal table that some families (DistilBERT) initialise their position embeddings with."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .linear import Linear


def embedding(num_embeddings: int, size: int, padding_idx: int | None = None) -> nn.Embedding:
    """`nn.Embedding`, initialised as PyTorch does, except on the meta device (models are built there to be
    loaded), where its `normal_` would do nothing but import torch._dynamo: ~1 s, half of a GGUF load."""
    weight = torch.empty(num_embeddings, size)
    if weight.is_meta:
        return nn.Embedding(num_embeddings, size, padding_idx=padding_idx, _weight=weight)
    return nn.Embedding(num_embeddings, size, padding_idx=padding_idx)


class Embeddings(nn.Module):
    """Sum of token, position (when `max_positions`) and token type (when `max_token_types`) embeddings of
    width `size`, then a LayerNorm (when `norm_epsilon` is given), dropout, and a projection to
    `hidden_size` when that is given (ALBERT's factorised embeddings). `padding_idx` is the
    token embedding's padding row, `position_padding_idx` the position embedding's (RoBERTa's)."""

    def __init__(self, vocab_size: int, size: int, *, max_positions: int | None = None,
                 max_token_types: int = 0, norm_epsilon: float | None = None, dropout: float = 0.0,
                 hidden_size: int | None = None, padding_idx: int | None = None,
                 position_padding_idx: int | None = None):
        super().__init__()
        self.token = embedding(vocab_size, size, padding_idx)
        self.position = embedding(max_positions, size, position_padding_idx) if max_positions else None
        self.token_type = embedding(max_token_types, size) if max_token_types else None
        self.norm = nn.LayerNorm(size, eps=norm_epsilon) if norm_epsilon is not None else None
        self.projection = Linear(size, hidden_size) if hidden_size else None
        self.dropout = dropout

    def forward(self, input_ids=None, input_embeddings=None, position_ids=None, token_type_ids=None,
                extra: torch.Tensor | None = None) -> torch.Tensor:
        """`extra` is added before the norm (GPT-2 embeds token types with the token embedding)."""
        x = self.token(input_ids) if input_embeddings is None else input_embeddings
        if self.position is not None:
            x = x + self.position(position_ids)
        if self.token_type is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros(x.shape[:2], dtype=torch.long, device=x.device)
            x = x + self.token_type(token_type_ids)
        if extra is not None:
            x = x + extra
        if self.norm is not None:
            x = self.norm(x)
        x = F.dropout(x, self.dropout, self.training)
        if self.projection is not None:
            x = self.projection(x)
        return x


def sinusoidal_table(num_positions: int, size: int) -> torch.Tensor:
    """`[num_positions, size]` fixed position encodings (Vaswani et al.): sin on even features, cos on odd,
    with frequency `10000 ** (-2 * (j // 2) / size)` for feature j; computed in float64, as the reference."""
    positions = torch.arange(num_positions, dtype=torch.float64)[:, None]
    angles = positions / torch.pow(10000.0, 2 * (torch.arange(size, dtype=torch.float64) // 2) / size)
    table = torch.empty(num_positions, size, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = angles[:, 0::2].sin(), angles[:, 1::2].cos()
    return table.float()
