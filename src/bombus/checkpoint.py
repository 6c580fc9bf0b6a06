"""Checkpoint files <-> model parameters.

Reads `model.safetensors` (lazily, one tensor at a time), `pytorch_model.bin` (only with
`torch.load(weights_only=True)`: never an arbitrary pickle) and sharded `*.index.json` of either. A
family declares how its parameters are named in checkpoints as data — a table from our parameter (or
module) names to `Key`s — and this module applies it in both directions, so loading and
`save_pretrained` cannot disagree.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .errors import CheckpointError, SourceError
from .hub import resolve_file

SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
PYTORCH, PYTORCH_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
WEIGHT_FILES = (SAFETENSORS, SAFETENSORS_INDEX, PYTORCH, PYTORCH_INDEX)

# Buffers that references save but that hold no learned values (masks, position ranges, rotary tables).
IGNORED_KEYS = re.compile(r"(^|\.)(attn\.bias|attn\.masked_bias|position_ids|rotary_emb\.inv_freq)$")


@dataclass(frozen=True)
class Key:
    """Where one parameter (or every parameter of one module) lives in a checkpoint.

    `name`: the key (or module path) with `{i}`-style placeholders for indices; `transpose`: the file
    stores 2-D weights as `[in, out]` (GPT-2's Conv1D); `chunk=(index, count)`: the file fuses `count`
    tensors along the last dimension (GPT-2's fused q/k/v); `in_base`: the key sits under the family's
    base-model prefix (e.g. `transformer.`) in checkpoints of head models.
    """

    name: str
    transpose: bool = False
    chunk: tuple[int, int] | None = None
    in_base: bool = True


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
                    return replace(key, name=key.name.format(**m.groupdict()) + suffix)
        return None

    def candidates(self, key: Key) -> list[str]:
        """Checkpoint names to look for: with and without the base prefix, where it applies."""
        if key.in_base and self.base_prefix:
            return [f"{self.base_prefix}.{key.name}", key.name]
        return [key.name]


# -- reading ------------------------------------------------------------------------------------------


def find_weight_files(source, *, revision=None, token=None) -> list[Path]:
    """The weight files of `source` in load order, preferring safetensors over .bin."""
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


class CheckpointReader:
    """All tensors of a list of weight files, read on demand (`get`) so peak memory stays at one tensor."""

    def __init__(self, files: list[Path]):
        self._where: dict[str, tuple[Path, str]] = {}  # normalised key -> (file, original key)
        self._open: dict[Path, object] = {}
        for path in files:
            for key in self._keys(path):
                self._where[_normalise(key)] = (path, key)

    def _keys(self, path: Path) -> list[str]:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            try:
                handle = safe_open(str(path), framework="pt")
                keys = list(handle.keys())
            except Exception as e:  # safetensors raises its own error type for corrupt headers
                raise CheckpointError(
                    f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from None
            self._open[path] = handle
            return keys
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

    def get(self, key: str) -> torch.Tensor:
        path, original = self._where[key]
        handle = self._open[path]
        try:
            return handle.get_tensor(original) if path.suffix == ".safetensors" else handle[original]
        except Exception as e:
            raise CheckpointError(f"{path}: cannot read tensor {original!r} (file truncated?): {e}") from None


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


def _read(reader: CheckpointReader, keymap: KeyMap, key: Key) -> tuple[str, torch.Tensor] | None:
    for candidate in keymap.candidates(key):
        if candidate in reader:
            tensor = reader.get(candidate)
            if key.chunk is not None:
                index, count = key.chunk
                if tensor.shape[-1] % count:
                    raise CheckpointError(f"checkpoint key {candidate!r} has shape {tuple(tensor.shape)}, "
                                          f"which does not split into {count} equal parts")
                tensor = tensor.chunk(count, dim=-1)[index]
            if key.transpose and tensor.dim() == 2:
                tensor = tensor.t()
            return candidate, tensor
    return None


def load_state(model: nn.Module, files: list[Path], keymap: KeyMap, *, dtype: torch.dtype,
               device: torch.device | str, init: Callable[[nn.Module, str], None],
               tied: set[str] = frozenset()) -> None:
    """Fill `model` (built on the meta device) from `files`, converting to `dtype`/`device` one tensor
    at a time. Parameters the files lack are initialised with `init(module, name)` and listed in a
    warning; file keys nothing used are listed too. A shape mismatch is a `CheckpointError`."""
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
        found = _read(reader, keymap, key) if key is not None else None
        if found is None:
            missing.append(name)
            _set_tensor(model, name, torch.empty(current.shape, dtype=dtype if current.is_floating_point()
                                                 else current.dtype, device=device))
            continue
        candidate, tensor = found
        used.add(candidate)
        if tuple(tensor.shape) != tuple(current.shape):
            raise CheckpointError(
                f"checkpoint key {candidate!r} has shape {tuple(tensor.shape)}, but the model's {name!r} "
                f"expects {tuple(current.shape)}: the config.json does not match the weights")
        target_dtype = dtype if tensor.is_floating_point() else tensor.dtype
        _set_tensor(model, name, tensor.to(device=device, dtype=target_dtype).contiguous())
    if len(missing) == len([n for n in names if n not in tied]):
        raise CheckpointError(
            f"none of the model's parameters were found in {', '.join(map(str, files))}: it is not a "
            f"checkpoint of this model family (keys look like {reader.keys()[:3]})")
    for name in missing:
        module_name, _, leaf = name.rpartition(".")
        init(model.get_submodule(module_name), leaf)
    if missing:
        warnings.warn(f"newly initialised (not in the checkpoint; train them before use): {', '.join(missing)}",
                      stacklevel=3)
    unused = [k for k in reader.keys() if k not in used and not IGNORED_KEYS.search(k)]
    if unused:
        warnings.warn(f"checkpoint weights not used by this architecture: {', '.join(unused)}", stacklevel=3)


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
        out_name = keymap.candidates(key)[0] if with_prefix else key.name
        tensor = tensor.detach()
        if key.transpose and tensor.dim() == 2:
            tensor = tensor.t()
        if key.chunk is not None:
            chunks.setdefault(out_name, {})[key.chunk[0]] = tensor
        else:
            state[out_name] = tensor.contiguous()
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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_state(state: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    cpu = {k: v.to("cpu") for k, v in state.items()}
    write_atomic(path, lambda tmp: save_file(cpu, tmp, metadata={"format": "pt"}))
