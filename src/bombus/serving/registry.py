"""The models a server serves: each loaded once, with the tasks its architecture offers, a continuous-batching
`Engine` for generative models, and the task servings built on demand (one per set of options, kept in a
small LRU; each batches concurrent calls with `Batcher`)."""

from __future__ import annotations

import inspect
import json
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, InputError

# Tasks of the task routes (POST /v1/{task}), with the serving function and the options a request may set.
TASK_ROUTES = ("fill-mask", "classify", "tag", "answer", "zero-shot", "embed", "similar")
EMBEDDING_OPTIONS = ("pooling", "normalize", "output_attribute")


def tasks_of(model: Any, tokenizer: Any) -> list[str]:
    """What a model can serve, by its architecture."""
    arch = getattr(model, "architecture", None)
    if arch in getattr(model, "generative", ()):
        return ["completions"] + (["chat"] if tokenizer.chat_template else [])
    if arch == "base":
        return ["embeddings", "embed", "similar"]
    if arch == "for_masked_language_modeling":
        return ["fill-mask"]
    if arch == "for_sequence_classification":
        labels = {str(v).lower() for v in model.spec.id_to_label.values()}
        return ["classify"] + (["zero-shot"] if "entailment" in labels else [])
    if arch == "for_token_classification":
        return ["tag"]
    if arch == "for_question_answering":
        return ["answer"]
    return []


def _factories() -> dict[str, Callable[..., Any]]:
    from .. import text

    return {"fill-mask": text.fill_mask, "classify": text.text_classification, "tag": text.token_classification,
            "answer": text.question_answering, "zero-shot": text.zero_shot_classification,
            "embed": text.text_embedding, "similar": text.semantic_search}


def request_options(task: str) -> tuple[str, ...]:
    """The serving options a task request may set (the serving function's keywords, runtime ones excluded)."""
    if task == "similar":
        return EMBEDDING_OPTIONS
    parameters = inspect.signature(_factories()[task]).parameters
    skip = {"model", "tokenizer", "runtime", "embedding"}
    return tuple(n for n, p in parameters.items() if n not in skip and p.kind != p.VAR_KEYWORD)


def parse_model_argument(text: str) -> tuple[str, str]:
    """`NAME=PATH` or `PATH` -> (name, source): a folder's name, a .gguf file's stem, or a hub repo id."""
    name, sep, source = text.partition("=")
    if sep and name and source and "/" not in name:
        return name, source
    path = Path(text)
    if path.suffix == ".gguf":
        return path.stem, text
    if path.exists():
        return path.resolve().name, text
    return text, text


class ServedModel:
    """One loaded model: `name`, `source`, `model`, `tokenizer`, `tasks`, `engine` (generative models)."""

    def __init__(self, name: str, source: str, *, engine_options: dict[str, Any], runtime: dict[str, Any],
                 metrics: Any = None, device: str | None = None, dtype: Any = None, max_servings: int = 16):
        from ..loading import load_model
        from ..tokenizer import load_tokenizer

        self.name, self.source = name, source
        self.model = load_model(source, device=device, dtype=dtype)
        self.tokenizer = load_tokenizer(source)
        self.tasks = tasks_of(self.model, self.tokenizer)
        if not self.tasks:
            raise ConfigError(f"{source}: bombus serve has no task for architecture {self.model.architecture!r}")
        self.created = int(time.time())
        self.runtime = runtime
        self.metrics = metrics
        self.engine = None
        if "completions" in self.tasks:
            from .engine import Engine

            observer = None
            self.engine = Engine(self.model, self.tokenizer, name=name, **engine_options)
            if metrics is not None:
                observer = metrics.watch_engine(name, lambda: self.engine.queue_depth, lambda: self.engine.active)
                self.engine.observer = observer
        self._embedding_defaults: dict[str, Any] | None = None
        self._servings: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.max_servings = max_servings

    def describe(self) -> dict[str, Any]:
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "bombus",
                "tasks": list(self.tasks)}

    def embedding_defaults(self) -> dict[str, Any]:
        """The checkpoint's own pooling and normalisation (sentence-transformers), else mean pooling."""
        if self._embedding_defaults is None:
            from ..text import embedding_options

            try:
                self._embedding_defaults = embedding_options(self.source)
            except Exception:
                self._embedding_defaults = {}
        return self._embedding_defaults

    def serving(self, task: str, options: dict[str, Any], *, corpus: list[str] | None = None, top_k: Any = 5) -> Any:
        """The serving of `task` with these request options (built on first use, then kept); `similar` also
        takes its `corpus` (embedded once per serving) and `top_k`."""
        allowed = request_options(task)
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise InputError(f"unknown option(s) {unknown} for {task}; the options are {list(allowed)}")
        key = json.dumps([task, options, corpus, top_k if task == "similar" else None], sort_keys=True, default=str)
        with self._lock:
            if key in self._servings:
                self._servings.move_to_end(key)
                return self._servings[key]
        factory = _factories()[task]
        if task in ("embed", "similar"):
            embedding = {**self.embedding_defaults(), **options}
            if task == "similar":
                serving = factory(self.model, self.tokenizer, corpus, top_k=top_k, **embedding, **self.runtime)
            else:
                serving = factory(self.model, self.tokenizer, **embedding, **self.runtime)
        else:
            serving = factory(self.model, self.tokenizer, **options, **self.runtime)
        inner = getattr(serving, "embedder", serving)  # SemanticSearch wraps a TextEmbedding
        if self.metrics is not None and getattr(inner, "batcher", None) is not None:
            inner.batcher.on_batch = self.metrics.batch_size.labels(self.name, task).observe
        with self._lock:
            self._servings[key] = serving
            while len(self._servings) > self.max_servings:
                _, old = self._servings.popitem(last=False)
                _close(old)
        return serving

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        with self._lock:
            for serving in self._servings.values():
                _close(serving)
            self._servings.clear()


def _close(serving: Any) -> None:
    inner = getattr(serving, "embedder", serving)  # SemanticSearch wraps a TextEmbedding
    close = getattr(inner, "close", None)
    if close is not None:
        close()
