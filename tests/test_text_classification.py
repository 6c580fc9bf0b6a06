"""text_classification and zero_shot_classification against transformers' pipelines."""

import random

import pytest

import bombus.text
from bombus.errors import ConfigError, InputError
from text_fixtures import NLI_LABELS, checkpoints, close, pipeline, random_sentence  # noqa: F401

LABELS = {0: "negative", 1: "positive", 2: "mixed"}


def same_predictions(ours: dict, ref: list[dict]) -> None:
    assert [p["label"] for p in ours["predictions"]] == [p["label"] for p in ref]
    assert all(close(p["score"], q["score"]) for p, q in zip(ours["predictions"], ref))


@pytest.mark.parametrize("family", ["bert", "distilbert", "gpt2"])
@pytest.mark.parametrize("function", [None, "sigmoid", "none"])
def test_matches_transformers(checkpoints, family, function):
    c = checkpoints(family, "for_sequence_classification", LABELS)
    rng = random.Random(f"{family}{function}")
    texts = [random_sentence(rng) for _ in range(3)] + ([""] if family != "gpt2" else [])  # GPT-2: "" is 0 tokens
    ours = bombus.text.text_classification(c.model, c.tokenizer, top_k=None, scores_function=function)(texts)
    ref = pipeline("text-classification", c)(texts, top_k=None, function_to_apply=function)
    for got, want in zip(ours, ref):
        same_predictions(got, want)


def test_pairs_and_top_k(checkpoints):
    c = checkpoints("bert", "for_sequence_classification", LABELS)
    rng = random.Random(1)
    pairs = [(random_sentence(rng), random_sentence(rng)) for _ in range(3)]
    serving = bombus.text.text_classification(c.model, c.tokenizer, top_k=2)
    ours = serving(pairs + [{"text": pairs[0][0], "text_pair": pairs[0][1]}])
    ref = pipeline("text-classification", c)([{"text": a, "text_pair": b} for a, b in pairs], top_k=2)
    for got, want in zip(ours, ref):
        same_predictions(got, want)
    assert ours[-1] == ours[0]  # the dict form is the same pair
    assert ours[0] != serving(pairs[0][0])  # and the pair is not just its first text


def test_empty_text_without_special_tokens_is_an_input_error(checkpoints):
    c = checkpoints("gpt2", "for_sequence_classification", LABELS)
    with pytest.raises(InputError, match="no tokens"):
        bombus.text.text_classification(c.model, c.tokenizer)("")


def test_labels_default_to_label_i(checkpoints):
    c = checkpoints("distilbert", "for_sequence_classification")
    labels = {p["label"] for p in bombus.text.text_classification(c.model, c.tokenizer, top_k=None)("x")["predictions"]}
    assert labels == {f"LABEL_{i}" for i in range(c.model.spec.num_labels)}


@pytest.mark.parametrize("family", ["roberta", "bert"])
@pytest.mark.parametrize("multi_label", [False, True])
def test_zero_shot_matches_transformers(checkpoints, family, multi_label):
    c = checkpoints(family, "for_sequence_classification", NLI_LABELS)
    rng = random.Random(f"{family}{multi_label}")
    labels = rng.sample(["sports", "politics", "food", "science", "music", "travel"], rng.randint(1, 5))
    template = rng.choice(["This example is {}.", "The topic is {}"])
    texts = [random_sentence(rng) for _ in range(2)]
    serving = bombus.text.zero_shot_classification(c.model, c.tokenizer, labels, hypothesis_template=template,
                                                   multi_label=multi_label)
    ref = pipeline("zero-shot-classification", c)(texts, candidate_labels=labels, hypothesis_template=template,
                                                   multi_label=multi_label)
    for got, want in zip(serving(texts), ref):
        assert [p["label"] for p in got["predictions"]] == want["labels"]
        assert all(close(p["score"], s) for p, s in zip(got["predictions"], want["scores"]))
        if not multi_label and len(labels) > 1:
            assert close(sum(p["score"] for p in got["predictions"]), 1.0)


def test_zero_shot_finds_labels_by_name(checkpoints):
    """Entailment and contradiction are found by name wherever they are (here not where transformers looks)."""
    shuffled = {0: "neutral", 1: "ENTAILMENT", 2: "contradiction"}
    c = checkpoints("bert", "for_sequence_classification", shuffled)
    labels = ["a", "b", "c"]
    got = bombus.text.zero_shot_classification(c.model, c.tokenizer, labels, multi_label=True)("some text")
    pairs = [("some text", f"This example is {label}.") for label in labels]
    import torch

    with torch.no_grad():
        logits = c.ref(**c.ref_tokenizer([p[0] for p in pairs], [p[1] for p in pairs], return_tensors="pt",
                                         padding=True)).logits
    want = logits[:, [2, 1]].softmax(-1)[:, 1]
    assert {p["label"]: round(p["score"], 5) for p in got["predictions"]} == {
        label: round(float(s), 5) for label, s in zip(labels, want)}
    # per-input labels override the serving's
    other = bombus.text.zero_shot_classification(c.model, c.tokenizer, labels)({"text": "x", "candidate_labels": "d, e"})
    assert {p["label"] for p in other["predictions"]} == {"d", "e"}


def test_zero_shot_errors(checkpoints):
    c = checkpoints("bert", "for_sequence_classification", LABELS)
    with pytest.raises(ConfigError, match="entailment"):
        bombus.text.zero_shot_classification(c.model, c.tokenizer, ["a"])
    nli = checkpoints("bert", "for_sequence_classification", NLI_LABELS)
    with pytest.raises(ConfigError, match="hypothesis_template"):
        bombus.text.zero_shot_classification(nli.model, nli.tokenizer, ["a"], hypothesis_template="no slot")
    with pytest.raises(InputError, match="candidate_labels"):
        bombus.text.zero_shot_classification(nli.model, nli.tokenizer)("text without labels")
    with pytest.raises(InputError, match="candidate_labels"):
        bombus.text.zero_shot_classification(nli.model, nli.tokenizer, [])
