"""A static key/value cache: preallocated buffers written in place, so decoding never reallocates.

Every tensor the decode step reads is here (keys, values, which slots hold real tokens, how many slots are
used), so one step is a function of tensors only and can be compiled or captured in a CUDA graph. Rows
may be left-padded: padding slots are simply marked unused in `mask`.
"""

from __future__ import annotations

import torch

from ..errors import InputError


class Cache:
    """Keys and values of every attention layer for `batch_size` rows and up to `max_length` tokens.

    Attributes:
      keys, values: one `[batch, kv_heads, max_length, head_dim]` tensor per layer.
      mask: `[batch, max_length]` bool, True where a slot holds a real (non-padding) token.
      offset: 0-dim long tensor, the number of slots written so far (the same for every row).
      cross: per layer, the cross-attention `(keys, values)` of the encoder states, computed once.
    """

    def __init__(self, *, num_layers: int, batch_size: int, max_length: int, num_kv_heads: int,
                 head_dim: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        shape = (batch_size, num_kv_heads, max_length, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.mask = torch.zeros(batch_size, max_length, dtype=torch.bool, device=device)
        self.offset = torch.zeros((), dtype=torch.long, device=device)
        self.cross: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * num_layers

    @property
    def batch_size(self) -> int:
        return self.mask.shape[0]

    @property
    def max_length(self) -> int:
        return self.mask.shape[1]

    def slots(self, length: int) -> torch.Tensor:
        """The slot indices the next `length` tokens go to: `offset + [0, length)`."""
        return self.offset + torch.arange(length, device=self.mask.device)

    def begin(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """Record which of the next tokens are real; returns their slot indices.

        `attention_mask` is `[batch, new_tokens]`.
        """
        batch, length = attention_mask.shape
        if batch != self.batch_size:
            raise InputError(f"cache holds {self.batch_size} rows but the input has {batch}; "
                             f"create it with model.init_cache({batch}, max_length)")
        # Checked only where reading the offset costs no device sync.
        if self.offset.device.type == "cpu" and not torch.compiler.is_compiling() \
                and int(self.offset) + length > self.max_length:
            raise InputError(
                f"cache is full: {int(self.offset)} of {self.max_length} slots used and {length} new "
                f"tokens given; create a larger cache with model.init_cache(batch_size, max_length)")
        slots = self.slots(length)
        self.mask.index_copy_(1, slots, attention_mask.to(torch.bool))
        return slots

    def write(self, layer: int, slots: torch.Tensor, key: torch.Tensor, value: torch.Tensor):
        """Store one layer's new keys/values (`[batch, kv_heads, new, head_dim]`) at `slots`; returns the
        whole buffers to attend over."""
        self.keys[layer].index_copy_(2, slots, key.to(self.keys[layer].dtype))
        self.values[layer].index_copy_(2, slots, value.to(self.values[layer].dtype))
        return self.keys[layer], self.values[layer]

    def advance(self, length: int) -> None:
        self.offset.add_(length)

    def reorder(self, index: torch.Tensor) -> None:
        """Reorder rows in place (beam search): row i becomes old row `index[i]`."""
        for tensors in (self.keys, self.values):
            for t in tensors:
                t.copy_(t.index_select(0, index))
        self.mask.copy_(self.mask.index_select(0, index))
        self.cross = [None if c is None else (c[0].index_select(0, index), c[1].index_select(0, index))
                      for c in self.cross]

    def view(self, rows: int, length: int) -> Cache:
        """The first `rows` rows and `length` slots of this cache, sharing its buffers and its offset: a decode
        step over the view writes into this cache, and attends over `length` slots only (continuous batching
        runs the rows in use over the slots in use). `offset` must stay below `length`."""
        view = object.__new__(Cache)
        view.keys = [k[:rows, :, :length] for k in self.keys]
        view.values = [v[:rows, :, :length] for v in self.values]
        view.mask = self.mask[:rows, :length]
        view.offset = self.offset
        view.cross = [None if c is None else (c[0][:rows], c[1][:rows]) for c in self.cross]
        return view

    def place(self, row: int, source: Cache, source_row: int, length: int) -> None:
        """Copy the last `length` written slots of `source`'s row `source_row` (a prompt prefilled on its own)
        into row `row`, right-aligned so they end at this cache's offset; the row's other slots are masked off.
        Continuous batching joins a new request to the running batch this way."""
        end, source_end = int(self.offset), int(source.offset)
        if length > end or length > source_end:
            raise InputError(f"cannot place {length} slots: this cache's offset is {end}, the source's {source_end}")
        for mine, theirs in ((self.keys, source.keys), (self.values, source.values)):
            for target, origin in zip(mine, theirs):
                target[row, :, end - length:end] = origin[source_row, :, source_end - length:source_end]
        self.mask[row] = False
        self.mask[row, end - length:end] = source.mask[source_row, source_end - length:source_end]

    def compact(self) -> int:
        """Close the gaps: every row's used slots move right-aligned to end at a new offset, the most used
        slots of any row; returns the new offset. Rows keep their own positions (the model takes positions
        explicitly), so decoding goes on unchanged with free slots at the end."""
        used = self.mask.sum(dim=1)  # [batch]
        new_offset = int(used.max())
        length = self.max_length
        # Stable sort puts each row's used slots first, in order.
        order = torch.sort((~self.mask).to(torch.int8), dim=1, stable=True).indices
        target = torch.arange(length, device=self.mask.device)[None, :]
        start = new_offset - used[:, None]  # where each row's used slots begin after compaction
        k = target - start
        valid = (k >= 0) & (target < new_offset)
        source = torch.gather(order, 1, k.clamp(0, length - 1))
        source = torch.where(valid, source, 0)
        for tensors in (self.keys, self.values):
            for t in tensors:
                index = source[:, None, :, None].expand(-1, t.shape[1], -1, t.shape[3])
                t.copy_(torch.gather(t, 2, index))
        self.mask.copy_(valid)
        self.offset.fill_(new_offset)
        return new_offset

    def reset(self) -> None:
        """Forget every token, keeping the buffers."""
        self.mask.zero_()
        self.offset.zero_()
        self.cross = [None] * len(self.cross)
