"""The Linear layer every family builds on: `nn.Linear`, with a faster inference kernel on the CPU.

PyTorch's CPU `F.linear` in float32 goes to MKL, which multiplies one token's activations by a weight
single-threaded (~20 GB/s of weights read here, where the memory gives ~75). oneDNN's matmul, which
PyTorch ships for its own compiled graphs (`torch.ops.mkldnn._linear_pointwise`), takes the same plain
weight and runs 1.5x (one token) to 2.4x (a 128-token prefill) faster on 2 cores, equal within float32
rounding. So inference in float32 on the CPU goes there; training (autograd), other dtypes (bfloat16 already
reaches oneDNN through `F.linear`) and other devices keep `F.linear`. In a `torch.compile`d graph the same
kernel is the custom op `bombus::onednn_linear`, which the compiler calls as it is (its own lowering of
`F.linear` on the CPU is MKL's).

One row (decoding at batch 1) goes to the compiled kernel of `bombus.kernels.gemv` where it is built (AVX-512,
extra `bombus[kernels]`): it streams a row-major weight at ~50 GB/s where oneDNN reads ~35 (in compiled graphs:
the custom op `bombus::gemv`).

Quantised layers (`bombus.quantize`) replace these modules whole. Both kernels read row- and column-major
weights (`Model.decoding_layout` chooses per layer); weights with gaps between rows go to `F.linear`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import gemv


def _onednn_available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


ONEDNN = _onednn_available()


@torch.library.custom_op("bombus::onednn_linear", mutates_args=())
def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """oneDNN's float32 CPU matmul as an opaque op of compiled graphs (inference only: no gradient)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


@onednn_linear.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


@torch.library.custom_op("bombus::gemv", mutates_args=())
def gemv_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The one-row kernel (`bombus.kernels.gemv`) as an opaque op of compiled graphs."""
    return gemv.gemv(x, weight, bias)


@gemv_linear.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)`, through oneDNN where that is faster and needs no gradient (see module doc)."""
    if (ONEDNN and x.dtype == torch.float32 and x.device.type == "cpu" and weight.dtype == torch.float32
            and weight.dim() == 2 and _dense(weight)
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                                  or (bias is not None and bias.requires_grad)))):
        if torch.compiler.is_compiling():  # the kernel only if built before compiling (graphs.py does)
            return gemv_linear(x, weight, bias) if gemv.applies(x, weight) and gemv.built() else \
                onednn_linear(x, weight, bias)
        if gemv.wanted(x, weight):  # one row: the compiled kernel, where built (bombus.kernels.gemv)
            return gemv.gemv(x, weight, bias)
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def _dense(weight: torch.Tensor) -> bool:
    """Whether a 2-D weight is stored row- or column-major without gaps. oneDNN copies any other (e.g. a view
    of some rows of a larger matrix) at every call, ~300x slower; `F.linear` reads them as fast."""
    row_step, column_step = weight.stride()
    return (column_step == 1 and row_step == weight.shape[1]) or (row_step == 1 and column_step == weight.shape[0])


class Linear(nn.Linear):
    """`nn.Linear` (same parameters, state dict and options) whose forward is `linear` above."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
