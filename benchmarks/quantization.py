"""Accuracy of `load_model(..., quantize="int8" | "int4")` against float32 on real text: the demo GPT-2
(`src/bombus/data/demo-gpt2`, trained by scripts/train_demo_model.py) on its held-out test split — the same
blocks of 128 tokens its model card's perplexity is measured on — plus the logits' relative error and how
many greedy tokens agree with float32 on prompts from that split.

    .venv/bin/python benchmarks/quantization.py [--new 32] [--prompts 8]

Speed is in benchmarks/run_all.py; this script is only about what quantisation costs in accuracy.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import torch

import bombus

ROOT = Path(__file__).resolve().parent.parent
DEMO = Path(bombus.__file__).parent / "data" / "demo-gpt2"


def test_split() -> list[str]:
    spec = importlib.util.spec_from_file_location("train_demo_model", ROOT / "scripts" / "train_demo_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.corpus()["test"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new", type=int, default=32, help="greedy tokens per prompt")
    parser.add_argument("--prompts", type=int, default=8)
    args = parser.parse_args()
    tok = bombus.load_tokenizer(DEMO)
    texts = test_split()
    rows = [{"text": t} for t in texts]
    prompts = [tok.decode(tok.encode(t)[:16]) for t in texts[:args.prompts]]
    models = {mode: bombus.load_model(DEMO, quantize=mode) for mode in (None, "int8", "int4")}
    batch = tok(texts[:8], length=128, truncation=True)
    with torch.no_grad():
        reference = models[None](**batch).logits
        ref_ids = [models[None].generate(**tok([p]), max_new_tokens=args.new, do_sample=False)[0] for p in prompts]
    print(f"demo GPT-2 ({sum(p.numel() for p in models[None].parameters()) / 1e6:.1f} M parameters), test split "
          f"of its model card; greedy: {args.prompts} prompts of 16 tokens, {args.new} new tokens\n")
    print("| weights | test perplexity | vs float32 | logits relative error | greedy tokens equal to float32 |")
    print("|---|---|---|---|---|")
    base = None
    for mode, model in models.items():
        ppl = bombus.evaluate(model, rows, tokenizer=tok, max_length=128, batch_size=32)["perplexity"]
        base = base or ppl
        with torch.no_grad():
            logits = model(**batch).logits
            mask = batch["attention_mask"].bool()
            error = ((logits - reference)[mask].norm() / reference[mask].norm()).item()
            same = 0
            for prompt, want in zip(prompts, ref_ids):
                got = model.generate(**tok([prompt]), max_new_tokens=args.new, do_sample=False)[0]
                n = min(len(got), len(want))
                same += int((got[:n] == want[:n]).int().cumprod(0).sum()) - len(tok.encode(prompt))
        print(f"| {mode or 'float32'} | {ppl:.2f} | {ppl / base:.3f}x | {error:.4f} | "
              f"{same / (args.prompts * args.new):.0%} (leading tokens) |")


if __name__ == "__main__":
    main()
