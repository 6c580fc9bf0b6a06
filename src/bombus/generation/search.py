"""Decoding: greedy, sampling, beam search (and beam sampling), contrastive search — over a static KV cache.

Every strategy follows the same shape. A prefill runs the whole (left-padded) prompt once, writing the
cache; then each step feeds one token per row, with its position, and gets the next logits back
(`_Decoder.step`): a function of tensors only (ids, positions, the cache's buffers and offset), so it can be
compiled or captured in a CUDA graph. The LM head runs on the last position only (`logits_to_keep=1`).
Between steps the only host sync is the stop check (`unfinished.any()`); sampling draws with exponential
noise (`argmax(p / q)`, q ~ Exp(1)), which is exactly what `torch.multinomial` does for one sample — same
RNG stream, same tokens — without its validity check's sync.

Outputs follow transformers' layout: `[batch * num_return_sequences, prompt + new]`, rows finished early
padded with `pad_token_id`; with `return_dict_in_generate`, an `Output` with transformers' field names
(`_Recorder`). Beams reorder the cache in place, moving only the generated slots (`Cache.reorder`).
"""

from __future__ import annotations

import json
import time
import warnings
import weakref
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import GenerationError
from ..output import Output
from ..tokenizer.byte_level import unicode_to_bytes
from . import config as _config
from .config import GenerationConfig, Resolved
from .processors import LogitsProcessor, apply, as_processor_list, build_processors

CAUSAL_LM = "for_causal_language_modeling"

StoppingCriterion = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | bool"]


# ---- public entry points --------------------------------------------------------------------------------


def generate(
    model: torch.nn.Module,
    input_ids: torch.Tensor | Sequence[int] | Sequence[Sequence[int]] | None = None,
    attention_mask: torch.Tensor | None = None,
    generation_config: GenerationConfig | dict | None = None,
    streamer: Any | None = None,
    logits_processor: LogitsProcessor | Sequence[LogitsProcessor] | None = None,
    tokenizer: Any | None = None,
    generator: torch.Generator | None = None,
    token_type_ids: torch.Tensor | None = None,
    stopping_criteria: StoppingCriterion | Sequence[StoppingCriterion] | None = None,
    prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], Sequence[int]] | None = None,
    negative_prompt_ids: torch.Tensor | None = None,
    negative_prompt_attention_mask: torch.Tensor | None = None,
    **fields: Any,
) -> torch.Tensor | Output:
    """Continue each prompt of `input_ids`; returns prompt + new tokens, `[batch * num_return_sequences, T]`
    (or an `Output` with `return_dict_in_generate=True`).

    Args:
        model: a bombus causal LM (`for_causal_language_modeling`; GPT-2 double heads works too).
        input_ids: `[batch, prompt]` LongTensor (or `[prompt]`, or lists of ids). Batches of different lengths
            must be left-padded; `attention_mask` says which tokens are real. None starts from `bos_token_id`.
        attention_mask: `[batch, prompt]`, 1 for real tokens. Default: inferred as transformers does — from
            `pad_token_id` if it occurs in the prompt and differs from the EOS token, else all ones.
        generation_config: a `GenerationConfig` (or dict) overriding the model's own (`model.generation_config`
            when the model has one, else its spec's bos/eos/pad token ids).
        streamer: receives `put(ids)` for the prompt then each step's tokens, and `end()`
            (e.g. `TextStreamer`). Not with beam search.
        logits_processor: extra callables `(input_ids, scores) -> scores`, one or a list; they run after the
            built-in processors and before the sampling warpers (a built-in type passed here replaces the
            built-in one, as in transformers).
        tokenizer: needed for `stop_strings` (`get_vocab()`, `decode`, `convert_ids_to_tokens`).
        generator: a `torch.Generator` for sampling (instead of `seed` / the global RNG).
        token_type_ids: optional segment ids of the prompt; new tokens repeat the last one (transformers).
        stopping_criteria: extra stop conditions, one or a list of callables `(input_ids, scores)` (e.g.
            transformers `StoppingCriteria`) returning a bool tensor `[rows]` (True: that row is done) or one
            bool for every row. `input_ids` are the rows so far, newest token last; `scores` the processed
            scores `[rows, V]` from which each row's newest token was chosen (beam search: of the beam it
            extends). A done row is padded like a row that hit EOS (only when an EOS token is set, as in
            transformers; without one it keeps generating until every row is done).
        prefix_allowed_tokens_fn: `(batch_id, row_ids) -> allowed token ids`: only those can come next
            (`batch_id` is the row's prompt index; `row_ids` the row so far, a 1-D tensor).
        negative_prompt_ids, negative_prompt_attention_mask: with `guidance_scale` != 1, the unconditional
            context `[batch, U]` of classifier-free guidance (default: each row's last prompt token).
        **fields: `GenerationConfig` options by name — `max_new_tokens`, `do_sample`, `num_beams`, `top_p`,
            ... (`GenerationConfig.docs()` lists them with their defaults). Unknown names raise.

    Strategy (transformers' rules): `num_beams > 1` -> beam search (beam sampling with `do_sample`);
    otherwise `do_sample` -> sampling; `penalty_alpha > 0` with `top_k > 1` -> contrastive search; else greedy.

    Raises:
        GenerationError: unknown or contradictory options, or a prompt that leaves no room to generate.
    """
    run = _Run.prepare(model, input_ids, attention_mask, generation_config, logits_processor, tokenizer,
                       generator, token_type_ids, fields, stopping_criteria=stopping_criteria,
                       prefix_allowed_tokens_fn=prefix_allowed_tokens_fn, negative_prompt_ids=negative_prompt_ids,
                       negative_prompt_attention_mask=negative_prompt_attention_mask)
    if streamer is not None and run.cfg.mode in ("beam", "beam_sample"):
        raise GenerationError("a streamer cannot follow beam search (the best beam is known only at the end); "
                              "use num_beams=1")
    if streamer is not None:
        streamer.put(run.input_ids.cpu())
    steps = run.decode()
    with torch.no_grad():
        while True:
            try:
                tokens = next(steps)
            except StopIteration as done:
                result = done.value
                break
            if streamer is not None:
                streamer.put(tokens.cpu())
    if streamer is not None:
        streamer.end()
    return result


