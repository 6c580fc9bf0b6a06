"""Multiple choice: which of several candidate answers best follows a prompt (transformers'
`...ForMultipleChoice` heads; GPT-2's double heads model too)."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError, InputError
from .serving import Request, Serving

DOUBLE_HEADS = "for_double_heads"


def prompt_and_choices(item: Any) -> tuple[str, list[str]]:
    """`{"prompt" (or "question"), "choices"}` or `(prompt, [choices])`."""
    if isinstance(item, dict):
        prompt = item.get("prompt", item.get("question"))
        if prompt is None or "choices" not in item:
            raise InputError(f"a multiple choice input needs 'prompt' (or 'question') and 'choices', got keys "
                             f"{sorted(item)}")
        item = (prompt, item["choices"])
    if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
            and isinstance(item[1], (list, tuple))):
        raise InputError(f"a multiple choice input is {{'prompt': str, 'choices': [str, ...]}} or a (prompt, "
                         f"[choices]) tuple, got {type(item).__name__}: {item!r:.80}")
    prompt, choices = item
    if not choices or not all(isinstance(c, str) for c in choices):
        raise InputError(f"choices must be a non-empty list of str, got {choices!r:.80}")
    return prompt, list(choices)


class MultipleChoice(Serving):
    """See `multiple_choice`."""

    task = "multiple_choice"
    architectures = ("for_multiple_choice", DOUBLE_HEADS)

    def __init__(self, model: torch.nn.Module, tokenizer: Any, **runtime: Any):
        super().__init__(model, tokenizer, **runtime)
        if model.architecture == DOUBLE_HEADS and model.spec.summary_type != "cls_index":
            # Other summaries ("last", "mean") would read the padding of shorter choices.
            raise ConfigError(f"this double heads model summarises a choice with summary_type="
                              f"{model.spec.summary_type!r}; multiple_choice needs 'cls_index'")
        self.outputs = ("mc_logits",) if model.architecture == DOUBLE_HEADS else ("logits",)
        # Tokenizers without separators (GPT-2) would glue prompt and choice: join them with a space instead.
        self.as_pairs = tokenizer.num_special_tokens_to_add(True) > 0

    def prepare(self, item: Any) -> Request:
        prompt, choices = prompt_and_choices(item)
        texts = [(prompt, c) for c in choices] if self.as_pairs else [f"{prompt} {c}" for c in choices]
        return Request(item, self.encode(texts, what="a prompt with a choice"), {"choices": choices})

    def run(self, requests: list[Request]) -> list[Any]:
        # The heads take [batch, choices, seq]: requests with the same number of choices run together.
        results: list[Any] = [None] * len(requests)
        groups: dict[int, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.num_rows, []).append(i)
        for choices, members in groups.items():
            inputs, _ = self.collate([requests[i] for i in members])
            per_call = max(1, self.batch_size // choices)  # inputs per model call: at most batch_size rows
            scores = []
            for start in range(0, len(members), per_call):
                rows = slice(start * choices, (start + per_call) * choices)
                scores.append(self._scores({k: v[rows] for k, v in inputs.items()}, choices))
            for i, row in zip(members, torch.cat(scores)):
                results[i] = self._result(requests[i], row)
        return results

    def _scores(self, inputs: dict[str, torch.Tensor], choices: int) -> torch.Tensor:
        device = next(self.model.parameters()).device
        names = ("input_ids", "attention_mask", "token_type_ids")
        x = {k: inputs[k].view(-1, choices, inputs[k].shape[-1]).to(device) for k in names if k in inputs}
        if self.model.architecture == DOUBLE_HEADS:
            # The double heads classify each choice at its last real token.
            x["mc_token_ids"] = x["attention_mask"].sum(-1) - 1
        out = self.model(**x)
        return out[self.outputs[0]].float().cpu()  # [batch, choices]

    def _result(self, request: Request, logits: torch.Tensor) -> dict:
        scores = logits.softmax(-1)
        order = scores.argsort(descending=True, stable=True).tolist()
        choices = request.data["choices"]
        return {"predictions": [{"choice": choices[i], "index": i, "score": float(scores[i])} for i in order]}


def multiple_choice(model: torch.nn.Module, tokenizer: Any, **runtime: Any) -> MultipleChoice:
    """A serving that picks the best of several candidate answers to a prompt.

    Input: `{"prompt": str, "choices": [str, ...]}` (or "question" for "prompt"), or `(prompt, [choices])`.
    Result: `{"predictions": [{"choice", "index", "score"}, ...]}`, best first, with the choice's index in the
    input and its softmax score over the choices.

    Each choice is encoded with the prompt as a text pair (joined by a space for tokenizers with no separator
    tokens, such as GPT-2's). The model must be `for_multiple_choice`, or GPT-2 `for_double_heads` (scored at
    each choice's last token). Runtime options of `Serving` apply (`batch_size` counts inputs, and rows per
    model call where choices allow).
    """
    return MultipleChoice(model, tokenizer, **runtime)
