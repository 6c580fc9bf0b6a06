"""Token classification: labelled spans of a text, e.g. named entities (Bumblebee's `Text.token_classification`).

Word boundaries follow transformers' token-classification pipeline, so both group a text the same way: with
a WordPiece vocabulary a token continues a word when it is a "##" piece; otherwise (byte-level BPE,
SentencePiece) when no space surrounds its start.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..errors import ConfigError
from .serving import Request, Serving, label_of, text_input

AGGREGATIONS = (None, "none", "same", "simple", "first", "average", "max")


class TokenClassification(Serving):
    """See `token_classification`."""

    task = "token_classification"
    architectures = ("for_token_classification",)

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, aggregation: str | None = None,
                 ignored_labels: Sequence[str] = ("O",), **runtime: Any):
        super().__init__(model, tokenizer, **runtime)
        if aggregation not in AGGREGATIONS:
            raise ConfigError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if isinstance(ignored_labels, str):
            raise ConfigError(f"ignored_labels must be a list of labels, got the str {ignored_labels!r}")
        self.aggregation = "simple" if aggregation == "same" else (aggregation or "none")
        self.ignored_labels = set(ignored_labels)
        # WordPiece marks word continuations ("##"): those tokenizers know where words start.
        self.word_aware = bool(getattr(tokenizer.backend.model, "continuing_subword_prefix", None))

    def prepare(self, item: Any) -> Request:
        text = text_input(item)
        rows = self.encode([text], offsets=True, special_tokens_mask=True)
        return Request(text, rows)

    def finish(self, request: Request, outputs: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]) -> dict:
        text = request.input
        rows = request.rows
        scores = outputs["logits"][0].softmax(-1)
        tokens = []
        for i, index in enumerate(rows["input_ids"][0].tolist()):
            if rows["special_tokens_mask"][0, i] or not rows["attention_mask"][0, i]:
                continue
            start, end = rows["offsets"][0, i].tolist()
            tokens.append({"scores": scores[i], "start": start, "end": end,
                           "continues": self._continues(text, index, start, end)})
        if self.aggregation in ("none", "simple"):
            entities = [self._entity(t["scores"], [t]) for t in tokens]
        else:
            entities = [self._word(group) for group in _words(tokens)]
        if self.aggregation != "none":
            entities = _group(entities)
        return {"entities": [dict(e, phrase=text[e["start"]:e["end"]]) for e in entities
                             if e["label"] not in self.ignored_labels]}

    def _continues(self, text: str, index: int, start: int, end: int) -> bool:
        """Whether the token continues the word of the token before it (transformers' rule)."""
        if index == self.tokenizer.unk_token_id:
            return False
        if self.word_aware:
            return len(self.tokenizer.id_to_token(index)) != end - start
        return start > 0 and " " not in text[start - 1:start + 1]

    def _entity(self, scores: torch.Tensor, tokens: list[dict]) -> dict:
        index = int(scores.argmax())
        return {"label": label_of(self.model, index), "score": float(scores[index]),
                "start": tokens[0]["start"], "end": tokens[-1]["end"]}

    def _word(self, tokens: list[dict]) -> dict:
        if self.aggregation == "first":
            scores = tokens[0]["scores"]
        elif self.aggregation == "max":
            scores = max(tokens, key=lambda t: float(t["scores"].max()))["scores"]
        else:  # average
            scores = torch.stack([t["scores"] for t in tokens]).mean(0)
        return self._entity(scores, tokens)


def _words(tokens: list[dict]) -> list[list[dict]]:
    words: list[list[dict]] = []
    for token in tokens:
        if words and token["continues"]:
            words[-1].append(token)
        else:
            words.append([token])
    return words


def _tag(label: str) -> tuple[str, str]:
    """("B" or "I", the entity type) of a BIO label; a label without a prefix continues its type."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _group(entities: list[dict]) -> list[dict]:
    """Merge neighbours of the same entity type unless the later one begins a new entity ("B-"); the
    merged label drops its BIO prefix and scores the mean of its parts."""
    groups: list[list[dict]] = []
    for entity in entities:
        bio, kind = _tag(entity["label"])
        if groups and bio != "B" and _tag(groups[-1][-1]["label"])[1] == kind:
            groups[-1].append(entity)
        else:
            groups.append([entity])
    return [{"label": _tag(g[0]["label"])[1], "score": sum(e["score"] for e in g) / len(g),
             "start": g[0]["start"], "end": g[-1]["end"]} for g in groups]


def token_classification(model: torch.nn.Module, tokenizer: Any, *, aggregation: str | None = None,
                         ignored_labels: Sequence[str] = ("O",), **runtime: Any) -> TokenClassification:
    """A serving that labels the tokens of a text and returns the labelled spans (entities).

    Result: `{"entities": [{"label", "score", "start", "end", "phrase"}, ...]}` in text order, where
    `start`/`end` are character offsets into the text and `phrase` is `text[start:end]`.

    Options:
    - `aggregation` [None]: how tokens become entities —
      None / "none": one entity per token;
      "same" (= "simple"): neighbouring tokens with the same entity type are merged (a "B-" label starts a new
      entity; merged labels lose their "B-"/"I-" prefix; the score is the mean);
      "first" / "average" / "max": first each word takes one label — its first token's, the one of its averaged
      scores, or its most confident token's — then words are merged as in "simple".
    - `ignored_labels` [["O"]]: labels left out of the result.
    - the runtime options of `Serving` (`batch_size`, `sequence_length`, `truncate`, `batch_timeout_ms`).
    The model must be `for_token_classification`.
    """
    return TokenClassification(model, tokenizer, aggregation=aggregation, ignored_labels=ignored_labels, **runtime)
