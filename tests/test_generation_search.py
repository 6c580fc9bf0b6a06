"""`generate` gives transformers' tokens: greedy, beam search, every processor, sampling (same RNG state) —
for single prompts and randomly left-padded batches with rows stopping at EOS independently."""

from __future__ import annotations

import random

import pytest
import torch
from generation_fixtures import (  # noqa: F401 (fixtures)
    eos_mid_generation,
    one_thread,
    random_batch,
    ref_generate,
    run_both,
    tiny,
)

import bombus


def _prompts(pair, rng: random.Random, single: bool):
    if single:
        n = rng.randint(1, 10)
        return torch.tensor([[rng.randrange(2, pair.vocab_size) for _ in range(n)]]), None
    return random_batch(rng, rng.randint(2, 4), pair.vocab_size, max_len=10)


@pytest.mark.parametrize("single", [True, False], ids=["single", "batch"])
@pytest.mark.parametrize("seed", range(4))
def test_greedy(tiny, seed, single):
    rng = random.Random(seed)
    ids, mask = _prompts(tiny, rng, single)
    eos = eos_mid_generation(tiny, ids, mask, rng)
    expected, _ = run_both(tiny, ids, mask, max_new_tokens=rng.randint(1, 16), eos_token_id=eos)
    # Also the defaults (20 new tokens, the config's EOS) and the mask inferred from padding.
    run_both(tiny, ids, mask)
    if not single:
        run_both(tiny, ids, None, pad_token_id=1, eos_token_id=eos, max_new_tokens=6)


def test_rows_stop_independently(tiny):
    rng = random.Random(7)
    ids, mask = random_batch(rng, 4, tiny.vocab_size, min_len=3, max_len=9)
    eos = eos_mid_generation(tiny, ids, mask, rng)
    out, _ = run_both(tiny, ids, mask, max_new_tokens=15, eos_token_id=eos, pad_token_id=0)
    new = out[:, ids.shape[1]:]
    finished = [(row == eos).nonzero().flatten().tolist() for row in new]
    assert any(finished), "the chosen EOS should end some row"
    for row, stops in zip(new, finished, strict=True):
        if stops:  # everything after the first EOS is padding
            assert (row[stops[0] + 1:] == 0).all()


@pytest.mark.parametrize("seed", range(3))
def test_batched_equals_alone(tiny, seed):
    """A left-padded row gives what the prompt gives alone (positions come from the mask)."""
    rng = random.Random(100 + seed)
    ids, mask = random_batch(rng, 4, tiny.vocab_size, max_len=11)
    eos = eos_mid_generation(tiny, ids, mask, rng)
    # pad 3, not 0: transformers' beam search fills with EOS when pad_token_id is 0 (`pad or eos`).
    for options in ({}, {"num_beams": 3, "length_penalty": rng.uniform(-1, 2)}):
        batched = tiny.ours.generate(ids, attention_mask=mask, max_new_tokens=10, eos_token_id=eos, pad_token_id=3,
                                     **options)
        for row in range(ids.shape[0]):
            alone_ids = ids[row, mask[row].bool()][None]
            alone = tiny.ours.generate(alone_ids, max_new_tokens=10, eos_token_id=eos, pad_token_id=3, **options)
            new_alone, new_batched = alone[0, alone_ids.shape[1]:], batched[row, ids.shape[1]:]
            assert torch.equal(new_batched[: len(new_alone)], new_alone), (row, options)
            assert (new_batched[len(new_alone):] == 3).all()


@pytest.mark.parametrize("seed", range(8))
def test_beam_search(tiny, seed):
    rng = random.Random(seed)
    ids, mask = _prompts(tiny, rng, single=seed % 2 == 0)
    beams = rng.choice([2, 3, 4])
    options = dict(
        num_beams=beams,
        num_return_sequences=rng.randint(1, beams),
        length_penalty=rng.choice([1.0, 0.0, -0.7, 1.8]),
        early_stopping=rng.choice([False, True, "never"]),
        max_new_tokens=rng.randint(2, 12),
    )
    if seed % 4 != 3:  # EOS partway (else: no EOS finishes any beam, all reach max length)
        options["eos_token_id"] = eos_mid_generation(tiny, ids, mask, rng)
    else:
        options["eos_token_id"] = None
        options["pad_token_id"] = 0
    run_both(tiny, ids, mask, **options)


