"""Readers of the weight files that transformers' TensorFlow and Flax classes write (`tf_model.h5`,
`flax_model.msgpack`), without TensorFlow or JAX: each presents its file as tensors under the PyTorch
(transformers) parameter names, so `checkpoint.CheckpointReader` and every family's key table apply
unchanged. The renaming is the one transformers' own pt<->tf/flax converters do."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError

# Leaf names of Keras / Flax parameters -> PyTorch's. Keras: Dense `kernel`, Embedding `embeddings`,
# LayerNorm `gamma`/`beta`; Flax: Dense `kernel`, Embed `embedding`, LayerNorm `scale`.
_LEAVES = {"kernel": "weight", "embeddings": "weight", "embedding": "weight", "gamma": "weight",
           "scale": "weight", "beta": "bias"}


def torch_name(parts: list[str]) -> str:
    """The PyTorch name of a parameter given as its path of module names and leaf."""
    return ".".join([*parts[:-1], _LEAVES.get(parts[-1], parts[-1])])


def to_torch_layout(leaf: str, tensor: torch.Tensor) -> torch.Tensor:
    """Kernels are stored `[in, out]`, PyTorch Linear weights `[out, in]`; TF GPT-2 stores biases `[1, n]`."""
    if leaf == "kernel" and tensor.dim() == 2:
        return tensor.t().contiguous()
    if leaf == "bias" and tensor.dim() == 2 and tensor.shape[0] == 1:
        return tensor.reshape(-1)
    return tensor


def missing_extra(path: Path, package: str, extra: str) -> CheckpointError:
    return CheckpointError(f"{path} needs the {package!r} package to be read (not TensorFlow or JAX): "
                           f"pip install 'bombus[{extra}]'")