def steps(
    model: torch.nn.Module,
    input_ids: torch.Tensor | Sequence[int] | Sequence[Sequence[int]] | None = None,
    attention_mask: torch.Tensor | None = None,
    generation_config: GenerationConfig | dict | None = None,
    logits_processor: LogitsProcessor | Sequence[LogitsProcessor] | None = None,
    tokenizer: Any | None = None,
    generator: torch.Generator | None = None,
    stopping_criteria: StoppingCriterion | Sequence[StoppingCriterion] | None = None,
    prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], Sequence[int]] | None = None,
    **fields: Any,
) -> Iterator[torch.Tensor]:
    """Lazy `generate`: yields the (expanded) prompt `[batch, T]`, then each step's new tokens `[batch]`,
    on the CPU. Decoding advances only when the next item is requested. Not for beam search."""
    extras = {k: fields.pop(k, None) for k in ("negative_prompt_ids", "negative_prompt_attention_mask")}
    run = _Run.prepare(model, input_ids, attention_mask, generation_config, logits_processor, tokenizer,
                       generator, fields.pop("token_type_ids", None), fields, stopping_criteria=stopping_criteria,
                       prefix_allowed_tokens_fn=prefix_allowed_tokens_fn, **extras)
    if run.cfg.mode in ("beam", "beam_sample"):
        raise GenerationError("beam search cannot be streamed (the best beam is known only at the end); "
                              "use num_beams=1")
    yield run.input_ids.cpu()
    decoding = run.decode()
    while True:
        # no_grad only around our own work: the consumer's code between items runs in its own mode.
        with torch.no_grad():
            try:
                tokens = next(decoding)
            except StopIteration:
                return
        yield tokens.cpu()


