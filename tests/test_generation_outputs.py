"""`return_dict_in_generate=True`: an `Output` with transformers' field names (`sequences`, `scores`, `logits`,
`hidden_states`, `attentions`; beam search adds `beam_indices` and `sequences_scores`), values equal to the
reference's for greedy decoding, sampling (same RNG state), beam search and beam sampling."""

from __future__ import annotations

import random
import warnings

import pytest
import torch
from generation_fixtures import (  # noqa: F401 (fixtures)
    eos_mid_generation,
    one_thread,
    other_lm,
    random_batch,
    ref_generate,
    tiny,
)
from reference import assert_close

from bombus.errors import GenerationError
from bombus.output import Output

ALL = dict(return_dict_in_generate=True, output_scores=True, output_logits=True)
MODES = {
    "greedy": {},
    "sample": {"do_sample": True, "top_k": 20, "temperature": 0.8},
    "beam": {"num_beams": 3, "num_return_sequences": 2, "length_penalty": 0.7},
    "beam_sample": {"do_sample": True, "num_beams": 2, "top_k": 10},
}


@pytest.fixture(scope="module")
def eager_ref(tiny):
    """The reference with eager attention: transformers' SDPA path returns no attention weights."""
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(tiny.folder, attn_implementation="eager").eval()


def _both(ref, ours, ids, mask, options):
    torch.manual_seed(0)
    expected = ref_generate(ref, ids, mask, **options)
    torch.manual_seed(0)
    got = ours.generate(ids, attention_mask=mask, **options)
    return expected, got


def _compare_steps(expected, got, name, atol=1e-5):
    assert isinstance(got[name], tuple) and len(got[name]) == len(expected[name]), name
    for step, (a, b) in enumerate(zip(got[name], expected[name], strict=True)):
        assert_close(a, b, atol=atol, what=f"{name}[{step}]")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("single", [True, False], ids=["single", "batch"])
def test_scores_and_logits_match_transformers(tiny, mode, single):
    rng = random.Random(len(mode) * 2 + single)
    if single:
        ids, mask = torch.tensor([[rng.randrange(2, tiny.vocab_size) for _ in range(rng.randint(1, 8))]]), None
    else:
        ids, mask = random_batch(rng, 3, tiny.vocab_size)
    options = dict(ALL, max_new_tokens=rng.randint(4, 9), eos_token_id=eos_mid_generation(tiny, ids, mask, rng),
                   pad_token_id=3, repetition_penalty=1.3, **MODES[mode])
    expected, got = _both(tiny.ref, tiny.ours, ids, mask, options)
    assert isinstance(got, Output)
    assert torch.equal(got.sequences, expected.sequences)
    _compare_steps(expected, got, "scores")
    _compare_steps(expected, got, "logits")
    assert len(got.scores) == got.sequences.shape[1] - ids.shape[1] or mode.startswith("beam")
    if mode.startswith("beam"):
        assert got.beam_indices.dtype == expected.beam_indices.dtype
        assert torch.equal(got.beam_indices, expected.beam_indices)
        assert_close(got.sequences_scores, expected.sequences_scores, what="sequences_scores")
    else:
        assert "beam_indices" not in got and "sequences_scores" not in got
    # Only what was asked for.
    expected, got = _both(tiny.ref, tiny.ours, ids, mask, dict(options, output_scores=False, output_logits=False))
    assert torch.equal(got.sequences, expected.sequences)
    assert expected.scores is None and expected.logits is None and "scores" not in got and "logits" not in got
    if mode.startswith("beam"):
        assert expected.sequences_scores is None and "sequences_scores" not in got
        assert torch.equal(got.beam_indices, expected.beam_indices)


