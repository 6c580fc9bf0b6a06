"""Losses of every head, following the reference: label -100 is ignored, means over counted items."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import InputError

IGNORE = -100


def check_class_labels(labels: torch.Tensor, shape: tuple[int, ...], num_classes: int,
                       name: str = "labels", ignore: int | None = IGNORE) -> None:
    """`InputError` unless `labels` are integer class ids of `shape` in `[0, num_classes)` (or `ignore`),
    instead of cross-entropy's bare shape or index error. Values are read on CPU only (no device sync)."""
    if not isinstance(labels, torch.Tensor):
        raise InputError(f"{name} must be a torch tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise InputError(f"{name} must hold integer class ids (torch.long), got dtype {labels.dtype}")
    if tuple(labels.shape) != tuple(shape) and labels.numel() != math.prod(shape):
        raise InputError(f"{name} has shape {list(labels.shape)}, expected {list(shape)}")
    if labels.device.type != "cpu" or labels.numel() == 0:
        return
    bad = ((labels < 0) | (labels >= num_classes)) & (labels != ignore if ignore is not None else True)
    if bool(bad.any()):
        position = bad.nonzero()[0].tolist()
        raise InputError(f"{name} holds {int(labels[tuple(position)])} at position {position}; valid: 0 to "
                         f"{num_classes - 1}" + (f", or {ignore} to ignore a position" if ignore is not None else ""))


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per token (masked LM, token classification); labels `[..., seq]`."""
    check_class_labels(labels, tuple(logits.shape[:-1]), logits.shape[-1])
    return F.cross_entropy(logits.float().flatten(0, -2), labels.flatten().to(logits.device),
                           ignore_index=IGNORE)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy: logits at t predict labels at t + 1."""
    check_class_labels(labels, tuple(logits.shape[:-1]), logits.shape[-1])
    labels = F.pad(labels, (0, 1), value=IGNORE)[..., 1:]
    return token_loss(logits, labels)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, num_labels: int,
                        problem_type: str | None) -> torch.Tensor:
    """Regression (MSE), single-label (cross-entropy) or multi-label (BCE with logits). Without a
    `problem_type`, infer it as transformers does: one label -> regression, integer labels -> single."""
    if not isinstance(labels, torch.Tensor):
        raise InputError(f"labels must be a torch tensor, got {type(labels).__name__}")
    labels = labels.to(logits.device)
    if problem_type is None:
        if num_labels == 1:
            problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    if problem_type in ("regression", "multi_label_classification") and labels.numel() != logits.numel():
        raise InputError(f"labels has shape {list(labels.shape)}; {problem_type} expects {list(logits.shape)} "
                         "(one value per label)")
    if problem_type == "regression":
        if num_labels == 1:
            return F.mse_loss(logits.squeeze().float(), labels.squeeze().float())
        return F.mse_loss(logits.float(), labels.float())
    if problem_type == "single_label_classification":
        check_class_labels(labels, (logits.shape[0],), num_labels, ignore=IGNORE)
        return F.cross_entropy(logits.float().view(-1, num_labels), labels.view(-1))
    if problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
    raise InputError(f"unknown problem_type {problem_type!r}; expected 'regression', "
                     "'single_label_classification' or 'multi_label_classification'")


def span_loss(start_logits, end_logits, start_positions, end_positions) -> torch.Tensor:
    """Question answering: mean of start and end cross-entropies; out-of-range positions are ignored."""
    length = start_logits.shape[1]
    for name, positions in (("start_positions", start_positions), ("end_positions", end_positions)):
        _check_positions(positions, start_logits.shape[0], name)
    start = start_positions.view(-1).clamp(0, length).to(start_logits.device)
    end = end_positions.view(-1).clamp(0, length).to(end_logits.device)
    start_loss = F.cross_entropy(start_logits.float(), start, ignore_index=length)
    end_loss = F.cross_entropy(end_logits.float(), end, ignore_index=length)
    return (start_loss + end_loss) / 2


def _check_positions(positions, batch: int, name: str) -> None:
    """Span positions: one integer per row (out-of-range values are allowed: the loss ignores them)."""
    if not isinstance(positions, torch.Tensor):
        raise InputError(f"{name} must be a torch tensor, got {type(positions).__name__}")
    if positions.dtype.is_floating_point or positions.dtype.is_complex or positions.numel() != batch:
        raise InputError(f"{name} must hold one integer position per row: expected shape [{batch}], got "
                         f"{list(positions.shape)} of dtype {positions.dtype}")
