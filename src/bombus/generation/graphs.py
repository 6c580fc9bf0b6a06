"""CUDA-graph decoding: the decode step over a static KV cache, captured once and replayed.

At small batch a decode step costs far more in kernel launches and Python than in GPU work (GPT-2 small:
~200 kernels of a few microseconds each per token). `CapturedStep` records one whole step — the model over
its static cache, then greedy selection and the end-of-sequence bookkeeping — in a `torch.cuda.CUDAGraph`;
a replay launches all of it at once. Steps are captured per (batch bucket, cache-length bucket), warmed up
on a side stream, and kept per model by a `GraphRunner` whose captures share one memory pool.

`greedy_or_sample` is `generate`'s greedy/sampling loop over such a step. Greedy decoding without logits
processors is nothing but replays; otherwise the processors and the sampler run on the device between
replays. The host reads the stop condition every `CHECK_EVERY` steps only: steps taken after every row
ended produce padding that is cut off, so the output (and what is yielded) is token for token what the
step-by-step loop gives. It is the default on CUDA (`cuda_graph=False` turns it off); the CPU path is the
step-by-step loop of `search.py`. A server can replay the same steps: `runner(model).step(rows, length)`.

`compile=True` compiles the step with `torch.compile` (fixed shapes per bucket): fewer, fused kernels. On the
CPU the loop replays the compiled step (no Python between its kernels); on CUDA the compiled step is what
gets captured, so a replay launches Inductor's fused kernels (GPT-2 small bf16 on an H100: 1,109 -> 1,350
tokens/s at batch 1, 7,955 -> 9,700 at batch 8). The first step of a bucket compiles (seconds to a minute,
once per process; later models of the same shapes reuse it).
"""

from __future__ import annotations

import threading
import warnings
import weakref
from collections.abc import Generator, Sequence

import torch

from .processors import apply

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
MIN_LENGTH_BUCKET = 64
CHECK_EVERY = 8  # steps between reads of the stop condition (each read is a host sync)


