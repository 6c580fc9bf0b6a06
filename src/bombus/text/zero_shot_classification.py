"""Zero-shot classification: score any labels with a natural language inference (NLI) model
(Bumblebee's `Text.zero_shot_classification`).

Each label becomes a hypothesis ("This example is {label}.") paired with the text; the NLI model says how much
the text entails it. Single-label: softmax of the entailment logits over the labels. Multi-label: for each
label alone, softmax of (contradiction, entailment).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..errors import ConfigError, InputError
from .serving import Request, Serving, label_of, text_input


def candidate_list(labels: Any) -> list[str]:
    """A list of labels, or a comma-separated string of them; at least one, none empty."""
    if isinstance(labels, str):
        labels = [label.strip() for label in labels.split(",")]
    if not isinstance(labels, (list, tuple)) or not labels or not all(isinstance(x, str) and x for x in labels):
        raise InputError(f"candidate_labels must be a non-empty list of non-empty str (or 'a, b, c'), got {labels!r}")
    return list(labels)


class ZeroShotClassification(Serving):
    """See `zero_shot_classification`."""

    task = "zero_shot_classification"
    architectures = ("for_sequence_classification",)

    def __init__(self, model: torch.nn.Module, tokenizer: Any, candidate_labels: Sequence[str] | str | None = None,
                 *, hypothesis_template: str = "This example is {}.", multi_label: bool = False,
                 top_k: int | None = None, **runtime: Any):
        super().__init__(model, tokenizer, **runtime)
        names = {i: label_of(model, i).lower() for i in range(model.spec.num_labels)}
        entailment = [i for i, name in names.items() if name.startswith("entail")]
        if not entailment:
            raise ConfigError(f"zero_shot_classification needs an NLI model whose labels include 'entailment'; this "
                              f"model's labels are {[label_of(model, i) for i in names]} (e.g. use "
                              f"cross-encoder/nli-distilroberta-base)")
        self.entailment = entailment[0]
        contradiction = [i for i, name in names.items() if name.startswith("contradict")]
        # Without a "contradiction" label, transformers contrasts entailment with the first (or last) label.
        self.contradiction = contradiction[0] if contradiction else (len(names) - 1 if self.entailment == 0 else 0)
        if "{}" not in hypothesis_template:
            raise ConfigError(f"hypothesis_template must contain {{}} where the label goes, got {hypothesis_template!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ConfigError(f"top_k must be a positive int or None (all labels), got {top_k!r}")
        self.candidate_labels = None if candidate_labels is None else candidate_list(candidate_labels)
        self.hypothesis_template = hypothesis_template
        self.multi_label = bool(multi_label)
        self.top_k = top_k

    def prepare(self, item: Any) -> Request:
        labels = self.candidate_labels
        if isinstance(item, dict):
            if "text" not in item:
                raise InputError(f"a dict input needs 'text' (and optionally 'candidate_labels'), got keys {sorted(item)}")
            labels = candidate_list(item["candidate_labels"]) if "candidate_labels" in item else labels
            item = item["text"]
        text = text_input(item)
        if labels is None:
            raise InputError("no candidate_labels: give them to the serving, or per input as "
                             "{'text': ..., 'candidate_labels': [...]}")
        pairs = [(text, self.hypothesis_template.format(label)) for label in labels]
        return Request(text, self.encode(pairs), {"labels": labels})

    def finish(self, request: Request, outputs: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]) -> dict:
        logits = outputs["logits"]  # [labels, classes]
        labels = request.data["labels"]
        if self.multi_label or len(labels) == 1:
            scores = logits[:, [self.contradiction, self.entailment]].softmax(-1)[:, 1]
        else:
            scores = logits[:, self.entailment].softmax(-1)
        order = scores.argsort(descending=True, stable=True)[: self.top_k]
        return {"predictions": [{"label": labels[i], "score": float(scores[i])} for i in order.tolist()]}


def zero_shot_classification(model: torch.nn.Module, tokenizer: Any,
                             candidate_labels: Sequence[str] | str | None = None, *,
                             hypothesis_template: str = "This example is {}.", multi_label: bool = False,
                             top_k: int | None = None, **runtime: Any) -> ZeroShotClassification:
    """A serving that classifies a text into labels chosen at run time, with an NLI model.

    Input: a text (scored against `candidate_labels`), or `{"text": str, "candidate_labels": [...]}`.
    Result: `{"predictions": [{"label", "score"}, ...]}`, highest first.

    Options:
    - `candidate_labels` [None: each input gives its own]: the labels, a list or "a, b, c".
    - `hypothesis_template` ["This example is {}."]: the hypothesis each label is put into.
    - `multi_label` [False]: False makes the scores of the labels sum to 1; True scores each label on its own
      (entailment against contradiction), for texts that can have several labels.
    - `top_k` [None: every label].
    - the runtime options of `Serving` (one input is one model row per label).
    The model must be `for_sequence_classification` with an "entailment" label in `spec.id_to_label`
    (a "contradiction" label too, for multi-label); otherwise `ConfigError`.
    """
    return ZeroShotClassification(model, tokenizer, candidate_labels, hypothesis_template=hypothesis_template,
                                  multi_label=multi_label, top_k=top_k, **runtime)
