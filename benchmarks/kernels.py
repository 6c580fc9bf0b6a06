"""PyTorch CPU kernels for one decode step of GPT-2 small: every Linear layer (q/k/v fused, output, MLP) of
the 12 blocks plus the LM head, one token (x of shape [1, in]), interleaved round robin. The table in
docs/PERFORMANCE.md comes from this script; it is how bombus chose its decode kernels. `--lm-head` times the
vocabulary projection alone (`--hidden 1024`: GPT-2 medium's), where the int8 kernels that can share the tied
embedding's plain int8 rows (`TiedInt8Linear`) race fbgemm's packed copy.

    .venv/bin/python benchmarks/kernels.py [--reps 9] [--threads N] [--batch 1] [--lm-head] [--hidden 768]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _common import cell, interleaved, machine  # noqa: E402

from bombus.layers.linear import ONEDNN  # noqa: E402
from bombus.quantize import DynamicInt8Linear, Int4Linear, Int8Embedding, Int8Linear, TiedInt8Linear  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch", type=int, default=1, help="rows of x (tokens per step)")
    parser.add_argument("--lm-head", action="store_true", help="only the vocabulary projection")
    parser.add_argument("--hidden", type=int, default=768, help="model width (GPT-2 small 768, medium 1024)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    hidden, vocab = args.hidden, 50257
    shapes = [(vocab, hidden)] if args.lm_head else \
        [(3 * hidden, hidden), (hidden, hidden), (4 * hidden, hidden), (hidden, 4 * hidden)] * 12 + [(vocab, hidden)]
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(shape, generator=generator) * 0.02 for shape in shapes]
    x = {n: torch.randn(args.batch, n, generator=generator) for n in (hidden, 4 * hidden)}
    xb = {n: t.bfloat16() for n, t in x.items()}
    column_major = [w.t().contiguous().t() for w in weights]
    bf16 = [w.bfloat16() for w in column_major]
    int8_dynamic = [DynamicInt8Linear(w) for w in weights]
    int8_pack = [Int8Linear.from_float(w) for w in weights]
    # every weight as a tied LM head would read it: the token embedding's int8 rows, shared
    int8_tied = [TiedInt8Linear(Int8Embedding(m.weight, m.scales.float())) for m in int8_pack]
    int4 = {g: [Int4Linear.from_float(w, group_size=g) for w in weights] for g in (32, 64, 128)}
    runs = {
        "fp32 F.linear, weight row-major [out, in]": lambda: [F.linear(x[w.shape[1]], w) for w in weights],
        "fp32 F.linear, weight column-major": lambda: [F.linear(x[w.shape[1]], w) for w in column_major],
        **({"fp32 oneDNN mkldnn._linear_pointwise, weight row-major":
            lambda: [torch.ops.mkldnn._linear_pointwise(x[w.shape[1]], w, None, "none", [], "") for w in weights],
            "fp32 oneDNN mkldnn._linear_pointwise, weight column-major (bombus Linear, decoding layout)":
            lambda: [torch.ops.mkldnn._linear_pointwise(x[w.shape[1]], w, None, "none", [], "")
                     for w in column_major]} if ONEDNN else {}),
        "bf16 F.linear (bf16 activations)": lambda: [F.linear(xb[w.shape[1]], w) for w in bf16],
        "int8 fbgemm quantized::linear_dynamic (bombus quantize='int8', but tied LM heads)":
            lambda: [m(x[m.in_features]) for m in int8_dynamic],
        "int8 aten._int_mm on plain int8 rows, activations int8 per row (TiedInt8Linear: tied LM heads)":
            lambda: [m(x[m.in_features]) for m in int8_tied],
        "int8 aten._weight_int8pack_mm, bf16 activations": lambda: [m(x[m.in_features]) for m in int8_pack],
        "int8 aten._weight_int8pack_mm, fp32 activations":
            lambda: [torch.ops.aten._weight_int8pack_mm(x[m.in_features], m.weight, m.scales.float())
                     for m in int8_pack],
        **{f"int4 aten._weight_int4pack_mm_for_cpu, group {g}, bf16 activations"
           + (" (bombus quantize='int4')" if g == 64 else ""): (lambda layers=layers: [m(x[m.in_features])
                                                                                    for m in layers])
           for g, layers in int4.items()},
    }
    print(machine())
    what = "the LM head" if args.lm_head else "all Linear layers + LM head"
    print(f"GPT-2 width {hidden}, {what}, x [{args.batch}, in]; {args.reps} interleaved repetitions\n")
    with torch.no_grad():
        seconds = interleaved(runs, args.reps)
    print("| kernel | ms per step, median (min-max) |")
    print("|---|---|")
    for name, values in seconds.items():
        print(f"| {name} | {cell([1000 * s for s in values], '.1f')} |")


if __name__ == "__main__":
    main()