def prepare_inputs(prompt_or_inputs: Any, tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A prompt as `generate` inputs: a string (encoded with `tokenizer.encode`), ids, or a dict with
    `input_ids` (and `attention_mask`)."""
    mask = None
    if isinstance(prompt_or_inputs, str):
        ids: Any = tokenizer.encode(prompt_or_inputs)
    elif isinstance(prompt_or_inputs, dict) or hasattr(prompt_or_inputs, "keys"):
        ids, mask = prompt_or_inputs["input_ids"], prompt_or_inputs.get("attention_mask")
    else:
        ids = prompt_or_inputs
    ids = _as_ids(ids)
    if mask is not None:
        mask = torch.as_tensor(mask).reshape(ids.shape)
    return ids, mask


# ---- preparation ----------------------------------------------------------------------------------------


def _as_ids(ids: Any) -> torch.Tensor:
    if not isinstance(ids, torch.Tensor):
        try:
            ids = torch.tensor(ids, dtype=torch.long)
        except (TypeError, ValueError) as e:
            raise GenerationError(f"input_ids must be a LongTensor or (lists of) ints of equal length: {e}") from None
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise GenerationError(f"input_ids must hold integer token ids, got dtype {ids.dtype}")
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2:
        raise GenerationError(f"input_ids must be [batch, length], got shape {tuple(ids.shape)}")
    return ids.long()


def _model_generation_config(model: torch.nn.Module) -> GenerationConfig:
    """The model's defaults: its `generation_config` if it has one, else the spec's special tokens."""
    own = getattr(model, "generation_config", None)
    if isinstance(own, GenerationConfig):
        return own
    if isinstance(own, dict):
        return GenerationConfig.from_dict(own, strict=False)
    spec = getattr(model, "spec", None)
    values = {name: getattr(spec, name, None) for name in ("bos_token_id", "eos_token_id", "pad_token_id")}
    return GenerationConfig(**{k: v for k, v in values.items() if v is not None})


@dataclass
class _Run:
    """Everything one `generate` call decided before decoding."""

    model: torch.nn.Module
    cfg: Resolved
    input_ids: torch.Tensor  # [rows, T], expanded for beams / return sequences
    attention_mask: torch.Tensor  # [rows, T] long
    positions: torch.Tensor  # [rows, T]
    token_type_ids: torch.Tensor | None
    processors: list[LogitsProcessor]
    eos: torch.Tensor | None  # [E] long, None without EOS
    stop_strings: StopStrings | None
    generator: torch.Generator | None
    stopping_criteria: list[StoppingCriterion] = field(default_factory=list)
    recorder: _Recorder | None = None  # return_dict_in_generate
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def prepare(cls, model, input_ids, attention_mask, generation_config, logits_processor, tokenizer,
                generator, token_type_ids, fields, *, stopping_criteria=None, prefix_allowed_tokens_fn=None,
                negative_prompt_ids=None, negative_prompt_attention_mask=None) -> _Run:
        if not isinstance(model, torch.nn.Module) or not hasattr(model, "init_cache"):
            raise GenerationError(f"generate needs a bombus model with a KV cache, got {type(model).__name__}")
        arch = getattr(model, "architecture", CAUSAL_LM)
        if arch not in getattr(model, "generative", (CAUSAL_LM,)):
            raise GenerationError(f"a {arch} model cannot generate; load it with "
                                  f"architecture='{CAUSAL_LM}'")
        spec = getattr(model, "spec", None)
        device = model.device if hasattr(model, "device") else next(model.parameters()).device
        merged = _config.merge(_model_generation_config(model), generation_config, fields)

        if input_ids is None:
            bos = merged.get("bos_token_id")
            if bos is None:
                raise GenerationError("input_ids is None and no bos_token_id is set to start from")
            input_ids = [[bos]]
        input_ids = _as_ids(input_ids).to(device)
        batch, prompt_length = input_ids.shape
        if prompt_length == 0:
            raise GenerationError("input_ids is empty: give at least one token per row")
        cfg = _config.resolve(merged, prompt_length=prompt_length,
                              max_positions=getattr(spec, "max_positions", None))

        vocab_size = getattr(spec, "vocab_size", None)
        if vocab_size is not None and (input_ids.min() < 0 or input_ids.max() >= vocab_size):
            raise GenerationError(f"input_ids must lie in [0, {vocab_size}) (the model's vocab_size); got values "
                                  f"in [{int(input_ids.min())}, {int(input_ids.max())}]")

        mask = _attention_mask(attention_mask, input_ids, cfg, device)

        expand = max(cfg.num_beams, cfg.num_return_sequences)
        if expand > 1:
            input_ids = input_ids.repeat_interleave(expand, dim=0)
            mask = mask.repeat_interleave(expand, dim=0)
            if token_type_ids is not None:
                token_type_ids = torch.as_tensor(token_type_ids).repeat_interleave(expand, dim=0)
        if token_type_ids is not None:
            token_type_ids = torch.as_tensor(token_type_ids, device=device).long()
            if token_type_ids.shape != input_ids.shape:
                raise GenerationError(f"token_type_ids has shape {tuple(token_type_ids.shape)}, input_ids "
                                      f"{tuple(input_ids.shape)}")

        # Positions count real tokens only, so a left-padded row sees the positions it would see alone.
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)

        padded = not bool(mask.all())
        padding_lengths = (mask != 0).int().argmax(dim=1) if padded else None
        if prefix_allowed_tokens_fn is not None and not callable(prefix_allowed_tokens_fn):
            raise GenerationError("prefix_allowed_tokens_fn must be a callable (batch_id, input_ids) -> token ids, "
                                  f"got {type(prefix_allowed_tokens_fn).__name__}")
        unconditional = None
        if cfg.guidance_scale != 1:
            unconditional = _Unconditional.prepare(model, input_ids, negative_prompt_ids,
                                                   negative_prompt_attention_mask, expand, cfg, vocab_size)
        elif negative_prompt_ids is not None or negative_prompt_attention_mask is not None:
            raise GenerationError("negative_prompt_ids is used only by classifier-free guidance: set "
                                  "guidance_scale (!= 1) too")
        processors = build_processors(cfg, prompt_length=prompt_length, padding_lengths=padding_lengths,
                                      custom=as_processor_list(logits_processor),
                                      prefix_allowed_tokens_fn=prefix_allowed_tokens_fn, unconditional=unconditional)

        eos = torch.tensor(cfg.eos_token_ids, dtype=torch.long, device=device) if cfg.eos_token_ids else None
        stop = None
        if cfg.stop_strings is not None:
            if tokenizer is None:
                raise GenerationError("stop_strings needs the tokenizer: pass tokenizer= to generate")
            stop = StopStrings(cfg.stop_strings, tokenizer)

        if generator is not None and not isinstance(generator, torch.Generator):
            raise GenerationError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if generator is None and cfg.seed is not None:
            generator = torch.Generator(device=device).manual_seed(cfg.seed)
        return cls(model=model, cfg=cfg, input_ids=input_ids, attention_mask=mask, positions=positions,
                   token_type_ids=token_type_ids, processors=processors, eos=eos, stop_strings=stop,
                   generator=generator, stopping_criteria=_criteria_list(stopping_criteria),
                   recorder=_Recorder.prepare(cfg))

    def decode(self) -> Generator[torch.Tensor, None, torch.Tensor]:
        """The decoding loop of the configured strategy: yields each step's tokens, returns the output."""
        mode = self.cfg.mode
        if mode in ("beam", "beam_sample"):
            return _no_steps(_beam_search, self)
        if mode == "contrastive":
            return _contrastive(self)
        return _greedy_or_sample(self)

    # -- shared pieces ------------------------------------------------------------------------------------

    def finished(self, sequences: torch.Tensor, scores: torch.Tensor | None = None) -> torch.Tensor:
        """[rows] bool: which rows (each ending with its newest token) hit EOS, a stop string or a stopping
        criterion (`scores`: the processed scores each newest token was chosen from, for the criteria).

        Maximum length and time are handled by the callers (they end every row at once)."""
        last = sequences[:, -1]
        done = torch.isin(last, self.eos) if self.eos is not None else torch.zeros_like(last, dtype=torch.bool)
        if self.stop_strings is not None:
            done = done | self.stop_strings(sequences)
        for criterion in self.stopping_criteria:
            done = done | _criterion_result(criterion, criterion(sequences, scores), done)
        return done

    def record(self, logits: torch.Tensor, scores: torch.Tensor) -> None:
        """Keep a step's raw logits and processed scores when `return_dict_in_generate` asks for them."""
        if self.recorder is not None:
            self.recorder.step(logits, scores)

    def output(self, sequences: torch.Tensor, **beam: torch.Tensor) -> torch.Tensor | Output:
        """What `generate` returns: the ids, or with `return_dict_in_generate` an `Output` (beam search adds
        `beam_indices` and `sequences_scores`)."""
        if self.recorder is None:
            return sequences
        return self.recorder.output(sequences, **beam)

    def out_of_time(self) -> bool:
        return self.cfg.max_time is not None and time.monotonic() - self.started > self.cfg.max_time

    def select(self, scores: torch.Tensor) -> torch.Tensor:
        """The next token of each row: argmax, or a draw from softmax(scores) when sampling."""
        if not self.cfg.do_sample:
            return scores.argmax(dim=-1)
        probs = scores.softmax(dim=-1)
        # = torch.multinomial(probs, 1) (same noise, same draw) without its host-side validity check.
        noise = torch.empty_like(probs).exponential_(1, generator=self.generator)
        return (probs / noise).argmax(dim=-1)


def _attention_mask(attention_mask, input_ids: torch.Tensor, cfg: Resolved, device) -> torch.Tensor:
    if attention_mask is None:
        pad, eos = cfg.pad_token_id, cfg.eos_token_ids
        # transformers' inference: padding is recognisable only when the pad token is not also EOS.
        if pad is not None and pad not in eos and bool((input_ids == pad).any()):
            return (input_ids != pad).long()
        return torch.ones_like(input_ids)
    mask = torch.as_tensor(attention_mask, device=device)
    if mask.shape != input_ids.shape:
        raise GenerationError(f"attention_mask has shape {tuple(mask.shape)} but input_ids has "
                              f"{tuple(input_ids.shape)}; they must match")
    mask = mask.long()
    if bool(((mask != 0) & (mask != 1)).any()):
        raise GenerationError("attention_mask must hold only 0 and 1")
    empty = (mask.sum(-1) == 0).nonzero().flatten().tolist()
    if empty:
        raise GenerationError(f"rows {empty} of attention_mask have no tokens")
    if bool((mask[:, -1] == 0).any()):
        # Right padding would make the model continue after pad tokens.
        raise GenerationError("attention_mask shows right padding; decoder-only generation needs left padding "
                              "(tokenizer pad_direction='left')")
    return mask


class _Decoder:
    """The model seen as prefill + one-token steps over a static cache of `rows` x `length` slots."""

    def __init__(self, run: _Run, rows: int, length: int):
        self.model = run.model
        self.cache = run.model.init_cache(rows, length)
        self.types = None if run.token_type_ids is None else run.token_type_ids[:, -1:]
        # return_dict_in_generate with hidden states / attentions: every forward asks for them and hands them on.
        recorder = run.recorder
        self.recorder = recorder if recorder is not None and recorder.model_flags else None
        self.flags = self.recorder.model_flags if self.recorder is not None else {}

    def prefill(self, input_ids, attention_mask, positions, token_type_ids=None, *, hidden: bool = False):
        """Run the prompt; returns the last position's logits (float32) and, if asked, all final hidden states."""
        types = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, cache=self.cache,
                         logits_to_keep=1, **types, **self.flags)
        if self.recorder is not None:
            self.recorder.forward(out, input_ids.shape[1])
        logits = out.logits[:, -1].float()
        return (logits, out.hidden_state) if hidden else logits

    def step(self, tokens: torch.Tensor, positions: torch.Tensor, *, hidden: bool = False):
        """One token per row (`[rows, 1]` ids and positions) -> next logits `[rows, V]` (float32), and the
        final hidden state `[rows, H]` if asked. Depends on tensors only: no host syncs, no Python branches
        on values."""
        types = {} if self.types is None else {"token_type_ids": self.types}
        out = self.model(input_ids=tokens, position_ids=positions, cache=self.cache, logits_to_keep=1, **types,
                         **self.flags)
        if self.recorder is not None:
            self.recorder.forward(out, 1)
        logits = out.logits[:, -1].float()
        return (logits, out.hidden_state[:, -1]) if hidden else logits