def test_beam_search_with_two_eos_tokens(tiny):
    rng = random.Random(11)
    ids, mask = random_batch(rng, 3, tiny.vocab_size)
    eos = [eos_mid_generation(tiny, ids, mask, rng), eos_mid_generation(tiny, ids, mask, rng)]
    run_both(tiny, ids, mask, num_beams=3, num_return_sequences=3, max_new_tokens=9, eos_token_id=eos)


def _processor_options(tiny, rng: random.Random, ids, mask) -> list[dict]:
    """Each processor alone, with settings chosen to change the greedy output."""
    greedy = ref_generate(tiny.ref, ids, mask, max_new_tokens=8, pad_token_id=0)[:, ids.shape[1]:]
    seen = sorted(set(greedy.flatten().tolist()))
    eos = eos_mid_generation(tiny, ids, mask, rng)
    two = greedy[0, :2].tolist()
    return [
        {"repetition_penalty": rng.choice([1.5, 0.6])},
        {"no_repeat_ngram_size": rng.randint(1, 3)},
        {"bad_words_ids": [[t] for t in rng.sample(seen, min(3, len(seen)))] + [two]},
        {"min_new_tokens": rng.randint(2, 6), "eos_token_id": eos},
        {"min_length": ids.shape[1] + rng.randint(2, 6), "eos_token_id": eos},
        {"forced_eos_token_id": rng.randrange(tiny.vocab_size), "eos_token_id": eos},
        {"suppress_tokens": rng.sample(seen, min(4, len(seen)))},
        {"begin_suppress_tokens": greedy[:, 0].tolist()},
        {"eos_token_id": [eos, rng.choice(seen)]},
        {"sequence_bias": [[[t], rng.uniform(-9, 9)] for t in rng.sample(seen, min(3, len(seen)))]},
        {"exponential_decay_length_penalty": (2, 1.8), "eos_token_id": eos},
        {"renormalize_logits": True, "remove_invalid_values": True},
    ]


@pytest.mark.parametrize("single", [True, False], ids=["single", "batch"])
@pytest.mark.parametrize("seed", range(2))
def test_each_processor(tiny, seed, single):
    rng = random.Random(seed * 10 + single)
    ids, mask = _prompts(tiny, rng, single)
    plain = ref_generate(tiny.ref, ids, mask, max_new_tokens=10, pad_token_id=0)
    changed = 0
    for options in _processor_options(tiny, rng, ids, mask):
        options.setdefault("pad_token_id", 0)
        out, _ = run_both(tiny, ids, mask, max_new_tokens=10, **options)
        changed += out.shape != plain.shape or not torch.equal(out, plain)
        # Processors combine with beam search too (they see log-probabilities there).
        run_both(tiny, ids, mask, max_new_tokens=6, num_beams=2, **options)
    assert changed >= 6, "the chosen settings should change the output of most processors"


def test_forced_bos_with_one_token_prompt(tiny):
    ids = torch.tensor([[5], [9]])
    out, _ = run_both(tiny, ids, None, max_new_tokens=4, forced_bos_token_id=42)
    assert (out[:, 1] == 42).all()
    run_both(tiny, ids, None, max_new_tokens=4, forced_bos_token_id=42, begin_suppress_tokens=[7, 8])


class BanEven:
    """A custom processor: even token ids are impossible after the third token."""

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] < 3:
            return scores
        scores = scores.clone()
        scores[:, ::2] = -float("inf")
        return scores


def test_custom_logits_processor(tiny):
    from transformers import LogitsProcessorList

    rng = random.Random(3)
    ids, mask = random_batch(rng, 3, tiny.vocab_size)
    expected = ref_generate(tiny.ref, ids, mask, max_new_tokens=8, logits_processor=LogitsProcessorList([BanEven()]),
                            repetition_penalty=1.4, pad_token_id=0)
    for given in (BanEven(), [BanEven()]):
        got = tiny.ours.generate(ids, attention_mask=mask, max_new_tokens=8, logits_processor=given,
                                 repetition_penalty=1.4, pad_token_id=0)
        assert torch.equal(got, expected)
    assert (got[:, ids.shape[1]:] % 2 == 1).all()