def batch_bucket(rows: int) -> int:
    """The captured batch size serving `rows` rows: the smallest bucket >= rows (beyond the largest bucket,
    the next multiple of it). Extra rows repeat the first one and are discarded."""
    for size in BATCH_BUCKETS:
        if rows <= size:
            return size
    top = BATCH_BUCKETS[-1]
    return -(-rows // top) * top


def length_bucket(length: int, limit: int | None = None) -> int:
    """The cache length serving sequences of `length` slots: the smallest power of two >= length (at least
    `MIN_LENGTH_BUCKET`), capped at `limit` (the model's `max_positions`) when that still holds `length`."""
    size = MIN_LENGTH_BUCKET
    while size < length:
        size *= 2
    return max(limit, length) if limit is not None and size > limit else size


class CapturedStep:
    """One decode step of `model` for `batch` rows over a static cache of `length` slots.

    Static buffers, written before `replay()`: `tokens` `[batch, 1]` and `positions` `[batch, 1]`, the
    `cache` (its `reset()` starts a new sequence), `unfinished` `[batch]`, `is_eos` `[vocab]` and `pad`
    (0-dim). A replay computes `logits` `[batch, vocab]` (float32), then advances greedily: `tokens` becomes
    `where(unfinished, argmax(logits), pad)`, `unfinished &= ~is_eos[tokens]` and `positions += 1`. So
    greedy decoding feeds itself; other strategies write their own `tokens` before each replay.

    `capture=False` runs the same step eagerly at each `replay()` (the CPU, or to debug): same buffers, same
    results, no graph. `compile=True` runs (or captures) the step compiled by `torch.compile`. `pool` is the
    memory pool shared with the runner's other captures.
    """

    def __init__(self, model: torch.nn.Module, batch: int, length: int, *, capture: bool, pool=None,
                 warmup: int = 2, compile: bool = False):
        device = model.device
        self._model = weakref.ref(model)  # the runner lives beside the model, not inside it
        self.batch, self.length = batch, length
        self.cache = model.init_cache(batch, length)
        self.tokens = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.positions = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.unfinished = torch.ones(batch, dtype=torch.bool, device=device)
        self.is_eos = torch.zeros(model.spec.vocab_size, dtype=torch.bool, device=device)
        self.pad = torch.zeros((), dtype=torch.long, device=device)
        # Outside the graphs' pool, like every buffer read after a replay: the pool then only holds each
        # replay's intermediates, dead once it ends, so captures can share it in any replay order.
        self.logits = torch.zeros(batch, model.spec.vocab_size, dtype=torch.float32, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.compiled = compile
        self.busy = False  # one sequence at a time: see `GraphRunner.acquire`
        if capture:
            # Warm-up on a side stream (kernel selection, workspaces), then capture into the shared pool.
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream), torch.no_grad():
                for _ in range(warmup):  # compiles too, when asked: nothing may compile during the capture
                    self._run(model)
            torch.cuda.current_stream(device).wait_stream(stream)
            self.cache.reset()
            self.graph = torch.cuda.CUDAGraph()
            # thread_local: other threads may keep launching work on the device while this one captures
            with torch.no_grad(), torch.cuda.device(device), \
                    torch.cuda.graph(self.graph, pool=pool, capture_error_mode="thread_local"):
                self._run(model)
        self.cache.reset()

    def _run(self, model: torch.nn.Module) -> None:
        (_compiled_step() if self.compiled else CapturedStep._step)(self, model)

    def _step(self, model: torch.nn.Module) -> torch.Tensor:
        out = model(input_ids=self.tokens, position_ids=self.positions, cache=self.cache, logits_to_keep=1)
        logits = out.logits[:, -1]
        self.logits.copy_(logits)
        chosen = torch.where(self.unfinished, logits.argmax(dim=-1), self.pad)
        self.unfinished &= ~self.is_eos[chosen]
        self.tokens.copy_(chosen[:, None])
        self.positions.add_(1)

    def replay(self) -> torch.Tensor:
        """Run the step; returns `logits` (a static buffer: read it before the next replay)."""
        if self.graph is not None:
            self.graph.replay()
        else:
            with torch.no_grad():
                self._run(self._model())
        return self.logits

    def start(self, eos: Sequence[int], pad: int) -> None:
        """Prepare for a new sequence: an empty cache, all rows unfinished, these EOS ids and padding (ids
        outside the vocabulary can never be generated: they are left out)."""
        self.cache.reset()
        self.unfinished.fill_(True)
        self.is_eos.zero_()
        vocab = self.is_eos.shape[0]
        inside = [i for i in eos if 0 <= i < vocab]
        if inside:
            self.is_eos[torch.tensor(inside, device=self.is_eos.device)] = True
        self.pad.fill_(pad)


_COMPILED = None


def _compiled_step():
    # One compiled function for every step object: steps (and models) of the same shapes share its code.
    global _COMPILED
    if _COMPILED is None:
        from ..kernels import gemv

        gemv.kernel()  # built now, outside tracing, so that compiled float32 steps call it too
        # Inductor notes every kernel mixing half types (int4 layers' float16 scales, bfloat16 activations).
        warnings.filterwarnings("ignore", message="bf16 and fp16 are mixed", module="torch._inductor")
        _COMPILED = torch.compile(CapturedStep._step, dynamic=False)
    return _COMPILED


class GraphRunner:
    """The captured steps of one model, by (batch bucket, cache-length bucket), sharing one memory pool.
    Each step holds its own cache and serves one sequence at a time (`acquire`/`release`); concurrent
    sequences of the same buckets get steps of their own. `bombus.generation.graphs.release(model)` frees
    them all."""

    def __init__(self, model: torch.nn.Module, capture: bool, compile: bool = False):
        self._model = weakref.ref(model)
        self.capture, self.compile = capture, compile
        self.pool = torch.cuda.graph_pool_handle() if capture else None
        self.steps: dict[tuple[int, int], list[CapturedStep]] = {}
        self.signature = _signature(model, capture, self.compile)
        self._lock = threading.Lock()

    def key(self, rows: int, length: int) -> tuple[int, int]:
        """The (batch, cache length) buckets serving `rows` rows of up to `length` cache slots."""
        limit = getattr(self._model().spec, "max_positions", None)
        return batch_bucket(rows), length_bucket(length, limit)

    def acquire(self, rows: int, length: int) -> CapturedStep:
        """A free step serving `rows` rows of up to `length` cache slots (captured on first use), marked
        busy until `release`."""
        key = self.key(rows, length)
        with self._lock:
            free = [s for s in self.steps.get(key, []) if not s.busy]
            if free:
                free[0].busy = True
                return free[0]
        step = CapturedStep(self._model(), *key, capture=self.capture, pool=self.pool, compile=self.compile)
        step.busy = True
        with self._lock:
            self.steps.setdefault(key, []).append(step)
        return step

    def release(self, step: CapturedStep) -> None:
        step.busy = False


_RUNNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _signature(model: torch.nn.Module, capture: bool, compile: bool = False) -> tuple:
    # A graph replays fixed addresses: new weights (e.g. `model.to`) or another attention path need new captures.
    return (capture, compile, getattr(model, "attention", None), tuple(p.data_ptr() for p in model.parameters()))


def runner(model: torch.nn.Module, capture: bool | None = None, compile: bool = False) -> GraphRunner:
    """The model's `GraphRunner` (made on first use; `capture` defaults to whether the model is on CUDA;
    `compile` compiles the steps, before capturing them where they are captured)."""
    capture = model.device.type == "cuda" if capture is None else capture
    current = _RUNNERS.get(model)
    if current is None or current.signature != _signature(model, capture, compile):
        current = _RUNNERS[model] = GraphRunner(model, capture, compile)
    return current


def release(model: torch.nn.Module) -> None:
    """Free the model's captured steps and their caches."""
    _RUNNERS.pop(model, None)


def problem(run) -> str | None:
    """Why `run` (a `search._Run`) cannot decode over a captured step, or None when it can."""
    cfg, model = run.cfg, run.model
    if cfg.mode not in ("greedy", "sample"):
        return f"{cfg.mode} search reorders its cache"
    if run.token_type_ids is not None:
        return "token_type_ids are given"
    if run.stop_strings is not None:
        return "stop_strings are checked on the host at every step"
    if run.stopping_criteria:
        return "stopping_criteria are called on the host at every step"
    if run.recorder is not None:
        return "return_dict_in_generate records every step's outputs"
    if model.training:
        return "the model is in training mode"
    vocab = getattr(getattr(model, "spec", None), "vocab_size", None)
    pad = cfg.pad_token_id
    if vocab is None or (pad is not None and not 0 <= pad < vocab):
        return "the padding token is not a token of the vocabulary"
    return None


def _captures(run) -> bool:
    return run.input_ids.device.type == "cuda" and bool(run.cfg.cuda_graph)


def wanted(run) -> bool:
    """Whether `generate` decodes `run` over a captured or compiled step: on CUDA with `cuda_graph` on, or
    with `compile` on, and no `problem`."""
    return problem(run) is None and (_captures(run) or bool(run.cfg.compile))


def greedy_or_sample(run, *, capture: bool | None = None, check_every: int = CHECK_EVERY
                     ) -> Generator[torch.Tensor, None, torch.Tensor]:
    """Greedy decoding or sampling over a captured step (see the module doc): yields each step's tokens,
    returns `[rows, prompt + new]`, identical to the step-by-step loop. `capture=False` replays eagerly
    (compiled when the run's `compile` option is on)."""
    capture = _captures(run) if capture is None else capture
    owner = runner(run.model, capture, compile=bool(run.cfg.compile))
    step = owner.acquire(run.input_ids.shape[0], run.cfg.max_length - 1)  # the last token is never fed back
    try:
        return (yield from _decode(run, step, check_every))
    finally:
        owner.release(step)


def _decode(run, step: CapturedStep, check_every: int) -> Generator[torch.Tensor, None, torch.Tensor]:
    cfg, ids = run.cfg, run.input_ids
    rows, prompt_length = ids.shape
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else 0
    step.start(cfg.eos_token_ids, pad)
    extra = step.batch - rows  # rows that fill the bucket: copies of row 0, discarded
    fill = (lambda t: t) if not extra else (lambda t: torch.cat([t, t[:1].expand(extra, *t.shape[1:])]))

    sequences = ids.new_full((rows, cfg.max_length), pad)
    sequences[:, :prompt_length] = ids
    with torch.no_grad():
        out = run.model(input_ids=fill(ids), attention_mask=fill(run.attention_mask),
                        position_ids=fill(run.positions), cache=step.cache, logits_to_keep=1)
        logits = out.logits[:rows, -1].float()
        step.positions.copy_(fill(run.positions[:, -1:] + 1))
        fused = not run.processors and not cfg.do_sample  # the captured step selects by itself
        unfinished = step.unfinished[:rows] if fused else torch.ones(rows, dtype=torch.bool, device=ids.device)
        length = yielded = prompt_length
        while True:
            if fused and length > prompt_length:
                step.replay()
                sequences[:, length] = step.tokens[:rows, 0]
            else:
                tokens = run.select(apply(run.processors, sequences[:, :length], logits))
                if run.eos is not None:
                    tokens = torch.where(unfinished, tokens, pad)
                sequences[:, length] = tokens
                unfinished &= ~run.finished(sequences[:, : length + 1])
            length += 1
            end = length >= cfg.max_length or run.out_of_time()
            if end or (length - prompt_length) % check_every == 0:
                if end or (run.eos is not None and not bool(unfinished.any())):  # the host sync
                    length = _length_when_all_ended(sequences, prompt_length, length, run.eos)
                    end = True
                for column in range(yielded, length):
                    yield sequences[:, column]
                yielded = length
                if end:
                    return sequences[:, :length]
            if not fused:
                step.tokens[:rows, 0] = sequences[:, length - 1]
                logits = step.replay()[:rows]
            elif length == prompt_length + 1:  # the first token came from the prefill: hand it over
                step.tokens[:rows, 0] = sequences[:, length - 1]


def _length_when_all_ended(sequences: torch.Tensor, prompt_length: int, length: int,
                           eos: torch.Tensor | None) -> int:
    """The length at which the step-by-step loop stops: one past the latest row's first EOS when every row
    has one (a row's first EOS among its new tokens is where it ended), else `length`."""
    if eos is None:
        return length
    hit = torch.isin(sequences[:, prompt_length:length], eos)
    ended = hit.any(dim=1)
    if not bool(ended.all()):
        return length
    return prompt_length + int(hit.int().argmax(dim=1).max()) + 1
