"""Fill mask: the most likely tokens for the one mask token of a text (Bumblebee's `Text.fill_mask`)."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import torch

from ..errors import ConfigError, InputError
from .serving import Request, Serving, text_input


class FillMask(Serving):
    """See `fill_mask`."""

    task = "fill_mask"
    architectures = ("for_masked_language_modeling",)

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, top_k: int = 5,
                 targets: Sequence[str] | str | None = None, **runtime: Any):
        super().__init__(model, tokenizer, **runtime)
        if tokenizer.mask_token_id is None:
            raise ConfigError("fill_mask needs a tokenizer with a mask token; this one has none")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"top_k must be a positive int, got {top_k!r}")
        self.top_k = top_k
        self.target_ids = None if targets is None else self._target_ids(targets)

    def _target_ids(self, targets: Sequence[str] | str) -> torch.Tensor:
        """Each target word's token id; a word that is not one token is replaced by its first token (with a
        warning), as transformers does."""
        targets = [targets] if isinstance(targets, str) else list(targets)
        ids: list[int] = []
        for target in targets:
            index = self.tokenizer.token_to_id(text_input(target, "a target"))
            if index is None:
                pieces = self.tokenizer.encode(target, add_special_tokens=False)
                if not pieces:
                    raise ConfigError(f"target {target!r} has no tokens in this vocabulary")
                index = pieces[0]
                warnings.warn(f"target {target!r} is not a single token of the vocabulary; using its first token "
                              f"{self.tokenizer.id_to_token(index)!r}", stacklevel=3)
            if index not in ids:
                ids.append(index)
        if not ids:
            raise ConfigError("targets is empty; pass at least one word, or targets=None for the whole vocabulary")
        return torch.tensor(ids)

    def prepare(self, item: Any) -> Request:
        text = text_input(item)
        rows = self.encode([text])
        mask_id = self.tokenizer.mask_token_id
        found = (rows["input_ids"][0] == mask_id).nonzero().flatten()
        if len(found) != 1:
            how = "no" if len(found) == 0 else f"{len(found)}"
            raise InputError(f"fill_mask needs exactly one mask token {self.tokenizer.mask_token!r} in the text, "
                             f"found {how}: {text!r:.120}")
        return Request(text, rows, {"position": int(found[0])})

    def finish(self, request: Request, outputs: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]) -> dict:
        position = request.data["position"]
        scores = outputs["logits"][0, position].softmax(-1)
        candidates = self.target_ids if self.target_ids is not None else torch.arange(scores.shape[0])
        values, order = scores[candidates].topk(min(self.top_k, len(candidates)))
        ids = request.rows["input_ids"][0].clone()
        predictions = []
        for score, index in zip(values.tolist(), candidates[order].tolist()):
            ids[position] = index
            predictions.append({
                "score": score,
                "token": self.tokenizer.decode([index], skip_special_tokens=False),
                "token_id": index,
                "sequence": self.tokenizer.decode(ids, skip_special_tokens=True),
            })
        return {"predictions": predictions}


def fill_mask(model: torch.nn.Module, tokenizer: Any, *, top_k: int = 5, targets: Sequence[str] | str | None = None,
              **runtime: Any) -> FillMask:
    """A serving that predicts the token hidden behind the mask token (`tokenizer.mask_token`, e.g. "[MASK]").

    Input: a text with exactly one mask token (none, or two, raise `InputError`). Result:
    `{"predictions": [{"score", "token", "token_id", "sequence"}, ...]}`, most likely first, where `token` is
    the decoded token and `sequence` the text with the mask filled in.

    Options: `top_k` [5], how many predictions; `targets` [None: the whole vocabulary], words to score
    instead (each should be one token of the vocabulary; otherwise its first token is used, with a warning);
    and the runtime options of `Serving` (`batch_size`, `sequence_length`, `truncate`, `batch_timeout_ms`).
    The model must be `for_masked_language_modeling`.
    """
    return FillMask(model, tokenizer, top_k=top_k, targets=targets, **runtime)
