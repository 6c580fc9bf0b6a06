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
        # Scratch buffers of `reorder`, one per distinct shape/dtype (created on first use, then reused).
        self._scratch: dict[tuple, torch.Tensor] = {}

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

    def reorder(self, index: torch.Tensor, start: int = 0, stop: int | None = None) -> None:
        """Reorder rows in place (beam search): row i becomes old row `index[i]` (`[batch]` long).

        Only slots `[start, stop)` are moved (default: all): a caller that knows the rows it exchanges agree
        elsewhere (beams of one prompt share the prompt's slots; slots past the offset are unused) passes the
        window where they differ. Each buffer's window is gathered into a scratch buffer of the buffer's
        shape (allocated on the first call, shared by the layers) and copied back: after the first call no
        memory is allocated for the self-attention buffers, nothing syncs with the host, and every buffer
        keeps its address, so a compiled or graph-captured decode step still reads the right memory.
        """
        stop = self.max_length if stop is None else stop
        if not 0 <= start <= stop <= self.max_length:
            raise InputError(f"reorder window [{start}, {stop}) is not within the cache's {self.max_length} slots")
        if start < stop:
            for buffer in (*self.keys, *self.values, self.mask):
                window = buffer[:, :, start:stop] if buffer.dim() == 4 else buffer[:, start:stop]
                scratch = self._scratch_like(buffer)
                scratch = scratch[:, :, : stop - start] if buffer.dim() == 4 else scratch[:, : stop - start]
                torch.index_select(window, 0, index, out=scratch)
                window.copy_(scratch)
        # Cross-attention keys/values (encoder states, written once and never in place) are simply replaced.
        self.cross = [None if c is None else (c[0].index_select(0, index), c[1].index_select(0, index))
                      for c in self.cross]

    def _scratch_like(self, buffer: torch.Tensor) -> torch.Tensor:
        key = (tuple(buffer.shape), buffer.dtype, buffer.device)
        scratch = self._scratch.get(key)
        if scratch is None:
            scratch = self._scratch[key] = torch.empty_like(buffer, memory_format=torch.contiguous_format)
        return scratch

    def reset(self) -> None:
        """Forget every token, keeping the buffers."""
        self.mask.zero_()
        self.offset.zero_()
        self.cross = [None] * len(self.cross)


class RowCache(Cache):
    """A static cache whose rows each have their own offset (`offsets`, `[batch]` long): continuous batching
    keeps every sequence in one row, its tokens in slots `[0, offsets[row])` exactly as if it ran alone, and
    rows join and leave independently. Inputs must carry `position_ids` (each row has its own positions).

    `view(rows, length)` is the first rows and slots sharing these buffers (a decode step attends over the
    slots in use only); `place(row, source, source_row, length)` copies a prompt prefilled in another cache.
    `rowwise` [True]: one-token steps use `attention.rowwise_attention`, whose result for a row does not
    depend on the other rows.
    """

    rowwise = True

    def __init__(self, **options):
        super().__init__(**options)
        self.offsets = torch.zeros(self.batch_size, dtype=torch.long, device=self.mask.device)

    def slots(self, length: int) -> torch.Tensor:
        """`[batch, length]`: each row's next `length` slots."""
        return self.offsets[:, None] + torch.arange(length, device=self.mask.device)

    def begin(self, attention_mask: torch.Tensor) -> torch.Tensor:
        batch, length = attention_mask.shape
        if batch != self.batch_size:
            raise InputError(f"cache holds {self.batch_size} rows but the input has {batch}")
        slots = self.slots(length)
        self.mask.scatter_(1, slots, attention_mask.to(torch.bool))
        return slots

    def write(self, layer: int, slots: torch.Tensor, key: torch.Tensor, value: torch.Tensor):
        index = slots[:, None, :, None].expand(-1, key.shape[1], -1, key.shape[3])
        self.keys[layer].scatter_(2, index, key.to(self.keys[layer].dtype))
        self.values[layer].scatter_(2, index, value.to(self.values[layer].dtype))
        return self.keys[layer], self.values[layer]

    def advance(self, length: int) -> None:
        self.offsets.add_(length)

    def view(self, rows: int, length: int) -> RowCache:
        view = object.__new__(RowCache)  # the buffers are shared, so __init__ (which allocates) is skipped
        view._scratch = {}
        view.keys = [k[:rows, :, :length] for k in self.keys]
        view.values = [v[:rows, :, :length] for v in self.values]
        view.mask = self.mask[:rows, :length]
        view.offset = self.offset
        view.offsets = self.offsets[:rows]
        view.rowwise = self.rowwise
        view.cross = [None if c is None else (c[0][:rows], c[1][:rows]) for c in self.cross]
        return view

    def place(self, row: int, source: Cache, source_row: int, length: int) -> None:
        """Row `row` becomes the first `length` slots of `source`'s row `source_row` (a prompt prefilled on its
        own, unpadded); its other slots are masked off and its offset is `length`."""
        for mine, theirs in ((self.keys, source.keys), (self.values, source.values)):
            for target, origin in zip(mine, theirs):
                target[row, :, :length] = origin[source_row, :, :length]
        self.mask[row] = False
        self.mask[row, :length] = source.mask[source_row, :length]
        self.offsets[row] = length

    def free(self, row: int) -> None:
        """Forget row `row` (its slot may decode dummy tokens until it is placed again)."""
        self.mask[row] = False
        self.offsets[row] = 0

    def reset(self) -> None:
        super().reset()
        self.offsets.zero_()
