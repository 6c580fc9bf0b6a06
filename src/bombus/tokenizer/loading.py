"""`load_tokenizer`: a source's files (or GGUF metadata) made into a `Tokenizer`."""

from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigError
from .families import _FAMILIES, _KNOWN_OVERRIDES, _SPECIAL_NAMES
from .files import _family, _Files
from .pipeline import _pipeline, _set_post_processor
from .special_tokens import _add_special_tokens, _special_tokens
from .tokenizer import Tokenizer
from .vocab import _from_json, _model


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
    from ..gguf import gguf_path, load_tokenizer_data

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