@pytest.mark.parametrize("mode", ["greedy", "beam"])
def test_hidden_states_and_attentions_match_transformers(tiny, eager_ref, mode):
    rng = random.Random(4)
    ids, mask = random_batch(rng, 3, tiny.vocab_size, min_len=2, max_len=7)
    options = dict(return_dict_in_generate=True, output_hidden_states=True, output_attentions=True,
                   max_new_tokens=5, eos_token_id=eos_mid_generation(tiny, ids, mask, rng), pad_token_id=3,
                   **MODES[mode])
    expected, got = _both(eager_ref, tiny.ours, ids, mask, options)
    assert torch.equal(got.sequences, expected.sequences)
    assert len(got.hidden_states) == len(expected.hidden_states) == len(got.attentions) == len(expected.attentions)
    rows_mask = mask.repeat_interleave(options.get("num_beams", 1), dim=0)
    for step in range(len(expected.hidden_states)):
        # The prompt step: compare real positions only (padding positions hold garbage on both sides).
        real = rows_mask if step == 0 else None
        assert len(got.hidden_states[step]) == len(expected.hidden_states[step]) == tiny.ours.spec.num_blocks + 1
        for layer, (a, b) in enumerate(zip(got.hidden_states[step], expected.hidden_states[step], strict=True)):
            assert_close(a, b, mask=real, what=f"hidden_states[{step}][{layer}]")
        for layer, (a, b) in enumerate(zip(got.attentions[step], expected.attentions[step], strict=True)):
            assert a.shape == b.shape, (step, layer)
            # [rows, heads, queries, keys] -> [rows, queries, heads, keys], to select real queries.
            assert_close(a.transpose(1, 2), b.transpose(1, 2), mask=real, what=f"attentions[{step}][{layer}]")


def test_contrastive_search_scores_are_the_models(tiny):
    """Contrastive search is not in transformers 5's core: check its logits against the reference model run on
    the chosen sequence, and its scores against the processors applied to them."""
    ids = torch.tensor([[7, 31, 12, 55]])
    options = dict(ALL, penalty_alpha=0.6, top_k=4, max_new_tokens=6, eos_token_id=None, pad_token_id=0,
                   repetition_penalty=1.5)
    got = tiny.ours.generate(ids, **options)
    assert torch.equal(got.sequences, tiny.ours.generate(ids, **dict(options, return_dict_in_generate=False)))
    assert len(got.logits) == len(got.scores) == 6
    from transformers import RepetitionPenaltyLogitsProcessor

    for step in range(6):
        prefix = got.sequences[:, : ids.shape[1] + step]
        with torch.no_grad():
            logits = tiny.ref(prefix).logits[:, -1]
        assert_close(got.logits[step], logits, what=f"logits[{step}]")
        assert_close(got.scores[step], RepetitionPenaltyLogitsProcessor(1.5)(prefix, logits), what=f"scores[{step}]")


def test_other_families_scores(other_lm):
    rng = random.Random(1)
    ids, mask = random_batch(rng, 2, other_lm.vocab_size, pad_id=1, low=3)
    for mode in ("greedy", "beam"):
        options = dict(ALL, max_new_tokens=5, eos_token_id=eos_mid_generation(other_lm, ids, mask, rng),
                       pad_token_id=3, **MODES[mode])
        expected, got = _both(other_lm.ref, other_lm.ours, ids, mask, options)
        assert torch.equal(got.sequences, expected.sequences)
        # These fixtures' logits reach |10| (weights N(0, 0.8), three model families' matmul orders): float32
        # rounding leaves a few 1e-5-sized differences after several cached steps.
        _compare_steps(expected, got, "scores", atol=1e-4)
        _compare_steps(expected, got, "logits", atol=1e-4)


def test_streaming_and_plain_calls_still_return_ids(tiny):
    ids = torch.tensor([[5, 6, 7]])
    plain = tiny.ours.generate(ids, max_new_tokens=4)
    assert isinstance(plain, torch.Tensor)
    got = tiny.ours.generate(ids, max_new_tokens=4, return_dict_in_generate=True)
    assert isinstance(got, Output) and list(got) == ["sequences"] and torch.equal(got.sequences, plain)
    with pytest.warns(UserWarning, match="return_dict_in_generate"):
        out = tiny.ours.generate(ids, max_new_tokens=4, output_scores=True)
    assert torch.equal(out, plain)


def test_contrastive_search_has_no_hidden_states(tiny):
    with pytest.raises(GenerationError, match="contrastive"):
        tiny.ours.generate(torch.tensor([[5, 6]]), penalty_alpha=0.5, top_k=3, return_dict_in_generate=True,
                           output_attentions=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny.ours.generate(torch.tensor([[5, 6]]), max_new_tokens=2, return_dict_in_generate=True,
                           output_scores=True)
