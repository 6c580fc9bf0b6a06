"""Training throughput, bombus vs transformers, for the GPT-2 small shape with random weights.

    .venv/bin/python benchmarks/training.py [--batch-size 2] [--length 64] [--steps 2] [--repeats 3] ...

Three ways to take an optimizer step (causal-LM loss, backward, gradient clipping at 1.0, AdamW), each in
float32 and under bfloat16 autocast:
  bombus        bombus' model in a plain PyTorch loop
  bombus.train  the same model through `bombus.train` (its whole loop: batches, schedule, bookkeeping)
  transformers  GPT2LMHeadModel (SDPA attention) in the same plain loop
Repetitions are interleaved (A B C A B C ...) so that drifts of a shared machine hit all alike; each
reports tokens/s as median (min-max) over repetitions, after one untimed warm-up step per model and mode.
The default run is short (a few steps); pass larger --steps/--repeats for steadier numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import warnings

import torch

import bombus
from bombus.models.gpt2 import Gpt2Spec


def autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


class PlainLoop:
    def __init__(self, model, call):
        self.model, self.call = model, call
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def run(self, batch, steps: int, bf16: bool) -> float:
        self.model.train()  # dropout on, as in training (bombus.train leaves the shared model in eval mode)
        started = time.perf_counter()
        for _ in range(steps):
            with autocast(bf16):
                loss = self.call(self.model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return steps * batch["input_ids"].numel() / (time.perf_counter() - started)


class TrainLoop:
    def __init__(self, model):
        self.model = model

    def run(self, batch, steps: int, bf16: bool) -> float:
        # one more step than timed: the first builds the optimizer state
        result = bombus.train(self.model, [batch] * (steps + 1), learning_rate=1e-5, bf16=bf16, progress=False)
        seconds = sum(h["tokens"] / h["tokens_per_second"] for h in result.history[1:])
        return steps * batch["input_ids"].numel() / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2, help="timed optimizer steps per repetition")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--layers", type=int, default=12, help="12: GPT-2 small; fewer for a quick look")
    parser.add_argument("--modes", default="fp32,bf16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    config = transformers.GPT2Config(n_layer=args.layers)  # GPT-2 small: 768 hidden, 12 heads, 50257 tokens
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = transformers.GPT2LMHeadModel(config)
    spec = bombus.configure(Gpt2Spec.from_hf_config(config.to_dict()), architecture="for_causal_language_modeling")
    ours = bombus.build_model(spec)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, config.vocab_size, (args.batch_size, args.length), generator=generator)
    batch = {"input_ids": ids, "labels": ids}
    runners = {
        "bombus": PlainLoop(ours, lambda m, b: m(**b).loss),
        "bombus.train": TrainLoop(ours),
        "transformers": PlainLoop(reference, lambda m, b: m(**b).loss),
    }
    params = sum(p.numel() for p in ours.parameters())
    print(f"GPT-2 ({args.layers} layers, {params / 1e6:.0f} M parameters), batch {args.batch_size} x {args.length} "
          f"tokens, {args.steps} steps x {args.repeats} repetitions, {args.threads} threads, "
          f"torch {torch.__version__}, transformers {transformers.__version__}")
    for mode in args.modes.split(","):
        bf16 = mode == "bf16"
        for runner in runners.values():
            runner.run(batch, 1, bf16)  # warm-up
        speeds: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.repeats):
            for name, runner in runners.items():
                speeds[name].append(runner.run(batch, args.steps, bf16))
        for name, values in speeds.items():
            print(f"  {mode:5s} {name:13s} {statistics.median(values):8.0f} tokens/s "
                  f"({min(values):.0f}-{max(values):.0f})")


if __name__ == "__main__":
    main()