def _criteria_list(stopping_criteria: Any) -> list[StoppingCriterion]:
    """`stopping_criteria=` of `generate`: None, one callable, or a sequence of them."""
    if stopping_criteria is None:
        return []
    items = [stopping_criteria] if callable(stopping_criteria) else list(stopping_criteria)
    for item in items:
        if not callable(item):
            raise GenerationError("stopping_criteria entries must be callables (input_ids, scores) -> bool tensor "
                                  f"[rows] or bool, got {type(item).__name__}")
    return items


def _criterion_result(criterion: Any, result: Any, done: torch.Tensor) -> torch.Tensor:
    """A stopping criterion's answer as `[rows]` bool: a bool (every row) or a bool tensor `[rows]`."""
    name = getattr(criterion, "__name__", type(criterion).__name__)
    answer = result
    if not isinstance(answer, torch.Tensor):
        try:
            answer = torch.as_tensor(answer)
        except (TypeError, ValueError, RuntimeError):
            answer = None
    if answer is None or answer.dtype != torch.bool:
        got = f"a tensor of {result.dtype}" if isinstance(result, torch.Tensor) else type(result).__name__
        raise GenerationError(f"stopping criterion {name} returned {got}; expected a bool or a bool tensor [rows]")
    if answer.dim() == 0:
        return answer.to(done.device).expand_as(done)
    if answer.shape != done.shape:
        raise GenerationError(f"stopping criterion {name} returned shape {tuple(answer.shape)}; expected "
                              f"{tuple(done.shape)} (one bool per row) or a single bool")
    return answer.to(done.device)


