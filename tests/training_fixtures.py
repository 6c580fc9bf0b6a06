"""Shared pieces of the training tests: small tokenizers, tiny models and synthetic tasks a tiny model
learns in a few dozen steps. Test modules import what they use."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

import bombus

COLORS = ["red", "green", "blue", "black", "white"]
ANIMALS = ["cat", "dog", "bird", "fish", "horse"]
OTHERS = ["the", "a", "and", "runs", "sits", "big", "small", "one", "two", "near", "under", "key", "is"]
WORDS = COLORS + ANIMALS + OTHERS


def sentence(rng: random.Random, low: int = 3, high: int = 8) -> list[str]:
    return [rng.choice(WORDS) for _ in range(rng.randint(low, high))]


def gpt2_tokenizer(folder: Path, vocab_size: int = 300):
    """A byte-level BPE tokenizer (GPT-2 style, `<|endoftext|>` special) trained on the synthetic words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    rng = random.Random(0)
    texts = [" ".join(sentence(rng)) for _ in range(400)] + ["= ? , ."]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(texts, trainer)
    folder.mkdir(parents=True, exist_ok=True)
    backend.save(str(folder / "tokenizer.json"))
    special = "<|endoftext|>"
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2Tokenizer", "bos_token": special, "eos_token": special, "unk_token": special,
        "add_prefix_space": False, "model_max_length": 64}))
    return bombus.load_tokenizer(folder)


def bert_tokenizer(folder: Path):
    """A WordPiece tokenizer (BERT style) whose vocab.txt holds the synthetic words."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "=", "?", ",", ".", "which", "an", "animal"] + WORDS
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer",
                                                              "do_lower_case": True, "model_max_length": 64}))
    return bombus.load_tokenizer(folder)


def tiny_gpt2(architecture: str, vocab_size: int, *, dropout: float = 0.0, seed: int = 0, **options):
    from bombus.models.gpt2 import Gpt2Spec

    torch.manual_seed(seed)
    spec = bombus.configure(Gpt2Spec(), vocab_size=vocab_size, hidden_size=32, num_blocks=2, num_attention_heads=2,
                            max_positions=64, architecture=architecture, dropout_rate=dropout,
                            embeddings_dropout_rate=dropout, attention_dropout_rate=dropout,
                            classifier_dropout_rate=dropout, bos_token_id=0, eos_token_id=0, **options)
    return bombus.build_model(spec)


def tiny_bert(architecture: str, vocab_size: int, *, seed: int = 0, **options):
    from bombus.models.bert import BertSpec

    torch.manual_seed(seed)
    spec = bombus.configure(BertSpec(), vocab_size=vocab_size, hidden_size=32, num_blocks=2, num_attention_heads=2,
                            intermediate_size=64, max_positions=64, architecture=architecture, **options)
    return bombus.build_model(spec)


# -- synthetic tasks: rows as a user would write them in JSONL -------------------------------------------------


def classify_rows(n: int, seed: int) -> list[dict]:
    """Is there a dog? Labels are names ("yes"/"no"), so the label mapping is exercised."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = sentence(rng)
        if rng.random() < 0.5:
            words[rng.randrange(len(words))] = "dog"
        rows.append({"text": " ".join(words), "label": "yes" if "dog" in words else "no"})
    return rows


def copy_rows(n: int, seed: int) -> list[dict]:
    """`x y z = x y z`: the second half is predictable only by copying the first."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(COLORS + ANIMALS) for _ in range(rng.randint(2, 5))]
        rows.append({"text": " ".join(words) + " = " + " ".join(words)})
    return rows


def repeat_rows(n: int, seed: int) -> list[dict]:
    """One word, repeated: any masked token is any other token of the row."""
    rng = random.Random(seed)
    return [{"text": " ".join([rng.choice(WORDS)] * rng.randint(4, 8))} for _ in range(n)]


def tag_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = sentence(rng)
        tags = ["COLOR" if w in COLORS else "ANIMAL" if w in ANIMALS else "O" for w in words]
        rows.append({"tokens": words, "tags": tags})
    return rows


def answer_rows(n: int, seed: int) -> list[dict]:
    """Where is the colour after "key is"?"""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        before, after = " ".join(sentence(rng, 1, 4)), " ".join(sentence(rng, 1, 4))
        color = rng.choice(COLORS)
        context = f"{before} key is {color} {after}"
        rows.append({"question": "key ?", "context": context,
                     "answers": {"text": [color], "answer_start": [context.index(f"key is {color}") + 7]}})
    return rows


def choice_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        choices = [rng.choice(ANIMALS), rng.choice(COLORS)]
        rng.shuffle(choices)
        rows.append({"question": "which is an animal ?", "choices": choices,
                     "label": 0 if choices[0] in ANIMALS else 1})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread, and on a busy machine the threads' synchronisation
    costs far more than it gives: run these tests on one (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def gpt2_tok(tmp_path_factory):
    return gpt2_tokenizer(tmp_path_factory.mktemp("gpt2-tok"))


@pytest.fixture(scope="module")
def bert_tok(tmp_path_factory):
    return bert_tokenizer(tmp_path_factory.mktemp("bert-tok"))
