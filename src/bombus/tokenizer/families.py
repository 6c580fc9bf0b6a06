"""What transformers' tokenizer class for each family defaults to, and the options `load_tokenizer` knows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
