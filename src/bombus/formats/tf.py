"""`tf_model.h5`: the Keras HDF5 weights that transformers' TF classes save, read with h5py (no TensorFlow).

Two layouts exist. A whole-model file lists its top-level layers in the root attribute `layer_names`; each
layer's group lists its weights in `weight_names` (e.g. `tf_bert_model/bert/encoder/layer_._0/.../kernel:0`,
the first level being the model's own name). A shard of a sharded checkpoint lists the weights themselves
in `layer_names`, already without the model's name. Keras splits an attribute too large for one HDF5
attribute into `name0`, `name1`, ...

Weight names become PyTorch's as transformers' converter does: drop the model's name and the `:0`
suffix, `a___b` -> `b` (TF-only scopes such as `mlm___cls`), `_._` -> `.` (list indices), leaves renamed
and kernels transposed (see `bombus.formats`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError
from . import missing_extra, to_torch_layout, torch_name


def _names(attrs, name: str) -> list[str]:
    """A string-list attribute, joined from its numbered chunks when Keras had to split it."""
    if name in attrs:
        values = list(attrs[name])
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in attrs:
            values.extend(attrs[f"{name}{chunk}"])
            chunk += 1
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _torch_parts(weight: str) -> list[str]:
    weight = re.sub(r":\d+$", "", weight)
    parts = []
    for part in weight.split("/"):
        part = part.rpartition("___")[2]
        parts.extend(p for p in part.split("_._") if p)
    return parts


class TFWeightsFile:
    """The tensors of a `tf_model.h5` (or shard) under their PyTorch names, read one at a time."""

    def __init__(self, path: Path):
        try:
            import h5py
        except ImportError:
            raise missing_extra(path, "h5py", "tf") from None
        self.path = path
        try:
            self._file = h5py.File(path, "r")
            layers = _names(self._file.attrs, "layer_names")
        except (OSError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path} is not a readable HDF5 file (truncated or corrupt?): {e}") from None
        if not layers:
            raise CheckpointError(f"{path} is not a Keras weights file: its root has no 'layer_names' attribute")
        self._where: dict[str, tuple[str, str]] = {}  # PyTorch name -> (dataset path, Keras leaf)
        for layer in layers:
            if layer not in self._file:
                raise CheckpointError(f"{path}: layer {layer!r} is listed in 'layer_names' but missing from the "
                                      f"file: it is truncated or corrupt")
            node = self._file[layer]
            if isinstance(node, h5py.Dataset):  # a shard: the layer is the weight, named without the model
                self._add(layer, _torch_parts(layer))
                continue
            for weight in _names(node.attrs, "weight_names"):
                if weight not in node:
                    raise CheckpointError(f"{path}: weight {weight!r} of layer {layer!r} is listed in its "
                                          f"'weight_names' but missing from the file: it is truncated or corrupt")
                parts = _torch_parts(weight)
                self._add(f"{layer}/{weight}", parts[1:] if len(parts) > 1 else parts)

    def _add(self, dataset: str, parts: list[str]) -> None:
        # Tied weights (the word embeddings under an LM head's layer too) appear once per layer: keep the first.
        self._where.setdefault(torch_name(parts), (dataset, parts[-1]))

    def keys(self) -> list[str]:
        return list(self._where)

    def get(self, name: str) -> torch.Tensor:
        dataset, leaf = self._where[name]
        try:
            array = np.asarray(self._file[dataset])
        except (OSError, ValueError, KeyError) as e:
            raise CheckpointError(f"{self.path}: cannot read weight {dataset!r} (for {name!r}): the file is "
                                  f"truncated or corrupt ({e})") from None
        if array.dtype.kind not in "fiub":
            raise CheckpointError(f"{self.path}: weight {dataset!r} has dtype {array.dtype}, not a number type")
        return to_torch_layout(leaf, torch.from_numpy(np.ascontiguousarray(array)))
