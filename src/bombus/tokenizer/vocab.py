"""The vocabulary model (BPE, WordPiece, Unigram) of a family, from tokenizer.json or the slow files."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import tokenizers
from tokenizers import AddedToken
from tokenizers import models as tk_models

from ..errors import TokenizerError
from .files import _Files


def _from_json(files: _Files, data: dict) -> tokenizers.Tokenizer:
    try:
        backend = tokenizers.Tokenizer.from_str(json.dumps(data))
    except Exception as e:
        raise TokenizerError(f"{files.path('tokenizer.json')} cannot be loaded by the tokenizers library ({e}); "
                             f"the file is corrupt") from None
    return backend


def _model(family: str, files: _Files, unk: str):
    """The family's model from tokenizer.json's vocabulary, else from the slow files.

    Returns (model, SentencePiece charsmap or None, spiece.model's special pieces or None)."""
    data = files.json("tokenizer.json")
    if data is not None:
        try:
            spec = data["model"]
            if family in ("gpt2", "roberta"):
                merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in spec["merges"]]
                return byte_level_bpe(spec["vocab"], merges), None, None
            if family in ("bert", "distilbert"):
                return tk_models.WordPiece(spec["vocab"], unk_token=unk), None, None
            pieces = [(p, float(score)) for p, score in spec["vocab"]]
            return _unigram(pieces, unk), _charsmap_of(data.get("normalizer")), None
        except Exception as e:
            raise TokenizerError(
                f"{files.path('tokenizer.json')} does not hold a {family} vocabulary ({type(e).__name__}: {e}); "
                f"the file is corrupt or belongs to another kind of tokenizer"
            ) from None
    needs = {"gpt2": "vocab.json + merges.txt (or encoder.json + vocab.bpe)", "roberta": "vocab.json + merges.txt",
             "bert": "vocab.txt", "distilbert": "vocab.txt", "albert": "spiece.model"}[family]
    if family in ("gpt2", "roberta"):
        for vocab_name, merges_name in (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")):
            vocab, merges = files.path(vocab_name), files.path(merges_name)
            if vocab and merges:
                return _slow(lambda: byte_level_bpe(str(vocab), str(merges)), vocab, merges), None, None
    elif family in ("bert", "distilbert") and files.path("vocab.txt"):
        path = files.path("vocab.txt")
        return _slow(lambda: tk_models.WordPiece(str(path), unk_token=unk), path), None, None
    elif family == "albert" and files.path("spiece.model"):
        return _sentencepiece(files.path("spiece.model"), unk)
    raise TokenizerError(
        f"{files.source} has neither tokenizer.json nor {needs}, which a {family} tokenizer needs")


def _slow(build, *paths: Path):
    try:
        return build()
    except Exception as e:
        names = " + ".join(str(p) for p in paths)
        raise TokenizerError(f"cannot read {names} ({e}); the file is corrupt: download it again") from None


def byte_level_bpe(vocab, merges) -> tk_models.BPE:
    """A byte-level BPE model (`vocab` and `merges` as the tokenizers library takes them: a dict and a list of
    pairs, or the vocab.json and merges.txt paths) with transformers' GPT2Tokenizer/RobertaTokenizer
    settings: no unk token, no dropout, no prefixes."""
    return tk_models.BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                         end_of_word_suffix="", fuse_unk=False)


def _unigram(pieces: list[tuple[str, float]], unk: str) -> tk_models.Unigram:
    unk_id = next((i for i, (p, _) in enumerate(pieces) if p == unk), None)
    return tk_models.Unigram(pieces, unk_id=unk_id, byte_fallback=False)


def _charsmap_of(normalizer: dict | None) -> bytes | None:
    """SentencePiece's precompiled normalisation map, kept inside tokenizer.json's normalizer."""
    if not normalizer:
        return None
    for n in normalizer.get("normalizers", [normalizer]) if normalizer.get("type") == "Sequence" else [normalizer]:
        if n.get("type") == "Precompiled" and n.get("precompiled_charsmap"):
            return base64.b64decode(n["precompiled_charsmap"])
    return None


def _sentencepiece(path: Path, unk: str):
    try:  # only this path needs them: imported lazily
        from sentencepiece import sentencepiece_model_pb2
    except ImportError as e:
        raise TokenizerError(
            f"reading {path} needs the sentencepiece and protobuf packages ({e}); install them with "
            f"`pip install bombus[sentencepiece]`, or load a folder with a tokenizer.json instead"
        ) from None
    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(Path(path).read_bytes())
        if not proto.pieces:
            raise ValueError("no pieces")
    except Exception as e:
        raise TokenizerError(f"{path} is not a SentencePiece model ({e}); the file is corrupt") from None
    if proto.trainer_spec.model_type != 1:  # 1 = UNIGRAM
        raise TokenizerError(f"{path} is a SentencePiece model of type {proto.trainer_spec.model_type}; "
                             f"ALBERT needs a Unigram model (type 1)")
    pieces = [(p.piece, p.score) for p in proto.pieces]
    # Control (3) and user-defined (4) pieces become added tokens; only control ones are special.
    extras = [AddedToken(p.piece, normalized=False, special=p.type == 3) for p in proto.pieces if p.type in (3, 4)]
    return _unigram(pieces, unk), proto.normalizer_spec.precompiled_charsmap or None, extras
