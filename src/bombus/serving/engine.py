"""`Engine`: continuous batching for generation.

One worker thread owns the model and a static KV cache of `max_batch_size` rows (slots), a `RowCache`: each
row has its own offset, so a sequence's tokens sit in slots `[0, length)` of its row exactly as they would if
it ran alone. Each iteration the worker (1) admits waiting requests into free slots: each prompt is prefilled
on its own in a small cache, picks its first token, and its keys/values are copied into a free row
(`RowCache.place`), then (2) runs one decode step for every row in use. A row leaves as soon as it is done
(EOS, a stop string, its token limit, or its client gone) and its slot is free at the next iteration.

Each row has its own prompt length, sampling settings, processors (`generation.processors`, exactly as
`model.generate` builds them for that request alone), random generator (its seed) and stop conditions, so
a request's tokens do not depend on what else is in the batch: greedy output equals the request run alone,
and a seeded sampled request equals `model.generate(..., do_sample=True, seed=seed)` on its own (up to the
last float bits of batched matrix products: see `window`).

The decode step is `model(input_ids, position_ids, cache=view)` over `RowCache.view(rows, slots)`: the rows up
to the last one in use (a whole number of `row_multiple`) and the slots in use (rounded up to `window`); a
function of tensors only. On the CPU its attention is `rowwise_attention`, which, unlike PyTorch's fused
kernel, computes a row the same way whatever the other rows hold (see `attention`).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..errors import BombusError, InputError
from ..generation import config as _config
from ..generation.processors import apply, build_processors
from ..layers.cache import RowCache

log = logging.getLogger("bombus.serve")


class QueueFull(BombusError):
    """Too many requests are waiting for a slot; retry later."""


@dataclass(frozen=True)
class SamplingOptions:
    """How one sequence is decoded.

    - `max_new_tokens`: tokens to generate at most (the prompt plus this must fit the engine's `max_length`);
      0 generates nothing: the sequence ends (finish "length") right after its prompt (scored with
      `prompt_logprobs`).
    - `temperature` [1.0]: 0 is greedy decoding; otherwise sampling from softmax(logits / temperature).
    - `top_p` [1.0], `top_k` [0: off], `repetition_penalty` [1.0]: transformers' processors.
    - `seed` [None: a random one]: the sequence's own random generator.
    - `stop` [()]: strings that end the sequence; its text stops before the first one.
    - `logprobs` [None]: report each token's log-probability and this many most likely alternatives.
    - `ignore_eos` [False]: go on past EOS until `max_new_tokens`.
    - `prompt_logprobs` [False]: with `logprobs`, first report the prompt's tokens, each with the
      log-probability the model gives it after the ones before it and the `logprobs` most likely alternatives
      there (the first token has none), from one extra forward pass over the prompt.
    """

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    ignore_eos: bool = False
    prompt_logprobs: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class TokenInfo:
    """One generated token: its id, and with `logprobs` its text alone, its log-probability and the top
    alternatives."""

    id: int
    text: str
    logprob: float | None = None
    top: list[tuple[str, float]] | None = None


@dataclass
class Event:
    """What a sequence produced since its last event: new `text` (held back while it could start a stop string),
    the `tokens` behind it, and `finish_reason` on the last event ("stop", "length", "cancelled" or "error",
    with `error` the message). With `prompt_logprobs`, the first event carries `prompt`, the prompt's tokens
    (the first one without log-probability), and no generated tokens."""

    text: str
    tokens: list[TokenInfo]
    finish_reason: str | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt: list[TokenInfo] | None = None


class Sequence:
    """A submitted request; `cancel()` frees its slot at the next step (a client that went away)."""

    def __init__(self, prompt: list[int], options: SamplingOptions, on_event: Callable[[Event], None],
                 request_id: str):
        self.prompt = prompt
        self.options = options
        self.on_event = on_event
        self.request_id = request_id
        self.cancelled = False
        self.done = False
        self.submitted = time.monotonic()

    def cancel(self) -> None:
        self.cancelled = True


class _Row:
    """The decoding state of a sequence in a slot."""

    def __init__(self, engine: Engine, sequence: Sequence):
        o = sequence.options
        self.sequence = sequence
        self.tokens = list(sequence.prompt)
        self.prompt_length = len(sequence.prompt)
        fields: dict[str, Any] = {"max_new_tokens": o.max_new_tokens, "do_sample": not o.greedy, "top_k": None,
                                  "num_beams": 1, "repetition_penalty": o.repetition_penalty}
        if not o.greedy:
            fields.update(temperature=o.temperature, top_p=o.top_p, top_k=o.top_k or None)
        merged = _config.merge(engine.defaults, None, fields)
        merged.pop("max_length", None)
        cfg = _config.resolve(merged, prompt_length=self.prompt_length, max_positions=None)
        self.processors = build_processors(cfg, prompt_length=self.prompt_length)
        self.eos = set() if o.ignore_eos else set(cfg.eos_token_ids)
        self.generator = None
        if not o.greedy:
            seed = o.seed if o.seed is not None else random.getrandbits(63)
            self.generator = torch.Generator(device=engine.device).manual_seed(seed)
        self.text = _Text(engine.tokenizer, o.stop)
        self.next_token = 0
        self.position = self.prompt_length - 1  # the position of `next_token` once it is chosen
        self.generated = 0

    @property
    def plain_greedy(self) -> bool:
        """Greedy without logits processors: the token is the argmax, taken for all such rows at once."""
        return self.generator is None and not self.processors

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """The next token from this row's logits `[1, V]` (as `generate` chooses it for this request alone)."""
        scores = logits
        if self.processors:
            scores = apply(self.processors, torch.tensor([self.tokens], device=logits.device), logits)
        if self.generator is None:
            return scores.argmax(dim=-1)
        probs = scores.softmax(dim=-1)
        noise = torch.empty_like(probs).exponential_(1, generator=self.generator)
        return (probs / noise).argmax(dim=-1)


class _Text:
    """Incremental detokenization with stop strings: text is released once it cannot be the start of a stop
    string or the first bytes of an unfinished character."""

    def __init__(self, tokenizer: Any, stop: tuple[str, ...]):
        self.tokenizer = tokenizer
        self.stop = stop
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.ids: list[int] = []
        self.sent = 0
        self.stopped = False

    def add(self, token: int, final: bool) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if self.stop:
            hits = [i for i in (text.find(s, max(0, self.sent - self.hold)) for s in self.stop) if i >= 0]
            if hits:
                self.stopped = True
                cut = min(hits)
                out = text[self.sent:cut] if cut > self.sent else ""
                self.sent = max(self.sent, cut)
                return out
        if final:
            end = len(text)
        else:
            end = len(text) - self.hold
            if text.endswith("\ufffd"):  # an incomplete UTF-8 character: wait for its other bytes
                end = min(end, len(text) - 1)
        if end <= self.sent:
            return ""
        out, self.sent = text[self.sent:end], end
        return out


class Engine:
    """Continuous batching of generation requests over one causal LM (see the module docstring).

    Options:
    - `max_batch_size` [32]: slots, the most sequences decoding at once.
    - `max_length` [min(model max_positions, 2048)]: slots per row of the KV cache: a request's prompt plus
      its `max_new_tokens` must fit.
    - `max_queue` [256]: requests waiting for a slot beyond this are refused (`QueueFull`).
    - `prefill_batch` [4]: the most waiting requests prefilled (one by one) before the next decode step.
    - `window` [64]: the decode step attends over the slots in use rounded up to a multiple of this (None: over
      every slot). A row's slots past its own length are masked and add exact zeros in the rowwise attention.
    - `row_multiple` [4]: decode steps run a multiple of this many rows (free ones decode a dummy token). CPU
      matrix products (MKL) work on tiles of 4 rows and round the rows of a partial tile differently; with
      whole tiles, a request alone computes bit for bit what it computes in any batch.
    - `attention` ["rowwise" on CPU, "sdpa" elsewhere]: the decode step's attention. PyTorch's fused CPU
      kernel (and small batched matrix products) round a row differently depending on the other rows;
      `layers.attention.rowwise_attention` (elementwise products and reductions) does not, so on the CPU
      greedy output is identical whatever else is in the batch, at about the fused kernel's speed.
    - `observer`: an object with `batch(kind, size)` and `tokens(count)` (metrics), or None.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, max_batch_size: int = 32,
                 max_length: int | None = None, max_queue: int = 256, prefill_batch: int = 4,
                 window: int | None = 64, row_multiple: int = 4, attention: str | None = None,
                 observer: Any = None, name: str = "model"):
        from ..generation.search import _model_generation_config

        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.device = next(model.parameters()).device
        limit = getattr(model.spec, "max_positions", None)
        self.max_length = int(min(limit or 2048, max_length or 2048))
        if max_length is not None and limit is not None and max_length > limit:
            raise InputError(f"max_length {max_length} exceeds the model's max_positions ({limit})")
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.prefill_batch = prefill_batch
        self.window = window
        self.row_multiple = row_multiple
        if attention not in (None, "rowwise", "sdpa"):
            raise InputError(f"attention must be 'rowwise' or 'sdpa', got {attention!r}")
        rowwise = (attention or ("rowwise" if self.device.type == "cpu" else "sdpa")) == "rowwise"
        self.observer = observer
        self.defaults = _model_generation_config(model)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.vocab_size = getattr(model.spec, "vocab_size", None)
        layers, heads, head_dim = model.cache_layout()
        self.cache = RowCache(num_layers=layers, batch_size=max_batch_size, max_length=self.max_length,
                              num_kv_heads=heads, head_dim=head_dim, dtype=model.dtype, device=self.device)
        self.cache.rowwise = rowwise
        self.rows: list[_Row | None] = [None] * max_batch_size
        self.waiting: deque[Sequence] = deque()
        self.steps = 0
        self._condition = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name=f"bombus-engine-{name}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------ callers
    def check(self, prompt_length: int, max_new_tokens: int) -> None:
        """Raise `InputError` unless a prompt of this length with this many new tokens (0: the prompt alone)
        fits a slot."""
        if prompt_length < 1:
            raise InputError("the prompt has no tokens: give some text")
        if max_new_tokens < 0:
            raise InputError(f"max_tokens must be at least 0, got {max_new_tokens}")
        if prompt_length + max_new_tokens > self.max_length:
            room = self.max_length - prompt_length
            if room < 1:
                raise InputError(f"the prompt has {prompt_length} tokens; this model's context holds "
                                 f"{self.max_length} tokens, prompt and completion together: shorten the prompt")
            raise InputError(f"the prompt ({prompt_length} tokens) + max_tokens ({max_new_tokens}) exceeds the "
                             f"context of {self.max_length} tokens; set max_tokens to at most {room}")

    def submit(self, prompt: list[int], options: SamplingOptions, on_event: Callable[[Event], None],
               request_id: str = "-") -> Sequence:
        """Queue a sequence; `on_event` is called from the engine thread with each `Event`. Raises
        `InputError` (does not fit, ids outside the vocabulary) or `QueueFull`."""
        self.check(len(prompt), options.max_new_tokens)
        if self.vocab_size is not None and any(not 0 <= t < self.vocab_size for t in prompt):
            raise InputError(f"prompt token ids must lie in [0, {self.vocab_size})")
        sequence = Sequence(list(prompt), options, on_event, request_id)
        with self._condition:
            if self._closing:
                raise QueueFull("the server is shutting down")
            if len(self.waiting) >= self.max_queue:
                raise QueueFull(f"{len(self.waiting)} requests are already waiting for {self.name}")
            self.waiting.append(sequence)
            self._condition.notify()
        return sequence

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    @property
    def active(self) -> int:
        return sum(r is not None for r in self.rows)

    def close(self, timeout: float | None = None) -> None:
        """Stop after finishing every sequence already submitted."""
        with self._condition:
            self._closing = True
            self._condition.notify()
        self._thread.join(timeout)

    # ------------------------------------------------------------------------------------------ worker
    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self.waiting and not self.active and not self._closing:
                    self._condition.wait()
                if self._closing and not self.waiting and not self.active:
                    return
                free = self.rows.count(None)
                admit: list[Sequence] = []
                while self.waiting and len(admit) < min(free, self.prefill_batch):
                    sequence = self.waiting.popleft()
                    if sequence.cancelled:
                        self._emit(sequence, Event("", [], "cancelled"))
                    else:
                        admit.append(sequence)
            try:
                with torch.inference_mode():
                    if admit:
                        self._prefill(admit)
                    self._drop_cancelled()
                    if self.active:
                        self._step()
            except Exception as error:  # a failure ends the sequences in flight, never the engine
                log.exception("engine %s: step failed", self.name)
                for sequence in admit + [r.sequence for r in self.rows if r is not None]:
                    if not sequence.done:
                        self._emit(sequence, Event("", [], "error", error=f"{type(error).__name__}: {error}"))
                self.rows = [None] * self.max_batch_size
                self._reset()

    def _reset(self) -> None:
        self.cache.reset()

    def _emit(self, sequence: Sequence, event: Event) -> None:
        if event.finish_reason is not None:
            sequence.done = True
        try:
            sequence.on_event(event)
        except Exception:  # a consumer's failure must not stop the engine
            log.exception("request %s: event handler failed", sequence.request_id)

    def _free(self, slot: int) -> None:
        self.rows[slot] = None
        self.cache.free(slot)

    def _drop_cancelled(self) -> None:
        for i, row in enumerate(self.rows):
            if row is not None and row.sequence.cancelled:
                self._free(i)
                log.info("request %s: cancelled after %d tokens; slot %d freed", row.sequence.request_id,
                         row.generated, i)
                self._emit(row.sequence, Event("", [], "cancelled", prompt_tokens=row.prompt_length,
                                               completion_tokens=row.generated))

    def _prefill(self, sequences: list[Sequence]) -> None:
        """Run each new prompt on its own (as it would run alone), choose its first token, and move the ones
        that go on into free slots."""
        for sequence in sequences:
            length = len(sequence.prompt)
            options = sequence.options
            if options.prompt_logprobs and options.logprobs is not None:
                prompt = score_prompt(self.model, self.tokenizer, sequence.prompt, options.logprobs)
                if self.observer is not None:
                    self.observer.batch("score", 1)
                finish = "length" if options.max_new_tokens == 0 else None
                self._emit(sequence, Event("", [], finish, prompt_tokens=length, prompt=prompt))
            if options.max_new_tokens == 0:
                if not sequence.done:
                    self._emit(sequence, Event("", [], "length", prompt_tokens=length))
                continue
            ids = torch.tensor([sequence.prompt], device=self.device)
            positions = torch.arange(length, device=self.device)[None]
            scratch = self.model.init_cache(1, length)
            logits = self.model(input_ids=ids, position_ids=positions, cache=scratch,
                                logits_to_keep=1).logits[:, -1].float()
            if self.observer is not None:
                self.observer.batch("prefill", 1)
            row = _Row(self, sequence)
            if self._advance(row, logits):
                slot = self.rows.index(None)
                self.cache.place(slot, scratch, 0, length)
                self.rows[slot] = row

    def _step(self) -> None:
        """One decode step for every row in use."""
        used = max(i for i, r in enumerate(self.rows) if r is not None) + 1
        used = min(self.max_batch_size, math.ceil(used / self.row_multiple) * self.row_multiple)
        slots = self.max_length
        if self.window:
            longest = max(r.position for r in self.rows if r is not None) + 1
            slots = min(self.max_length, math.ceil(longest / self.window) * self.window)
        view = self.cache.view(used, slots)
        tokens = torch.tensor([[r.next_token if r is not None else 0] for r in self.rows[:used]], device=self.device)
        positions = torch.tensor([[r.position if r is not None else 0] for r in self.rows[:used]],
                                 device=self.device)
        # Free rows inside the view decode a dummy token into their slot 0; it is rewritten when taken.
        logits = self.model(input_ids=tokens, position_ids=positions, cache=view, logits_to_keep=1).logits[:, -1]
        logits = logits.float()
        self.steps += 1
        if self.observer is not None:
            self.observer.batch("decode", self.active)
        # One argmax and one host read for every plain greedy row, instead of one of each per row.
        argmax = logits.argmax(dim=-1).tolist() if any(r is not None and r.plain_greedy for r in self.rows) else None
        for i, row in enumerate(self.rows[:used]):
            if row is not None and not self._advance(row, logits[i:i + 1], argmax[i] if row.plain_greedy else None):
                self._free(i)
        for i, row in enumerate(self.rows[:used]):
            if row is None:
                self.cache.offsets[i] = 0  # keep dummy rows at slot 0

    def _advance(self, row: _Row, logits: torch.Tensor, token: int | None = None) -> bool:
        """Choose the row's next token from `logits` `[1, V]` (unless given), report it; False when the row is
        done."""
        sequence, options = row.sequence, row.sequence.options
        if token is None:
            token = int(row.choose(logits))
        info = TokenInfo(token, "")
        if options.logprobs is not None:  # the token's own text is needed only beside its log-probability
            info = _token_infos(self.tokenizer, torch.log_softmax(logits, dim=-1), [token], options.logprobs)[0]
        row.tokens.append(token)
        row.generated += 1
        row.next_token = token
        row.position += 1
        if self.observer is not None:
            self.observer.tokens(1)
        eos = token in row.eos
        length = row.generated >= options.max_new_tokens
        text = row.text.add(token, final=eos or length)
        finish = "stop" if (eos or row.text.stopped) else "length" if length else None
        self._emit(sequence, Event(text, [info], finish, prompt_tokens=row.prompt_length,
                                   completion_tokens=row.generated))
        if finish is not None:
            log.info("request %s: finished (%s) after %d tokens", sequence.request_id, finish, row.generated)
        return finish is None


def score_prompt(model: torch.nn.Module, tokenizer: Any, prompt: list[int], top: int,
                 chunk: int = 512) -> list[TokenInfo]:
    """The prompt's tokens, each with the log-probability (float32 log-softmax of the logits) the causal LM
    gives it after the tokens before it, and the `top` most likely tokens there; the first token has neither.
    One forward pass over the prompt on its own, `chunk` positions at a time through a scratch cache (the
    logits held are `[chunk, V]`)."""
    infos = [TokenInfo(prompt[0], tokenizer.decode([prompt[0]], skip_special_tokens=False))]
    length = len(prompt)
    if length == 1:
        return infos
    device = next(model.parameters()).device
    scratch = model.init_cache(1, length)
    # The logits at positions [0, length - 1) predict tokens [1, length); the last position predicts nothing.
    for start in range(0, length - 1, chunk):
        end = min(start + chunk, length - 1)
        ids = torch.tensor([prompt[start:end]], device=device)
        positions = torch.arange(start, end, device=device)[None]
        logits = model(input_ids=ids, position_ids=positions, cache=scratch).logits[0]
        infos += _token_infos(tokenizer, torch.log_softmax(logits.float(), dim=-1), prompt[start + 1:end + 1], top)
    return infos


def _token_infos(tokenizer: Any, logprobs: torch.Tensor, tokens: list[int], top: int) -> list[TokenInfo]:
    """`TokenInfo` of each token `tokens[i]` given the log-probabilities `logprobs[i]` (`[len(tokens), V]`):
    its text alone, its log-probability and, when `top` > 0, the `top` most likely tokens there."""
    chosen = logprobs.gather(-1, torch.tensor(tokens, device=logprobs.device)[:, None])[:, 0].tolist()
    values = indices = None
    if top > 0:
        values, indices = logprobs.topk(min(top, logprobs.shape[-1]), dim=-1)
        values, indices = values.tolist(), indices.tolist()
    ids = tokens + [i for row in (indices or []) for i in row]
    texts = tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False)  # one call for all of them
    infos, alternatives = [], len(tokens)
    for k, token in enumerate(tokens):
        info = TokenInfo(token, texts[k], chosen[k])
        if values is not None:
            width = len(values[k])
            info.top = list(zip(texts[alternatives:alternatives + width], values[k]))
            alternatives += width
        infos.append(info)
    return infos
