"""Tokenizers for every bombus family, built on the `tokenizers` library.

`load_tokenizer(source)` reads whichever files a repository ships — `tokenizer.json`, or the older "slow"
files (`vocab.json` + `merges.txt` or OpenAI's `encoder.json` + `vocab.bpe`, `vocab.txt`, `spiece.model`) —
plus `tokenizer_config.json`, `special_tokens_map.json` and `added_tokens.json`, and gives the same ids as
transformers' tokenizers for GPT-2, RoBERTa, DistilBERT, BERT and ALBERT.

Like transformers 5, a family's pipeline (normalizer, pre-tokenizer, decoder, post-processor) is built from
its options; the files only provide the vocabulary (and `tokenizer.json` its post-processor). That is why
a `tokenizer.json` and the slow files of the same tokenizer load to the same thing.
"""

from __future__ import annotations

import base64
import codecs
import functools
import json
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers
import torch
from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers, processors
from tokenizers import models as tk_models

from .errors import ConfigError, InputError, TokenizerError
from .hub import resolve_file

__all__ = ["Tokenizer", "load_tokenizer"]

# transformers stores "no limit" as int(1e30); anything this large means unset.
_NO_LIMIT = int(1e20)
_SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


@dataclass(frozen=True)
class _Family:
    """What transformers' tokenizer class for a family defaults to."""

    hf_class: str
    special_tokens: dict[str, str]
    input_names: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


