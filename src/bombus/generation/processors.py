"""Logits processors: callables `(input_ids [B, T], scores [B, V]) -> scores [B, V]`.

Each one matches the transformers `LogitsProcessor` named in its docstring, number for number, so that
decoding with them gives the reference's tokens. `input_ids` is everything so far (prompt, left padding
included, then the generated tokens), as in transformers. All of them are tensor code without host syncs;
what depends on the step reads `input_ids.shape[-1]`, a Python int.

`build_processors(config, ...)` creates the list that `generate` applies, in transformers' order
(processors, then the user's, then the sampling warpers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_NEG_INF = -math.inf


def _ids(token_ids: int | Iterable[int] | torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    if isinstance(token_ids, torch.Tensor):
        return token_ids.reshape(-1).to(device=device, dtype=torch.long)
    if isinstance(token_ids, int):
        token_ids = [token_ids]
    return torch.tensor(list(token_ids), dtype=torch.long, device=device)


def _vocab_mask(token_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """[V] bool: True at `token_ids` (ids outside the vocabulary are ignored)."""
    return torch.isin(torch.arange(scores.shape[-1], device=scores.device), token_ids.to(scores.device))


# ---- processors (applied in every mode) --------------------------------------------------------------


class MinLength:
    """transformers' `MinLengthLogitsProcessor`: EOS is impossible while the length is below `min_length`."""

    def __init__(self, min_length: int, eos_token_id: int | Sequence[int] | torch.Tensor):
        self.min_length = min_length
        self.eos_token_id = _ids(eos_token_id)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] < self.min_length:
            return torch.where(_vocab_mask(self.eos_token_id, scores), _NEG_INF, scores)
        return scores


class MinNewTokens:
    """transformers' `MinNewTokensLengthLogitsProcessor`: EOS is impossible before `min_new_tokens` new tokens."""

    def __init__(self, prompt_length: int, min_new_tokens: int, eos_token_id: int | Sequence[int] | torch.Tensor):
        self.prompt_length = prompt_length
        self.min_new_tokens = min_new_tokens
        self.eos_token_id = _ids(eos_token_id)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] - self.prompt_length < self.min_new_tokens:
            return torch.where(_vocab_mask(self.eos_token_id, scores), _NEG_INF, scores)
        return scores


class RepetitionPenalty:
    """transformers' `RepetitionPenaltyLogitsProcessor`: the logit of every token already in `input_ids` is
    divided by `penalty` when positive and multiplied by it when negative.

    `prompt_ignore_length` (int, or a [B] tensor of per-row lengths) excludes the first positions of each row:
    `generate` passes the left-padding length of each row, so pad tokens are not penalised.
    """

    def __init__(self, penalty: float, prompt_ignore_length: int | torch.Tensor | None = None):
        if not penalty > 0:
            raise ValueError(f"repetition penalty must be > 0, got {penalty}")
        self.penalty = penalty
        self.prompt_ignore_length = prompt_ignore_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        vocab_size = scores.shape[-1]
        ignore = self.prompt_ignore_length
        if isinstance(ignore, int):
            input_ids = input_ids[:, ignore:]
        elif isinstance(ignore, torch.Tensor):
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            input_ids = input_ids.masked_fill(positions[None, :] < ignore.to(input_ids.device)[:, None], vocab_size)
        # Column `vocab_size` absorbs ignored positions and ids beyond the LM head's vocabulary.
        input_ids = input_ids.clamp(max=vocab_size)
        padded = torch.nn.functional.pad(scores, (0, 1))
        seen = torch.gather(padded, 1, input_ids)
        seen = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        return padded.scatter(1, input_ids, seen)[..., :vocab_size]


class NoRepeatNGram:
    """transformers' `NoRepeatNGramLogitsProcessor`: a token that would complete an n-gram already present in
    the row (prompt included) is banned."""

    def __init__(self, ngram_size: int):
        if ngram_size <= 0:
            raise ValueError(f"ngram_size must be > 0, got {ngram_size}")
        self.ngram_size = ngram_size

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        n, length = self.ngram_size, input_ids.shape[-1]
        if length < n:
            return scores
        # The next token completes the n-gram (last n-1 tokens, next): every earlier window whose first n-1
        # tokens equal that prefix bans its own last token.
        prefix = input_ids[:, length + 1 - n :]  # [B, n-1]
        windows = input_ids.unfold(1, n, 1)  # [B, L-n+1, n]
        matches = (windows[..., :-1] == prefix.unsqueeze(1)).all(dim=-1)
        vocab_size = scores.shape[-1]
        banned = scores.new_zeros((scores.shape[0], vocab_size + 1), dtype=torch.bool)
        banned.scatter_(1, torch.where(matches, windows[..., -1].clamp(max=vocab_size), vocab_size), True)
        return scores.masked_fill(banned[:, :vocab_size], _NEG_INF)