class _Recorder:
    """What `return_dict_in_generate` collects, under transformers' names: per step the processed `scores`
    and raw `logits` (`[rows, V]`), the model's `hidden_states` and `attentions` (per layer; attentions cut
    to the cache slots written so far, so they have the reference's shape)."""

    def __init__(self, cfg: Resolved):
        self.scores: list[torch.Tensor] | None = [] if cfg.output_scores else None
        self.logits: list[torch.Tensor] | None = [] if cfg.output_logits else None
        self.hidden_states: list[tuple[torch.Tensor, ...]] | None = [] if cfg.output_hidden_states else None
        self.attentions: list[tuple[torch.Tensor, ...]] | None = [] if cfg.output_attentions else None
        self.model_flags = {name: True for name in ("output_hidden_states", "output_attentions") if cfg.values[name]}
        self.written = 0  # cache slots written so far

    @classmethod
    def prepare(cls, cfg: Resolved) -> _Recorder | None:
        wanted = [name for name in ("output_scores", "output_logits", "output_hidden_states", "output_attentions")
                  if cfg.values[name]]
        if not cfg.return_dict_in_generate:
            if wanted:
                warnings.warn(f"{', '.join(wanted)} have no effect without return_dict_in_generate=True",
                              stacklevel=4)
            return None
        model_outputs = [name for name in wanted if name in ("output_hidden_states", "output_attentions")]
        if model_outputs and cfg.mode == "contrastive":
            raise GenerationError(f"{' and '.join(model_outputs)} are not available with contrastive search (its "
                                  "forward passes run every candidate); use output_scores / output_logits")
        return cls(cfg)

    def step(self, logits: torch.Tensor, scores: torch.Tensor) -> None:
        if self.scores is not None:
            self.scores.append(scores)
        if self.logits is not None:
            self.logits.append(logits)

    def forward(self, out: Output, new_tokens: int) -> None:
        self.written += new_tokens
        if self.hidden_states is not None:
            self.hidden_states.append(tuple(out.hidden_states))
        if self.attentions is not None:
            self.attentions.append(tuple(a[..., : self.written] for a in out.attentions))

    def output(self, sequences: torch.Tensor, *, beam_indices: torch.Tensor | None = None,
               sequences_scores: torch.Tensor | None = None) -> Output:
        out = Output(sequences=sequences)
        if sequences_scores is not None and self.scores is not None:
            out.sequences_scores = sequences_scores
        for name in ("scores", "logits", "hidden_states", "attentions"):
            values = getattr(self, name)
            if values is not None:
                out[name] = tuple(values)
        if beam_indices is not None:
            out.beam_indices = beam_indices
        return out


class _Unconditional:
    """The unconditional branch of classifier-free guidance (transformers' unbatched version): the model on
    `negative_prompt_ids` (else each row's last prompt token), then on each row's newest token, over its own
    cache. Like the reference, that cache does not follow beam reordering."""

    def __init__(self, model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, new_tokens: int):
        self.model = model
        self.first: tuple[torch.Tensor, torch.Tensor] | None = (ids, mask)
        self.cache = model.init_cache(ids.shape[0], ids.shape[1] + new_tokens)

    @classmethod
    def prepare(cls, model, input_ids, negative_ids, negative_mask, expand: int, cfg: Resolved,
                vocab_size: int | None) -> _Unconditional:
        device = input_ids.device
        new_tokens = cfg.max_length - input_ids.shape[1]
        if negative_ids is None:
            if negative_mask is not None:
                raise GenerationError("negative_prompt_attention_mask is given without negative_prompt_ids")
            ids = input_ids[:, -1:]
            return cls(model, ids, torch.ones_like(ids), new_tokens)
        ids = _as_ids(negative_ids).to(device)
        batch = input_ids.shape[0] // expand
        if ids.shape[0] != batch:
            raise GenerationError(f"negative_prompt_ids has {ids.shape[0]} rows but input_ids has {batch}: give one "
                                  "negative prompt per prompt")
        if vocab_size is not None and (ids.min() < 0 or ids.max() >= vocab_size):
            raise GenerationError(f"negative_prompt_ids must lie in [0, {vocab_size}) (the model's vocab_size)")
        mask = torch.ones_like(ids) if negative_mask is None else torch.as_tensor(negative_mask, device=device).long()
        if mask.shape != ids.shape:
            raise GenerationError(f"negative_prompt_attention_mask has shape {tuple(mask.shape)} but "
                                  f"negative_prompt_ids has {tuple(ids.shape)}; they must match")
        spec = getattr(model, "spec", None)
        limit = getattr(spec, "max_positions", None)
        if limit is not None and ids.shape[1] + new_tokens > limit:
            raise GenerationError(f"negative prompt ({ids.shape[1]} tokens) + {new_tokens} new tokens exceeds the "
                                  f"model's max_positions ({limit}); shorten the negative prompt")
        return cls(model, ids.repeat_interleave(expand, dim=0), mask.repeat_interleave(expand, dim=0), new_tokens)

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.first is not None:
            (ids, mask), self.first = self.first, None
        else:
            ids, mask = input_ids[:, -1:], None
        # No positions given: counted from the cache offset, padding included (as the reference does).
        out = self.model(input_ids=ids, attention_mask=mask, cache=self.cache, logits_to_keep=1)
        return out.logits[:, -1].float()


# ---- greedy and sampling ------------------------------------------------------------------------------


