"""Losses of every head, following the reference: label -100 is ignored, means over counted items."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError

IGNORE = -100


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per token (masked LM, token classification); labels `[..., seq]`."""
    return F.cross_entropy(logits.float().flatten(0, -2), labels.flatten().to(logits.device),
                           ignore_index=IGNORE)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy: logits at t predict labels at t + 1."""
    labels = F.pad(labels, (0, 1), value=IGNORE)[..., 1:]
    return token_loss(logits, labels)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, num_labels: int,
                        problem_type: str | None) -> torch.Tensor:
    """Regression (MSE), single-label (cross-entropy) or multi-label (BCE with logits). Without a
    `problem_type`, infer it as transformers does: one label -> regression, integer labels -> single."""
    labels = labels.to(logits.device)
    if problem_type is None:
        if num_labels == 1:
            problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    if problem_type == "regression":
        if num_labels == 1:
            return F.mse_loss(logits.squeeze().float(), labels.squeeze().float())
        return F.mse_loss(logits.float(), labels.float())
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits.float().view(-1, num_labels), labels.view(-1))
    if problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
    raise InputError(f"unknown problem_type {problem_type!r}; expected 'regression', "
                     "'single_label_classification' or 'multi_label_classification'")


def span_loss(start_logits, end_logits, start_positions, end_positions) -> torch.Tensor:
    """Question answering: mean of start and end cross-entropies; out-of-range positions are ignored."""
    length = start_logits.shape[1]
    start = start_positions.view(-1).clamp(0, length).to(start_logits.device)
    end = end_positions.view(-1).clamp(0, length).to(end_logits.device)
    start_loss = F.cross_entropy(start_logits.float(), start, ignore_index=length)
    end_loss = F.cross_entropy(end_logits.float(), end, ignore_index=length)
    return (start_loss + end_loss) / 2
