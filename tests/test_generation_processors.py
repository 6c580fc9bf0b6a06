"""Each bombus logits processor equals the transformers processor it is named after, on random scores and ids
(exact match, not approximate: decoding must take the same tokens)."""

from __future__ import annotations

import importlib

import random

import pytest
import torch
from generation_fixtures import one_thread  # noqa: F401

from bombus.generation import processors as P

tp = importlib.import_module("transformers.generation.logits_process")

V = 50


def _cases(seed: int):
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    batch, length = rng.randint(1, 5), rng.randint(1, 12)
    # Small id range so repeats (n-grams, penalties) are common.
    ids = torch.randint(0, rng.choice([5, V]), (batch, length), generator=g)
    scores = torch.randn(batch, V, generator=g) * rng.choice([0.5, 3.0])
    if rng.random() < 0.3:  # ties and -inf entries, as after other processors
        scores[:, rng.randrange(V)] = scores[:, 0]
        scores[:, rng.randrange(V)] = -float("inf")
    return rng, ids, scores


def _pairs(rng: random.Random, ids: torch.Tensor):
    """(bombus processor, transformers processor) with random settings."""
    length = ids.shape[1]
    eos = rng.sample(range(V), rng.randint(1, 3))
    keep = rng.randint(1, 3)
    words = [[rng.randrange(V) for _ in range(rng.randint(1, 3))] for _ in range(rng.randint(1, 4))]
    # Bad words that the rows actually end with, so multi-token bans trigger.
    words += [ids[rng.randrange(ids.shape[0]), -n:].tolist() + [rng.randrange(V)] for n in range(1, min(3, length) + 1)]
    bias = [[w, rng.uniform(-3, 3)] for w in words]
    pad = torch.tensor([rng.randint(0, length) for _ in range(ids.shape[0])])
    min_length, min_new = length + rng.randint(-1, 1), max(0, length - 2 + rng.randint(0, 2))
    return [
        (P.MinLength(min_length, eos), tp.MinLengthLogitsProcessor(min_length, eos)),
        (P.MinNewTokens(2, min_new, eos), tp.MinNewTokensLengthLogitsProcessor(2, min_new, eos)),
        (P.RepetitionPenalty(1.7), tp.RepetitionPenaltyLogitsProcessor(1.7)),
        (P.RepetitionPenalty(0.6, prompt_ignore_length=pad),
         tp.RepetitionPenaltyLogitsProcessor(0.6, prompt_ignore_length=pad)),
        (P.RepetitionPenalty(1.3, prompt_ignore_length=2),
         tp.RepetitionPenaltyLogitsProcessor(1.3, prompt_ignore_length=2)),
        (P.NoRepeatNGram(1), tp.NoRepeatNGramLogitsProcessor(1)),
        (P.NoRepeatNGram(2), tp.NoRepeatNGramLogitsProcessor(2)),
        (P.NoRepeatNGram(3), tp.NoRepeatNGramLogitsProcessor(3)),
        (P.NoBadWords(words, eos), tp.NoBadWordsLogitsProcessor(words, eos)),
        (P.SequenceBias(bias), tp.SequenceBiasLogitsProcessor(bias)),
        (P.ForcedBOS(rng.randrange(V)), None),
        (P.ForcedEOS(length + 1, eos), tp.ForcedEOSTokenLogitsProcessor(length + 1, eos)),
        (P.ForcedEOS(length + 2, eos), tp.ForcedEOSTokenLogitsProcessor(length + 2, eos)),
        (P.SuppressTokens(words[0]), tp.SuppressTokensLogitsProcessor(words[0])),
        (P.SuppressTokensAtBegin(words[0], length), tp.SuppressTokensAtBeginLogitsProcessor(words[0], length)),
        (P.SuppressTokensAtBegin(words[0], length + 1), tp.SuppressTokensAtBeginLogitsProcessor(words[0], length + 1)),
        (P.ExponentialDecayLengthPenalty(1, 1.5, eos, length - 3),
         tp.ExponentialDecayLengthPenalty((1, 1.5), eos, length - 3)),
        (P.InfNanRemove(), tp.InfNanRemoveLogitsProcessor()),
        (P.LogitNormalization(), tp.LogitNormalization()),
        (P.Temperature(0.7), tp.TemperatureLogitsWarper(0.7)),
        (P.TopK(rng.randint(1, 10), keep), None),
        (P.TopP(rng.uniform(0.05, 0.95), keep), None),
        (P.MinP(rng.uniform(0.01, 0.5), keep), None),
        (P.TypicalP(rng.uniform(0.1, 0.95), keep), None),
        (P.EpsilonCutoff(rng.uniform(0.001, 0.05), keep), None),
        (P.EtaCutoff(rng.uniform(0.001, 0.05), keep), None),
        (P.TopH(rng.uniform(0.05, 1.0)), None),
        (P.PrefixConstrained(lambda b, row: [(int(row[-1]) + b) % V, (3 * int(row[-1])) % V], 1),
         tp.PrefixConstrainedLogitsProcessor(lambda b, row: [(int(row[-1]) + b) % V, (3 * int(row[-1])) % V], 1)),
    ]