def _warper_options(rng: random.Random) -> list[dict]:
    return [
        {"top_k": 0},
        {"temperature": rng.uniform(0.3, 2.0), "top_k": 0},
        {"top_k": rng.randint(1, 8)},
        {"top_p": rng.uniform(0.2, 0.9)},
        {"min_p": rng.uniform(0.05, 0.3), "top_k": 0},
        {"typical_p": rng.uniform(0.2, 0.9)},
        {"epsilon_cutoff": 0.02},
        {"eta_cutoff": 0.02},
        {"top_k": 20, "top_p": 0.8, "temperature": 0.7, "repetition_penalty": 1.3},
    ]


@pytest.mark.parametrize("single", [True, False], ids=["single", "batch"])
def test_sampling_matches_transformers_for_the_same_rng_state(tiny, single):
    """Our sync-free draw consumes the RNG exactly like torch.multinomial: same seed, same tokens."""
    rng = random.Random(5 + single)
    ids, mask = _prompts(tiny, rng, single)
    for i, options in enumerate(_warper_options(rng)):
        options.update(do_sample=True, max_new_tokens=8, pad_token_id=0, num_return_sequences=rng.randint(1, 3))
        torch.manual_seed(i)
        expected = ref_generate(tiny.ref, ids, mask, **options)
        torch.manual_seed(i)
        got = tiny.ours.generate(ids, attention_mask=mask, **options)
        assert torch.equal(got, expected), options


def test_beam_sampling_matches_transformers(tiny):
    rng = random.Random(8)
    ids, mask = random_batch(rng, 2, tiny.vocab_size)
    for i in range(3):
        options = dict(do_sample=True, num_beams=rng.randint(2, 3), max_new_tokens=7, top_k=rng.choice([0, 10]),
                       eos_token_id=eos_mid_generation(tiny, ids, mask, rng), temperature=rng.uniform(0.5, 1.5))
        torch.manual_seed(i)
        expected = ref_generate(tiny.ref, ids, mask, **options)
        torch.manual_seed(i)
        assert torch.equal(tiny.ours.generate(ids, attention_mask=mask, **options), expected), options


def test_generation_config_object_and_model_defaults(tiny):
    rng = random.Random(2)
    ids, mask = random_batch(rng, 2, tiny.vocab_size)
    config = bombus.generation.GenerationConfig(max_new_tokens=5, num_beams=2, eos_token_id=7)
    expected = ref_generate(tiny.ref, ids, mask, max_new_tokens=5, num_beams=2, eos_token_id=7, pad_token_id=1)
    assert torch.equal(tiny.ours.generate(ids, attention_mask=mask, generation_config=config), expected)
    # kwargs override the object
    expected = ref_generate(tiny.ref, ids, mask, max_new_tokens=3, num_beams=2, eos_token_id=7)
    got = tiny.ours.generate(ids, attention_mask=mask, generation_config=config, max_new_tokens=3)
    assert torch.equal(got, expected)
    # max_length (total) as in transformers
    run_both(tiny, ids, mask, max_length=ids.shape[1] + 4)


def test_lists_and_1d_inputs(tiny):
    expected = tiny.ours.generate(torch.tensor([[4, 5, 6]]), max_new_tokens=4)
    assert torch.equal(tiny.ours.generate([4, 5, 6], max_new_tokens=4), expected)
    assert torch.equal(tiny.ours.generate(torch.tensor([4, 5, 6]), max_new_tokens=4), expected)
    assert torch.equal(bombus.generation.generate(tiny.ours, [[4, 5, 6]], max_new_tokens=4), expected)


def test_no_prompt_starts_from_bos(tiny):
    out, _ = run_both(tiny, None, None, max_new_tokens=5)
    assert out[0, 0] == 0  # bos_token_id of the fixture