_BERT_SPECIAL = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                 "mask_token": "[MASK]"}
_BERT_OPTIONS = {"do_lower_case": True, "tokenize_chinese_chars": True, "strip_accents": None}
_FAMILIES = {
    "gpt2": _Family(
        "GPT2Tokenizer",
        {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"},
        ("input_ids", "attention_mask"),
        {"add_prefix_space": False, "add_bos_token": False, "add_eos_token": False, "errors": "replace"},
    ),
    "roberta": _Family(
        "RobertaTokenizer",
        {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>",
         "pad_token": "<pad>", "mask_token": "<mask>"},
        ("input_ids", "attention_mask"),
        {"add_prefix_space": False, "trim_offsets": True, "errors": "replace"},
    ),
    "bert": _Family("BertTokenizer", _BERT_SPECIAL, ("input_ids", "token_type_ids", "attention_mask"),
                    _BERT_OPTIONS),
    "distilbert": _Family("DistilBertTokenizer", _BERT_SPECIAL, ("input_ids", "attention_mask"), _BERT_OPTIONS),
    # transformers lists no token_type_ids for ALBERT, but the model has token type embeddings (Bumblebee
    # returns them too), so bombus returns them by default.
    "albert": _Family(
        "AlbertTokenizer",
        {"bos_token": "[CLS]", "eos_token": "[SEP]", "unk_token": "<unk>", "sep_token": "[SEP]",
         "pad_token": "<pad>", "cls_token": "[CLS]", "mask_token": "[MASK]"},
        ("input_ids", "token_type_ids", "attention_mask"),
        {"do_lower_case": True, "keep_accents": False, "add_prefix_space": True, "trim_offsets": True,
         "remove_space": True},
    ),
    # Any other tokenizer.json (tokenizer_class "PreTrainedTokenizerFast" ...): used as it is.
    "generic": _Family("PreTrainedTokenizerFast", {}, ("input_ids", "attention_mask")),
}
_CLASS_TO_FAMILY = {f.hf_class: name for name, f in _FAMILIES.items()} | {"TokenizersBackend": "generic"}
_GENERAL_OPTIONS = {
    "model_max_length", "padding_side", "truncation_side", "clean_up_tokenization_spaces", "model_input_names",
    "additional_special_tokens", "extra_special_tokens", "tokenizer_class", "chat_template", *_SPECIAL_NAMES,
}
_KNOWN_OVERRIDES = _GENERAL_OPTIONS | {k for f in _FAMILIES.values() for k in f.options}


# ---------------------------------------------------------------------------------------------------- loading
def load_tokenizer(
    source: str | os.PathLike, *, revision: str | None = None, token: str | bool | None = None,
    gguf_file: str | None = None, **overrides: Any
) -> Tokenizer:
    """Load the tokenizer of `source`, a local folder or a hub repo id (at `revision`, with hub `token`).

    Files are read in this order of preference: `tokenizer.json`; else `vocab.json` + `merges.txt` (or
    OpenAI's `encoder.json` + `vocab.bpe`), `vocab.txt` or `spiece.model` (needs `sentencepiece` and
    `protobuf`). `tokenizer_config.json`, `special_tokens_map.json` and `added_tokens.json` are honoured.
    The family comes from `tokenizer_config.json` "tokenizer_class", else config.json "model_type", else
    the files present.

    `overrides` replace `tokenizer_config.json` entries: special tokens (`pad_token="[PAD]"`, ...),
    `add_prefix_space`, `add_bos_token`, `do_lower_case`, `strip_accents`, `tokenize_chinese_chars`,
    `keep_accents`, `trim_offsets`, `model_max_length`, `padding_side`, `truncation_side`,
    `clean_up_tokenization_spaces`, `model_input_names`, `tokenizer_class` (forces the family),
    `chat_template`.

    GGUF files (llama.cpp) hold their tokenizer: `source` a .gguf path, or `gguf_file` a file in `source`.
    """
    unknown = set(overrides) - _KNOWN_OVERRIDES
    if unknown:
        raise ConfigError(f"unknown load_tokenizer option(s) {sorted(unknown)}; known: {sorted(_KNOWN_OVERRIDES)}")
    from .gguf import gguf_path, load_tokenizer_data

    gguf = gguf_path(source, gguf_file, revision=revision, token=token)
    if gguf is not None:  # vocabulary, merges, special tokens and chat template from the GGUF metadata
        backend, config = load_tokenizer_data(gguf)
        options = {**_FAMILIES["generic"].options, **config, **overrides}
        specials = {k: options[k] for k in _SPECIAL_NAMES if options.get(k) is not None}
        extras = list(options.get("additional_special_tokens") or [])
        _add_special_tokens(backend, {}, specials, extras)
        _set_post_processor(backend, "generic", options, None, specials, explicit_bos_eos=True)
        return Tokenizer(backend, family="generic", special_tokens=specials, extra_special_tokens=extras,
                         options=options)
    files = _Files(source, revision, token)
    config = files.json("tokenizer_config.json") or {}
    family = _family(files, overrides.get("tokenizer_class") or config.get("tokenizer_class"))
    options = {**_FAMILIES[family].options, **config, **overrides}
    template = files.path("chat_template.jinja")  # where transformers 5 saves the chat template
    if template is not None and "chat_template" not in overrides:
        options["chat_template"] = template.read_text(encoding="utf-8")
    data = files.json("tokenizer.json")
    specials, extras, added = _special_tokens(family, files, config, overrides)
    if data is not None:  # as in transformers: tokenizer.json's post-processor rules, not add_bos/eos_token
        options.pop("add_bos_token", None), options.pop("add_eos_token", None)
    if family == "generic":
        backend = _from_json(files, data)
    else:
        model, charsmap, spm_extras = _model(family, files, str(specials.get("unk_token", "")))
        extras = extras or spm_extras or []
        backend = _pipeline(family, model, options, charsmap)
    _add_special_tokens(backend, added, specials, extras)
    explicit_bos_eos = data is None and any(k in d for d in (config, overrides)
                                            for k in ("add_bos_token", "add_eos_token"))
    _set_post_processor(backend, family, options, data, specials, explicit_bos_eos)
    return Tokenizer(backend, family=family, special_tokens=specials, extra_special_tokens=extras, options=options)


class _Files:
    """The files of a source, each looked up (or downloaded) and parsed once."""

    def __init__(self, source, revision, token):
        self.source, self._revision, self._token = source, revision, token
        self._paths: dict[str, Path | None] = {}
        self._json: dict[str, Any] = {}

    def path(self, name: str) -> Path | None:
        if name not in self._paths:
            self._paths[name] = resolve_file(self.source, name, revision=self._revision, token=self._token,
                                             required=False)
        return self._paths[name]

    def json(self, name: str) -> Any:
        if name not in self._json:
            path = self.path(name)
            try:
                self._json[name] = None if path is None else json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                raise TokenizerError(f"{path} is not valid JSON ({e}); the file is corrupt: download it again"
                                     ) from None
        return self._json[name]


def _family(files: _Files, tokenizer_class: str | None) -> str:
    """tokenizer_config "tokenizer_class", else config.json "model_type", else the files present."""
    has_json = files.path("tokenizer.json") is not None
    if tokenizer_class:
        name = _CLASS_TO_FAMILY.get(tokenizer_class.removesuffix("Fast"))
        if name is not None or has_json:
            return name or "generic"
        raise TokenizerError(f"tokenizer_class {tokenizer_class!r} of {files.source} needs a tokenizer.json; "
                             f"without one bombus reads the files of {sorted(_CLASS_TO_FAMILY)}")
    model_type = (files.json("config.json") or {}).get("model_type")
    if model_type in _FAMILIES:
        return model_type
    if has_json:
        return "generic"
    for names, family in ((("spiece.model",), "albert"), (("vocab.txt",), "bert"),
                          (("vocab.json", "merges.txt"), "gpt2"), (("encoder.json", "vocab.bpe"), "gpt2")):
        if all(files.path(n) is not None for n in names):
            return family
    where = "" if Path(files.source).expanduser().is_dir() else " (or the hub repo is not found or not cached)"
    raise TokenizerError(
        f"no tokenizer files in {files.source}{where}: expected tokenizer.json, or vocab.json + merges.txt, "
        f"encoder.json + vocab.bpe, vocab.txt or spiece.model. Pass the folder or repo with the model's tokenizer."
    )


def _as_added_token(value: Any, special: bool) -> AddedToken | str:
    if isinstance(value, dict):  # saved AddedToken: {"content": ..., "lstrip": ..., "__type": "AddedToken"}
        value = {k: v for k, v in value.items() if k not in ("__type", "id")}
        return AddedToken(**(value | {"special": True} if special else value))
    return value


def _special_tokens(family: str, files: _Files, config: dict, overrides: dict):
    """Named special tokens, extra special tokens and added tokens {id: AddedToken}, read as transformers does."""
    named = {**_FAMILIES[family].special_tokens, **{k: config[k] for k in _SPECIAL_NAMES if k in config}}
    extras = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
    added: dict[int, AddedToken] = {}
    if "added_tokens_decoder" in config:
        added = {int(i): _as_added_token(t, special=False) for i, t in config["added_tokens_decoder"].items()}
    else:
        # Older repositories: special_tokens_map.json wins over tokenizer_config.json, and the added tokens
        # come from added_tokens.json and tokenizer.json. transformers' quirk: an added_tokens.json entry
        # listed only in special_tokens_map.json's additional_special_tokens is a normal token.
        special = {str(_as_added_token(t, True)) for t in extras}
        for key, value in (files.json("special_tokens_map.json") or {}).items():
            if key in _SPECIAL_NAMES:
                named[key] = _as_added_token(value, special=True)
            elif key in ("additional_special_tokens", "extra_special_tokens"):
                extras = list(extras) + [t for t in value if t not in extras]
        special |= {str(_as_added_token(v, True)) for v in named.values() if v}
        for text, index in (files.json("added_tokens.json") or {}).items():
            added[int(index)] = AddedToken(text, normalized=text not in special, special=text in special)
        for t in (files.json("tokenizer.json") or {}).get("added_tokens", []):
            added[t["id"]] = _as_added_token(t, special=False)
    if isinstance(extras, dict):  # model-specific named tokens, e.g. {"image_token": "<image>"}
        extras = list(extras.values())
    named.update({k: overrides[k] for k in _SPECIAL_NAMES if k in overrides})
    if "additional_special_tokens" in overrides or "extra_special_tokens" in overrides:
        extras = overrides.get("extra_special_tokens") or overrides.get("additional_special_tokens") or []
    extras = [_as_added_token(t, special=True) for t in extras]
    by_text = {str(t): t for t in added.values()}  # a named token takes its added token's flags
    specials = {k: by_text.get(str(_as_added_token(v, True)), _as_added_token(v, True))
                for k, v in named.items() if v is not None}
    return specials, extras, added


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
                return _bpe(spec["vocab"], merges), None, None
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
                return _slow(lambda: _bpe(str(vocab), str(merges)), vocab, merges), None, None
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


def _bpe(vocab, merges) -> tk_models.BPE:
    # transformers' GPT2Tokenizer/RobertaTokenizer settings: no unk token, no dropout, no prefixes.
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


def _pipeline(family: str, model, options: dict, charsmap: bytes | None) -> tokenizers.Tokenizer:
    """Normalizer, pre-tokenizer and decoder, exactly as transformers' class for the family builds them."""
    backend = tokenizers.Tokenizer(model)
    if family in ("gpt2", "roberta"):
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=bool(options["add_prefix_space"]))
        backend.decoder = decoders.ByteLevel()
    elif family in ("bert", "distilbert"):
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=bool(options["tokenize_chinese_chars"]),
            strip_accents=options["strip_accents"], lowercase=bool(options["do_lower_case"]),
        )
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
    else:  # albert; WhitespaceSplit also does the slow tokenizer's `remove_space`
        steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
        if not options["keep_accents"]:
            steps += [normalizers.NFKD(), normalizers.StripAccents()]
        if options["do_lower_case"]:
            steps.append(normalizers.Lowercase())
        if charsmap:
            steps.append(normalizers.Precompiled(charsmap))
        backend.normalizer = normalizers.Sequence(steps)
        scheme = "always" if options["add_prefix_space"] else "never"
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)]
        )
        backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)
    return backend


