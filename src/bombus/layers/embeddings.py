"""Input embeddings: token + learned position + token type, then optional norm, dropout and projection."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Embeddings(nn.Module):
    """Sum of token, position (when `max_positions`) and token type (when `max_token_types`) embeddings of
    width `size`, then a LayerNorm (when `norm_epsilon` is given), dropout, and a projection to
    `hidden_size` when it differs from `size` (ALBERT's factorised embeddings)."""

    def __init__(self, vocab_size: int, size: int, *, max_positions: int | None = None,
                 max_token_types: int = 0, norm_epsilon: float | None = None, dropout: float = 0.0,
                 hidden_size: int | None = None, padding_idx: int | None = None):
        super().__init__()
        self.token = nn.Embedding(vocab_size, size, padding_idx=padding_idx)
        self.position = nn.Embedding(max_positions, size) if max_positions else None
        self.token_type = nn.Embedding(max_token_types, size) if max_token_types else None
        self.norm = nn.LayerNorm(size, eps=norm_epsilon) if norm_epsilon is not None else None
        self.projection = nn.Linear(size, hidden_size) if hidden_size and hidden_size != size else None
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
