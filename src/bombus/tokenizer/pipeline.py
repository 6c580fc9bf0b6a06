"""A family's normalizer, pre-tokenizer, decoder and post-processor, as transformers builds them."""

from __future__ import annotations

import json

import tokenizers
from tokenizers import decoders, normalizers, pre_tokenizers, processors

from ..errors import TokenizerError


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