class SequenceBias:
    """transformers' `SequenceBiasLogitsProcessor`: `bias` is added to the logit of the last token of a
    sequence when the row ends with the rest of that sequence.

    `sequence_bias`: `[[token ids], bias]` pairs, or a dict `{(token ids): bias}`.
    """

    def __init__(self, sequence_bias: dict[tuple[int, ...], float] | list[list[Any]]):
        if isinstance(sequence_bias, dict):
            items = [(tuple(k), float(b)) for k, b in sequence_bias.items()]
        else:
            items = [(tuple(ids), float(b)) for ids, b in sequence_bias]
        if not items or any(len(ids) == 0 for ids, _ in items):
            raise ValueError("sequence_bias needs at least one non-empty token sequence")
        self.sequence_bias = dict(items)  # later duplicates win, as in the reference's dict conversion
        self._prepared: tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] | None = None

    def _prepare(self, scores: torch.Tensor) -> tuple[torch.Tensor, list]:
        vocab_size, device = scores.shape[-1], scores.device
        too_big = sorted({t for ids in self.sequence_bias for t in ids if t >= vocab_size})
        if too_big:
            raise ValueError(f"the vocabulary has {vocab_size} tokens, but these biased token ids exceed it: {too_big}")
        single = torch.zeros(vocab_size, dtype=torch.float, device=device)
        groups: dict[int, list[tuple[tuple[int, ...], float]]] = {}
        for ids, bias in self.sequence_bias.items():
            if len(ids) == 1:
                single[ids[0]] = bias
            else:
                groups.setdefault(len(ids) - 1, []).append((ids, bias))
        multi = [
            (
                torch.tensor([ids[:-1] for ids, _ in group], device=device),
                torch.tensor([ids[-1] for ids, _ in group], device=device),
                torch.tensor([b for _, b in group], dtype=torch.float, device=device),
            )
            for group in groups.values()
        ]
        return single, multi

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._prepared is None or self._prepared[0].device != scores.device:
            self._prepared = self._prepare(scores)
        single, multi = self._prepared
        bias = torch.zeros_like(scores) + single
        for prefixes, last_tokens, biases in multi:
            n = prefixes.shape[1]
            if n > input_ids.shape[1]:
                continue
            matching = (input_ids[:, None, -n:] == prefixes).all(dim=-1)  # [B, S]
            bias.index_add_(1, last_tokens, torch.where(matching, biases, 0.0).to(bias.dtype))
        return scores + bias


class NoBadWords(SequenceBias):
    """transformers' `NoBadWordsLogitsProcessor`: the sequences in `bad_words_ids` are never completed.
    A single-token bad word equal to an EOS token is dropped (EOS stays possible)."""

    def __init__(self, bad_words_ids: list[list[int]], eos_token_id: int | Sequence[int] | torch.Tensor | None = None):
        eos = set(_ids(eos_token_id).tolist()) if eos_token_id is not None else set()
        kept = [list(ids) for ids in bad_words_ids if not (len(ids) == 1 and ids[0] in eos)]
        # Every bad word may be an EOS token: then nothing is banned, but the bias table needs an entry.
        super().__init__({tuple(ids): _NEG_INF for ids in kept} if kept else {(0,): 0.0})


