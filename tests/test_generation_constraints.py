"""Steering and stopping `generate` from outside: `stopping_criteria=`, `prefix_allowed_tokens_fn=`,
classifier-free guidance (`guidance_scale`, `negative_prompt_ids`) and the top-h warper give transformers'
tokens, for single prompts and left-padded batches, greedy, sampling and beam search."""

from __future__ import annotations

import random

import pytest
import torch
from generation_fixtures import (  # noqa: F401 (fixtures)
    eos_mid_generation,
    one_thread,
    other_lm,
    random_batch,
    ref_generate,
    run_both,
    tiny,
)

from bombus.errors import GenerationError

STRATEGIES = {
    "greedy": {},
    "sample": {"do_sample": True, "top_k": 0, "temperature": 1.3},
    "beam": {"num_beams": 3, "num_return_sequences": 2},
    "beam_sample": {"do_sample": True, "num_beams": 2, "top_k": 8},
}


def _prompts(pair, rng: random.Random, single: bool):
    if single:
        return torch.tensor([[rng.randrange(2, pair.vocab_size) for _ in range(rng.randint(1, 8))]]), None
    return random_batch(rng, rng.randint(2, 4), pair.vocab_size)


def _same_rng(pair, ids, mask, ref_options: dict, ours_options: dict, seed: int = 0):
    """Both `generate`s from the same RNG state (sampling draws then match too)."""
    torch.manual_seed(seed)
    expected = ref_generate(pair.ref, ids, mask, **ref_options)
    torch.manual_seed(seed)
    got = pair.ours.generate(ids, attention_mask=mask, **ours_options)
    assert torch.equal(got, expected), (ref_options, got.tolist(), expected.tolist())
    return got


# ---- stopping criteria ----------------------------------------------------------------------------------


class EndsWithAny:
    """Stop a row when its newest token is one of `tokens` (a per-row criterion)."""

    def __init__(self, tokens):
        self.tokens = torch.tensor(tokens)

    def __call__(self, input_ids, scores, **kwargs):
        return torch.isin(input_ids[:, -1], self.tokens)


class SumIsMultiple:
    """Stop a row when the sum of its ids is a multiple of `k` (depends on the whole row)."""

    def __init__(self, k):
        self.k = k

    def __call__(self, input_ids, scores, **kwargs):
        return input_ids.sum(dim=1) % self.k == 0


def _reference_criteria(criteria):
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Wrapped(StoppingCriteria):
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, input_ids, scores, **kwargs):
            return self.inner(input_ids, scores)

    return StoppingCriteriaList([Wrapped(c) for c in criteria])


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("single", [True, False], ids=["single", "batch"])
def test_stopping_criteria_match_transformers(tiny, strategy, single):
    rng = random.Random(len(strategy) + 10 * single)
    ids, mask = _prompts(tiny, rng, single)
    plain = ref_generate(tiny.ref, ids, mask, max_new_tokens=10, eos_token_id=None, pad_token_id=0)
    seen = plain[:, ids.shape[1] :].flatten().tolist()
    criteria = [EndsWithAny(rng.sample(seen, 2)), SumIsMultiple(rng.randint(5, 9))]
    stopped = 0
    for eos in (None, eos_mid_generation(tiny, ids, mask, rng)):
        options = dict(max_new_tokens=10, eos_token_id=eos, pad_token_id=3, **STRATEGIES[strategy])
        got = _same_rng(tiny, ids, mask, dict(options, stopping_criteria=_reference_criteria(criteria)),
                        dict(options, stopping_criteria=criteria))
        stopped += got.shape[1] < ids.shape[1] + 10
        # One criterion alone, not in a list.
        _same_rng(tiny, ids, mask, dict(options, stopping_criteria=_reference_criteria(criteria[1:])),
                  dict(options, stopping_criteria=criteria[1]), seed=1)
    assert stopped, "the criteria should end generation early"


