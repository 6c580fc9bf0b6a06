"""The `logprobs` fields of OpenAI's answers: the legacy completions shape (tokens, token_logprobs,
top_logprobs, text_offset) and the chat shape, from the engine's `TokenInfo`s; `TextOffsets` places each token
in the decoded text."""

from __future__ import annotations

from typing import Any


class TextOffsets:
    """Character offsets of tokens in the text they decode to (special tokens skipped, as in the answer's text),
    token by token: each token decodes a window of a few tokens, never the whole text (vLLM's incremental
    detokenizing). A token that ends a character begun by earlier tokens (UTF-8 bytes cut between tokens) gets
    that character's offset; `start` is where the text begins in the answer (after an echoed prompt)."""

    def __init__(self, tokenizer: Any, start: int = 0):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = self.read = 0  # ids[prefix:read]: context already counted; ids[read:]: not yet counted
        self.length = start  # where the text of ids[read:] begins
        self.pending = 0  # whole characters of ids[read:] before an unfinished one

    def add(self, tokens: list[int]) -> list[int]:
        """The offsets of `tokens`, which follow the ones added before."""
        out = []
        for token in tokens:
            out.append(self.length + self.pending)
            self.ids.append(token)
            before = self.tokenizer.decode(self.ids[self.prefix:self.read])
            after = self.tokenizer.decode(self.ids[self.prefix:])
            if len(after) > len(before) and not after.endswith("\ufffd"):  # not inside a character
                self.length += len(after) - len(before)
                self.prefix, self.read, self.pending = self.read, len(self.ids), 0
            else:
                self.pending = max(0, len(after.rstrip("\ufffd")) - len(before))
        return out


def completion_logprobs(tokens: list[Any], offsets: list[int]) -> dict[str, Any]:
    """/v1/completions' `logprobs` of `tokens` (`TokenInfo`s; an echoed prompt's first token has logprob and
    top None) at these text offsets. Alternatives that show as the same text (bytes of a cut character) keep
    the most likely one's log-probability."""
    def top(alternatives: list[tuple[str, float]]) -> dict[str, float]:
        out: dict[str, float] = {}
        for text, logprob in alternatives:  # most likely first
            out.setdefault(text, logprob)
        return out

    return {"tokens": [t.text for t in tokens], "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [top(t.top) if t.top is not None else None for t in tokens], "text_offset": offsets}


def chat_logprobs(tokens: list[Any]) -> dict[str, Any]:
    """/v1/chat/completions' `logprobs` of `tokens`."""
    def entry(text: str, logprob: float) -> dict[str, Any]:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    return {"content": [{**entry(t.text, t.logprob),
                         "top_logprobs": [entry(s, v) for s, v in (t.top or [])]} for t in tokens]}
