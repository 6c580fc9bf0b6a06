"""Train bombus' demo model: a small GPT-2, from scratch, on CPython's own documentation prose.

    .venv/bin/python scripts/train_demo_model.py [--output src/bombus/data/demo-gpt2] [--steps 1200] [--threads 2] ...

The corpus is `pydoc_data.topics` (the text `help()` shows for statements and topics; ~465 KB in every
CPython), its prose paragraphs unwrapped into one line each. The paragraphs are cut into groups of 10
consecutive paragraphs; every 20th group is held out
for testing and every 20th (offset 10) for validation, the rest trains. A byte-level BPE tokenizer (the
`tokenizers` library, GPT-2 style, `<|endoftext|>` as its one special token) is trained on the training
text only; the model is trained with `bombus.train` (packed blocks, AdamW, warm-up + linear decay, early
stopping on validation loss, best weights restored) and saved in HF format with fp16 weights, its tokenizer,
a generation_config.json and a model card (README.md) with the measured numbers: test perplexity next to
a unigram model's (token frequencies of the training text, add-one smoothed) on the same test tokens.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import torch

import bombus
from bombus.models.gpt2 import Gpt2Spec

ROOT = Path(__file__).resolve().parent.parent
EOS = "<|endoftext|>"


def _rule(line: str) -> bool:
    text = line.strip()
    return bool(text) and set(text) <= set("*=-~^")


def unwrap(paragraph: str) -> str:
    """Join the hard-wrapped lines of a prose paragraph (pydoc wraps at ~70 columns); indented lines (code,
    grammar), list items and heading underlines stay on their own lines."""
    lines = paragraph.split("\n")
    out = [lines[0]]
    for line in lines[1:]:
        previous = out[-1]
        if (line and not line[0].isspace() and not previous[:1].isspace() and not _rule(line)
                and not _rule(previous) and not line.startswith(("* ", "- ", "+ "))):
            hyphen = previous.endswith("-") and previous[-2:-1].isalpha()  # "comma-\nseparated"
            out[-1] = previous.rstrip() + ("" if hyphen else " ") + line.strip()
        else:
            out.append(line)
    return "\n".join(out)


def corpus() -> dict[str, list[str]]:
    """{"train": [...], "validation": [...], "test": [...]}: texts of 10 consecutive paragraphs."""
    from pydoc_data.topics import topics

    splits: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    index = 0
    for name in sorted(topics):
        paragraphs = [unwrap(p) for p in topics[name].split("\n\n") if p.strip()]
        for start in range(0, len(paragraphs), 10):
            split = {0: "test", 10: "validation"}.get(index % 20, "train")
            splits[split].append("\n\n".join(paragraphs[start:start + 10]))
            index += 1
    return splits


def train_tokenizer(texts: list[str], vocab_size: int, folder: Path) -> bombus.Tokenizer:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(texts, trainer)
    folder.mkdir(parents=True, exist_ok=True)
    backend.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2Tokenizer", "bos_token": EOS, "eos_token": EOS, "unk_token": EOS,
        "add_prefix_space": False}, indent=2) + "\n")
    tok = bombus.load_tokenizer(folder)
    tok.save_pretrained(folder)  # the canonical files (tokenizer_config.json, special_tokens_map.json)
    return bombus.load_tokenizer(folder)


def token_stream(tok, texts: list[str]) -> list[int]:
    """Every text's tokens followed by EOS, as `bombus.train` packs them."""
    return [t for text in texts for t in tok.encode(text) + [tok.eos_token_id]]