class PrefixConstrained:
    """transformers' `PrefixConstrainedLogitsProcessor`: only the tokens `prefix_allowed_tokens_fn(batch_id,
    row_ids)` returns are possible for a row (`batch_id`: the row's prompt, rows being grouped `group_size` per
    prompt). When every row of a prompt has only impossible (-inf) allowed tokens, they all get score 0, so
    the constraint still holds. Calls back to Python once per row and step."""

    def __init__(self, prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], Any], group_size: int = 1):
        self.prefix_allowed_tokens_fn = prefix_allowed_tokens_fn
        self.group_size = group_size

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        mask = torch.full_like(scores, _NEG_INF)
        for row in range(input_ids.shape[0]):
            batch_id = row // self.group_size
            allowed = self.prefix_allowed_tokens_fn(batch_id, input_ids[row])
            allowed = _ids(allowed)  # checked where it was made (a list: on the host, no device sync)
            if allowed.numel() == 0:
                from ..errors import GenerationError

                raise GenerationError(f"prefix_allowed_tokens_fn returned no token for batch_id {batch_id} (row "
                                      f"{row}): the constraint cannot be met; return at least one token id")
            if bool((allowed < 0).any() | (allowed >= scores.shape[-1]).any()):
                from ..errors import GenerationError

                raise GenerationError(f"prefix_allowed_tokens_fn returned ids outside [0, {scores.shape[-1]}) "
                                      f"for batch_id {batch_id}: {allowed.tolist()}")
            mask[row, allowed.to(scores.device)] = 0
        constrained = scores + mask
        hopeless = constrained.amax(dim=-1).isneginf().view(-1, self.group_size).all(dim=-1, keepdim=True)
        return torch.where(hopeless.repeat_interleave(self.group_size, dim=0), mask, constrained)


class ClassifierFreeGuidance:
    """transformers' `UnbatchedClassifierFreeGuidanceLogitsProcessor`: `scale * (log_softmax(scores) - u) + u`,
    where `u` is the log-softmax of `unconditional(input_ids)`, the next-token logits `[B, V]` of the model
    run on an unconditional context (`generate` builds it; it advances by one token per call)."""

    def __init__(self, guidance_scale: float, unconditional: Callable[[torch.Tensor], torch.Tensor]):
        self.guidance_scale = guidance_scale
        self.unconditional = unconditional

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.log_softmax(dim=-1)
        if self.guidance_scale == 1:
            return scores
        unconditional = self.unconditional(input_ids).log_softmax(dim=-1)
        return self.guidance_scale * (scores - unconditional) + unconditional


class ForcedBOS:
    """transformers' `ForcedBOSTokenLogitsProcessor`: when the sequence has one token, force `bos_token_id`."""

    def __init__(self, bos_token_id: int):
        self.bos_token_id = bos_token_id

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] == 1:
            scores = torch.full_like(scores, _NEG_INF)
            scores[:, self.bos_token_id] = 0
        return scores


class ForcedEOS:
    """transformers' `ForcedEOSTokenLogitsProcessor`: the token at position `max_length - 1` is an EOS."""

    def __init__(self, max_length: int, eos_token_id: int | Sequence[int] | torch.Tensor):
        self.max_length = max_length
        self.eos_token_id = _ids(eos_token_id)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] == self.max_length - 1:
            scores = torch.full_like(scores, _NEG_INF)
            scores[:, self.eos_token_id.to(scores.device)] = 0
        return scores


class InfNanRemove:
    """transformers' `InfNanRemoveLogitsProcessor`: nan -> 0, +-inf -> the dtype's max / min."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        info = torch.finfo(scores.dtype)
        out = torch.where(scores != scores, 0.0, scores)
        out = torch.where(scores == math.inf, info.max, out)
        return torch.where(scores == -math.inf, info.min, out)


class ExponentialDecayLengthPenalty:
    """transformers' `ExponentialDecayLengthPenalty`: after `start_index` new tokens, EOS logits grow by
    `|logit| * (decay_factor ** (new tokens - start_index) - 1)`."""

    def __init__(self, start_index: int, decay_factor: float, eos_token_id: int | Sequence[int] | torch.Tensor,
                 prompt_length: int):
        self.regulation_start = start_index + prompt_length
        self.regulation_factor = decay_factor
        self.eos_token_id = _ids(eos_token_id)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[-1]
        if length > self.regulation_start:
            eos = self.eos_token_id.to(scores.device)
            eos_scores = scores[:, eos]
            grow = torch.abs(eos_scores) * (pow(self.regulation_factor, length - self.regulation_start) - 1)
            penalties = torch.zeros_like(scores)
            penalties[:, eos] = grow.masked_fill(~torch.isfinite(eos_scores), 0.0)  # -inf EOS stays -inf
            return scores + penalties
        return scores


class SuppressTokens:
    """transformers' `SuppressTokensLogitsProcessor`: `suppress_tokens` are never generated."""

    def __init__(self, suppress_tokens: Iterable[int]):
        self.suppress_tokens = _ids(list(suppress_tokens))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return torch.where(_vocab_mask(self.suppress_tokens, scores), _NEG_INF, scores)


