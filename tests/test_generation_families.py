"""Generation beyond GPT-2: RoBERTa and BERT causal LMs (`is_decoder=True`) and LLaMA give transformers' tokens
too. (For RoBERTa, generate passes position ids counted from 0, as transformers' generate does.)"""

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
)


@pytest.mark.parametrize("seed", range(2))
def test_other_families(other_lm, seed):
    pair = other_lm
    assert pair.ours.architecture == "for_causal_language_modeling"
    rng = random.Random(seed)
    ids, mask = random_batch(rng, rng.randint(1, 3), pair.vocab_size, pad_id=1, low=3)
    eos = eos_mid_generation(pair, ids, mask, rng)
    # The fixture must not predict one token whatever the prompt (parity would then prove nothing).
    many, many_mask = random_batch(random.Random(99), 8, pair.vocab_size, pad_id=1, low=3, min_len=3)
    first = pair.ours.generate(many, attention_mask=many_mask, max_new_tokens=1, pad_token_id=0)[:, -1]
    assert len(set(first.tolist())) >= 3
    run_both(pair, ids, mask, max_new_tokens=rng.randint(3, 12), eos_token_id=eos)
    run_both(pair, ids, mask, max_new_tokens=8, num_beams=rng.randint(2, 3), eos_token_id=eos,
             length_penalty=rng.choice([0.5, 1.0, 2.0]))
    run_both(pair, ids, mask, max_new_tokens=8, repetition_penalty=1.4, no_repeat_ngram_size=2)


@pytest.mark.parametrize("other_lm", ["bert"], indirect=True)
def test_token_type_ids_carry_over(other_lm):
    """BERT takes segment ids; new tokens repeat each row's last one, as in transformers."""
    assert other_lm.ours.spec.model_type == "bert"
    rng = random.Random(5)
    ids, mask = random_batch(rng, 3, other_lm.vocab_size, pad_id=1, low=3)
    types = torch.ones_like(ids)
    types[0, :-2] = 0  # row 0 ends in segment B; the others are all B
    expected = ref_generate(other_lm.ref, ids, mask, token_type_ids=types, max_new_tokens=6)
    got = other_lm.ours.generate(ids, attention_mask=mask, token_type_ids=types, max_new_tokens=6)
    assert torch.equal(got, expected)
    assert not torch.equal(got, other_lm.ours.generate(ids, attention_mask=mask, max_new_tokens=6))
