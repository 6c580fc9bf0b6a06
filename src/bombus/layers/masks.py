"""Attention masks as additive biases (0 = attend, dtype minimum = ignore), shaped `[batch, 1, query, key]`.

A large negative number rather than -inf keeps rows with nothing to attend to (left padding) finite.
"""

from __future__ import annotations

import torch

from ..errors import InputError


def _bias(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    zero = torch.zeros((), dtype=dtype, device=visible.device)
    return torch.where(visible, zero, torch.finfo(dtype).min)


def padding_bias(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """`[batch, 1, 1, key]` bias hiding padded keys, or None when nothing is masked."""
    if attention_mask is None:
        return None
    return _bias(attention_mask.bool()[:, None, None, :], dtype)


def causal_bias(attention_mask: torch.Tensor | None, query_length: int, key_length: int,
                dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Bias letting query t see keys up to its own position (queries are the last `query_length` keys),
    and hiding padded keys."""
    keys = torch.arange(key_length, device=device)
    queries = torch.arange(key_length - query_length, key_length, device=device)
    visible = (keys[None, :] <= queries[:, None])[None, None]  # (1, 1, T, S)
    if attention_mask is not None:
        visible = visible & attention_mask.bool()[:, None, None, :]
    return _bias(visible, dtype)


def cache_bias(cache_mask: torch.Tensor, slots: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bias over a static cache: query at slot s sees filled slots <= s. `cache_mask` is `[batch, L]`,
    `slots` the query slots `[T]` (or `[batch, T]` when each row has its own, `RowCache`); the result is
    `[batch, 1, T, L]`."""
    keys = torch.arange(cache_mask.shape[1], device=cache_mask.device)
    if slots.dim() == 2:
        visible = (keys[None, None, :] <= slots[:, :, None])[:, None] & cache_mask[:, None, None, :]
    else:
        visible = (keys[None, :] <= slots[:, None])[None, None] & cache_mask[:, None, None, :]
    return _bias(visible, dtype)


def expand_head_mask(mask: torch.Tensor | None, num_blocks: int, num_heads: int, name: str
                     ) -> torch.Tensor | None:
    """A head mask as `[num_blocks, num_heads]` multipliers: given so, or as `[num_heads]` for every block."""
    if mask is None:
        return None
    if mask.dim() == 1:
        mask = mask[None].expand(num_blocks, -1)
    if tuple(mask.shape) != (num_blocks, num_heads):
        raise InputError(f"{name} must have shape [num_blocks, num_attention_heads] = [{num_blocks}, {num_heads}] "
                         f"(or [{num_heads}] for every block), found {list(mask.shape)}")
    return mask