def _add_special_tokens(backend: tokenizers.Tokenizer, added: dict, specials: dict, extras: list) -> None:
    """Register added and special tokens in the order transformers does, so new tokens get the same ids."""
    tokens = [added[i] for i in sorted(added)]
    seen = {str(t) for t in backend.get_added_tokens_decoder().values()} | {str(t) for t in tokens}
    for token in [*specials.values(), *extras]:
        if str(token) not in seen:
            tokens.append(token)
            seen.add(str(token))
    named = {str(t) for t in specials.values()}
    final = []
    for token in tokens:
        if isinstance(token, str):
            token = AddedToken(token, special=True)
        elif not token.special and str(token) in named:
            token = AddedToken(token.content, single_word=token.single_word, lstrip=token.lstrip,
                               rstrip=token.rstrip, normalized=token.normalized, special=True)
        final.append(token)
    if final:
        backend.add_tokens(final)


def _set_post_processor(backend, family: str, options: dict, data: dict | None, specials: dict,
                        explicit_bos_eos: bool) -> None:
    def tok(name):  # (text, id) of a named special token
        text = str(specials[name]) if specials.get(name) is not None else None
        return text, backend.token_to_id(text) if text is not None else None

    if family in ("bert", "distilbert"):
        (cls, cls_id), (sep, sep_id) = tok("cls_token"), tok("sep_token")
        backend.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            # 2 and 3 are transformers' fallback ids for a vocabulary without them
            special_tokens=[(cls, 2 if cls_id is None else cls_id), (sep, 3 if sep_id is None else sep_id)],
        )
        return
    if family == "roberta":
        backend.post_processor = processors.RobertaProcessing(
            tok("sep_token"), tok("cls_token"), bool(options["trim_offsets"]), bool(options["add_prefix_space"])
        )
        return
    # gpt2, albert, generic: tokenizer.json's post-processor wins, as in transformers.
    if data is not None:
        backend.post_processor = _post_processor_from_json(data)
    elif family == "albert":
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
            special_tokens=[("[CLS]", tok("cls_token")[1]), ("[SEP]", tok("sep_token")[1])],
        )
    if backend.post_processor is None or explicit_bos_eos:
        (bos, bos_id), (eos, eos_id) = tok("bos_token"), tok("eos_token")
        add_bos = bool(options.get("add_bos_token")) and bos is not None
        add_eos = bool(options.get("add_eos_token")) and eos is not None
        single = f"{bos + ':0 ' if add_bos else ''}$A:0{' ' + eos + ':0' if add_eos else ''}"
        pair = f"{single}{' ' + bos + ':1' if add_bos else ''} $B:1{' ' + eos + ':1' if add_eos else ''}"
        special = ([(bos, bos_id)] if add_bos else []) + ([(eos, eos_id)] if add_eos else [])
        backend.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=special)


