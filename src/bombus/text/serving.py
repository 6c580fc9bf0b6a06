"""`Serving`: what every task serving in `bombus.text` shares — input checking, tokenization with a length
limit, batching of concurrent calls, padding to length buckets, the model call, and plain-Python results.

A call splits like nano-vllm's engine: `prepare` runs in the caller's thread (check the input, tokenize it into a
`Request` of unpadded rows: no model involved), a `Batcher` gathers the requests of concurrent callers, and its
worker runs `run` on each batch — `collate` pads the rows into tensors, `forward` runs the model, and `finish`
turns each request's slice of the outputs into its result (dicts, lists, floats: JSON-serialisable). The model
only ever runs in the batcher's worker thread.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import torch

from ..errors import ConfigError, InputError
from ..serving.batcher import Batcher

# Fill values when rows are padded to a common length (input_ids uses the tokenizer's pad token id).
PAD_VALUES = {"attention_mask": 0, "token_type_ids": 0, "special_tokens_mask": 1, "offsets": 0}
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class Request:
    """One input, prepared: `rows` are its token rows (`[n, length]` tensors, right-padded among themselves),
    `data` whatever `finish` needs later (the text, offsets, ...)."""

    input: Any
    rows: dict[str, torch.Tensor]
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        return self.rows["input_ids"].shape[0]


class _WeakRun:
    """The batcher's function, holding its serving weakly: the worker thread must not keep a dropped serving
    (and its model) alive."""

    def __init__(self, serving: Serving):
        self.serving = weakref.ref(serving)

    def __call__(self, requests: list[Request]) -> list[Any]:
        serving = self.serving()
        if serving is None:
            raise RuntimeError("the serving was garbage-collected while requests were queued")
        with torch.inference_mode():
            return serving.run(requests)


def model_window(model: torch.nn.Module) -> int | None:
    """The most tokens one row may hold: the family's limit (RoBERTa's positions start after the padding
    id, so it is `max_positions - pad - 1`), else `spec.max_positions`, else None (no limit)."""
    family_limit = getattr(model, "_max_length", None)  # Bert and its subclasses know their own offset
    if callable(family_limit):
        return int(family_limit())
    limit = getattr(model.spec, "max_positions", None)
    return None if limit is None else int(limit)


class Serving:
    """Base class of the task servings. Subclasses set `task` and `architectures`, and implement `prepare`
    and `finish` (and `forward` or `run` where the default batching does not fit).

    Runtime options shared by every serving:
    - `batch_size` [8]: the most inputs run together; calls from many threads at once are gathered into
      batches of up to this many inputs (and model calls hold at most this many rows).
    - `sequence_length` [None: pad each batch to its longest input]: an int pads every batch to that many
      tokens; a list of bucket lengths pads to the smallest bucket that fits (fewer distinct shapes for
      compiled or captured models). The largest bucket is also the longest input accepted.
    - `truncate` [False]: an input longer than the limit (the largest `sequence_length`, else the model's
      `max_positions`) raises `InputError`; True cuts it to the limit instead.
    - `batch_timeout_ms` [5.0]: how long the first input of a batch waits for others to join it.
    """

    task: ClassVar[str] = "serving"
    architectures: ClassVar[tuple[str, ...] | None] = None  # None: any architecture
    outputs: ClassVar[tuple[str, ...]] = ("logits",)  # model outputs `finish` reads

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, batch_size: int = 8,
                 sequence_length: int | Sequence[int] | None = None, truncate: bool = False,
                 batch_timeout_ms: float = 5.0):
        if self.architectures is not None and getattr(model, "architecture", None) not in self.architectures:
            wanted = " or ".join(repr(a) for a in self.architectures)
            raise ConfigError(
                f"{self.task} needs a model with architecture {wanted}, got {getattr(model, 'architecture', None)!r}"
                f"; load it with bombus.load_model(source, architecture={self.architectures[0]!r})")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(batch_timeout_ms, (int, float)) or batch_timeout_ms < 0:
            raise ConfigError(f"batch_timeout_ms must be a number >= 0, got {batch_timeout_ms!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.truncate = bool(truncate)
        self.buckets = _buckets(sequence_length)
        window = model_window(model)
        if self.buckets and window is not None and self.buckets[-1] > window:
            raise ConfigError(f"sequence_length {self.buckets[-1]} exceeds the model's window of {window} tokens "
                              f"(max_positions); pass at most {window}")
        self.max_length: int | None = self.buckets[-1] if self.buckets else window
        self.batcher = Batcher(_WeakRun(self), max_batch_size=batch_size, timeout_ms=float(batch_timeout_ms),
                               name=f"bombus-{self.task}")

    # ------------------------------------------------------------------------------------------ calling
    def __call__(self, inputs: Any) -> Any:
        """Run one input, or a list of inputs (a list is always a batch; a tuple is one input, e.g. a pair).
        Returns one result, or a list of results in the order of the inputs."""
        single = not isinstance(inputs, list)
        items = [inputs] if single else inputs
        if not items:
            return []
        requests = [self.prepare(item) for item in items]
        results = self.batcher.map(requests)
        return results[0] if single else results

    @property
    def stats(self) -> dict[str, int]:
        """How many batches and inputs the runtime has run (observable batching)."""
        return {"batches": self.batcher.batches_run, "inputs": self.batcher.items_run}

    def close(self) -> None:
        """Stop the batching worker (after the requests already queued)."""
        self.batcher.close()

    def __enter__(self) -> Serving:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={type(self.model).__name__}/{self.model.architecture}, "
                f"batch_size={self.batch_size}, sequence_length={self.buckets or None}, truncate={self.truncate})")

    # ------------------------------------------------------------------------------------------ stages
    def prepare(self, item: Any) -> Request:
        """Check one input and tokenize it (in the caller's thread). Raises `InputError` for bad input."""
        raise NotImplementedError

    def finish(self, request: Request, outputs: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]) -> Any:
        """The result of one request from its rows' model `outputs` and padded `inputs`."""
        raise NotImplementedError

    def run(self, requests: list[Request]) -> list[Any]:
        """One batch (in the worker thread, under inference mode): collate, forward, finish each request."""
        inputs, spans = self.collate(requests)
        outputs = self.forward(inputs)
        return [self.finish(r, {k: v[s] for k, v in outputs.items()}, {k: v[s] for k, v in inputs.items()})
                for r, s in zip(requests, spans)]

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run the model on the padded rows, at most `batch_size` rows per call; returns the `outputs` named
        by the serving, as float32 CPU tensors in row order."""
        device = _device(self.model)
        model_inputs = {k: inputs[k] for k in MODEL_INPUTS if k in inputs}
        total = model_inputs["input_ids"].shape[0]
        pieces: dict[str, list[torch.Tensor]] = {name: [] for name in self.outputs}
        for start in range(0, total, self.batch_size):
            chunk = {k: v[start:start + self.batch_size].to(device) for k, v in model_inputs.items()}
            out = self.model(**chunk)
            for name in self.outputs:
                if out.get(name) is None:
                    raise ConfigError(f"{self.task}: the model ({self.model.architecture}) gives no {name!r} output")
                pieces[name].append(out[name].float().cpu())
        return {name: torch.cat(values) for name, values in pieces.items()}

    # ------------------------------------------------------------------------------------------ helpers
    def encode(self, texts: list, *, offsets: bool = False, special_tokens_mask: bool = False,
               what: str = "the input") -> dict[str, torch.Tensor]:
        """Tokenize `texts` (strs or (text, pair) tuples) into rows, right-padded among themselves, enforcing
        the length limit: too long raises `InputError` unless `truncate`."""
        cut = self.max_length if (self.truncate and self.max_length is not None) else False
        options = dict(truncation=cut, return_length=True, return_offsets=offsets,
                       return_special_tokens_mask=special_tokens_mask)
        if len(texts) > 1 and "pad" not in self.tokenizer.special_tokens:
            # No pad token (GPT-2): the tokenizer would warn about padding with EOS, which is harmless here (the
            # attention mask hides it), so encode row by row and pad here.
            encodings = [self.tokenizer([text], **options) for text in texts]
            width = max(e["input_ids"].shape[1] for e in encodings)
            fill = self.tokenizer.pad_token_id or 0
            enc = {k: torch.cat([_pad(e[k], width, PAD_VALUES.get(k, fill), "right") for e in encodings])
                   for k in encodings[0] if k != "length"}
            enc["length"] = torch.cat([e["length"] for e in encodings])
        else:
            enc = self.tokenizer(texts, **options)
        lengths = enc.pop("length")
        if int(lengths.min()) == 0:
            raise InputError(f"{what} has no tokens (an empty text, and a tokenizer that adds no special tokens); "
                             f"give some text")
        longest = int(lengths.max())
        if self.max_length is not None and longest > self.max_length:
            raise InputError(f"{what} has {longest} tokens, more than the {self.max_length} this serving accepts "
                             f"({self._limit_source()}); shorten it, or create the serving with truncate=True")
        return enc

    def _limit_source(self) -> str:
        return f"sequence_length={self.buckets}" if self.buckets else "the model's max_positions"

    def collate(self, requests: list[Request], direction: str = "right"
                ) -> tuple[dict[str, torch.Tensor], list[slice]]:
        """Pad every request's rows to one length (the smallest bucket that fits when `sequence_length` is
        set) and stack them; returns the tensors and each request's row slice."""
        longest = max(r.rows["input_ids"].shape[1] for r in requests)
        length = self.bucket(longest)
        pad_id = self.tokenizer.pad_token_id
        names = requests[0].rows.keys()
        out = {}
        for name in names:
            fill = PAD_VALUES.get(name, pad_id if pad_id is not None else 0)
            out[name] = torch.cat([_pad(r.rows[name], length, fill, direction) for r in requests])
        spans, start = [], 0
        for r in requests:
            spans.append(slice(start, start + r.num_rows))
            start += r.num_rows
        return out, spans

    def bucket(self, longest: int) -> int:
        """The padded length for a batch whose longest row has `longest` tokens."""
        for n in self.buckets:
            if n >= longest:
                return n
        return longest  # no buckets, or a row the caller allowed past them (generation prompts)