class SuppressTokensAtBegin:
    """transformers' `SuppressTokensAtBeginLogitsProcessor`: `begin_suppress_tokens` are not generated when the
    length equals `begin_index` (the first generated position)."""

    def __init__(self, begin_suppress_tokens: Iterable[int], begin_index: int):
        self.begin_suppress_tokens = _ids(list(begin_suppress_tokens))
        self.begin_index = begin_index

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] == self.begin_index:
            return torch.where(_vocab_mask(self.begin_suppress_tokens, scores), _NEG_INF, scores)
        return scores


class LogitNormalization:
    """transformers' `LogitNormalization`: log-softmax (always last)."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores.log_softmax(dim=-1)


# ---- warpers (sampling only) -------------------------------------------------------------------------


class Temperature:
    """transformers' `TemperatureLogitsWarper`: scores / temperature."""

    def __init__(self, temperature: float):
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature} (use do_sample=False for greedy)")
        self.temperature = temperature

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores / self.temperature


class TopK:
    """transformers' `TopKLogitsWarper`: keep the `top_k` highest scores (ties with the k-th are kept)."""

    def __init__(self, top_k: int, min_tokens_to_keep: int = 1, filter_value: float = _NEG_INF):
        if top_k <= 0:
            raise ValueError(f"top_k must be > 0, got {top_k}")
        self.top_k = max(top_k, min_tokens_to_keep)
        self.filter_value = filter_value

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        k = min(self.top_k, scores.shape[-1])
        kth = torch.topk(scores, k)[0][..., -1, None]
        return scores.masked_fill(scores < kth, self.filter_value)


class TopP:
    """transformers' `TopPLogitsWarper`: keep the most likely tokens whose cumulative probability reaches `top_p`."""

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1, filter_value: float = _NEG_INF):
        if not 0 <= top_p <= 1:
            raise ValueError(f"top_p must be in [0, 1], got {top_p}")
        self.top_p = float(top_p)
        self.min_tokens_to_keep = min_tokens_to_keep
        self.filter_value = filter_value

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        sorted_logits, sorted_indices = torch.sort(scores, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - self.top_p)  # ascending order: the unlikely tail comes first
        remove[..., -self.min_tokens_to_keep :] = False
        remove = remove.scatter(1, sorted_indices, remove)
        return scores.masked_fill(remove, self.filter_value)


class TopH:
    """transformers' `TopHLogitsWarper`: among the 100 most likely tokens, keep them in order while their
    cumulated entropy terms `-p log p` (p renormalised over the 100) stay within `top_h` x the entropy of the
    100; the most likely token is always kept."""

    TOP_N = 100

    def __init__(self, top_h: float, filter_value: float = _NEG_INF):
        if not 0 < top_h <= 1:
            raise ValueError(f"top_h must be in (0, 1], got {top_h}")
        self.top_h = float(top_h)
        self.filter_value = filter_value

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        top_logits, top_ids = torch.topk(scores, min(self.TOP_N, scores.shape[-1]), dim=-1)
        distribution = torch.distributions.Categorical(logits=top_logits)
        probs = distribution.probs
        terms = -probs * probs.log()
        keep_top = terms.cumsum(dim=-1) <= distribution.entropy()[:, None] * self.top_h
        keep_top[:, 0] = True
        keep = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, top_ids, keep_top)
        return scores.masked_fill(~keep, self.filter_value)


class MinP:
    """transformers' `MinPLogitsWarper`: drop tokens whose probability is below `min_p` x the top probability."""

    def __init__(self, min_p: float, min_tokens_to_keep: int = 1, filter_value: float = _NEG_INF):
        if not 0 <= min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {min_p}")
        self.min_p = min_p
        self.min_tokens_to_keep = min_tokens_to_keep
        self.filter_value = filter_value

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores, dim=-1)
        remove = probs < self.min_p * probs.amax(dim=-1, keepdim=True)
        keep = torch.topk(probs, min(self.min_tokens_to_keep, probs.shape[-1]), dim=-1).indices
        remove.scatter_(-1, keep, False)
        return scores.masked_fill(remove, self.filter_value)


