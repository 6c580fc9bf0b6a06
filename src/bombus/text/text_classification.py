"""Text classification: labels with scores for a text or a text pair (Bumblebee's `Text.text_classification`)."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError, InputError
from .serving import Request, Serving, label_of

SCORES_FUNCTIONS = ("softmax", "sigmoid", "none")


def text_or_pair(item: Any) -> str | tuple[str, str]:
    """A text, or a pair given as a `(text, text_pair)` tuple or a `{"text", "text_pair"}` dict."""
    if isinstance(item, dict):
        if "text" not in item:
            raise InputError(f"a dict input needs a 'text' key (and optionally 'text_pair'), got keys {sorted(item)}")
        item = (item["text"], item["text_pair"]) if item.get("text_pair") is not None else item["text"]
    if isinstance(item, tuple):
        if len(item) != 2 or not all(isinstance(t, str) for t in item):
            raise InputError(f"a pair input must be a tuple of two str, got {item!r:.80}")
        return item
    if not isinstance(item, str):
        raise InputError(f"the input must be a str, a (text, text_pair) tuple or a {{'text', 'text_pair'}} dict, "
                         f"got {type(item).__name__}")
    return item


def scores_of(logits: torch.Tensor, function: str) -> torch.Tensor:
    if function == "softmax":
        return logits.softmax(-1)
    if function == "sigmoid":
        return logits.sigmoid()
    return logits


class TextClassification(Serving):
    """See `text_classification`."""

    task = "text_classification"
    architectures = ("for_sequence_classification",)

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, top_k: int | None = 5,
                 scores_function: str | None = None, **runtime: Any):
        super().__init__(model, tokenizer, **runtime)
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ConfigError(f"top_k must be a positive int or None (all labels), got {top_k!r}")
        if scores_function is None:
            scores_function = default_scores_function(model.spec)
        if scores_function not in SCORES_FUNCTIONS:
            raise ConfigError(f"scores_function must be one of {SCORES_FUNCTIONS}, got {scores_function!r}")
        self.top_k = top_k
        self.scores_function = scores_function

    def prepare(self, item: Any) -> Request:
        text = text_or_pair(item)
        return Request(text, self.encode([text]))

    def finish(self, request: Request, outputs: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]) -> dict:
        scores = scores_of(outputs["logits"][0], self.scores_function)
        order = scores.argsort(descending=True, stable=True)[: self.top_k]
        return {"predictions": [{"label": label_of(self.model, i), "score": float(scores[i])} for i in order.tolist()]}


def default_scores_function(spec: Any) -> str:
    """transformers' rule: none for regression, sigmoid for multi-label or a single label, else softmax."""
    if spec.problem_type == "regression":
        return "none"
    if spec.problem_type == "multi_label_classification" or spec.num_labels == 1:
        return "sigmoid"
    return "softmax"


def text_classification(model: torch.nn.Module, tokenizer: Any, *, top_k: int | None = 5,
                        scores_function: str | None = None, **runtime: Any) -> TextClassification:
    """A serving that classifies a text, or a text pair (`(text, text_pair)` or `{"text", "text_pair"}`).

    Result: `{"predictions": [{"label", "score"}, ...]}`, highest score first. Labels come from the model's
    `spec.id_to_label`, else "LABEL_<i>".

    Options: `top_k` [5; None for every label]; `scores_function` ["softmax", "sigmoid" or "none"; default
    as transformers: "none" for a regression model, "sigmoid" for a multi-label or one-label model,
    "softmax" otherwise]; and the runtime options of `Serving` (`batch_size`, `sequence_length`,
    `truncate`, `batch_timeout_ms`). The model must be `for_sequence_classification`.
    """
    return TextClassification(model, tokenizer, top_k=top_k, scores_function=scores_function, **runtime)
