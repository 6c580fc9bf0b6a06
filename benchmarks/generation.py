"""Greedy generation (or beam search with --beams), bombus vs transformers, side by side in one process.

GPT-2 small's shape (768 wide, 12 blocks, 12 heads, 50,257 tokens) with random weights — the same weights for
both engines (transformers builds and saves them, bombus loads the folder). Prompt 32 tokens, 64 new tokens,
batch 1 and 8. Repetitions are interleaved (transformers, bombus, transformers, ...) so that machine noise hits
both alike; each cell is the median (min-max).

  tokens/s       new tokens per second of a full generate (batch x 64 / wall time)
  first token    time to first token: a generate with max_new_tokens=1 (prefill + one token)
  peak MB        extra memory of one full generate over the loaded model. CPU: measured in a fresh process per
                 engine and batch (weights paged in, freed heap trimmed, VmHWM reset through /proc/self/clear_refs;
                 then VmHWM after the call minus VmRSS before it), since freed heap stays resident and would hide
                 the peak of later calls; CUDA: max_memory_allocated above the level before the call.

Usage: python benchmarks/generation.py [--reps 7] [--device cpu|cuda] [--dtype float32|bfloat16]
                                       [--batch 1 8] [--new 64] [--prompt 32] [--beams 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import cell, load_average, machine, reset_peak, status_bytes, timed  # noqa: E402


def cuda_peak(fn) -> float:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def cpu_peak(engine: str, folder: str, batch: int, args) -> float:
    """MB: run one generate in a fresh process (see the module docstring)."""
    command = [sys.executable, __file__, "--_memory", engine, folder, str(batch), "--prompt", str(args.prompt),
               "--new", str(args.new), "--dtype", args.dtype, "--beams", str(args.beams)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS":
                         str(torch.get_num_threads())})
    return float(out.stdout.strip().splitlines()[-1])


def _memory_child(engine: str, folder: str, batch: int, args) -> None:
    import transformers

    transformers.utils.logging.disable_progress_bar()
    warnings.simplefilter("ignore")
    ids, mask = inputs(batch, args.prompt, "cpu")
    engines, models = build_engines(folder, getattr(torch, args.dtype), "cpu", args.beams)
    run = engines[engine]
    with torch.no_grad():  # page in memory-mapped weights, so that only the call's own memory is counted
        for p in models[engine].parameters():
            p.sum()
    base = reset_peak()  # freed heap (loading buffers) handed back, or the call would reuse it unseen
    with torch.no_grad():
        run(ids, mask, args.new)
    print((status_bytes("VmHWM") - base) / 2**20)


def inputs(batch: int, prompt: int, device: str):
    ids = torch.randint(0, 50257, (batch, prompt), generator=torch.Generator().manual_seed(batch)).to(device)
    return ids, torch.ones_like(ids)


def build_engines(folder: str, dtype: torch.dtype, device: str, beams: int = 1) -> tuple[dict, dict]:
    from transformers import GPT2LMHeadModel

    import bombus

    ref = GPT2LMHeadModel.from_pretrained(folder, dtype=dtype).to(device).eval()
    ours = bombus.load_model(folder, dtype=dtype, device=device)
    # EOS off: both engines generate exactly the asked number of tokens.
    engines = {
        "transformers": lambda ids, mask, n: ref.generate(ids, attention_mask=mask, max_new_tokens=n,
                                                          do_sample=False, eos_token_id=None, pad_token_id=0,
                                                          num_beams=beams),
        "bombus": lambda ids, mask, n: ours.generate(ids, attention_mask=mask, max_new_tokens=n, eos_token_id=None,
                                                     pad_token_id=0, num_beams=beams),
    }
    return engines, {"transformers": ref, "bombus": ours}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--beams", type=int, default=1, help="beam search with this many beams (1: greedy)")
    parser.add_argument("--_memory", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._memory:
        engine, folder, batch = args._memory
        return _memory_child(engine, folder, int(batch), args)

    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    transformers.utils.logging.disable_progress_bar()
    dtype = getattr(torch, args.dtype)
    print(machine(args.device))
    strategy = "greedy" if args.beams == 1 else f"beam search ({args.beams} beams)"
    print(f"transformers {transformers.__version__}; GPT-2 small shape, random weights, {args.dtype}, {strategy}, "
          f"prompt {args.prompt}, {args.new} new tokens, {args.reps} interleaved repetitions: median (min-max)\n")

    torch.manual_seed(0)
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as folder:
        warnings.simplefilter("ignore")
        GPT2LMHeadModel(GPT2Config()).save_pretrained(folder)
        engines, _ = build_engines(folder, dtype, args.device, args.beams)
        header = f"{'batch':>5} {'engine':<13} {'tokens/s':>20} {'first token ms':>20} {'peak MB':>9}  same tokens"
        print(header)
        print("-" * len(header))
        for batch in args.batch:
            ids, mask = inputs(batch, args.prompt, args.device)
            results = {name: {"tps": [], "ttft": []} for name in engines}
            outputs, memory = {}, {}
            with torch.no_grad():
                for name, run in engines.items():  # warm-up (lazy init, allocator), and the tokens to compare
                    outputs[name] = run(ids, mask, args.new).cpu()
                    run(ids, mask, 1)
                    memory[name] = (cuda_peak(lambda: run(ids, mask, args.new)) if args.device == "cuda"
                                    else cpu_peak(name, folder, batch, args))
                for _ in range(args.reps):
                    for name, run in engines.items():
                        seconds = timed(lambda: run(ids, mask, args.new), args.device)
                        results[name]["tps"].append(batch * args.new / seconds)
                        results[name]["ttft"].append(1000 * timed(lambda: run(ids, mask, 1), args.device))
            same = torch.equal(outputs["transformers"], outputs["bombus"])
            for name, r in results.items():
                print(f"{batch:>5} {name:<13} {cell(r['tps'], '.1f'):>20} {cell(r['ttft'], '.1f'):>20} "
                      f"{memory[name]:>9.1f}  {same if name == 'bombus' else ''}")
            ratio = statistics.median(results["bombus"]["tps"]) / statistics.median(results["transformers"]["tps"])
            print(f"{'':>5} bombus / transformers tokens/s: {ratio:.2f}x")
        print(f"after: {load_average()}")


if __name__ == "__main__":
    main()