class TypicalP:
    """transformers' `TypicalLogitsWarper`: locally typical sampling with probability mass `mass`."""

    def __init__(self, mass: float = 0.9, min_tokens_to_keep: int = 1, filter_value: float = _NEG_INF):
        if not 0 < mass < 1:
            raise ValueError(f"typical_p must be in (0, 1), got {mass}")
        self.mass = float(mass)
        self.min_tokens_to_keep = min_tokens_to_keep
        self.filter_value = filter_value

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        normalized = torch.nn.functional.log_softmax(scores, dim=-1)
        p = torch.exp(normalized)
        entropy = -(normalized * p).nansum(-1, keepdim=True)
        shifted = torch.abs(-normalized - entropy)
        sorted_scores, sorted_indices = torch.sort(shifted, descending=False)
        cumulative = scores.gather(-1, sorted_indices).softmax(dim=-1).cumsum(dim=-1)
        last = (cumulative < self.mass).sum(dim=1).clamp_(max=sorted_scores.shape[-1] - 1)
        remove = sorted_scores > sorted_scores.gather(1, last.view(-1, 1))
        remove[..., : self.min_tokens_to_keep] = False
        remove = remove.scatter(1, sorted_indices, remove)
        return scores.masked_fill(remove, self.filter_value)


class EpsilonCutoff:
    """transformers' `EpsilonLogitsWarper`: drop tokens with probability below `epsilon`."""

    def __init__(self, epsilon: float, min_tokens_to_keep: int = 1, filter_value: float = _NEG_INF):
        if not 0 < epsilon < 1:
            raise ValueError(f"epsilon_cutoff must be in (0, 1), got {epsilon}")
        self.epsilon = float(epsilon)
        self.min_tokens_to_keep = min_tokens_to_keep
        self.filter_value = filter_value

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = scores.softmax(dim=-1)
        remove = probs < self.epsilon
        k = min(self.min_tokens_to_keep, scores.shape[-1])
        remove = remove & (scores < torch.topk(scores, k)[0][..., -1, None])
        return scores.masked_fill(remove, self.filter_value)


class EtaCutoff:
    """transformers' `EtaLogitsWarper`: drop tokens below min(eta, sqrt(eta) * exp(-entropy))."""

    def __init__(self, epsilon: float, min_tokens_to_keep: int = 1, filter_value: float = _NEG_INF):
        if not 0 < epsilon < 1:
            raise ValueError(f"eta_cutoff must be in (0, 1), got {epsilon}")
        self.epsilon = float(epsilon)
        self.min_tokens_to_keep = min_tokens_to_keep
        self.filter_value = filter_value

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = scores.softmax(dim=-1)
        entropy = torch.distributions.Categorical(logits=scores).entropy()
        eta = torch.min(torch.tensor(self.epsilon, device=scores.device), math.sqrt(self.epsilon) * torch.exp(-entropy))
        remove = probs < eta[..., None]
        k = min(self.min_tokens_to_keep, scores.shape[-1])
        remove = remove & (scores < torch.topk(scores, k)[0][..., -1, None])
        return scores.masked_fill(remove, self.filter_value)


# ---- assembly ----------------------------------------------------------------------------------------


def as_processor_list(logits_processor: LogitsProcessor | Sequence[LogitsProcessor] | None) -> list[LogitsProcessor]:
    """`logits_processor=` of `generate`: None, one callable, or a sequence of them."""
    if logits_processor is None:
        return []
    if callable(logits_processor):
        return [logits_processor]
    items = list(logits_processor)
    for item in items:
        if not callable(item):
            from ..errors import GenerationError

            raise GenerationError(
                f"logits_processor entries must be callables (input_ids, scores) -> scores, got {type(item).__name__}"
            )
    return items


