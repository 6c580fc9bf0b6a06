"""`flax_model.msgpack`: the parameters that transformers' Flax classes save (`flax.serialization.to_bytes`),
read with msgpack (no JAX, no Flax).

The file is one msgpack map nesting module names down to arrays (`{"encoder": {"layer": {"0": ...}}}`).
Each array is a msgpack extension value (type 1; type 3 for a NumPy scalar) whose payload is itself msgpack:
`[shape, dtype name, row-major bytes]`. Flax splits an array over 1 GiB into
`{"__msgpack_chunked_array__": true, "shape": {"0": ...}, "chunks": {"0": flat part, ...}}`. Nothing is
unpickled: msgpack only decodes plain values.

Paths become PyTorch names joined by `.`, leaves renamed and kernels transposed (see `bombus.formats`).
msgpack has no index of where each array lies, so the file is decoded whole up front (each array kept as
its raw bytes until asked for): loading peaks near twice the weights, against one copy for safetensors.
"""

from __future__ import annotations

import math
import mmap
from pathlib import Path

import torch

from ..errors import CheckpointError
from . import missing_extra, to_torch_layout, torch_name

_NDARRAY, _NPSCALAR = 1, 3
_CHUNKED = "__msgpack_chunked_array__"
_DTYPES = {
    "float64": torch.float64, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8,
    "bool": torch.bool,
}


class _Array:
    """An array's payload, decoded into a tensor only when asked for."""

    def __init__(self, payload: bytes):
        self.payload = payload

    def tensor(self, path: Path, name: str) -> torch.Tensor:
        import msgpack

        try:
            shape, dtype_name, buffer = msgpack.unpackb(self.payload, raw=True)
            shape = [int(n) for n in shape]
            dtype_name = dtype_name.decode("ascii")
        except (ValueError, TypeError, AttributeError, msgpack.UnpackException) as e:
            raise CheckpointError(f"{path}: array {name!r} is malformed (expected [shape, dtype, bytes]): {e}"
                                  ) from None
        dtype = _DTYPES.get(dtype_name)
        if dtype is None:
            raise CheckpointError(f"{path}: array {name!r} has unsupported dtype {dtype_name!r}; supported: "
                                  f"{', '.join(_DTYPES)}")
        expected = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        if len(buffer) != expected:
            raise CheckpointError(f"{path}: array {name!r} of shape {shape} and dtype {dtype_name} needs "
                                  f"{expected} bytes but holds {len(buffer)}: the file is corrupt")
        flat = torch.frombuffer(bytearray(buffer), dtype=torch.uint8) if buffer else torch.empty(0, dtype=torch.uint8)
        return flat.view(dtype).reshape(shape)


def _ext_hook(code: int, payload: bytes):
    import msgpack

    if code in (_NDARRAY, _NPSCALAR):
        return _Array(payload)
    return msgpack.ExtType(code, payload)  # reported as an unsupported leaf below


class FlaxWeightsFile:
    """The tensors of a `flax_model.msgpack` (or shard) under their PyTorch names."""

    def __init__(self, path: Path):
        try:
            import msgpack
        except ImportError:
            raise missing_extra(path, "msgpack", "flax") from None
        self.path = path
        try:
            with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                tree = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
        except (ValueError, TypeError, OSError, msgpack.UnpackException, msgpack.ExtraData) as e:
            raise CheckpointError(f"{path} is not a readable Flax msgpack file (truncated or corrupt?): {e}"
                                  ) from None
        if not isinstance(tree, dict):
            raise CheckpointError(f"{path} holds a msgpack {type(tree).__name__}, expected a map of parameters")
        if set(tree) == {"params"} and isinstance(tree["params"], dict):  # a whole variables collection
            tree = tree["params"]
        self._leaves: dict[str, tuple[object, str, str]] = {}  # PyTorch name -> (leaf, Flax path, Flax leaf)
        self._collect(tree, [])

    def _collect(self, node: dict, parts: list[str]) -> None:
        for key, value in node.items():
            here = [*parts, str(key)]
            if isinstance(value, dict) and not value.get(_CHUNKED):
                self._collect(value, here)
            elif isinstance(value, (dict, _Array)):
                self._leaves[torch_name(here)] = (value, "/".join(here), here[-1])
            else:
                raise CheckpointError(f"{self.path}: parameter {'/'.join(here)!r} is a {type(value).__name__}, "
                                      f"not an array: not a Flax parameter file")

    def keys(self) -> list[str]:
        return list(self._leaves)

    def get(self, name: str) -> torch.Tensor:
        value, flax_path, leaf = self._leaves[name]
        if isinstance(value, dict):
            tensor = self._unchunk(value, flax_path)
        else:
            tensor = value.tensor(self.path, flax_path)
        return to_torch_layout(leaf, tensor)

    def _unchunk(self, value: dict, flax_path: str) -> torch.Tensor:
        try:
            shape = [int(value["shape"][str(i)]) for i in range(len(value["shape"]))]
            chunks = [value["chunks"][str(i)] for i in range(len(value["chunks"]))]
            flat = torch.cat([c.tensor(self.path, f"{flax_path} (chunk {i})").reshape(-1)
                              for i, c in enumerate(chunks)])
            return flat.reshape(shape)
        except (KeyError, TypeError, AttributeError, RuntimeError) as e:
            raise CheckpointError(f"{self.path}: chunked array {flax_path!r} is malformed: {e}") from None
