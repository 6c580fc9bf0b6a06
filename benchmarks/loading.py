"""Load time and peak memory: bombus.load_model vs transformers from_pretrained, same checkpoint.

Each load runs in a fresh subprocess (peak RSS is per process), repetitions interleaved round robin.
The weights' own size is printed beside the peaks: loading should cost about one copy of the weights.

    .venv/bin/python benchmarks/loading.py [--size small|medium] [--repeats 3] [--dtype float32|bfloat16]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import cell  # noqa: E402

SHAPES = {"small": dict(n_embd=768, n_layer=12, n_head=12), "medium": dict(n_embd=1024, n_layer=24, n_head=16)}

CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(2)

def peak_mb():  # VmHWM: this process's peak resident set (ru_maxrss would include the parent's at fork)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

engine, folder, dtype = sys.argv[1], sys.argv[2], getattr(torch, sys.argv[3])
if engine == "bombus":
    import bombus
else:
    import transformers
base = peak_mb()
start = time.perf_counter()
if engine == "bombus":
    model = bombus.load_model(folder, dtype=dtype)
else:
    transformers.logging.set_verbosity_error()
    model = transformers.GPT2LMHeadModel.from_pretrained(folder, dtype=dtype)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_mb": peak_mb(), "import_mb": base}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SHAPES, default="small")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as folder:
        config = transformers.GPT2Config(**SHAPES[args.size])
        model = transformers.GPT2LMHeadModel(config)
        weight_mb = sum(p.numel() for p in model.parameters()) * torch.finfo(getattr(torch, args.dtype)).bits / 8 / 2**20
        transformers.utils.logging.disable_progress_bar()
        model.save_pretrained(folder)
        del model
        results = {"bombus": [], "transformers": []}
        for _ in range(args.repeats):
            for engine in results:
                out = subprocess.run([sys.executable, "-c", CHILD, engine, folder, args.dtype],
                                     capture_output=True, text=True, check=True)
                results[engine].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"GPT-2 {args.size}, {args.dtype}: weights {weight_mb:.0f} MB; median (min-max) of {args.repeats}")
    print(f"{'engine':14} {'load s':>22} {'peak RSS MB':>24} {'peak - after imports MB':>26}")
    for engine, runs in results.items():
        print(f"{engine:14} {cell([r['seconds'] for r in runs], '.2f'):>22} "
              f"{cell([r['peak_mb'] for r in runs], '.0f'):>24} "
              f"{cell([r['peak_mb'] - r['import_mb'] for r in runs], '.0f'):>26}")


if __name__ == "__main__":
    main()