def test_a_criterion_may_answer_for_every_row(tiny):
    ids, mask = random_batch(random.Random(3), 3, tiny.vocab_size)
    stop_at = ids.shape[1] + 4
    everyone = lambda input_ids, scores: input_ids.shape[1] >= stop_at  # noqa: E731
    as_tensor = lambda input_ids, scores: torch.tensor(input_ids.shape[1] >= stop_at)  # noqa: E731
    for criterion in (everyone, as_tensor):
        out = tiny.ours.generate(ids, attention_mask=mask, max_new_tokens=10, stopping_criteria=[criterion])
        assert out.shape[1] == stop_at
        assert torch.equal(out, ref_generate(tiny.ref, ids, mask, max_new_tokens=4))


def test_criteria_see_the_scores_each_token_was_chosen_from(tiny):
    ids, mask = random_batch(random.Random(4), 3, tiny.vocab_size)
    seen = []

    def check(input_ids, scores):
        seen.append(input_ids.shape[1])
        assert scores.shape == (input_ids.shape[0], tiny.vocab_size)
        assert torch.equal(scores.argmax(dim=-1), input_ids[:, -1])  # greedy: the argmax of the processed scores
        assert torch.isinf(scores[:, 7]).all()  # processed: the suppressed token is -inf
        return torch.zeros(input_ids.shape[0], dtype=torch.bool)

    tiny.ours.generate(ids, attention_mask=mask, max_new_tokens=5, eos_token_id=None, pad_token_id=0,
                       suppress_tokens=[7], stopping_criteria=check)
    assert seen == list(range(ids.shape[1] + 1, ids.shape[1] + 6))

    def check_beams(input_ids, scores):  # beam search: the candidates, each with its beam's scores
        assert scores.shape == (input_ids.shape[0], tiny.vocab_size) and input_ids.shape[0] == 3 * 2 * 2
        assert torch.isfinite(scores.gather(1, input_ids[:, -1:])).all()
        return False

    tiny.ours.generate(ids, attention_mask=mask, max_new_tokens=3, num_beams=2, stopping_criteria=check_beams)


@pytest.mark.parametrize("criterion, message", [
    (lambda ids, scores: ids[:, -1], "int64"),
    (lambda ids, scores: torch.zeros(ids.shape[0] + 1, dtype=torch.bool), r"shape \(4,\)"),
    (lambda ids, scores: "yes", "str"),
    (42, "callables"),
])
def test_bad_criteria_raise(tiny, criterion, message):
    with pytest.raises(GenerationError, match=message):
        tiny.ours.generate(torch.tensor([[5, 6], [7, 8], [9, 10]]), max_new_tokens=3, stopping_criteria=[criterion])


# ---- prefix_allowed_tokens_fn ---------------------------------------------------------------------------


def _allowed(batch_id: int, row: torch.Tensor) -> list[int]:
    """Depends on the prompt index and the row so far, like real constrained decoding."""
    last = int(row[-1])
    return [t for t in range(100) if (t + 3 * batch_id + last) % 7 in (0, 2)]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("single", [True, False], ids=["single", "batch"])
