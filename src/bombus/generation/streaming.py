"""Token -> text streaming.

`generate(..., streamer=s)` calls `s.put(token_ids)` with the prompt first, then with the new token(s) of
each step, and `s.end()` when done — transformers' streamer protocol, so its streamers work here too.
`TextStreamer` turns those ids into text and releases it only where it cannot change any more: at a newline,
after a CJK character, and otherwise up to the last space (a word may still grow, or a byte-level token may
hold half a UTF-8 character). `stream(...)` is the same thing as an iterator of text chunks.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Any, Protocol

import torch


class Streamer(Protocol):
    """What `generate` calls: `put` with a LongTensor of ids ([T] or [1, T], or [B] per step), then `end`."""

    def put(self, value: torch.Tensor) -> None: ...

    def end(self) -> None: ...


class TextStreamer:
    """Decodes streamed ids and hands finished text to `on_finalized_text` (which prints; override it).

    Args:
        tokenizer: anything with `decode(list[int], **decode_kwargs) -> str` (a bombus or transformers tokenizer).
        skip_prompt: drop the first `put` (the prompt). Default False, as transformers.
        **decode_kwargs: passed to `tokenizer.decode` (e.g. `skip_special_tokens=True`).

    Batch size 1 only: a streamer of several rows would interleave their text.
    """

    def __init__(self, tokenizer: Any, skip_prompt: bool = False, **decode_kwargs: Any):
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        self.decode_kwargs = decode_kwargs
        self.token_cache: list[int] = []
        self.print_len = 0
        self.next_tokens_are_prompt = True

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, **self.decode_kwargs))

    def put(self, value: torch.Tensor) -> None:
        if value.dim() > 1 and value.shape[0] > 1:
            raise ValueError("TextStreamer streams a single row; generate with batch size 1")
        if value.dim() > 1:
            value = value[0]
        if self.skip_prompt and self.next_tokens_are_prompt:
            self.next_tokens_are_prompt = False
            return
        self.next_tokens_are_prompt = False
        self.token_cache.extend(value.reshape(-1).tolist())
        text = self._decode(self.token_cache)
        if text.endswith("\n"):
            # Flush, but keep the last token as context so the next line keeps its leading space.
            printable = text[self.print_len :]
            self.token_cache = self.token_cache[-1:]
            self.print_len = len(self._decode(self.token_cache))
        elif text and _is_cjk(ord(text[-1])):
            printable = text[self.print_len :]
            self.print_len += len(printable)
        elif all(ch.isspace() or unicodedata.category(ch)[0] in "LMN" for ch in text[self.print_len :]):
            # Letters, marks, digits and spaces cannot turn into something else: release them now, so text
            # without spaces (long words, Thai) streams too. Symbols wait: they may be half a character.
            printable = text[self.print_len :]
            self.print_len += len(printable)
        else:
            printable = text[self.print_len : text.rfind(" ") + 1]
            self.print_len += len(printable)
        self.on_finalized_text(printable)

    def end(self) -> None:
        """Flush what is left."""
        if self.token_cache:
            printable = self._decode(self.token_cache)[self.print_len :]
        else:
            printable = ""
        self.token_cache = []
        self.print_len = 0
        self.next_tokens_are_prompt = True
        self.on_finalized_text(printable, stream_end=True)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        """Print `text`; a newline ends the stream."""
        print(text, flush=True, end="" if not stream_end else None)


class _Collect(TextStreamer):
    """A `TextStreamer` that keeps its chunks for `stream` to yield."""

    def __init__(self, tokenizer: Any, skip_prompt: bool, **decode_kwargs: Any):
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.chunks: list[str] = []

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.chunks.append(text)


def stream(
    model: torch.nn.Module,
    tokenizer: Any,
    prompt_or_inputs: str | list[int] | torch.Tensor | dict[str, Any],
    *,
    skip_prompt: bool = True,
    decode_kwargs: dict[str, Any] | None = None,
    **fields: Any,
) -> Iterator[str]:
    """Generate and yield the text as it is produced, in chunks flushed like `TextStreamer`'s.

    Args:
        model: a causal LM (`model.architecture == "for_causal_language_modeling"`).
        tokenizer: encodes a `str` prompt (`encode(text) -> list[int]`) and decodes the output (`decode`).
        prompt_or_inputs: a string, a list of ids, a [T] / [1, T] LongTensor, or a dict with `input_ids` (and
            `attention_mask`) for one row.
        skip_prompt: yield only the new text (default True).
        decode_kwargs: passed to `tokenizer.decode` (default: the tokenizer's own defaults).
        **fields: `generate` options (`max_new_tokens`, `do_sample`, `stop_strings`, ...). Beam search cannot
            stream.

    The chunks joined equal `tokenizer.decode(new_ids, **decode_kwargs)` of the final ids (the prompt's text
    first when `skip_prompt=False`). Generation runs lazily, one step per chunk requested: stop iterating to stop.
    """
    from .search import prepare_inputs, steps

    input_ids, attention_mask = prepare_inputs(prompt_or_inputs, tokenizer)
    if input_ids.shape[0] != 1:
        raise ValueError(f"stream() takes one prompt, got a batch of {input_ids.shape[0]}")
    collector = _Collect(tokenizer, skip_prompt, **(decode_kwargs or {}))
    fields.setdefault("tokenizer", tokenizer)
    for tokens in steps(model, input_ids, attention_mask=attention_mask, **fields):
        collector.put(tokens)
        yield from collector.chunks
        collector.chunks.clear()
    collector.end()
    yield from collector.chunks


def _is_cjk(cp: int) -> bool:
    """A code point in the CJK Unified Ideographs blocks (Hangul, Hiragana and Katakana are not: they use spaces)."""
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )
