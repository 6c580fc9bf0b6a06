"""Checkpoint files <-> model parameters.

Reads `model.safetensors` (lazily, one tensor at a time), `pytorch_model.bin` (only with
`torch.load(weights_only=True)`: never an arbitrary pickle), the weights of transformers' TF and Flax
classes (`tf_model.h5`, `flax_model.msgpack`; see `bombus.formats`) and sharded `*.index.json` of any of
them. A family declares how its parameters are named in checkpoints as data — a table from our parameter
(or module) names to `Key`s — and this module applies it in both directions, so loading and
`save_pretrained` cannot disagree.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import struct
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .errors import CheckpointError, SourceError
from .formats.flax import FlaxWeightsFile
from .formats.tf import TFWeightsFile
from .hub import resolve_file

SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
PYTORCH, PYTORCH_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
TF, TF_INDEX = "tf_model.h5", "tf_model.h5.index.json"
FLAX, FLAX_INDEX = "flax_model.msgpack", "flax_model.msgpack.index.json"
# In order of preference: a folder with PyTorch weights is read from those.
WEIGHT_FILES = (SAFETENSORS, SAFETENSORS_INDEX, PYTORCH, PYTORCH_INDEX, TF, TF_INDEX, FLAX, FLAX_INDEX)

# Buffers that references save but that hold no learned values (masks, position ranges, rotary tables).
IGNORED_KEYS = re.compile(r"(^|\.)(attn\.bias|attn\.masked_bias|position_ids|rotary_emb\.inv_freq)$")


@dataclass(frozen=True)
class Key:
    """Where one parameter (or every parameter of one module) lives in a checkpoint.

    `name`: the key (or module path) with `{i}`-style placeholders for indices; `transpose`: the file
    stores 2-D weights as `[in, out]` (GPT-2's Conv1D); `chunk=(index, count)`: the file fuses `count`
    tensors along the last dimension (GPT-2's fused q/k/v); `in_base`: the key sits under the family's
    base-model prefix (e.g. `transformer.`) in checkpoints of head models; `also`: other keys that hold
    the same tensor (BERT's MLM bias is both `decoder.bias` and the head's `bias`): read when `name` is
    absent, and written too, so either reader finds it.
    """

    name: str
    transpose: bool = False
    chunk: tuple[int, int] | None = None
    in_base: bool = True
    also: tuple[str, ...] = ()


class KeyMap:
    """A family's table `{our name template: Key or str}`; module templates apply to all their params."""

    def __init__(self, table: dict[str, Key | str], base_prefix: str):
        self.base_prefix = base_prefix
        self._rules = []
        for ours, key in table.items():
            key = key if isinstance(key, Key) else Key(key)
            pattern = re.escape(ours)
            pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>\\d+)", pattern)
            self._rules.append((re.compile(pattern + r"$"), key))

    def key(self, name: str) -> Key | None:
        """The checkpoint Key of our parameter `name`, placeholders filled, or None if unmapped."""
        module, _, leaf = name.rpartition(".")
        for target, suffix in ((name, ""), (module, "." + leaf)):
            for pattern, key in self._rules:
                m = pattern.match(target)
                if m:
                    names = [t.format(**m.groupdict()) + suffix for t in (key.name, *key.also)]
                    return replace(key, name=names[0], also=tuple(names[1:]))
        return None

    def candidates(self, key: Key) -> list[str]:
        """Checkpoint names to look for, in order: `name`, then `also`, each with and without the base
        prefix where it applies."""
        names = (key.name, *key.also)
        if key.in_base and self.base_prefix:
            return [n for name in names for n in (f"{self.base_prefix}.{name}", name)]
        return list(names)

    def outputs(self, key: Key, *, with_prefix: bool) -> list[str]:
        """The names `save_pretrained` writes the tensor under: `name` and every `also`."""
        prefix = f"{self.base_prefix}." if with_prefix and key.in_base and self.base_prefix else ""
        return [prefix + name for name in (key.name, *key.also)]


# -- reading ------------------------------------------------------------------------------------------


def find_weight_files(source, *, revision=None, token=None) -> list[Path]:
    """The weight files of `source` in load order: the first of `WEIGHT_FILES` it has (safetensors, then
    .bin, then TF .h5, then Flax .msgpack; each whole or sharded)."""
    for name in WEIGHT_FILES:
        path = resolve_file(source, name, revision=revision, token=token, required=False)
        if path is None:
            continue
        if not name.endswith(".index.json"):
            return [path]
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
            shards = sorted(set(index["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise CheckpointError(f"{path}: not a valid shard index (expected a 'weight_map'): {e}") from None
        return [resolve_file(source, shard, revision=revision, token=token) for shard in shards]
    raise SourceError(f"no weights found in {source}: expected one of {', '.join(WEIGHT_FILES)}")


def _normalise(key: str) -> str:
    # Old checkpoints name LayerNorm parameters gamma/beta.
    if key.endswith(".gamma"):
        return key[: -len("gamma")] + "weight"
    if key.endswith(".beta"):
        return key[: -len("beta")] + "bias"
    return key


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


class SafetensorsFile:
    """A .safetensors file read with plain `readinto` into freshly allocated tensors.

    Unlike a memory map, this leaves no file pages in the process's resident memory, so loading a model
    peaks at one copy of its weights (plus one tensor). The format is an 8-byte header length, a JSON
    header {name: {dtype, shape, data_offsets}}, then the data.
    """

    def __init__(self, path: Path):
        self.path = path
        size = path.stat().st_size
        try:
            with open(path, "rb") as f:
                (length,) = struct.unpack("<Q", f.read(8))
                if length > size - 8:
                    raise ValueError(f"header of {length} bytes but the file has {size}")
                header = json.loads(f.read(length))
        except (struct.error, ValueError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}"
                                  ) from None
        self._start = 8 + length
        self.entries: dict[str, tuple[torch.dtype, list[int], int, int]] = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            try:
                dtype = _SAFETENSORS_DTYPES[info["dtype"]]
                begin, end = info["data_offsets"]
                shape = list(info["shape"])
            except (KeyError, TypeError, ValueError):
                raise CheckpointError(f"{path}: unsupported or malformed header entry for {name!r}: {info}"
                                      ) from None
            expected = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            if end - begin != expected or self._start + end > size:
                raise CheckpointError(
                    f"{path}: tensor {name!r} needs bytes {begin}-{end} ({expected} expected) but the data "
                    f"section has {size - self._start}: the file is truncated or corrupt")
            self.entries[name] = (dtype, shape, begin, end)

    def keys(self) -> list[str]:
        return list(self.entries)

    def get(self, name: str) -> torch.Tensor:
        return self.get_rows(name, 0, self.entries[name][1][0] if self.entries[name][1] else 1)

    def span(self, name: str, start: int, stop: int) -> tuple[int, int, list[int]]:
        """Where rows `start:stop` (along the first dimension) of tensor `name` lie in the data section
        (`begin`, `end`) and their shape; a 0-d tensor whole."""
        _, shape, begin, end = self.entries[name]
        if not shape:
            return begin, end, shape
        row_bytes = (end - begin) // shape[0] if shape[0] else 0
        return begin + start * row_bytes, begin + stop * row_bytes, [stop - start, *shape[1:]]

    def get_rows(self, name: str, start: int, stop: int, into: torch.Tensor | None = None) -> torch.Tensor:
        """Rows `start:stop` of tensor `name` (see `span`), read alone. `into`: a uint8 buffer of at least
        their bytes to read into (the result is a view of it)."""
        dtype = self.entries[name][0]
        begin, end, shape = self.span(name, start, stop)
        tensor = torch.empty(shape, dtype=dtype) if into is None else into[:end - begin].view(dtype).view(shape)
        if end > begin:
            buffer = memoryview(tensor.reshape(-1).view(torch.uint8).numpy())
            with open(self.path, "rb") as f:
                f.seek(self._start + begin)
                if f.readinto(buffer) != end - begin:
                    raise CheckpointError(f"{self.path}: tensor {name!r} is cut short: the file is truncated")
        return tensor


class CheckpointReader:
    """All tensors of a list of weight files, read on demand (`get`) so peak memory stays at one tensor."""

    def __init__(self, files: list[Path]):
        self._where: dict[str, tuple[Path, str]] = {}  # normalised key -> (file, original key)
        self._open: dict[Path, object] = {}
        self._scratch: torch.Tensor | None = None  # see `get_rows`
        for path in files:
            for key in self._keys(path):
                self._where[_normalise(key)] = (path, key)

    def _keys(self, path: Path) -> list[str]:
        readers = {".safetensors": SafetensorsFile, ".h5": TFWeightsFile, ".msgpack": FlaxWeightsFile}
        if path.suffix in readers:
            handle = readers[path.suffix](path)
            self._open[path] = handle
            return handle.keys()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            try:  # files in the legacy (non-zip) format cannot be memory-mapped
                state = torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as e:
                raise _unsafe(path, e) from None
            except Exception as e:
                raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {e}") from None
        except pickle.UnpicklingError as e:
            raise _unsafe(path, e) from None
        except Exception as e:
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {e}") from None
        if not isinstance(state, dict):
            raise CheckpointError(f"{path} holds a {type(state).__name__}, expected a dict of tensors")
        self._open[path] = state
        return list(state)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def keys(self) -> list[str]:
        return list(self._where)

    def file_of(self, key: str) -> Path:
        return self._where[key][0]

    def get(self, key: str) -> torch.Tensor:
        path, original = self._where[key]
        return self._open[path].get(original)  # a file reader, or the dict of a .bin

    def shape(self, key: str) -> list[int] | None:
        """The shape of a safetensors tensor, known without reading it (None for other formats)."""
        path, original = self._where[key]
        handle = self._open[path]
        return list(handle.entries[original][1]) if isinstance(handle, SafetensorsFile) else None

    def get_rows(self, key: str, start: int, stop: int) -> torch.Tensor:
        """Rows `start:stop` of a safetensors tensor (see `shape`), read into one buffer this reader reuses:
        the result is valid until the next call (loading then allocates nothing but the model's tensors,
        which keeps the C heap from holding freed pieces: seen as +45% resident memory after loading)."""
        path, original = self._where[key]
        handle = self._open[path]
        begin, end, _ = handle.span(original, start, stop)
        size = end - begin
        if self._scratch is None or self._scratch.numel() < size:
            self._scratch = torch.empty(max(size, _TRANSPOSE_PIECE), dtype=torch.uint8)
        return handle.get_rows(original, start, stop, into=self._scratch)


def _unsafe(path: Path, error: Exception) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a weights-only checkpoint: it contains pickled objects other than tensors, and "
        f"bombus never unpickles untrusted code ({error}). Convert it to safetensors with the tool that "
        f"made it, if you trust it.")


# -- loading into a model ------------------------------------------------------------------------------


def _set_tensor(model: nn.Module, name: str, value: torch.Tensor) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name)
    old = getattr(module, leaf)
    if isinstance(old, nn.Parameter):
        setattr(module, leaf, nn.Parameter(value, requires_grad=old.requires_grad))
    else:
        setattr(module, leaf, value)


_TRANSPOSE_PIECE = 4 << 20  # bytes of the file read at a time when a matrix is transposed as it is read


def _read(reader: CheckpointReader, keymap: KeyMap, key: Key, *, dtype: torch.dtype | None = None,
          device: torch.device | str = "cpu", transposed_copy: bool = False) -> tuple[str, torch.Tensor] | None:
    """The first candidate of `key` in the files and its tensor, chunked and transposed as `key` says.
    With `transposed_copy`, a matrix the file stores `[in, out]` (`key.transpose`) comes back contiguous
    `[out, in]` in `dtype` on `device`, copied from the file piece by piece (safetensors files), so no
    file-layout copy of it exists beside the result."""
    for candidate in keymap.candidates(key):
        if candidate not in reader:
            continue
        shape = reader.shape(candidate)
        if transposed_copy and key.transpose and shape is not None and len(shape) == 2:
            _check_chunk(candidate, shape, key.chunk)
            return candidate, _read_transposed(reader, candidate, shape, key.chunk, dtype, device)
        tensor = reader.get(candidate)
        _check_chunk(candidate, list(tensor.shape), key.chunk)
        if key.chunk is not None:
            index, count = key.chunk
            tensor = tensor.chunk(count, dim=-1)[index]
        if key.transpose and tensor.dim() == 2:
            tensor = tensor.t()
        return candidate, tensor
    return None


def _check_chunk(candidate: str, shape: list[int], chunk: tuple[int, int] | None) -> None:
    if chunk is not None and (not shape or shape[-1] % chunk[1]):
        raise CheckpointError(f"checkpoint key {candidate!r} has shape {tuple(shape)}, which does not split "
                              f"into {chunk[1]} equal parts")


def _read_transposed(reader: CheckpointReader, candidate: str, shape: list[int], chunk: tuple[int, int] | None,
                     dtype: torch.dtype | None, device: torch.device | str) -> torch.Tensor:
    rows, columns = shape
    first, width = (chunk[0] * columns // chunk[1], columns // chunk[1]) if chunk is not None else (0, columns)
    piece = reader.get_rows(candidate, 0, min(rows, 1))
    out = torch.empty(width, rows, dtype=dtype if piece.is_floating_point() and dtype else piece.dtype,
                      device=device)
    step = max(1, _TRANSPOSE_PIECE // max(1, columns * piece.element_size()))
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        out[:, start:stop] = reader.get_rows(candidate, start, stop)[:, first:first + width].t()
    return out


def load_state(model: nn.Module, files: list[Path], keymap: KeyMap, *, dtype: torch.dtype,
               device: torch.device | str, init: Callable[[nn.Module, str], None],
               tied: set[str] = frozenset(), column_major: set[str] = frozenset(),
               loaded: Callable[[str], None] | None = None) -> None:
    """Fill `model` (built on the meta device) from `files`, converting to `dtype`/`device` one tensor
    at a time. Parameters the files lack are initialised with `init(module, name)` and listed in a
    warning; file keys nothing used are listed too. A shape mismatch is a `CheckpointError`.
    Matrices named in `column_major` are stored so (see `Model.decoding_layout`) as they are read: no
    second copy of the model exists at any time, and none at all where the file holds `[in, out]`.
    `loaded(name)` is called after each tensor read from the files is in place."""
    reader = CheckpointReader(files)
    used: set[str] = set()
    missing: list[str] = []
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    names = list(tensors)
    for name in tied:  # a tied copy in the file (e.g. lm_head.weight in .bin files) is redundant
        key = keymap.key(name)
        used.update(keymap.candidates(key) if key is not None else ())
    for name in names:
        if name in tied:
            continue
        current = tensors[name]
        key = keymap.key(name)
        found = _read(reader, keymap, key, dtype=dtype, device=device,
                      transposed_copy=name not in column_major) if key is not None else None
        if found is None:
            missing.append(name)
            _set_tensor(model, name, torch.empty(current.shape, dtype=dtype if current.is_floating_point()
                                                 else current.dtype, device=device))
            continue
        candidate, tensor = found
        used.update(keymap.candidates(key))  # its `also` twins in the file are the same tensor
        if tuple(tensor.shape) != tuple(current.shape):
            raise CheckpointError(
                f"checkpoint key {candidate!r} in {reader.file_of(candidate)} has shape {tuple(tensor.shape)}, but "
                f"the model's {name!r} expects {tuple(current.shape)}: the config.json does not match the weights")
        target_dtype = dtype if tensor.is_floating_point() else tensor.dtype
        value = tensor.to(device=device, dtype=target_dtype)
        value = value.t().contiguous().t() if name in column_major and value.dim() == 2 else value.contiguous()
        _set_tensor(model, name, value)
        if loaded is not None:
            loaded(name)
    if len(missing) == len([n for n in names if n not in tied]):
        raise CheckpointError(
            f"none of the model's parameters were found in {', '.join(map(str, files))}: it is not a "
            f"checkpoint of this model family (keys look like {reader.keys()[:3]})")
    for name in missing:
        module_name, _, leaf = name.rpartition(".")
        init(model.get_submodule(module_name), leaf)
    where = str(files[0]) if len(files) == 1 else f"{len(files)} shards in {files[0].parent}"
    if missing:
        warnings.warn(f"newly initialised (not in the checkpoint; train them before use): {', '.join(missing)} "
                      f"(checkpoint: {where})", stacklevel=3)
    unused = [k for k in reader.keys() if k not in used and not IGNORED_KEYS.search(k)]
    if unused:
        warnings.warn(f"checkpoint weights not used by this architecture: {', '.join(unused)} (in {where})",
                      stacklevel=3)


# -- saving ---------------------------------------------------------------------------------------------


def hf_state(model: nn.Module, keymap: KeyMap, *, with_prefix: bool, skip: set[str] = frozenset()
             ) -> dict[str, torch.Tensor]:
    """The model's parameters under their checkpoint names (fused chunks concatenated again)."""
    chunks: dict[str, dict[int, torch.Tensor]] = {}
    state: dict[str, torch.Tensor] = {}
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if name in skip:
            continue
        key = keymap.key(name)
        if key is None:
            continue
        out_name, *twins = keymap.outputs(key, with_prefix=with_prefix)
        tensor = tensor.detach()
        if key.transpose and tensor.dim() == 2:
            tensor = tensor.t()
        if key.chunk is not None:
            chunks.setdefault(out_name, {})[key.chunk[0]] = tensor
        else:
            state[out_name] = tensor.contiguous()
            state.update({twin: tensor.clone() for twin in twins})  # safetensors refuses shared storage
    for out_name, parts in chunks.items():
        state[out_name] = torch.cat([parts[i] for i in sorted(parts)], dim=-1).contiguous()
    return state


def write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """Write a file through a temporary name in the same folder, then rename: never a partial file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a saved model is an ordinary readable file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_state(state: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    cpu = {k: v.to("cpu") for k, v in state.items()}
    write_atomic(path, lambda tmp: save_file(cpu, tmp, metadata={"format": "pt"}))