def _post_processor_from_json(data: dict):
    # Parse only the post-processor: a tokenizer around an empty model is cheap to load.
    minimal = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
               "pre_tokenizer": None, "post_processor": data.get("post_processor"), "decoder": None,
               "model": {"type": "WordLevel", "vocab": {}, "unk_token": "<unk>"}}
    try:
        return tokenizers.Tokenizer.from_str(json.dumps(minimal)).post_processor
    except Exception as e:
        raise TokenizerError(f"the post_processor of tokenizer.json cannot be loaded ({e}); the file is corrupt"
                             ) from None


# ---------------------------------------------------------------------------------------------------- Tokenizer
def _named(name: str) -> tuple[property, property]:
    """The `<name>` and `<name>_id` properties of a named special token (None when the tokenizer has none)."""

    def token(self) -> str | None:
        return self._token(name)

    def token_id(self) -> int | None:
        return self._id(name)

    token.__doc__ = f"The {name.replace('_', ' ')}, or None."
    token_id.__doc__ = f"The id of the {name.replace('_', ' ')}, or None."
    return property(token), property(token_id)


class Tokenizer:
    """A text tokenizer: `tok(texts)` gives a dict of torch tensors; `encode`, `decode`, `save_pretrained`.

    Build it with `load_tokenizer(source)`. Attributes: `family` ("gpt2", "roberta", "bert", "distilbert",
    "albert", or "generic" for another tokenizer.json), `backend` (the `tokenizers.Tokenizer`),
    `model_max_length` (None when unknown), `padding_side` / `truncation_side` (the defaults of
    `pad_direction` / `truncate_direction`), `model_input_names`, `clean_up_tokenization_spaces`, and
    `options` (tokenizer_config.json with the overrides). Special tokens: `bos_token`, `eos_token`,
    `unk_token`, `sep_token`, `pad_token`, `cls_token`, `mask_token` and their `..._id`s (None when the
    tokenizer has none; `pad_token` falls back to EOS), `special_tokens`, `additional_special_tokens`.
    """

    def __init__(self, backend: tokenizers.Tokenizer, *, family: str, special_tokens: dict[str, Any],
                 extra_special_tokens: list, options: dict[str, Any]):
        self.backend = backend
        self.family = family
        self.options = dict(options)
        self._specials = dict(special_tokens)
        self._extras = list(extra_special_tokens)
        names = options.get("model_input_names") or _FAMILIES[family].input_names
        self.model_input_names = tuple(names)
        max_len = options.get("model_max_length")
        self.model_max_length: int | None = int(max_len) if max_len is not None and max_len < _NO_LIMIT else None
        self.padding_side: str = _direction(options.get("padding_side") or "right", "padding_side")
        self.truncation_side: str = _direction(options.get("truncation_side") or "right", "truncation_side")
        self.clean_up_tokenization_spaces: bool = bool(options.get("clean_up_tokenization_spaces", False))
        self._lock = threading.Lock()  # the backend's truncation setting is shared state
        self._truncation: tuple | None = None
        self._warned_pad = False
        # tokenizers < 0.20 has no encode_batch_fast
        self._encode_fast = getattr(backend, "encode_batch_fast", backend.encode_batch)
        backend.no_padding()
        backend.no_truncation()

    # ------------------------------------------------------------------------------------------ properties
    def _token(self, name: str) -> str | None:
        value = self._specials.get(name)
        return None if value is None else str(value)

    def _id(self, name: str) -> int | None:
        text = self._token(name)
        return None if text is None else self.backend.token_to_id(text)

    @property
    def pad_token(self) -> str | None:
        """The padding token; GPT-2 has none, so its EOS token pads (as in Bumblebee)."""
        return self._token("pad_token") or self._token("eos_token")

    @property
    def pad_token_id(self) -> int | None:
        return self._id("pad_token") if self._token("pad_token") else self._id("eos_token")

    bos_token, bos_token_id = _named("bos_token")
    eos_token, eos_token_id = _named("eos_token")
    unk_token, unk_token_id = _named("unk_token")
    sep_token, sep_token_id = _named("sep_token")
    cls_token, cls_token_id = _named("cls_token")
    mask_token, mask_token_id = _named("mask_token")

    @property
    def special_tokens(self) -> dict[str, str]:
        """The named special tokens the files define, e.g. {"cls": "[CLS]", "sep": "[SEP]", ...}."""
        return {k.removesuffix("_token"): str(v) for k, v in self._specials.items() if v is not None}

    @property
    def additional_special_tokens(self) -> list[str]:
        return [str(t) for t in self._extras]

    @property
    def all_special_ids(self) -> list[int]:
        """Ids of every token the backend treats as special (skipped by `decode(skip_special_tokens=True)`)."""
        return sorted(i for i, t in self.backend.get_added_tokens_decoder().items() if t.special)

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens (transformers' `vocab_size`)."""
        return self.backend.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        """Size of the vocabulary including added tokens: the number of embedding rows a model needs."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, id: int) -> str | None:
        return self.backend.id_to_token(int(id))

    def convert_ids_to_tokens(self, ids: int | Sequence[int] | torch.Tensor,
                              skip_special_tokens: bool = False) -> str | list[str]:
        if isinstance(ids, int) or (isinstance(ids, torch.Tensor) and ids.dim() == 0):
            return self.backend.id_to_token(int(ids))
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self.backend.id_to_token(i) for i in _id_list(ids) if i not in skip]

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | None | list[int | None]:
        """Ids of tokens; a token not in the vocabulary gives the unk id (None if there is no unk token)."""
        if isinstance(tokens, str):
            found = self.backend.token_to_id(tokens)
            return self.unk_token_id if found is None else found
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self.backend.num_special_tokens_to_add(pair)

    def __repr__(self) -> str:
        return (f"Tokenizer(family={self.family!r}, vocab_size={self.vocab_size}, len={len(self)}, "
                f"special_tokens={self.special_tokens}, model_max_length={self.model_max_length})")

    # ------------------------------------------------------------------------------------------ adding tokens
    def add_tokens(self, tokens: str | AddedToken | Sequence[str | AddedToken], special: bool = False) -> int:
        """Add tokens to the vocabulary (never split, matched before the model); returns how many are new.

        Resize the model's embeddings to `len(tok)` after adding.
        """
        tokens = [tokens] if isinstance(tokens, (str, AddedToken)) else list(tokens)
        before = len(self)
        if special:
            self.backend.add_special_tokens(
                [AddedToken(t, normalized=False, special=True) if isinstance(t, str) else t for t in tokens])
        else:
            self.backend.add_tokens(tokens)
        return len(self) - before

    def add_special_tokens(self, tokens: dict[str, str | AddedToken | Sequence[str | AddedToken]]) -> int:
        """Set named special tokens ({"pad_token": "[PAD]", "additional_special_tokens": [...]}), adding them to
        the vocabulary when new; returns how many are new. Keys may also be short ("pad")."""
        new = []
        for key, value in tokens.items():
            key = key if key.endswith(("_token", "_tokens")) else f"{key}_token"
            if key in ("additional_special_tokens", "extra_special_tokens"):
                values = [value] if isinstance(value, (str, AddedToken)) else list(value)
                self._extras = values
                new += values
            elif key in _SPECIAL_NAMES:
                self._specials[key] = value
                new.append(value)
            else:
                raise InputError(f"add_special_tokens: unknown key {key!r}; expected one of "
                                 f"{[*_SPECIAL_NAMES, 'additional_special_tokens']}")
        return self.add_tokens(new, special=True)

    # ------------------------------------------------------------------------------------------ encoding
    def __call__(
        self,
        texts: str | Sequence[str] | Sequence[tuple[str, str]] | Sequence[Sequence[str]],
        *,
        add_special_tokens: bool = True,
        length: int | Sequence[int] | None = None,
        pad_direction: str | None = None,
        truncate_direction: str | None = None,
        truncation: bool | int = False,
        return_attention_mask: bool = True,
        return_token_type_ids: bool | None = None,
        return_special_tokens_mask: bool = False,
        return_offsets: bool = False,
        return_length: bool = False,
        is_split_into_words: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Tokenize a text, a batch of texts or a batch of (text, pair) tuples into `[batch, seq]` tensors.

        Options (defaults in brackets):
        - `add_special_tokens` [True]: add the family's special tokens (`[CLS] A [SEP] B [SEP]`, ...).
        - `length` [None: pad to the longest sequence]: an int pads every sequence to that length; a list of
          bucket lengths pads to the smallest that fits. A longer sequence is an error unless `truncation`.
        - `pad_direction` ["right", or tokenizer_config `padding_side`]: "right" or "left".
        - `truncation` [False]: True truncates to `length` (the largest bucket), else to `model_max_length`
          (no limit when unknown); an int truncates to that many tokens. Special tokens are kept; pairs lose
          tokens from the longer sequence first (transformers' "longest_first").
        - `truncate_direction` ["right", or tokenizer_config `truncation_side`]: "right" or "left".
        - `return_attention_mask` [True], `return_token_type_ids` [None: if the family uses them (BERT,
          ALBERT)], `return_special_tokens_mask` [False], `return_offsets` [False: `offsets`, character
          start/end `[batch, seq, 2]`], `return_length` [False: `length`, tokens before padding `[batch]`].
        - `is_split_into_words` [False]: the input is already split into words: a list of words, or a batch
          of such lists (or of pairs of them).
        A GPT-2 tokenizer has no padding token: it pads with its EOS token, and warns once.
        """
        batch, pair = _batch(texts, is_split_into_words)
        pad_direction = _direction(pad_direction or self.padding_side, "pad_direction")
        truncate_direction = _direction(truncate_direction or self.truncation_side, "truncate_direction")
        n_special = self.backend.num_special_tokens_to_add(pair) if add_special_tokens else 0
        max_length = self._max_length(truncation, length, n_special)
        encodings = self._encode_batch(batch, add_special_tokens, is_split_into_words, max_length,
                                       truncate_direction, offsets=return_offsets)
        lengths = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
        target = self._target_length(int(lengths.max(initial=0)), length)
        # Padding is vectorised: `real` marks the token positions of the padded [batch, target] grid, and
        # filling it in row-major order from the concatenated encodings places every row, left or right.
        columns = np.arange(target)
        real = columns < lengths[:, None] if pad_direction == "right" else columns >= target - lengths[:, None]
        pad_id = self.pad_token_id
        if (lengths < target).any():
            if pad_id is None:
                raise InputError("sequences of different lengths need padding, but this tokenizer has neither a "
                                 "pad nor an EOS token; add one: tok.add_special_tokens({'pad_token': '[PAD]'})")
            if self._token("pad_token") is None and not self._warned_pad:
                self._warned_pad = True
                warnings.warn(f"this tokenizer has no pad token: padding with its EOS token {self.eos_token!r} "
                              f"(id {pad_id}), as Bumblebee does", stacklevel=2)

        def grid(field: str, fill: int, width: int = 1) -> torch.Tensor:
            values = chain.from_iterable(map(attrgetter(field), encodings))
            if width > 1:
                values = chain.from_iterable(values)
            flat = np.fromiter(values, dtype=np.int64, count=int(lengths.sum()) * width)
            out = np.full((len(encodings), target, width), fill, dtype=np.int64)
            out[real] = flat.reshape(-1, width)
            return torch.from_numpy(out if width > 1 else out[..., 0])

        out = {"input_ids": grid("ids", pad_id or 0)}
        if return_attention_mask:
            out["attention_mask"] = torch.from_numpy(real.astype(np.int64))
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_token_type_ids:
            out["token_type_ids"] = grid("type_ids", 0)
        if return_special_tokens_mask:
            out["special_tokens_mask"] = grid("special_tokens_mask", 1)
        if return_offsets:
            out["offsets"] = grid("offsets", 0, width=2)
        if return_length:
            out["length"] = torch.from_numpy(lengths)
        return out

    def encode(self, text: str, pair: str | None = None, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text` (and `pair`), with special tokens: transformers' `tok(text, pair)["input_ids"]`."""
        # Like transformers, an empty pair counts as no pair.
        batch, _ = _batch([(text, pair)] if pair else [text], False)
        return self._encode_batch(batch, add_special_tokens, False, None, "right")[0].ids

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False) -> list[str]:
        """Token strings of `text` (without special tokens unless asked)."""
        batch, _ = _batch([text] if pair is None else [(text, pair)], False)
        return self._encode_batch(batch, add_special_tokens, False, None, "right")[0].tokens

    def _max_length(self, truncation: bool | int, length, n_special: int) -> int | None:
        if isinstance(length, int) and not isinstance(length, bool):
            lengths = [length]
        elif length is None:
            lengths = []
        elif isinstance(length, Sequence) and length and all(isinstance(n, int) and not isinstance(n, bool)
                                                              for n in length):
            lengths = list(length)
        else:
            raise InputError(f"length must be None, an int or a non-empty list of ints, got {length!r}")
        if any(n < max(n_special, 1) for n in lengths):
            raise InputError(f"length={length!r} is too small: every sequence needs {n_special} special token(s) "
                             f"and at least one position; pass a larger length")
        if truncation is True:
            max_length = max(lengths) if lengths else self.model_max_length
        elif truncation is False or truncation is None:
            return None
        elif isinstance(truncation, int) and truncation > 0:
            max_length = truncation
        else:
            raise InputError(f"truncation must be a bool or a positive int (max tokens), got {truncation!r}")
        if max_length is not None and max_length < n_special:
            raise InputError(f"truncation to {max_length} tokens is too short for the {n_special} special tokens "
                             f"each sequence needs; pass a larger length/truncation or add_special_tokens=False")
        return max_length

    def _target_length(self, longest: int, length) -> int:
        if length is None:
            return longest
        buckets = [length] if isinstance(length, int) else sorted(length)
        for bucket in buckets:
            if bucket >= longest:
                return bucket
        raise InputError(f"a sequence has {longest} tokens, more than length={length!r} allows; pass "
                         f"truncation=True to cut it, or a larger length")

    def _encode_batch(self, batch: list, add_special_tokens: bool, pretokenized: bool, max_length: int | None,
                      direction: str, offsets: bool = True) -> list[tokenizers.Encoding]:
        state = None if max_length is None else (max_length, direction)
        try:
            with self._lock:
                if state != self._truncation:
                    if state is None:
                        self.backend.no_truncation()
                    else:
                        self.backend.enable_truncation(max_length, strategy="longest_first", direction=direction)
                    self._truncation = state
                # encode_batch_fast skips the character offsets (about 15% faster) when they are not asked for.
                encode = self.backend.encode_batch if offsets else self._encode_fast
                return encode(batch, add_special_tokens=add_special_tokens, is_pretokenized=pretokenized)
        except (TypeError, ValueError, OverflowError) as e:
            _check_texts(batch)  # raises a clear InputError for lone surrogates
            raise InputError(f"cannot tokenize the input: {e}") from None
        except Exception as e:  # tokenizers raises plain Exception for truncation errors
            raise TokenizerError(f"tokenization failed: {e}") from None

    # ------------------------------------------------------------------------------------------ chat
    @property
    def chat_template(self) -> str | None:
        """The Jinja chat template (tokenizer_config.json, chat_template.jinja or GGUF metadata), or None."""
        template = self.options.get("chat_template")
        if isinstance(template, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
            template = {t["name"]: t["template"] for t in template}.get("default")
        return template

    def apply_chat_template(self, conversation: list, *, add_generation_prompt: bool = False,
                            continue_final_message: bool | str = False, tokenize: bool = True,
                            return_dict: bool = False, chat_template: str | None = None, tools: list | None = None,
                            documents: list | None = None, tokenizer_kwargs: dict | None = None, **variables: Any):
        """A conversation (`[{"role": ..., "content": ...}, ...]`, or a list of them) as the model's prompt,
        rendered exactly as transformers' `apply_chat_template` renders it (see `bombus.chat`).

        `add_generation_prompt` ends with the assistant's turn header; `continue_final_message` leaves the
        last message open. Returns the text (`tokenize=False`), its ids without added special tokens
        (default; the template writes them), or with `return_dict=True` the model inputs as `tok(...)`
        returns them (`tokenizer_kwargs`, e.g. `{"pad_direction": "left"}`, are passed on). Other keywords
        (e.g. `enable_thinking=False`) reach the template, beside the special tokens."""
        from .chat import is_batch, render

        template = chat_template or self.chat_template
        if template is None:
            raise TokenizerError("this tokenizer has no chat template; pass chat_template=... (a Jinja string)")
        # the template sees transformers' special_tokens_map: {"bos_token": "<s>", ...}
        values = {**{k: str(v) for k, v in self._specials.items() if v is not None}, **variables}
        batch = is_batch(conversation)
        texts = [render(template, c, add_generation_prompt=add_generation_prompt, tools=tools, documents=documents,
                        continue_final_message=continue_final_message, **values)
                 for c in (conversation if batch else [conversation])]
        if return_dict:
            return self(texts if batch else texts[0], add_special_tokens=False, **(tokenizer_kwargs or {}))
        if not tokenize:
            return texts if batch else texts[0]
        ids = [self.encode(t, add_special_tokens=False) for t in texts]
        return ids if batch else ids[0]

    # ------------------------------------------------------------------------------------------ decoding
    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True,
               clean_up_tokenization_spaces: bool | None = None, errors: str = "replace") -> str:
        """Text of `ids` (a list, or a 1-D tensor). Bytes that are not valid UTF-8 (a character cut between
        tokens) follow `errors`: "replace" [default] gives U+FFFD, "ignore" drops them, "strict" raises.
        `clean_up_tokenization_spaces` [tokenizer_config, else False] removes spaces before punctuation
        (never for BPE tokenizers, as in transformers)."""
        ids = _id_list(ids)
        try:
            codecs.lookup_error(errors)
        except LookupError:
            raise InputError(f"errors={errors!r} is not a codec error handler; use 'replace', 'ignore' or "
                             f"'strict'") from None
        if errors == "replace":
            text = self.backend.decode(ids, skip_special_tokens=skip_special_tokens)
        else:
            text = self._decode_bytes(ids, skip_special_tokens, errors)
        return self._clean_up(text, clean_up_tokenization_spaces)

    def batch_decode(self, sequences: Sequence[Sequence[int]] | torch.Tensor, skip_special_tokens: bool = True,
                     clean_up_tokenization_spaces: bool | None = None, errors: str = "replace") -> list[str]:
        """`decode` of each row of a list of id lists or of a 2-D tensor."""
        if isinstance(sequences, torch.Tensor):
            if sequences.dim() != 2:
                raise InputError(f"batch_decode takes a 2-D tensor [batch, seq], got shape "
                                 f"{tuple(sequences.shape)}")
            sequences = sequences.tolist()
        rows = [_id_list(row) for row in sequences]
        if errors != "replace":
            return [self.decode(r, skip_special_tokens, clean_up_tokenization_spaces, errors) for r in rows]
        texts = self.backend.decode_batch(rows, skip_special_tokens=skip_special_tokens)
        return [self._clean_up(t, clean_up_tokenization_spaces) for t in texts]

    def _clean_up(self, text: str, clean_up: bool | None) -> str:
        clean_up = self.clean_up_tokenization_spaces if clean_up is None else clean_up
        # transformers 5 skips the clean-up for BPE models: it would eat real spaces before punctuation.
        if not clean_up or isinstance(self.backend.model, tk_models.BPE):
            return text
        for old, new in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                         (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
            text = text.replace(old, new)
        return text

    def _decode_bytes(self, ids: list[int], skip_special_tokens: bool, errors: str) -> str:
        # Only byte-level tokens can split a character; other decoders always give valid text.
        if not isinstance(self.backend.decoder, decoders.ByteLevel):
            return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        table = _byte_decoder()
        data = bytearray()
        for i in ids:
            token = None if i in skip else self.backend.id_to_token(i)
            if token is not None:  # like tokenizers: a token with a char outside the table is raw text
                data += bytes(table[c] for c in token) if all(c in table for c in token) else token.encode()
        try:
            return data.decode("utf-8", errors=errors)
        except UnicodeDecodeError as e:
            raise InputError(f"the ids decode to invalid UTF-8 ({e}); pass errors='replace' or 'ignore'") from None

    # ------------------------------------------------------------------------------------------ saving
    def save_pretrained(self, directory: str | os.PathLike) -> list[Path]:
        """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json, which bombus and
        transformers' `AutoTokenizer.from_pretrained` load back to the same tokenizer."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        data = json.loads(self.backend.to_str())
        data["truncation"] = data["padding"] = None  # call options, not part of the tokenizer
        added = {str(i): {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized, "rstrip": t.rstrip,
                          "single_word": t.single_word, "special": t.special}
                 for i, t in sorted(self.backend.get_added_tokens_decoder().items())}
        specials = {k: str(v) for k, v in self._specials.items() if v is not None}
        config = {k: v for k, v in self.options.items()
                  if k in _FAMILIES[self.family].options or k in _GENERAL_OPTIONS - set(_SPECIAL_NAMES)}
        config.pop("extra_special_tokens", None)
        config.update(specials, tokenizer_class=_FAMILIES[self.family].hf_class, added_tokens_decoder=added,
                      additional_special_tokens=self.additional_special_tokens,
                      model_max_length=self.model_max_length or int(1e30), padding_side=self.padding_side,
                      truncation_side=self.truncation_side,
                      clean_up_tokenization_spaces=self.clean_up_tokenization_spaces)
        if "model_input_names" in self.options:
            config["model_input_names"] = list(self.model_input_names)
        special_map = {**specials, "additional_special_tokens": self.additional_special_tokens}
        files = {"tokenizer.json": data, "tokenizer_config.json": config, "special_tokens_map.json": special_map}
        paths = []
        for name, content in files.items():
            path = directory / name
            tmp = path.with_suffix(".tmp")  # write then rename: never leave a half-written file
            tmp.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            tmp.replace(path)
            paths.append(path)
        return paths


# ---------------------------------------------------------------------------------------------------- helpers
def _direction(value: str, option: str) -> str:
    if value not in ("right", "left"):
        raise InputError(f"{option} must be 'right' or 'left', got {value!r}")
    return value


def _text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{where} is bytes that are not valid UTF-8 ({e}); decode it to str first") from None
    raise InputError(f"{where} must be a str, got {type(value).__name__}")


def _words(value: Any, where: str) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InputError(f"{where} must be a list of words when is_split_into_words=True, got "
                         f"{type(value).__name__}")
    return [_text(w, f"{where}[{i}]") for i, w in enumerate(value)]


def _batch(texts: Any, split: bool) -> tuple[list, bool]:
    """Normalise the input to a list for `encode_batch`, and say whether it holds pairs."""
    if isinstance(texts, (str, bytes, bytearray)) or (isinstance(texts, tuple) and len(texts) == 2 and not split
                                                       and all(isinstance(t, (str, bytes)) for t in texts)):
        texts = [texts]  # one text, or one (text, pair) tuple
    elif split and isinstance(texts, Sequence) and (not texts or isinstance(texts[0], (str, bytes))):
        texts = [texts]  # one list of words
    if not isinstance(texts, Sequence) or isinstance(texts, (str, bytes)):
        raise InputError(f"expected a str, a list of str or a list of (str, str) pairs, got "
                         f"{type(texts).__name__}")
    one = _words if split else _text
    is_pair = [isinstance(t, tuple) or (split and isinstance(t, list) and t and isinstance(t[0], (list, tuple)))
               for t in texts]
    if any(is_pair) and not all(is_pair):
        raise InputError("a batch must be all single texts or all (text, pair) tuples, not a mix")
    if texts and is_pair[0]:
        out = []
        for i, t in enumerate(texts):
            if len(t) != 2:
                raise InputError(f"texts[{i}] must be a (text, pair) tuple of two, got {len(t)} items")
            out.append((one(t[0], f"texts[{i}][0]"), one(t[1], f"texts[{i}][1]")))
        return out, True
    return [one(t, f"texts[{i}]") for i, t in enumerate(texts)], False


def _check_texts(batch: list) -> None:
    def check(text, where):
        for piece in [text] if isinstance(text, str) else text:
            try:
                piece.encode("utf-8")
            except UnicodeEncodeError as e:
                raise InputError(f"{where} holds a lone surrogate {piece[e.start]!r} at character {e.start}, "
                                 f"which is not valid Unicode text; fix the text (e.g. decode its bytes with "
                                 f"errors='replace')") from None

    for i, item in enumerate(batch):
        for j, part in enumerate(item if isinstance(item, tuple) else (item,)):
            check(part, f"texts[{i}]" + (f"[{j}]" if isinstance(item, tuple) else ""))


def _id_list(ids: Any) -> list[int]:
    if isinstance(ids, torch.Tensor):
        if ids.dim() > 1:
            raise InputError(f"decode takes a 1-D tensor of ids, got shape {tuple(ids.shape)}; use batch_decode")
        ids = ids.reshape(-1).tolist()
    elif isinstance(ids, int):
        ids = [ids]
    try:
        ids = [int(i) for i in ids]
    except (TypeError, ValueError):
        raise InputError(f"ids must be a list of ints or a 1-D tensor, got {type(ids).__name__}; use batch_decode "
                         f"for a batch") from None
    if any(i < 0 for i in ids):
        raise InputError(f"ids must be >= 0, got {min(ids)} (a -100 label or padding marker?); remove it first")
    return ids


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: printable character -> byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    unprintable = [b for b in range(256) if b not in printable]
    return {chr(b): b for b in printable} | {chr(256 + i): b for i, b in enumerate(unprintable)}
