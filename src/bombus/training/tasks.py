"""Training tasks: their names, the architecture each trains, the labels it needs, and its metrics."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import TrainingError
from ..layers.losses import IGNORE

# task -> the architecture that trains it (GPT-2 has no for_multiple_choice: its double heads do it).
TASKS = {
    "causal-lm": "for_causal_language_modeling",
    "masked-lm": "for_masked_language_modeling",
    "classify": "for_sequence_classification",
    "tag": "for_token_classification",
    "answer": "for_question_answering",
    "multiple-choice": "for_multiple_choice",
}
ARCHITECTURE_TASKS = {arch: task for task, arch in TASKS.items()} | {"for_double_heads": "multiple-choice"}

# batch keys that carry targets, per architecture (one of them must be present to train)
LABEL_KEYS = {
    "for_question_answering": ("start_positions", "end_positions"),
    "for_double_heads": ("mc_labels", "labels"),
}


def architecture_for(task: str, hf_classes: dict[str, str]) -> str:
    """The architecture of a family (given by its `hf_classes`) that trains `task`."""
    check_task(task)
    arch = TASKS[task]
    if arch not in hf_classes and task == "multiple-choice" and "for_double_heads" in hf_classes:
        return "for_double_heads"
    if arch not in hf_classes:
        raise TrainingError(f"task {task!r} needs architecture {arch!r}, which this model family does not have; "
                            f"it has: {', '.join(hf_classes)}")
    return arch


def check_task(task: str) -> None:
    if task not in TASKS:
        raise TrainingError(f"unknown task {task!r}; expected one of: {', '.join(TASKS)}")


def task_of(architecture: str) -> str:
    """The task a model of `architecture` trains on."""
    try:
        return ARCHITECTURE_TASKS[architecture]
    except KeyError:
        raise TrainingError(f"cannot train a model of architecture {architecture!r}: it has no head with a loss; "
                            f"load it with one of {', '.join(ARCHITECTURE_TASKS)}") from None


def total_loss(out: dict[str, Any]) -> torch.Tensor | None:
    """The loss to minimise: `loss`, plus every other `*_loss` the head returns (double heads: `mc_loss`)."""
    losses = [v for k, v in out.items() if k == "loss" or k.endswith("_loss")]
    return sum(losses[1:], losses[0]) if losses else None


class Metrics:
    """Accumulates evaluation metrics over batches; `result()` gives `loss` plus the task's own:
    causal-lm / masked-lm: `perplexity`, `accuracy` (next / masked token); classify: `accuracy` and `f1`
    (binary: of label 1; more labels: macro) or, for regression, `mse`; multi-label: `f1` (micro);
    tag: `accuracy` and `f1` (macro over labels, per token); answer: `exact_match` and `f1` (token overlap of
    the predicted span); multiple-choice: `accuracy`."""

    def __init__(self, task: str, num_labels: int, problem_type: str | None = None):
        self.task, self.num_labels, self.problem_type = task, num_labels, problem_type
        self.loss_sum, self.loss_count = 0.0, 0
        self.correct, self.total = 0, 0
        self.confusion = torch.zeros(max(num_labels, 2), max(num_labels, 2), dtype=torch.long)
        self.tp = self.fp = self.fn = 0
        self.f1_sum = 0.0
        self.squared_error = 0.0
        self.kind = "labels"  # classify: "regression" or "multi_label" once seen
        self.span_sums, self.span_counts = [0.0, 0.0], [0, 0]

    def update(self, batch: dict[str, torch.Tensor], out: dict[str, Any]) -> None:
        task = self.task
        if task in ("causal-lm", "masked-lm") and "logits" in out and "labels" in batch:
            self._tokens(out["logits"], batch["labels"], shift=task == "causal-lm")
            return
        if task == "tag" and "labels" in batch:  # a mean over tokens, however the rows are batched
            labels = batch["labels"].reshape(-1)
            logits = out["logits"].float().flatten(0, -2)
            keep = labels != IGNORE
            self.loss_sum += float(F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum"))
            self.loss_count += int(keep.sum())
            self._labels(logits.argmax(-1)[keep], labels[keep])
            return
        if task == "answer" and "start_positions" in batch:
            self._spans(out["start_logits"], out["end_logits"], batch["start_positions"], batch["end_positions"])
            return
        loss = total_loss(out)
        n = _batch_size(batch)
        if loss is not None:
            self.loss_sum += float(loss) * n
            self.loss_count += n
        if task == "classify" and "labels" in batch:
            self._classify(out["logits"].float(), batch["labels"])
        elif task == "multiple-choice":
            logits = out.get("mc_logits", out.get("logits"))
            labels = batch.get("mc_labels", batch.get("labels"))
            if logits is not None and labels is not None:
                self.correct += int((logits.argmax(-1) == labels.view(-1)).sum())
                self.total += labels.numel()

    def _tokens(self, logits: torch.Tensor, labels: torch.Tensor, shift: bool) -> None:
        if shift:
            labels = F.pad(labels, (0, 1), value=IGNORE)[..., 1:]
        logits, labels = logits.float().flatten(0, -2), labels.flatten()
        keep = labels != IGNORE
        self.loss_sum += float(F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum"))
        self.loss_count += int(keep.sum())
        self.correct += int((logits.argmax(-1)[keep] == labels[keep]).sum())
        self.total += int(keep.sum())

    def _classify(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        regression = self.problem_type == "regression" or (self.problem_type is None and self.num_labels == 1)
        if regression:
            self.kind = "regression"
            self.squared_error += float(((logits.view(labels.shape) - labels.float()) ** 2).sum())
            self.total += labels.numel()
        elif self.problem_type == "multi_label_classification" or labels.is_floating_point():
            self.kind = "multi_label"
            predicted, gold = logits > 0, labels > 0.5
            self.tp += int((predicted & gold).sum())
            self.fp += int((predicted & ~gold).sum())
            self.fn += int((~predicted & gold).sum())
            self.correct += int((predicted == gold).all(-1).sum())
            self.total += labels.shape[0]
        else:
            self._labels(logits.argmax(-1).view(-1), labels.view(-1))

    def _labels(self, predicted: torch.Tensor, gold: torch.Tensor) -> None:
        self.correct += int((predicted == gold).sum())
        self.total += gold.numel()
        size = self.confusion.shape[0]
        index = gold.clamp(0, size - 1) * size + predicted.clamp(0, size - 1)
        self.confusion += torch.bincount(index.cpu(), minlength=size * size).view(size, size)

    def _spans(self, start_logits, end_logits, start, end) -> None:
        start, end = start.view(-1), end.view(-1)
        length = start_logits.shape[-1]
        for logits, gold, i in ((start_logits, start, 0), (end_logits, end, 1)):  # as span_loss, summed
            gold = gold.clamp(0, length)
            self.span_sums[i] += float(F.cross_entropy(logits.float(), gold, ignore_index=length, reduction="sum"))
            self.span_counts[i] += int((gold != length).sum())
        pred_start, pred_end = start_logits.argmax(-1), end_logits.argmax(-1)
        for ps, pe, gs, ge in zip(pred_start.tolist(), pred_end.tolist(), start.tolist(), end.tolist()):
            self.correct += int(ps == gs and pe == ge)
            overlap = max(0, min(pe, ge) - max(ps, gs) + 1)
            predicted, gold = max(0, pe - ps + 1), ge - gs + 1
            self.f1_sum += 0.0 if overlap == 0 else 2 * overlap / (predicted + gold)
            self.total += 1

    def result(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.loss_count:
            out["loss"] = self.loss_sum / self.loss_count
        task = self.task
        if task in ("causal-lm", "masked-lm"):
            if "loss" in out:
                out["perplexity"] = math.exp(min(out["loss"], 700.0))
            if self.total:
                out["accuracy"] = self.correct / self.total
        elif task == "answer" and self.total:
            if all(self.span_counts):
                out["loss"] = sum(s / c for s, c in zip(self.span_sums, self.span_counts)) / 2
            out["exact_match"] = self.correct / self.total
            out["f1"] = self.f1_sum / self.total
        elif self.kind == "regression" and self.total:
            out["mse"] = self.squared_error / self.total
        elif self.kind == "multi_label" and self.total:
            out["accuracy"] = self.correct / self.total  # every label of the row right
            out["f1"] = 2 * self.tp / max(2 * self.tp + self.fp + self.fn, 1)
        elif self.total:
            out["accuracy"] = self.correct / self.total
            if task in ("classify", "tag"):
                out["f1"] = self._f1()
        return out

    def _f1(self) -> float:
        c = self.confusion.double()
        tp, predicted, gold = c.diag(), c.sum(0), c.sum(1)
        f1 = torch.where(predicted + gold > 0, 2 * tp / (predicted + gold).clamp(min=1), torch.zeros_like(tp))
        if self.task == "classify" and self.num_labels == 2:
            return float(f1[1])  # binary: F1 of the positive class
        present = (predicted + gold) > 0
        return float(f1[present].mean()) if present.any() else 0.0


def _batch_size(batch: dict[str, torch.Tensor]) -> int:
    for key in ("labels", "mc_labels", "start_positions", "input_ids", "input_embeddings"):
        if key in batch and isinstance(batch[key], torch.Tensor):
            return int(batch[key].shape[0])
    return 1