def unigram_perplexity(train: list[int], test_blocks: list[list[int]], vocab_size: int) -> float:
    """Perplexity of add-one smoothed unigram frequencies on exactly the tokens the model predicts: every
    token of a block but its first."""
    counts = Counter(train)
    total = len(train) + vocab_size
    targets = [t for block in test_blocks for t in block[1:]]
    nll = -sum(math.log((counts[t] + 1) / total) for t in targets)
    return math.exp(nll / len(targets))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=ROOT / "src" / "bombus" / "data" / "demo-gpt2")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--positions", type=int, default=256)
    parser.add_argument("--block-length", type=int, default=128, help="tokens per training example")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    splits = corpus()
    work = args.output.parent / f".{args.output.name}.building"
    shutil.rmtree(work, ignore_errors=True)
    tok = train_tokenizer(splits["train"], args.vocab_size, work)
    eos = tok.eos_token_id
    spec = bombus.configure(
        Gpt2Spec(), architecture="for_causal_language_modeling", vocab_size=len(tok), max_positions=args.positions,
        hidden_size=args.hidden_size, num_blocks=args.blocks, num_attention_heads=args.heads,
        dropout_rate=args.dropout, embeddings_dropout_rate=args.dropout, attention_dropout_rate=args.dropout,
        bos_token_id=eos, eos_token_id=eos)
    torch.manual_seed(args.seed)
    model = bombus.build_model(spec)
    params = sum(p.numel() for p in model.parameters())
    rows = {name: [{"text": t} for t in texts] for name, texts in splits.items()}
    print(f"corpus: {sum(map(len, splits['train']))} / {sum(map(len, splits['validation']))} / "
          f"{sum(map(len, splits['test']))} characters (train / validation / test); {params:,} parameters",
          file=sys.stderr)

    train_started = time.perf_counter()
    result = bombus.train(
        model, rows["train"], tokenizer=tok, eval_data=rows["validation"], steps=args.steps,
        batch_size=args.batch_size, learning_rate=args.learning_rate, weight_decay=0.1, warmup_steps=0.05,
        max_grad_norm=1.0, bf16=args.bf16, seed=args.seed, eval_every=args.eval_every,
        early_stopping_patience=3, restore_best=True, max_length=args.block_length, progress=True)
    train_time = time.perf_counter() - train_started

    # Save with fp16 weights (half the size); the numbers below are measured on the saved files.
    model.half().save_pretrained(work)
    generation = {"bos_token_id": eos, "eos_token_id": eos, "pad_token_id": eos, "do_sample": True,
                  "temperature": 0.8, "top_k": 40, "max_new_tokens": 64}
    (work / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    saved = bombus.load_model(work)
    tok = bombus.load_tokenizer(work)
    L = args.block_length
    measure = {name: bombus.evaluate(saved, rows[name], tokenizer=tok, max_length=L, batch_size=32)
               for name in ("validation", "test")}
    test_stream = token_stream(tok, splits["test"])
    test_blocks = [b for b in (test_stream[i:i + L] for i in range(0, len(test_stream), L)) if len(b) >= 2]
    train_tokens = token_stream(tok, splits["train"])
    unigram = unigram_perplexity(train_tokens, test_blocks, len(tok))
    prompt = tok(["The \"for\" statement"])
    sample_ids = saved.generate(**prompt, do_sample=True, top_k=40, temperature=0.8, max_new_tokens=60, seed=0)
    sample = tok.decode(sample_ids[0])
    size = sum(p.stat().st_size for p in work.iterdir())
    numbers = {
        "python": platform.python_version(), "torch": torch.__version__, "threads": args.threads,
        "parameters": params, "vocab_size": len(tok), "train_tokens": len(train_tokens),
        "test_tokens": sum(len(b) - 1 for b in test_blocks), "steps": result.step,
        "best_step": result.best["step"] if result.best else result.step, "stopped_early": result.stopped_early,
        "tokens_seen": result.tokens, "train_seconds": round(train_time, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "validation_perplexity": round(measure["validation"]["perplexity"], 2),
        "test_perplexity": round(measure["test"]["perplexity"], 2), "test_unigram_perplexity": round(unigram, 2),
        "size_bytes": size, "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                                        if k != "output"},
    }
    (work / "README.md").write_text(card(numbers, sample, args), encoding="utf-8")
    (work / "training_numbers.json").write_text(json.dumps(numbers, indent=2) + "\n")
    shutil.rmtree(args.output, ignore_errors=True)
    work.rename(args.output)
    print(json.dumps(numbers, indent=2))


def card(n: dict, sample: str, args) -> str:
    quoted = "\n".join("    " + line for line in sample.splitlines())
    minutes = n["train_seconds"] / 60
    threads = f"{n['threads']} CPU thread" + ("s" if n["threads"] > 1 else "")
    unigram = "test, unigram baseline (training-token frequencies, add-one)"
    return f"""# demo-gpt2: a small GPT-2 trained on CPython's documentation

bombus' built-in demo model: a {n['parameters'] / 1e6:.1f} M-parameter GPT-2 trained from scratch, with
`bombus.train`, on the prose of CPython's own `pydoc_data.topics` (the text `help("for")` shows). It writes
Python-documentation-flavoured English; it is a demonstration and a test fixture, not a useful language model.

```python
from pathlib import Path

import bombus
from bombus.generation import load_generation_config

path = Path(bombus.__file__).parent / "data" / "demo-gpt2"
model = bombus.load_model(path)          # float32 (the file stores float16)
tok = bombus.load_tokenizer(path)
config = load_generation_config(path)    # generation_config.json: sampling, top-k 40, temperature 0.8
ids = model.generate(**tok(["The \\"with\\" statement"]), generation_config=config, seed=0)
print(tok.decode(ids[0]))
```

## Data
`pydoc_data.topics` of Python {n['python']} ({n['train_tokens']:,} training tokens), with the hard-wrapped
lines of prose paragraphs joined (indented code and grammar, list items and headings stay as they are).
Each topic's paragraphs are grouped by 10 consecutive paragraphs; every 20th group is the test split, every
20th with offset 10 the validation split (about 5% each), the rest trains. The documentation is © Python Software Foundation,
under the PSF License.

## Tokenizer
Byte-level BPE (GPT-2 style: no unknown tokens, `<|endoftext|>` is BOS, EOS and padding), {n['vocab_size']:,}
tokens, trained with the `tokenizers` library on the training split only. Files: `tokenizer.json`,
`tokenizer_config.json`, `special_tokens_map.json`.

## Model
GPT-2: {args.blocks} blocks, hidden size {args.hidden_size}, {args.heads} heads, {args.positions} positions,
dropout {args.dropout}; {n['parameters']:,} parameters, stored as float16 (`model.safetensors`), folder
{n['size_bytes'] / 1e6:.1f} MB in all.

## Training
`scripts/train_demo_model.py` (seed {args.seed}): `bombus.train` on packed blocks of {args.block_length} tokens
(every text ends with EOS), batch {args.batch_size}, AdamW (learning rate {args.learning_rate}, weight decay
0.1, none on biases and norms), 5% linear warm-up then linear decay, gradient clipping at 1.0,
bfloat16 autocast: {'yes' if args.bf16 else 'no'}; validation every {args.eval_every} steps, early stopping
(patience 3) and the best weights restored. {n['steps']} steps ({n['tokens_seen']:,} tokens), best at step
{n['best_step']}; {n['train_seconds']:.0f} s ({minutes:.1f} min) of training on {threads}
(torch {n['torch']}), {n['total_seconds']:.0f} s for the whole script.

## Evaluation (measured on the saved float16 weights)
| split | tokens | perplexity |
|---|---|---|
| validation | | {n['validation_perplexity']:.1f} |
| test | {n['test_tokens']:,} | **{n['test_perplexity']:.1f}** |
| {unigram} | {n['test_tokens']:,} | {n['test_unigram_perplexity']:.1f} |

The validation split chose the stopping point; the test split was used for nothing but these numbers.

A continuation of `The "for" statement` sampled with generation_config.json (top-k 40, temperature 0.8,
`seed=0`):

{quoted}
"""


if __name__ == "__main__":
    main()
