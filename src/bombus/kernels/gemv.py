"""A one-row float32 matrix product for decoding at batch 1 on AVX-512 CPUs (`gemv.cpp`).

oneDNN's matmul, bombus' float32 CPU kernel otherwise (`bombus.layers.linear`), reads the blocks' weights of
a GPT-2 step at ~35 GB/s; this kernel streams each thread's rows front to back at ~50 GB/s (2 cores, docs/
PERFORMANCE.md): GPT-2 small float32 decodes ~25% faster. It is compiled the first time it is wanted (~20 s,
then cached by PyTorch under `TORCH_EXTENSIONS_DIR`, default `~/.cache/torch_extensions`) where:

* the CPU has AVX-512 (`torch.backends.cpu.get_cpu_capability()`),
* the `ninja` package and a C++ compiler are installed (`pip install bombus[kernels]`),
* `BOMBUS_GEMV` is not `0` (set it to `0` to keep PyTorch's kernels).

If the build fails, bombus says so once (a warning) and keeps PyTorch's kernels.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import warnings
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("gemv.cpp")
_lock = threading.Lock()
_module = None
_tried = False


def available() -> bool:
    """Whether the kernel can be built here (see the module doc), without building it."""
    return (os.environ.get("BOMBUS_GEMV", "1") != "0" and torch.backends.cpu.get_cpu_capability() in ("AVX512",)
            and importlib.util.find_spec("ninja") is not None)


def kernel():
    """The compiled extension (built on the first call), or None where it is not available or failed."""
    global _module, _tried
    if _tried:
        return _module
    with _lock:
        if not _tried:
            if available():
                try:
                    from torch.utils.cpp_extension import load

                    logging.getLogger(__name__).info("bombus: building (or loading the cached build of) the one-row "
                                                     "CPU kernel; the first build takes ~20 s (BOMBUS_GEMV=0 skips it)")
                    _module = load("bombus_gemv", [str(_SOURCE)], extra_cflags=["-O3", "-mavx512f", "-fopenmp"])
                except Exception as e:  # a missing compiler, headers, ...: PyTorch's kernels still work
                    warnings.warn(f"bombus: the one-row CPU kernel did not build, PyTorch's kernels are used "
                                  f"instead (set BOMBUS_GEMV=0 to skip trying): {e}", stacklevel=3)
            _tried = True
    return _module


def applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the kernel computes `linear(x, weight)` (float32 CPU inference, checked by the caller): one
    row of `x`, a row-major weight whose width is a multiple of 16."""
    return x.numel() == x.shape[-1] and weight.is_contiguous() and weight.shape[1] % 16 == 0 and x.is_contiguous()


def wanted(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """`applies`, and the kernel built (building it on the first call)."""
    return applies(x, weight) and kernel() is not None


def built() -> bool:
    """Whether the kernel is built (or loaded) already: what a compiled graph may call."""
    return _module is not None


def gemv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`F.linear(x, weight, bias)` for one row `x` (any leading shape of size 1)."""
    out = _module.gemv(x.reshape(-1), weight, None if bias is None else bias.contiguous())
    return out.view(*x.shape[:-1], weight.shape[0])
