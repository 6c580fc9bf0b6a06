"""fill_mask against transformers' fill-mask pipeline on the same randomised models and tokenizers."""

import random

import pytest

import bombus.text
from bombus.errors import ConfigError, InputError
from text_fixtures import checkpoints, close, pipeline, random_sentence  # noqa: F401


def masked(rng: random.Random, mask: str) -> str:
    words = random_sentence(rng, 3, 10).split(" ")
    words[rng.randrange(len(words))] = mask
    return " ".join(words)


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_matches_transformers(checkpoints, family):
    c = checkpoints(family, "for_masked_language_modeling")
    rng = random.Random(family)
    texts = [masked(rng, c.tokenizer.mask_token) for _ in range(4)]
    top_k = rng.randint(2, 6)
    ours = bombus.text.fill_mask(c.model, c.tokenizer, top_k=top_k)(texts)
    ref = pipeline("fill-mask", c)(texts, top_k=top_k)
    for text, got, want in zip(texts, ours, ref):
        assert [p["token_id"] for p in got["predictions"]] == [p["token"] for p in want], text
        for p, q in zip(got["predictions"], want):
            assert close(p["score"], q["score"])
            assert p["token"] == q["token_str"]
            assert p["sequence"] == q["sequence"]


def test_targets_match_transformers(checkpoints):
    c = checkpoints("bert", "for_masked_language_modeling")
    targets = ["paris", "london", "city", "the", "museum"]
    text = "the capital of france is [MASK] ."
    ours = bombus.text.fill_mask(c.model, c.tokenizer, targets=targets, top_k=3)(text)
    ref = pipeline("fill-mask", c)(text, targets=targets, top_k=3)
    assert [p["token"] for p in ours["predictions"]] == [p["token_str"] for p in ref]
    assert all(close(p["score"], q["score"]) for p, q in zip(ours["predictions"], ref))
    assert {p["token"] for p in ours["predictions"]} <= set(targets)


def test_mask_count_errors(checkpoints):
    c = checkpoints("bert", "for_masked_language_modeling")
    serving = bombus.text.fill_mask(c.model, c.tokenizer)
    for text in ["no mask here", "", "[MASK] and [MASK]"]:
        with pytest.raises(InputError, match="exactly one mask token"):
            serving(text)
    with pytest.raises(InputError, match="must be a str"):
        serving(3)
    with pytest.raises(ConfigError, match="for_masked_language_modeling"):
        bombus.text.fill_mask(checkpoints("bert", "base").model, c.tokenizer)