_REFERENCE_OF = {
    P.ForcedBOS: lambda p: tp.ForcedBOSTokenLogitsProcessor(p.bos_token_id),
    P.TopK: lambda p: tp.TopKLogitsWarper(p.top_k),
    P.TopP: lambda p: tp.TopPLogitsWarper(p.top_p, min_tokens_to_keep=p.min_tokens_to_keep),
    P.MinP: lambda p: tp.MinPLogitsWarper(p.min_p, min_tokens_to_keep=p.min_tokens_to_keep),
    P.TypicalP: lambda p: tp.TypicalLogitsWarper(p.mass, min_tokens_to_keep=p.min_tokens_to_keep),
    P.EpsilonCutoff: lambda p: tp.EpsilonLogitsWarper(p.epsilon, min_tokens_to_keep=p.min_tokens_to_keep),
    P.EtaCutoff: lambda p: tp.EtaLogitsWarper(p.epsilon, min_tokens_to_keep=p.min_tokens_to_keep),
    P.TopH: lambda p: tp.TopHLogitsWarper(p.top_h),
}


@pytest.mark.parametrize("seed", range(12))
def test_processors_equal_transformers(seed):
    rng, ids, scores = _cases(seed)
    changed = 0
    for ours, ref in _pairs(rng, ids):
        if ref is None:
            ref = _REFERENCE_OF[type(ours)](ours)
        expected = ref(ids, scores.clone())
        got = ours(ids, scores.clone())
        name = type(ours).__name__
        assert got.shape == expected.shape and got.dtype == expected.dtype, name
        torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True,
                                   msg=lambda m, name=name: f"{name}: {m}")
        changed += not torch.equal(got, scores)
    assert changed >= 10, "the random settings should make most processors change the scores"


def test_forced_bos_fires_only_after_one_token():
    scores = torch.randn(2, V)
    forced = P.ForcedBOS(7)(torch.zeros(2, 1, dtype=torch.long), scores)
    assert forced.argmax(-1).tolist() == [7, 7] and torch.isinf(forced).sum() == 2 * (V - 1)
    assert torch.equal(P.ForcedBOS(7)(torch.zeros(2, 2, dtype=torch.long), scores), scores)


def test_bad_word_equal_to_eos_is_not_banned():
    scores = torch.zeros(1, V)
    out = P.NoBadWords([[3], [4]], eos_token_id=3)(torch.zeros(1, 2, dtype=torch.long), scores)
    assert out[0, 3] == 0 and out[0, 4] == -float("inf")


def test_warpers_keep_min_tokens():
    scores = torch.tensor([[10.0, 0.0, -1.0, -2.0, -3.0]])
    ids = torch.zeros(1, 1, dtype=torch.long)
    for warper in (P.TopP(0.01, 3), P.MinP(0.99, 3), P.TypicalP(0.01, 3), P.EpsilonCutoff(0.5, 3)):
        assert torch.isfinite(warper(ids, scores)).sum() >= 3, type(warper).__name__
    assert torch.isfinite(P.TopK(1, 2)(ids, scores)).sum() == 2


def test_processors_do_not_modify_their_input():
    rng, ids, scores = _cases(99)
    for ours, _ in _pairs(rng, ids):
        before_ids, before_scores = ids.clone(), scores.clone()
        ours(ids, scores)
        assert torch.equal(ids, before_ids) and torch.equal(scores, before_scores), type(ours).__name__
