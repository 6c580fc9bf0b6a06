"""token_classification against transformers' token-classification pipeline, every aggregation strategy, on a
WordPiece vocabulary (word-aware) and a byte-level BPE one (transformers' space heuristic)."""

import random

import pytest

import bombus.text
from bombus.errors import ConfigError
from text_fixtures import NER_LABELS, checkpoints, close, pipeline, random_sentence  # noqa: F401

STRATEGIES = ["none", "simple", "first", "average", "max"]


@pytest.mark.filterwarnings("ignore:Tokenizer does not support real words")  # transformers, for BPE
@pytest.mark.parametrize("family", ["bert", "roberta", "gpt2"])
def test_matches_transformers(checkpoints, family):
    c = checkpoints(family, "for_token_classification", NER_LABELS, std=1.0)
    rng = random.Random(family)
    texts = [random_sentence(rng, 4, 16) for _ in range(4)]
    ref_pipeline = pipeline("token-classification", c)
    compared = 0
    for strategy in STRATEGIES:
        ignored = rng.choice([["O"], ["O", "MISC"], []])
        serving = bombus.text.token_classification(c.model, c.tokenizer, aggregation=strategy, ignored_labels=ignored)
        for text, got in zip(texts, serving(texts)):
            want = ref_pipeline(text, aggregation_strategy=strategy, ignore_labels=ignored)
            assert len(got["entities"]) == len(want), (strategy, text)
            for e, w in zip(got["entities"], want):
                assert e["label"] == w.get("entity_group", w.get("entity")), (strategy, text)
                assert (e["start"], e["end"]) == (w["start"], w["end"]), (strategy, text)
                assert close(e["score"], w["score"])
                assert e["phrase"] == text[e["start"]:e["end"]]
                compared += 1
    assert compared > 20


def test_same_is_simple_and_words_group(checkpoints):
    c = checkpoints("bert", "for_token_classification", NER_LABELS, std=1.0)
    text = "Okonjo-Iweala unbelievably visited Smithsonian headquarters"
    same = bombus.text.token_classification(c.model, c.tokenizer, aggregation="same", ignored_labels=[])(text)
    simple = bombus.text.token_classification(c.model, c.tokenizer, aggregation="simple", ignored_labels=[])(text)
    assert same == simple
    first = bombus.text.token_classification(c.model, c.tokenizer, aggregation="first", ignored_labels=[])(text)
    # word-level strategies never split a word: every entity boundary is a word boundary
    for e in first["entities"]:
        assert e["start"] == 0 or not text[e["start"] - 1].isalnum() or not text[e["start"]].isalnum()
        assert e["end"] == len(text) or not text[e["end"]].isalnum() or not text[e["end"] - 1].isalnum()
        assert not e["label"].startswith(("B-", "I-"))


def test_empty_text_and_bad_options(checkpoints):
    c = checkpoints("bert", "for_token_classification", NER_LABELS, std=1.0)
    assert bombus.text.token_classification(c.model, c.tokenizer)("") == {"entities": []}
    with pytest.raises(ConfigError, match="aggregation"):
        bombus.text.token_classification(c.model, c.tokenizer, aggregation="longest")
    with pytest.raises(ConfigError, match="ignored_labels"):
        bombus.text.token_classification(c.model, c.tokenizer, ignored_labels="O")
