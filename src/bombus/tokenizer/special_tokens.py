"""Named, extra and added tokens: read from the config files as transformers reads them, and registered
in the backend in transformers' order, so that new tokens get the same ids."""

from __future__ import annotations

from typing import Any

import tokenizers
from tokenizers import AddedToken

from .families import _FAMILIES, _SPECIAL_NAMES
from .files import _Files


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
