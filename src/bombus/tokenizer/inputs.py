"""Checks and normalisation of what callers pass to `Tokenizer`: texts, pairs, words, ids, directions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..errors import InputError


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