def test_prefix_allowed_tokens_fn_matches_transformers(tiny, strategy, single):
    rng = random.Random(20 + len(strategy) + single)
    ids, mask = _prompts(tiny, rng, single)
    options = dict(max_new_tokens=6, pad_token_id=3, prefix_allowed_tokens_fn=_allowed,
                   eos_token_id=eos_mid_generation(tiny, ids, mask, rng), **STRATEGIES[strategy])
    if strategy == "sample":
        options["num_return_sequences"] = 2
    out = _same_rng(tiny, ids, mask, options, options)
    group = options.get("num_return_sequences", 1)  # output rows per prompt
    for row in range(out.shape[0]):
        for t in range(ids.shape[1], out.shape[1]):
            token = int(out[row, t])
            assert token == 3 or token in _allowed(row // group, out[row, :t]), (row, t)


def test_prefix_constraint_that_scores_cannot_meet(tiny):
    """Every allowed token already banned: transformers then lets the allowed tokens through with score 0."""
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    options = dict(max_new_tokens=3, prefix_allowed_tokens_fn=lambda b, row: [11, 12],
                   bad_words_ids=[[11], [12]], eos_token_id=None, pad_token_id=0)
    out, _ = run_both(tiny, ids, None, **options)
    assert set(out[:, 3:].flatten().tolist()) <= {11, 12}
    with pytest.raises(GenerationError, match="no token for batch_id 0"):
        tiny.ours.generate(ids, max_new_tokens=2, prefix_allowed_tokens_fn=lambda b, row: [])
    with pytest.raises(GenerationError, match="outside"):
        tiny.ours.generate(ids, max_new_tokens=2, prefix_allowed_tokens_fn=lambda b, row: [100])
    with pytest.raises(GenerationError, match="callable"):
        tiny.ours.generate(ids, max_new_tokens=2, prefix_allowed_tokens_fn=[1, 2])


# ---- classifier-free guidance ---------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam"])
@pytest.mark.parametrize("single", [True, False], ids=["single", "batch"])
def test_guidance_scale_matches_transformers(tiny, strategy, single):
    rng = random.Random(30 + len(strategy) + single)
    ids, mask = _prompts(tiny, rng, single)
    options = dict(max_new_tokens=7, pad_token_id=3, guidance_scale=rng.choice([1.5, 3.0, 0.5]),
                   eos_token_id=eos_mid_generation(tiny, ids, mask, rng), **STRATEGIES[strategy])
    out = _same_rng(tiny, ids, mask, options, options)
    plain = _same_rng(tiny, ids, mask, dict(options, guidance_scale=1.0), dict(options, guidance_scale=1.0))
    assert not torch.equal(out, plain) or strategy != "greedy", "guidance should change the output"


@pytest.mark.parametrize("single", [True, False], ids=["single", "batch"])
def test_negative_prompt_matches_transformers(tiny, single):
    rng = random.Random(40 + single)
    ids, mask = _prompts(tiny, rng, single)
    negative, negative_mask = random_batch(rng, ids.shape[0], tiny.vocab_size, max_len=6)
    options = dict(max_new_tokens=6, pad_token_id=3, guidance_scale=2.0, negative_prompt_ids=negative,
                   negative_prompt_attention_mask=negative_mask, repetition_penalty=1.2)
    _same_rng(tiny, ids, mask, options, options)
    options.pop("negative_prompt_attention_mask")
    _same_rng(tiny, ids, mask, options, options)


def test_guidance_with_other_families(other_lm):
    rng = random.Random(5)
    ids, mask = random_batch(rng, 2, other_lm.vocab_size, pad_id=1, low=3)
    options = dict(max_new_tokens=5, pad_token_id=3, guidance_scale=2.5, eos_token_id=None)
    _same_rng(other_lm, ids, mask, options, options)


# ---- top-h --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("single", [True, False], ids=["single", "batch"])
def test_top_h_sampling_matches_transformers(tiny, single):
    rng = random.Random(50 + single)
    ids, mask = _prompts(tiny, rng, single)
    for i, top_h in enumerate((0.2, 0.6, 1.0)):
        options = dict(do_sample=True, top_h=top_h, top_k=0, temperature=1.5, max_new_tokens=8, pad_token_id=0,
                       num_return_sequences=2)
        _same_rng(tiny, ids, mask, options, options, seed=i)


@pytest.mark.parametrize("seed", range(3))
def test_top_h_over_a_vocabulary_larger_than_its_window(seed):
    """Only the 100 most likely tokens are candidates; check against the reference on a 300-token vocabulary."""
    from transformers import TopHLogitsWarper

    from bombus.generation.processors import TopH

    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(4, 300, generator=g) * (0.5 + seed)
    ids = torch.zeros(4, 1, dtype=torch.long)
    for top_h in (0.1, 0.5, 0.95):
        expected = TopHLogitsWarper(top_h)(ids, scores.clone())
        got = TopH(top_h)(ids, scores.clone())
        assert torch.equal(got, expected)
        assert 1 <= int(torch.isfinite(got).sum(-1).min()) and int(torch.isfinite(got).sum(-1).max()) <= 100