def _greedy_or_sample(run: _Run) -> Generator[torch.Tensor, None, torch.Tensor]:
    from . import graphs

    if graphs.wanted(run):  # CUDA: the same loop over a decode step replayed from a CUDA graph
        return (yield from graphs.greedy_or_sample(run))
    cfg, ids = run.cfg, run.input_ids
    rows, prompt_length = ids.shape
    pad = cfg.pad_token_id
    if run.eos is not None and pad is None:  # cannot happen: pad falls back to EOS
        raise GenerationError("pad_token_id is needed to fill finished rows")
    sequences = ids.new_full((rows, cfg.max_length), pad if pad is not None else 0)
    sequences[:, :prompt_length] = ids
    decoder = _Decoder(run, rows, cfg.max_length - 1)  # the last token is never fed back
    logits = decoder.prefill(ids, run.attention_mask, run.positions, run.token_type_ids)
    positions = run.positions[:, -1:] + 1
    unfinished = torch.ones(rows, dtype=torch.bool, device=ids.device)
    length = prompt_length
    while True:
        scores = apply(run.processors, sequences[:, :length], logits)
        run.record(logits, scores)
        tokens = run.select(scores)
        if run.eos is not None:  # finished rows get padding (transformers does this only when EOS is set)
            tokens = torch.where(unfinished, tokens, pad)
        sequences[:, length] = tokens
        length += 1
        yield tokens
        unfinished &= ~run.finished(sequences[:, :length], scores)
        if length >= cfg.max_length or run.out_of_time() or not bool(unfinished.any()):  # the one host sync
            return run.output(sequences[:, :length])
        logits = decoder.step(tokens[:, None], positions)
        positions = positions + 1


# ---- contrastive search ---------------------------------------------------------------------------------


def _contrastive(run: _Run) -> Generator[torch.Tensor, None, torch.Tensor]:
    """Contrastive search (Su et al., 2022), as transformers 4.x implemented it.

    Each step takes the `top_k` most likely tokens, runs all of them (one row each), and keeps per prompt
    the candidate maximising `(1 - alpha) * p(token) - alpha * max cosine(candidate hidden, context hidden)`.
    The cache holds `top_k` rows per prompt; after the choice, `cache.reorder` copies the chosen row over its
    siblings, so no cache is ever copied or sliced out.
    """
    cfg, ids = run.cfg, run.input_ids
    rows, prompt_length = ids.shape
    k, alpha = cfg.top_k, float(cfg.penalty_alpha)
    pad = cfg.pad_token_id
    device = ids.device
    sequences = ids.new_full((rows, cfg.max_length), pad if pad is not None else 0)
    sequences[:, :prompt_length] = ids
    decoder = _Decoder(run, rows * k, cfg.max_length)  # candidates for the last token go through the model too
    # The prompt goes in once per candidate row: every row of the cache then holds the prompt.
    expand = lambda t: None if t is None else t.repeat_interleave(k, dim=0)
    logits, hidden = decoder.prefill(expand(ids), expand(run.attention_mask), expand(run.positions),
                                     expand(run.token_type_ids), hidden=True)
    if decoder.types is not None:
        decoder.types = expand(decoder.types)
    logits = logits[::k]
    context = hidden.new_zeros((rows, cfg.max_length, hidden.shape[-1]))  # final hidden state of every token
    context[:, :prompt_length] = hidden[::k]
    context_mask = torch.ones((rows, cfg.max_length), dtype=torch.bool, device=device)
    context_mask[:, :prompt_length] = run.attention_mask.bool()
    positions = expand(run.positions[:, -1:] + 1)
    unfinished = torch.ones(rows, dtype=torch.bool, device=device)
    first_of_group = torch.arange(rows, device=device) * k
    length = prompt_length
    while True:
        scores = apply(run.processors, sequences[:, :length], logits)
        run.record(logits, scores)
        top_probs, top_ids = scores.softmax(dim=-1).topk(k, dim=-1)  # [rows, k]
        cand_logits, cand_hidden = decoder.step(top_ids.reshape(-1, 1), positions, hidden=True)
        cand_hidden = cand_hidden.view(rows, k, -1)
        ctx = context[:, :length]
        cosine = torch.einsum("bsh,bkh->bks", ctx / ctx.norm(dim=-1, keepdim=True),
                              cand_hidden / cand_hidden.norm(dim=-1, keepdim=True))
        cosine = cosine.masked_fill(~context_mask[:, None, :length], torch.finfo(cosine.dtype).min)
        penalty = cosine.amax(dim=-1)  # [rows, k]
        chosen = ((1.0 - alpha) * top_probs - alpha * penalty).argmax(dim=-1)  # [rows]
        tokens = top_ids.gather(1, chosen[:, None]).squeeze(1)
        context[:, length] = cand_hidden[torch.arange(rows, device=device), chosen]
        logits = cand_logits.view(rows, k, -1)[torch.arange(rows, device=device), chosen]
        # The candidates of a prompt share its prompt slots: only the generated ones (this step's included) move.
        decoder.cache.reorder((first_of_group + chosen).repeat_interleave(k), prompt_length, length + 1)
        if run.eos is not None:
            tokens = torch.where(unfinished, tokens, pad)
        sequences[:, length] = tokens
        length += 1
        yield tokens
        unfinished &= ~run.finished(sequences[:, :length], scores)
        if length >= cfg.max_length or run.out_of_time() or not bool(unfinished.any()):
            return run.output(sequences[:, :length])
        positions = positions + 1


# ---- beam search ----------------------------------------------------------------------------------------


def _no_steps(search: Any, run: _Run) -> Generator[torch.Tensor, None, torch.Tensor]:
    """`search(run)` as a decoding loop that yields nothing."""
    return search(run)
    yield  # unreachable; makes this function a generator