# ---------------------------------------------------------------------------------------------------- helpers
def _buckets(sequence_length: int | Sequence[int] | None) -> list[int]:
    if sequence_length is None:
        return []
    values = [sequence_length] if isinstance(sequence_length, int) else sequence_length
    try:
        values = sorted(values)
    except TypeError:
        values = [None]
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ConfigError(f"sequence_length must be a positive int or a non-empty list of them, got {sequence_length!r}")
    return values


def _pad(t: torch.Tensor, length: int, fill: int, direction: str) -> torch.Tensor:
    missing = length - t.shape[1]
    if missing <= 0:
        return t
    pad = t.new_full((t.shape[0], missing, *t.shape[2:]), fill)
    return torch.cat([t, pad] if direction == "right" else [pad, t], dim=1)


def _device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def text_input(item: Any, where: str = "the input") -> str:
    """`item` as a str, or a clear `InputError`."""
    if isinstance(item, str):
        return item
    raise InputError(f"{where} must be a str, got {type(item).__name__}: {item!r:.80}")


def label_of(model: torch.nn.Module, index: int) -> str:
    """The name of class `index`: `spec.id_to_label`, else "LABEL_<index>" (as transformers names them)."""
    return str(model.spec.id_to_label.get(index, f"LABEL_{index}"))

