"""Sampling: reproducible for a seed or generator, statistically right (the warpers' sets are never left, and
frequencies follow the warped distribution), and temperature -> 0 approaches greedy decoding."""

from __future__ import annotations

import importlib

import random

import pytest
import torch
from generation_fixtures import one_thread, random_batch, tiny  # noqa: F401

tp = importlib.import_module("transformers.generation.logits_process")

DRAWS = 3000


def test_same_seed_same_tokens(tiny):
    ids, mask = random_batch(random.Random(0), 3, tiny.vocab_size)
    options = dict(attention_mask=mask, do_sample=True, max_new_tokens=12, top_k=0, temperature=1.5, pad_token_id=0)
    a = tiny.ours.generate(ids, seed=1234, **options)
    torch.manual_seed(99)  # the seed makes the global RNG irrelevant
    b = tiny.ours.generate(ids, seed=1234, **options)
    assert torch.equal(a, b)
    assert not torch.equal(a, tiny.ours.generate(ids, seed=4321, **options))
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(tiny.ours.generate(ids, generator=g1, **options),
                       tiny.ours.generate(ids, generator=g2, **options))
    # Without seed or generator: torch's global RNG, like transformers.
    torch.manual_seed(5)
    c = tiny.ours.generate(ids, **options)
    torch.manual_seed(5)
    assert torch.equal(c, tiny.ours.generate(ids, **options))


def _warped_sets(tiny, sequences: torch.Tensor, warper) -> torch.Tensor:
    """[rows, V] bool: the tokens the transformers warper leaves possible after each row's prefix."""
    with torch.no_grad():
        logits = tiny.ref(sequences).logits[:, -1].float()
    return torch.isfinite(warper(sequences, logits)), warper(sequences, logits).softmax(-1)


@pytest.mark.parametrize("name, options, warper", [
    ("top_k", {"top_k": 3}, lambda: tp.TopKLogitsWarper(3)),
    ("top_p", {"top_p": 0.6, "top_k": 0}, lambda: tp.TopPLogitsWarper(0.6)),
    ("min_p", {"min_p": 0.1, "top_k": 0}, lambda: tp.MinPLogitsWarper(0.1)),
    ("typical_p", {"typical_p": 0.5, "top_k": 0}, lambda: tp.TypicalLogitsWarper(0.5)),
])
def test_warpers_never_leave_their_set(tiny, name, options, warper):
    torch.manual_seed(0)
    prompt = torch.tensor([[11, 57, 3, 80, 42]])
    out = tiny.ours.generate(prompt, do_sample=True, max_new_tokens=2, num_return_sequences=DRAWS, temperature=2.0,
                             eos_token_id=None, pad_token_id=0, **options)
    assert out.shape == (DRAWS, prompt.shape[1] + 2)
    # Temperature comes first in transformers' order; flatten the model a bit so each set has several tokens.
    warp = lambda seqs, scores: warper()(seqs, tp.TemperatureLogitsWarper(2.0)(seqs, scores))
    for step in range(2):
        prefix = out[:, : prompt.shape[1] + step]
        allowed, probs = _warped_sets(tiny, prefix, warp)
        tokens = out[:, prompt.shape[1] + step]
        assert allowed[torch.arange(DRAWS), tokens].all(), f"{name} drew a token outside its set at step {step}"
    # The first step's frequencies follow the warped distribution (not, say, always its argmax).
    allowed, probs = _warped_sets(tiny, prompt, warp)
    assert allowed.sum() >= 2, f"{name}: the set should hold several tokens for this test to mean something"
    counts = torch.bincount(out[:, prompt.shape[1]], minlength=tiny.vocab_size).float() / DRAWS
    assert (counts - probs[0]).abs().max() < 0.04, (name, counts[allowed[0]], probs[0][allowed[0]])


def test_temperature_towards_zero_is_greedy(tiny):
    ids, mask = random_batch(random.Random(4), 4, tiny.vocab_size)
    greedy = tiny.ours.generate(ids, attention_mask=mask, max_new_tokens=10, pad_token_id=0)
    cold = tiny.ours.generate(ids, attention_mask=mask, max_new_tokens=10, pad_token_id=0, do_sample=True,
                              temperature=1e-4, top_k=0, seed=3)
    assert torch.equal(cold, greedy)
    hot = tiny.ours.generate(ids, attention_mask=mask, max_new_tokens=10, pad_token_id=0, do_sample=True,
                             temperature=3.0, top_k=0, seed=3)
    assert not torch.equal(hot, greedy)


def test_draw_is_multinomial_without_its_sync(tiny):
    """The draw is argmax(p / Exp(1) noise): check it equals torch.multinomial for one RNG state."""
    from bombus.generation.search import _Run

    probs_source = torch.randn(6, tiny.vocab_size)
    run = _Run.prepare(tiny.ours, torch.tensor([[3, 4]]), None, None, None, None, None, None,
                       {"do_sample": True})
    torch.manual_seed(0)
    ours = run.select(probs_source)
    torch.manual_seed(0)
    expected = torch.multinomial(probs_source.softmax(-1), 1).squeeze(1)
    assert torch.equal(ours, expected)
