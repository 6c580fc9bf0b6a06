"""What every benchmark script shares: the machine's description and measured ceilings, interleaved timing,
median (min-max) cells, and peak resident memory read from /proc."""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import statistics
import time
from typing import Callable

import torch


# ---- the machine ------------------------------------------------------------------------------------------


def cpu_flags() -> tuple[str, set[str]]:
    """(model name, flags) from /proc/cpuinfo; ("?", set()) where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return platform.processor() or platform.machine(), set()
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    return model, flags


def has_amx() -> bool:
    return "amx_bf16" in cpu_flags()[1]


def machine(device: str = "cpu") -> str:
    """Lines naming the CPU, its ISA, the threads, torch and the load average."""
    model, flags = cpu_flags()
    isa = [name for name in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
           if name in flags]
    line = (f"CPU: {model}; ISA: {' '.join(isa) or 'no AVX2'}; torch capability "
            f"{torch.backends.cpu.get_cpu_capability()}; AMX {'yes' if 'amx_bf16' in flags else 'no'}; "
            f"torch threads: {torch.get_num_threads()} (of {os.cpu_count()} cores)")
    if device == "cuda":
        line += f"\nGPU: {torch.cuda.get_device_name()}"
    return line + f"\ntorch {torch.__version__}; {load_average()}"


def load_average() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg()) + " (other processes share the cores)"


def best_seconds(fn: Callable[[], object], repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def ceilings(size: int = 2048, megabytes: int = 512) -> dict[str, float]:
    """Measured ceilings of this machine with the current threads (best of 5): memory read bandwidth (bytes/s,
    summing a `megabytes` float32 tensor) and fp32 / bf16 / int8 matmul rates (FLOP/s or OP/s, size^2 x size^2;
    fp32: the faster of MKL's `a @ b` and oneDNN's, which bombus' Linear layers use)."""
    out = {}
    x = torch.ones(megabytes * 2**20 // 4)
    out["read_bytes_s"] = x.numel() * 4 / best_seconds(lambda: x.sum())
    del x
    flops = 2 * size ** 3
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
        seconds = best_seconds(lambda: a @ b)
        if dtype == torch.float32 and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
            seconds = min(seconds, best_seconds(lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")))
        out[f"{name}_flop_s"] = flops / seconds
    a = torch.randint(-127, 127, (size, size), dtype=torch.int8)
    b = torch.randint(-127, 127, (size, size), dtype=torch.int8)
    try:
        out["int8_flop_s"] = flops / best_seconds(lambda: torch._int_mm(a, b))
    except RuntimeError:  # no CPU int8 matmul in this build
        out["int8_flop_s"] = float("nan")
    return out


def describe_ceilings(c: dict[str, float]) -> str:
    return (f"measured: memory read {c['read_bytes_s'] / 1e9:.1f} GB/s; matmul {c['fp32_flop_s'] / 1e9:.0f} GFLOP/s "
            f"fp32, {c['bf16_flop_s'] / 1e9:.0f} bf16, {c['int8_flop_s'] / 1e9:.0f} GOP/s int8 (torch._int_mm)")


# ---- timing -------------------------------------------------------------------------------------------------


def timed(fn: Callable[[], object], device: str = "cpu") -> float:
    """Seconds of one call (CUDA: synchronised before and after)."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved(runs: dict[str, Callable[[], object]], repeats: int, device: str = "cpu",
                warmup: bool = True, around: dict[str, tuple[Callable[[], None], Callable[[], None]]] | None = None
                ) -> dict[str, list[float]]:
    """Seconds of each run, repetitions round robin (A B C A B C ...) so that a shared machine's drift hits
    every run alike; one untimed warm-up call each first. `around[name]`: (enter, exit) called untimed before
    and after each of that run's calls (an engine that must not stay alive while the others run)."""
    around = around or {}
    if warmup:
        for name, fn in runs.items():
            call_around(fn, around.get(name))
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            seconds[name].append(call_around(lambda: timed(fn, device), around.get(name)))
    return seconds


def call_around(fn: Callable[[], object], around: tuple[Callable[[], None], Callable[[], None]] | None) -> object:
    """`fn()`, with `around`'s (enter, exit) called before and after it when given; returns what `fn` returns."""
    if around is None:
        return fn()
    enter, leave = around
    enter()
    try:
        return fn()
    finally:
        leave()


def cell(values: list[float], fmt: str) -> str:
    """`median (min-max)` of `values`, each formatted with `fmt` (e.g. ".1f")."""
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


# ---- memory ---------------------------------------------------------------------------------------------------


def status_bytes(field: str) -> int:
    """A `/proc/self/status` size field (VmRSS, VmHWM, ...) in bytes."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def reset_peak() -> int:
    """Hand freed heap back to the OS, set the peak (VmHWM) to the current resident size, and return it;
    `status_bytes("VmHWM")` after a call minus this is the call's own peak."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/clear_refs", "w") as f:  # VmHWM := VmRSS
        f.write("5")
    return status_bytes("VmRSS")
