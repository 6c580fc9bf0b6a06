"""Question answering: the span of a context that answers a question (Bumblebee's `Text.question_answering`),
for contexts of any length.

A context longer than the model's window is cut into overlapping windows (`doc_stride` tokens of overlap),
each holding the whole question; every window is scored and the best spans of all windows compete. A span's
score is P(start) * P(end), the softmax of the start and end logits over the window's context tokens.
"""

from __future__ import annotations

from typing import Any

import tokenizers
import torch

from ..errors import ConfigError, InputError
from .serving import Request, Serving


def question_and_context(item: Any) -> tuple[str, str]:
    """`{"question", "context"}` or `(question, context)`, both non-empty str."""
    if isinstance(item, dict):
        missing = {"question", "context"} - set(item)
        if missing:
            raise InputError(f"a question answering input needs 'question' and 'context', missing {sorted(missing)}")
        item = (item["question"], item["context"])
    if not (isinstance(item, tuple) and len(item) == 2 and all(isinstance(t, str) for t in item)):
        raise InputError(f"a question answering input is {{'question': str, 'context': str}} or a (question, "
                         f"context) tuple, got {type(item).__name__}: {item!r:.80}")
    for name, value in zip(("question", "context"), item):
        if not value.strip():
            raise InputError(f"the {name} is empty; question answering needs both a question and a context")
    return item


class QuestionAnswering(Serving):
    """See `question_answering`."""

    task = "question_answering"
    architectures = ("for_question_answering",)
    outputs = ("start_logits", "end_logits")

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, top_k: int = 1, max_answer_length: int = 15,
                 doc_stride: int = 128, **runtime: Any):
        super().__init__(model, tokenizer, **runtime)
        for name, value, low in (("top_k", top_k, 1), ("max_answer_length", max_answer_length, 1),
                                 ("doc_stride", doc_stride, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an int >= {low}, got {value!r}")
        if self.max_length is None:
            raise ConfigError("question_answering needs a window length: pass sequence_length=<tokens>")
        self.top_k, self.max_answer_length, self.doc_stride = top_k, max_answer_length, doc_stride
        # A private copy of the tokenizer's backend: windows are cut on its Encodings, and the shared
        # tokenizer's truncation settings (changed by other callers) must not apply to them.
        self.backend = tokenizers.Tokenizer.from_str(tokenizer.backend.to_str())
        self.backend.no_truncation()
        self.backend.no_padding()
        self.num_special = self.backend.num_special_tokens_to_add(True)

    def prepare(self, item: Any) -> Request:
        question, context = question_and_context(item)
        q = self.backend.encode(question, add_special_tokens=False)
        c = self.backend.encode(context, add_special_tokens=False)
        room = self.max_length - len(q.ids) - self.num_special
        if room < 1:
            raise InputError(f"the question has {len(q.ids)} tokens: with the {self.num_special} special tokens it "
                             f"leaves no room for the context in a window of {self.max_length} tokens "
                             f"({self._limit_source()}); shorten the question")
        if not c.ids:
            raise InputError(f"the context {context!r:.60} has no tokens")
        # The overlap must leave each window some new context; at most half a window, like transformers.
        c.truncate(room, stride=min(self.doc_stride, room // 2))
        windows = [self.backend.post_process(q, part, add_special_tokens=True) for part in [c, *c.overflowing]]
        width = max(len(w.ids) for w in windows)

        def grid(values, fill=0):
            return torch.tensor([list(v) + [fill] * (width - len(v)) for v in values])

        rows = {"input_ids": grid([w.ids for w in windows], self.tokenizer.pad_token_id or 0),
                "attention_mask": grid([w.attention_mask for w in windows])}
        if "token_type_ids" in self.tokenizer.model_input_names:
            rows["token_type_ids"] = grid([w.type_ids for w in windows])
        # Candidates for the answer: context tokens only (not the question, not special tokens or padding).
        in_context = grid([[s == 1 for s in w.sequence_ids] for w in windows], False)
        offsets = [w.offsets + [(0, 0)] * (width - len(w.ids)) for w in windows]
        return Request(item, rows, {"context": context, "in_context": in_context, "offsets": offsets})

    def finish(self, request: Request, outputs: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]) -> dict:
        context, in_context, offsets = (request.data[k] for k in ("context", "in_context", "offsets"))
        width = in_context.shape[1]
        start = _masked_softmax(outputs["start_logits"][:, :width], in_context)
        end = _masked_softmax(outputs["end_logits"][:, :width], in_context)
        # [windows, start, end]: spans that end at or after their start and are not too long.
        spans = start[:, :, None] * end[:, None, :]
        spans = spans.triu().tril(self.max_answer_length - 1)
        best: dict[tuple[int, int], float] = {}
        flat = spans.flatten()
        # Overlapping windows can propose the same span: take enough candidates to fill top_k after merging.
        for index in flat.topk(min(flat.numel(), self.top_k * len(offsets))).indices.tolist():
            score = float(flat[index])
            if score <= 0:
                break
            w, rest = divmod(index, width * width)
            s, e = divmod(rest, width)
            char_start, char_end = _strip(context, offsets[w][s][0], offsets[w][e][1])
            if best.get((char_start, char_end), -1.0) < score:
                best[(char_start, char_end)] = score
        ranked = sorted(best.items(), key=lambda kv: -kv[1])[: self.top_k]
        return {"results": [{"text": context[s:e], "start": s, "end": e, "score": score}
                            for (s, e), score in ranked]}


def _masked_softmax(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return logits.masked_fill(~keep, float("-inf")).softmax(-1)


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    """Offsets without the surrounding whitespace that byte-level tokens carry (" Paris" -> "Paris")."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def question_answering(model: torch.nn.Module, tokenizer: Any, *, top_k: int = 1, max_answer_length: int = 15,
                       doc_stride: int = 128, **runtime: Any) -> QuestionAnswering:
    """A serving that finds the answer to a question in a context.

    Input: `{"question": str, "context": str}` or a `(question, context)` tuple (empty ones raise
    `InputError`). Result: `{"results": [{"text", "start", "end", "score"}, ...]}`, best first, where
    `start`/`end` are character offsets into the context (`text == context[start:end]`, without surrounding
    spaces) and `score` is P(start) * P(end) within the window the span was found in.

    Options:
    - `top_k` [1]: how many answers (distinct spans).
    - `max_answer_length` [15]: the longest answer, in tokens.
    - `doc_stride` [128]: a context longer than the window (the model's `max_positions`, or the largest
      `sequence_length`) is split into windows that overlap by this many tokens (at most half a window);
      every window is scored. `truncate` does not apply: long contexts are always windowed.
    - the runtime options of `Serving` (`batch_size` counts inputs, and windows per model call).
    The model must be `for_question_answering` (every family that has the head, GPT-2 included).
    """
    return QuestionAnswering(model, tokenizer, top_k=top_k, max_answer_length=max_answer_length,
                             doc_stride=doc_stride, **runtime)
