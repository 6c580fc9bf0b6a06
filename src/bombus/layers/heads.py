"""Task heads on top of a backbone's hidden states, shared by every family."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .activations import activation
from .linear import Linear


class LanguageModelingHead(nn.Module):
    """Vocabulary logits: optional transform (`dense` -> activation -> `norm`, when `transform_activation`
    is given) and a `decoder` projection, whose weight the model ties to the token embedding."""

    def __init__(self, hidden_size: int, vocab_size: int, *, embedding_size: int | None = None,
                 transform_activation: str | None = None, norm_epsilon: float = 1e-12, bias: bool = False):
        super().__init__()
        embedding_size = embedding_size or hidden_size
        if transform_activation is not None:
            self.dense = Linear(hidden_size, embedding_size)
            self.act = activation(transform_activation)
            self.norm = nn.LayerNorm(embedding_size, eps=norm_epsilon)
        self.decoder = Linear(embedding_size, vocab_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "dense"):
            x = self.norm(self.act(self.dense(x)))
        return self.decoder(x)


class ClassificationHead(nn.Module):
    """`dropout -> [dense -> activation -> dropout] -> output`, on one vector per sequence (or token).

    `dense`: include the hidden dense layer (RoBERTa, DistilBERT); `dropout_first`: apply dropout before
    the dense layer too (RoBERTa yes, DistilBERT no); `bias` of the output layer."""

    def __init__(self, hidden_size: int, num_labels: int, *, dense: bool = False, activation_name: str = "tanh",
                 dropout: float = 0.0, dropout_first: bool = True, bias: bool = True):
        super().__init__()
        if dense:
            self.dense = Linear(hidden_size, hidden_size)
            self.act = activation(activation_name)
        self.dropout_first = dropout_first or not dense
        self.output = Linear(hidden_size, num_labels, bias=bias)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout_first:
            x = F.dropout(x, self.dropout, self.training)
        if hasattr(self, "dense"):
            x = F.dropout(self.act(self.dense(x)), self.dropout, self.training)
        return self.output(x)


class Pooler(nn.Module):
    """`tanh(dense(x[:, 0]))`: the first token's state, as BERT-style models pool a sequence."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(x[:, 0]))


class SequenceSummary(nn.Module):
    """One vector per sequence (GPT-2 double heads): `summary_type` "last", "first", "mean" or
    "cls_index" (the token at `cls_index`, default the last); then dropout, optional projection to
    `projection_size`, optional activation, dropout."""

    def __init__(self, hidden_size: int, *, summary_type: str = "cls_index", projection_size: int | None = None,
                 activation_name: str | None = None, first_dropout: float = 0.0, last_dropout: float = 0.0):
        super().__init__()
        self.summary_type = summary_type
        self.projection = Linear(hidden_size, projection_size) if projection_size else None
        self.act = activation(activation_name) if activation_name else None
        self.first_dropout, self.last_dropout = first_dropout, last_dropout

    def forward(self, x: torch.Tensor, cls_index: torch.Tensor | None = None) -> torch.Tensor:
        """x: `[..., seq, hidden]` -> `[..., hidden or projection_size]`."""
        if self.summary_type == "first":
            out = x[..., 0, :]
        elif self.summary_type == "mean":
            out = x.mean(dim=-2)
        elif self.summary_type == "last" or cls_index is None:
            out = x[..., -1, :]
        else:
            index = cls_index[..., None, None].expand(*cls_index.shape, 1, x.shape[-1])
            out = x.gather(-2, index).squeeze(-2)
        out = F.dropout(out, self.first_dropout, self.training)
        if self.projection is not None:
            out = self.projection(out)
        if self.act is not None:
            out = self.act(out)
        return F.dropout(out, self.last_dropout, self.training)