def build_processors(
    config: Any,
    *,
    prompt_length: int,
    padding_lengths: torch.Tensor | None = None,
    custom: Sequence[LogitsProcessor] = (),
    prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], Any] | None = None,
    unconditional: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> list[LogitsProcessor]:
    """The processors `generate` applies, in transformers' order (`_get_logits_processor`).

    `config` is a resolved config (`config.Resolved`); `padding_lengths` are the per-row left-padding lengths
    (None without padding). A custom processor of the same type as a built-in one replaces it, as in
    transformers; the others run after the built-in processors and before the sampling warpers.
    `prefix_allowed_tokens_fn` adds `PrefixConstrained`; `unconditional` (the unconditional logits of
    classifier-free guidance) is needed when `guidance_scale` != 1.
    """
    c = config
    eos = list(c.eos_token_ids)
    out: list[LogitsProcessor] = []
    if c.guidance_scale != 1:
        if unconditional is None:
            raise ValueError("guidance_scale != 1 needs the unconditional logits")
        out.append(ClassifierFreeGuidance(float(c.guidance_scale), unconditional))
    if c.sequence_bias is not None:
        out.append(SequenceBias(c.sequence_bias))
    if c.repetition_penalty != 1.0:
        out.append(RepetitionPenalty(float(c.repetition_penalty), prompt_ignore_length=padding_lengths))
    if c.no_repeat_ngram_size > 0:
        out.append(NoRepeatNGram(c.no_repeat_ngram_size))
    if c.bad_words_ids is not None:
        out.append(NoBadWords([list(w) for w in c.bad_words_ids], eos or None))
    if eos and c.min_length > 0:
        out.append(MinLength(c.min_length, eos))
    if eos and c.min_new_tokens is not None and c.min_new_tokens > 0:
        out.append(MinNewTokens(prompt_length, c.min_new_tokens, eos))
    if prefix_allowed_tokens_fn is not None:
        out.append(PrefixConstrained(prefix_allowed_tokens_fn, max(c.num_beams, c.num_return_sequences)))
    if c.forced_bos_token_id is not None:
        out.append(ForcedBOS(c.forced_bos_token_id))
    if c.forced_eos_token_id is not None:
        out.append(ForcedEOS(c.max_length, c.forced_eos_token_id))
    if c.remove_invalid_values:
        out.append(InfNanRemove())
    if c.exponential_decay_length_penalty is not None and eos:
        start, factor = c.exponential_decay_length_penalty
        out.append(ExponentialDecayLengthPenalty(start, factor, eos, prompt_length))
    if c.suppress_tokens is not None:
        out.append(SuppressTokens(c.suppress_tokens))
    if c.begin_suppress_tokens is not None:
        begin = prompt_length if (prompt_length > 1 or c.forced_bos_token_id is None) else prompt_length + 1
        out.append(SuppressTokensAtBegin(c.begin_suppress_tokens, begin))

    # Custom processors: one of a built-in type takes that one's place; the rest follow.
    merged: list[LogitsProcessor] = []
    for p in out:
        replacement = next((q for q in custom if type(q) is type(p)), None)
        merged.append(replacement if replacement is not None else p)
    merged += [q for q in custom if not any(q is m for m in merged)]

    if c.do_sample:
        # Beam sampling keeps one non-EOS token more than there are EOS tokens, so a beam can always go on.
        keep = (len(eos) + 1 if eos else 2) if c.num_beams > 1 else 1
        if c.temperature != 1.0:
            merged.append(Temperature(float(c.temperature)))
        if c.top_h is not None:
            merged.append(TopH(c.top_h))
        if c.top_k is not None and c.top_k != 0:
            merged.append(TopK(c.top_k, min_tokens_to_keep=keep))
        if c.top_p is not None and c.top_p < 1.0:
            merged.append(TopP(c.top_p, min_tokens_to_keep=keep))
        if c.min_p is not None:
            merged.append(MinP(c.min_p, min_tokens_to_keep=keep))
        if c.typical_p is not None and c.typical_p < 1.0:
            merged.append(TypicalP(c.typical_p, min_tokens_to_keep=keep))
        if c.epsilon_cutoff is not None and 0.0 < c.epsilon_cutoff < 1.0:
            merged.append(EpsilonCutoff(c.epsilon_cutoff, min_tokens_to_keep=keep))
        if c.eta_cutoff is not None and 0.0 < c.eta_cutoff < 1.0:
            merged.append(EtaCutoff(c.eta_cutoff, min_tokens_to_keep=keep))
    if c.renormalize_logits:
        merged.append(LogitNormalization())
    return merged


def apply(processors: Sequence[LogitsProcessor], input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Run `processors` in order."""
    for p in processors:
        scores = p(input_ids, scores)
    return scores
