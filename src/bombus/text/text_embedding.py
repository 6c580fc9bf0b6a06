"""Text embedding: one vector per text (Bumblebee's `Text.text_embedding`), and semantic search over a corpus
by cosine similarity of those vectors.

`embedding_options(source)` reads the pooling and normalisation a sentence-transformers checkpoint declares
(`modules.json`, `1_Pooling/config.json`), so `text_embedding(model, tok, **embedding_options(source))`
embeds as sentence-transformers does.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import torch

from ..errors import ConfigError, InputError
from ..hub import resolve_file
from .serving import Request, Serving, text_input

POOLINGS = ("mean", "cls", "last_token", None)
OUTPUT_ATTRIBUTES = ("hidden_state", "pooled_state")


class TextEmbedding(Serving):
    """See `text_embedding`. Besides the JSON-friendly call, `embed(texts)` returns a `[n, hidden]` tensor."""

    task = "text_embedding"

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, output_attribute: str = "hidden_state",
                 pooling: str | None = "mean", normalize: bool = False, **runtime: Any):
        super().__init__(model, tokenizer, **runtime)
        if output_attribute not in OUTPUT_ATTRIBUTES:
            raise ConfigError(f"output_attribute must be one of {OUTPUT_ATTRIBUTES}, got {output_attribute!r}")
        pooling = {"none": None, "last": "last_token"}.get(pooling, pooling)
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if output_attribute == "pooled_state" and pooling is not None:
            raise ConfigError("output_attribute='pooled_state' is already one vector per text: pass pooling=None")
        self.output_attribute, self.pooling, self.normalize = output_attribute, pooling, bool(normalize)
        self.outputs = (output_attribute,)

    def __call__(self, inputs: str | list[str]) -> Any:
        """`{"embedding": [floats]}` per text (per-token lists of floats when `pooling=None` on hidden_state)."""
        results = super().__call__(inputs)
        as_json = lambda r: {"embedding": r["embedding"].tolist()}
        return [as_json(r) for r in results] if isinstance(inputs, list) else as_json(results)

    def embed(self, texts: str | Sequence[str]) -> torch.Tensor:
        """The embeddings of `texts` as one `[n, hidden]` float tensor (`[hidden]` for one str). Needs pooling
        (or pooled_state): token-level embeddings differ in length."""
        if self.output_attribute == "hidden_state" and self.pooling is None:
            raise ConfigError("embed() returns one vector per text; this serving has pooling=None")
        single = isinstance(texts, str)
        results = Serving.__call__(self, [texts] if single else list(texts))
        if not results:
            return torch.empty(0, 0)
        stacked = torch.stack([r["embedding"] for r in results])
        return stacked[0] if single else stacked

    def prepare(self, item: Any) -> Request:
        text = text_input(item)
        return Request(text, self.encode([text]))

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # Pool the whole batch at once (in the worker), before outputs are split per request.
        out = super().forward(inputs)[self.output_attribute]
        if self.output_attribute == "pooled_state":
            return {"embedding": self._normalize(out)}
        mask = inputs["attention_mask"].to(out.dtype)  # [rows, seq]
        if self.pooling is None:
            return {"embedding": self._normalize(out), "mask": mask}
        if self.pooling == "mean":
            pooled = (out * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
        elif self.pooling == "cls":
            pooled = out[:, 0]
        else:  # last_token: rows are right-padded
            last = mask.sum(1).long().clamp(min=1) - 1
            pooled = out[torch.arange(out.shape[0]), last]
        return {"embedding": self._normalize(pooled)}

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x, dim=-1) if self.normalize else x

    def finish(self, request: Request, outputs: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]) -> dict:
        embedding = outputs["embedding"][0]
        if "mask" in outputs:  # token-level: the real tokens only
            embedding = embedding[outputs["mask"][0].bool()]
        return {"embedding": embedding}


def text_embedding(model: torch.nn.Module, tokenizer: Any, *, output_attribute: str = "hidden_state",
                   pooling: str | None = "mean", normalize: bool = False, **runtime: Any) -> TextEmbedding:
    """A serving that embeds texts: `{"embedding": [floats]}` per text.

    Options:
    - `output_attribute` ["hidden_state"]: the model output to embed with, "hidden_state" (per token) or
      "pooled_state" (BERT-style pooler output, already one vector per text).
    - `pooling` ["mean"]: how the hidden state becomes one vector: "mean" (over the real tokens), "cls" (the
      first token), "last_token" (the last real token: for decoder models), or None (no pooling: one vector
      per token, `{"embedding": [[floats], ...]}`). Must be None with "pooled_state".
    - `normalize` [False]: scale each vector to unit length (cosine similarity is then a dot product).
    - the runtime options of `Serving` (`batch_size`, `sequence_length`, `truncate`, `batch_timeout_ms`).
    Any architecture works (every model outputs `hidden_state`). For a sentence-transformers checkpoint,
    `**embedding_options(source)` gives its own pooling and normalisation.
    """
    return TextEmbedding(model, tokenizer, output_attribute=output_attribute, pooling=pooling, normalize=normalize,
                         **runtime)


def embedding_options(source: str | os.PathLike) -> dict[str, Any]:
    """`pooling` and `normalize` as a sentence-transformers checkpoint declares them (`modules.json`, its
    Pooling module's `config.json`, a Normalize module); `{}` for a checkpoint without `modules.json`."""
    path = resolve_file(source, "modules.json", required=False)
    if path is None:
        return {}
    try:
        modules = json.loads(path.read_text(encoding="utf-8"))
        options: dict[str, Any] = {"normalize": any(m.get("type", "").endswith(".Normalize") for m in modules)}
        for module in modules:
            if module.get("type", "").endswith(".Pooling"):
                folder = module.get("path", "").strip("/")
                pooling_path = resolve_file(source, f"{folder}/config.json" if folder else "config.json")
                options["pooling"] = _pooling_mode(json.loads(pooling_path.read_text(encoding="utf-8")), pooling_path)
        return options
    except (OSError, ValueError, AttributeError) as e:
        raise ConfigError(f"cannot read the sentence-transformers modules of {source}: {e}") from None


def _pooling_mode(config: dict, path: Any) -> str:
    modes = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_lasttoken": "last_token"}
    chosen = [mode for key, mode in modes.items() if config.get(key)]
    others = [k for k, v in config.items() if k.startswith("pooling_mode") and v and k not in modes]
    if len(chosen) != 1 or others:
        raise ConfigError(f"{path} asks for pooling {sorted(k for k, v in config.items() if k.startswith('pooling_mode') and v)}"
                          f"; bombus supports exactly one of mean, cls or last-token pooling")
    return chosen[0]


class SemanticSearch:
    """See `semantic_search`."""

    def __init__(self, embedder: TextEmbedding, corpus: Sequence[str], *, top_k: int = 5):
        corpus = list(corpus)
        if not corpus:
            raise InputError("the corpus is empty: give at least one text to search")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"top_k must be a positive int, got {top_k!r}")
        for i, text in enumerate(corpus):
            text_input(text, f"corpus[{i}]")
        self.embedder, self.corpus, self.top_k = embedder, corpus, top_k
        self.corpus_embeddings = torch.nn.functional.normalize(embedder.embed(corpus), dim=-1)

    def __call__(self, queries: str | list[str]) -> Any:
        """`{"matches": [{"text", "index", "score"}, ...]}` for a query (best first); a list for a list."""
        single = not isinstance(queries, list)
        if not single and not queries:
            return []
        vectors = torch.nn.functional.normalize(self.embedder.embed([queries] if single else queries), dim=-1)
        scores = vectors @ self.corpus_embeddings.T  # cosine similarity [queries, corpus]
        values, indices = scores.topk(min(self.top_k, len(self.corpus)), dim=-1)
        results = [{"matches": [{"text": self.corpus[i], "index": i, "score": v}
                                for v, i in zip(row_values, row_indices)]}
                   for row_values, row_indices in zip(values.tolist(), indices.tolist())]
        return results[0] if single else results


def semantic_search(model: torch.nn.Module, tokenizer: Any, corpus: Sequence[str], *, top_k: int = 5,
                    **embedding: Any) -> SemanticSearch:
    """A serving that ranks the texts of `corpus` by cosine similarity to a query.

    The corpus is embedded once, here; each call embeds its query (or list of queries) and returns
    `{"matches": [{"text", "index", "score"}, ...]}`: the `top_k` [5] most similar corpus texts, best first,
    with their index in `corpus` and cosine similarity (-1 to 1). Other keywords are `text_embedding` options
    (`pooling`, `output_attribute`, and the runtime options; `normalize` does not change the ranking).
    """
    return SemanticSearch(text_embedding(model, tokenizer, **embedding), corpus, top_k=top_k)