def _beam_search(run: _Run) -> torch.Tensor:
    """Beam search as transformers 5 does it (static shapes: `[batch, beams, max_length]` running and finished
    hypotheses, the top `2 * beams` continuations per step so that enough stay unfinished), with the cache
    reordered in place after each step. Returns the best `num_return_sequences` hypotheses per prompt."""
    cfg, flat_ids = run.cfg, run.input_ids
    beams = cfg.num_beams
    rows, prompt_length = flat_ids.shape
    batch = rows // beams
    max_length = cfg.max_length
    device = flat_ids.device
    length_penalty, early_stopping = float(cfg.length_penalty), cfg.early_stopping
    n_eos = 0 if run.eos is None else run.eos.numel()
    keep = max(2, 1 + n_eos) * beams
    top_beams = torch.arange(keep, device=device) < beams  # [keep]
    # transformers' fill value (`pad or eos[0] if eos is not None else -1`): visible only in rows that end
    # early, which needs EOS or a stop string.
    fill = -1 if run.eos is None else (cfg.pad_token_id or cfg.eos_token_ids[0])

    running = torch.full((batch, beams, max_length), fill, dtype=torch.long, device=device)
    running[:, :, :prompt_length] = flat_ids.view(batch, beams, prompt_length)
    finished_seqs = running.clone()
    running_scores = torch.zeros((batch, beams), dtype=torch.float, device=device)
    running_scores[:, 1:] = -1e9  # only the first beam starts, or all beams would pick the same tokens
    finished_scores = torch.full((batch, beams), -1e9, dtype=torch.float, device=device)
    is_finished = torch.zeros((batch, beams), dtype=torch.bool, device=device)
    can_improve = torch.ones((batch, 1), dtype=torch.bool, device=device)
    running_origin = torch.full((batch, beams, max_length - prompt_length), -1, dtype=torch.int32, device=device)
    finished_origin = running_origin.clone()

    decoder = _Decoder(run, rows, max_length - 1)
    logits = decoder.prefill(flat_ids, run.attention_mask, run.positions, run.token_type_ids)
    positions = run.positions[:, -1:] + 1
    flat_running = flat_ids
    length = prompt_length
    batch_offset = torch.arange(batch, device=device).view(-1, 1) * beams
    while True:
        processed = apply(run.processors, flat_running, logits.log_softmax(dim=-1))
        run.record(logits, processed)
        vocab = processed.shape[-1]
        log_probs = (processed.view(batch, beams, vocab) + running_scores[:, :, None]).view(batch, -1)

        # The best `keep` continuations over all beams (or `keep` draws without replacement).
        if cfg.do_sample:
            probs = log_probs.softmax(dim=-1)
            noise = torch.empty_like(probs).exponential_(1, generator=run.generator)
            top_indices = (probs / noise).topk(keep, dim=-1).indices  # = torch.multinomial(probs, keep)
            top_log_probs = log_probs.gather(1, top_indices)
            top_log_probs, order = top_log_probs.sort(dim=-1, descending=True)
            top_indices = top_indices.gather(1, order)
        else:
            top_log_probs, top_indices = log_probs.topk(keep, dim=-1)
        top_beam = top_indices // vocab
        top_seqs = _gather(running, top_beam)
        top_origin = _gather(running_origin, top_beam)
        top_seqs[:, :, length] = top_indices % vocab
        top_origin[:, :, length - prompt_length] = (top_beam + batch_offset).to(top_origin.dtype)

        # Which continuations end here (EOS, stop string, maximum length, time)?
        # (Stopping criteria see the scores of the beam each candidate extends.)
        top_scores = _gather(processed.view(batch, beams, vocab), top_beam).view(batch * keep, vocab) \
            if run.stopping_criteria else None
        ends = run.finished(top_seqs[:, :, : length + 1].reshape(batch * keep, -1), top_scores).view(batch, keep)
        if length + 1 >= max_length or run.out_of_time():
            ends = torch.ones_like(ends)

        # The best `beams` continuations that go on.
        go_on_scores = top_log_probs + ends.float() * -1e9
        best = go_on_scores.topk(beams, dim=-1).indices
        running = _gather(top_seqs, best)
        running_scores = _gather(go_on_scores, best)
        running_origin = _gather(top_origin, best)

        # Merge the newly finished ones (among the top `beams` only) into the finished hypotheses.
        just_finished = ends & top_beams[None, :]
        scores = top_log_probs / ((length + 1 - prompt_length) ** length_penalty)
        full = is_finished.all(dim=-1, keepdim=True) & (early_stopping is True)
        scores = scores + full.float() * -1e9 + (~can_improve).float() * -1e9 + (~just_finished).float() * -1e9
        merged_scores = torch.cat((finished_scores, scores), dim=1)
        best = merged_scores.topk(beams, dim=-1).indices
        finished_seqs = _gather(torch.cat((finished_seqs, top_seqs), dim=1), best)
        finished_scores = _gather(merged_scores, best)
        finished_origin = _gather(torch.cat((finished_origin, top_origin), dim=1), best)
        is_finished = _gather(torch.cat((is_finished, just_finished), dim=1), best)

        # The cache follows the beams: row i continues from the row its hypothesis came from.
        # Only the generated slots move: every beam of a prompt holds the same prompt slots.
        decoder.cache.reorder(running_origin[..., length - prompt_length].reshape(-1).long(), prompt_length, length)
        length += 1

        # Can a running beam still beat the worst finished one? (transformers' heuristic per early_stopping)
        if early_stopping == "never" and length_penalty > 0.0:
            best_length = max_length - prompt_length
        else:
            best_length = length - prompt_length
        best_possible = running_scores[:, :1] / (best_length**length_penalty)
        worst_finished = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True)[0], -1.0e9)
        can_improve = can_improve & (best_possible > worst_finished).any(dim=-1, keepdim=True)
        go_on = can_improve.any() & ~(is_finished.all() & (early_stopping is True)) & ~ends.all()
        if not bool(go_on):  # the one host sync per step
            break
        flat_running = running[:, :, :length].reshape(rows, length)
        logits = decoder.step(flat_running[:, -1:], positions)
        positions = positions + 1

    n = cfg.num_return_sequences
    sequences = finished_seqs[:, :n].reshape(batch * n, max_length)
    origin = finished_origin[:, :n].reshape(batch * n, -1)
    generated = int((origin + 1).bool().sum(dim=1).max())
    return run.output(sequences[:, : prompt_length + generated], beam_indices=origin[:, :generated],
                      sequences_scores=finished_scores[:, :n].reshape(batch * n))


def _gather(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`tensor[b, index[b, j], ...]` for `[batch, n, ...]` tensors (transformers' `_gather_beams`)."""
    while index.dim() < tensor.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(tensor, index, dim=1)




# ---- stop strings ---------------------------------------------------------------------------------------


class StopStrings:
    """transformers' `StopStringCriteria`: a row is done when one of `stop_strings` occurs in its text and
    ends inside its newest token ("st"+"op", "stop", "las"+"topper", "st"+"opera" all stop on "stop";
    "stop"+"at" does not, so an old occurrence never stops a row twice).

    Tokens are compared as the text they produce: bytes for byte-level BPE (GPT-2, RoBERTa) and byte-fallback
    (LLaMA) vocabularies, so a stop string can end in the middle of a multi-byte character; decoded strings
    otherwise. Checked on the host, which needs the newest tokens there: one small copy per step.
    """

    def __init__(self, stop_strings: str | Sequence[str], tokenizer: Any):
        strings = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings)
        self.table, as_bytes = _token_texts(tokenizer)
        self.targets = [s.encode("utf-8") if as_bytes else s for s in strings]
        self.empty: str | bytes = b"" if as_bytes else ""
        # Every token adds at least one character, so a match ending in the newest token starts within
        # the last len(target) tokens.
        self.window = max(len(t) for t in self.targets)

    def __call__(self, sequences: torch.Tensor) -> torch.Tensor:
        done = []
        for row in sequences[:, -self.window :].tolist():
            pieces = [self.table.get(t, self.empty) for t in row]
            text = self.empty.join(pieces)
            last_start = len(text) - len(pieces[-1])
            # The first occurrence starting late enough to end after `last_start` (find is left to right).
            done.append(any(text.find(t, max(0, last_start - len(t) + 1)) != -1 for t in self.targets))
        return torch.tensor(done, dtype=torch.bool, device=sequences.device)


_TEXT_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _token_texts(tokenizer: Any) -> tuple[dict[int, Any], bool]:
    """{token id: its text} (bytes for byte-level / byte-fallback vocabularies) and whether it is bytes."""
    vocab = tokenizer.get_vocab()
    try:
        cached = _TEXT_TABLES.get(tokenizer)
    except TypeError:  # not weak-referenceable / hashable
        cached = None
    if cached is not None and len(cached[0]) == len(vocab):
        return cached
    mode = _decoder_mode(tokenizer)
    byte_decoder = unicode_to_bytes() if mode == "byte_level" else None
    table: dict[int, Any] = {}
    plain = None
    for token, index in vocab.items():
        text: Any = None
        if mode == "byte_level" and all(c in byte_decoder for c in token):
            text = bytes(byte_decoder[c] for c in token)
        elif (mode == "byte_fallback" and len(token) == 6 and token.startswith("<0x") and token.endswith(">")
              and all(c in "0123456789abcdefABCDEF" for c in token[3:5])):
            text = bytes([int(token[3:5], 16)])
        if text is None:
            if plain is None:
                plain = _Plain(tokenizer)
            text = plain(token, index)
            if mode is not None:
                text = text.encode("utf-8")
        table[index] = text
    result = (table, mode is not None)
    try:
        _TEXT_TABLES[tokenizer] = result
    except TypeError:
        pass
    return result


class _Plain:
    """The text a token adds after some other text (transformers' trick: decode it behind a fixed prefix,
    so tokenizers that drop a leading space or add a word-start marker behave as mid-sentence)."""

    PREFIX = "abcdef"

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        try:
            self.base = list(tokenizer.encode(self.PREFIX, add_special_tokens=False))
        except TypeError:
            self.base = list(tokenizer.encode(self.PREFIX))
        self.as_tokens = hasattr(tokenizer, "convert_tokens_to_string") and hasattr(tokenizer, "convert_ids_to_tokens")
        if self.as_tokens:
            self.base_tokens = list(tokenizer.convert_ids_to_tokens(self.base))

    def __call__(self, token: str, index: int) -> str:
        if self.as_tokens:
            text = self.tokenizer.convert_tokens_to_string(self.base_tokens + [token])
        else:
            try:
                text = self.tokenizer.decode(self.base + [index], skip_special_tokens=False)
            except TypeError:
                text = self.tokenizer.decode(self.base + [index])
        at = text.find(self.PREFIX)
        return text[at + len(self.PREFIX) :] if at >= 0 else text


def _decoder_mode(tokenizer: Any) -> str | None:
    """'byte_level', 'byte_fallback' or None, from the `tokenizers` decoder behind `tokenizer` (if any)."""
    try:
        import tokenizers
    except ImportError:  # pragma: no cover - a dependency of bombus
        return None
    backend = None
    for candidate in (tokenizer, getattr(tokenizer, "backend", None), getattr(tokenizer, "backend_tokenizer", None),
                      getattr(tokenizer, "_tokenizer", None), getattr(tokenizer, "tokenizer", None)):
        if isinstance(candidate, tokenizers.Tokenizer):
            backend = candidate
            break
    decoder = getattr(backend, "decoder", None)
    if decoder is None:
        return None
    if type(decoder).__name__ == "ByteLevel":
        return "byte_level"
    try:
        state = json.loads(decoder.__getstate__())
    except (TypeError, ValueError, AttributeError):
        return None
    text = json.dumps(state)
    if '"ByteFallback"' in text:
        return "byte_fallback"
    if '"ByteLevel"' in text:
        return "byte_level"
    return None
