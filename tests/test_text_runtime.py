"""The serving runtime: concurrent callers gathered into batches, each getting its own result; failures
isolated per caller; length buckets; too-long inputs fail or are truncated only when asked."""

import random
import threading

import pytest
import torch

import bombus.text
from bombus.errors import ConfigError, InputError
from text_fixtures import checkpoints, close, random_sentence  # noqa: F401

LABELS = {0: "a", 1: "b", 2: "c"}


def run_threads(function, inputs):
    results, errors = [None] * len(inputs), [None] * len(inputs)
    start = threading.Barrier(len(inputs))

    def work(i):
        start.wait()  # all callers at once
        try:
            results[i] = function(inputs[i])
        except Exception as e:  # noqa: BLE001 - recorded for the assertions
            errors[i] = e

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def same(a: dict, b: dict) -> bool:
    return [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]] and all(
        close(p["score"], q["score"]) for p, q in zip(a["predictions"], b["predictions"]))


def test_64_threads_get_their_own_results(checkpoints):
    c = checkpoints("bert", "for_sequence_classification", LABELS, std=1.0)
    rng = random.Random(0)
    texts = [random_sentence(rng, 1, 15) for _ in range(64)]
    alone = bombus.text.text_classification(c.model, c.tokenizer, top_k=None, batch_size=1)
    expected = [alone(t) for t in texts]
    assert len({round(e["predictions"][0]["score"], 5) for e in expected}) > 32  # results differ per text
    serving = bombus.text.text_classification(c.model, c.tokenizer, top_k=None, batch_size=16, batch_timeout_ms=100)
    results, errors = run_threads(serving, texts)
    assert errors == [None] * 64
    assert all(same(r, e) for r, e in zip(results, expected))
    assert serving.stats["inputs"] == 64
    assert 4 <= serving.stats["batches"] < 64  # batches really formed (at most 16 inputs each)


def test_a_failing_caller_does_not_break_the_others(checkpoints):
    c = checkpoints("bert", "for_sequence_classification", LABELS, std=1.0)
    serving = bombus.text.text_classification(c.model, c.tokenizer, batch_size=8, batch_timeout_ms=100,
                                              sequence_length=[16, 32])
    finish = serving.finish

    def fragile(request, outputs, inputs):  # a failure inside the batch, after the model ran
        if request.input == "poison":
            raise RuntimeError("poisoned")
        return finish(request, outputs, inputs)

    serving.finish = fragile
    rng = random.Random(1)
    inputs = [random_sentence(rng, 1, 5) for _ in range(20)]
    inputs[3] = inputs[11] = "poison"
    inputs[7] = "word " * 40  # too long: rejected in the caller's thread, before batching
    inputs[15] = 42  # not a text
    results, errors = run_threads(serving, inputs)
    expected = bombus.text.text_classification(c.model, c.tokenizer, batch_size=1)
    for i, text in enumerate(inputs):
        if i in (3, 11):
            assert isinstance(errors[i], RuntimeError)
        elif i == 7:
            assert isinstance(errors[i], InputError) and "truncate=True" in str(errors[i])
        elif i == 15:
            assert isinstance(errors[i], InputError)
        else:
            assert errors[i] is None and same(results[i], expected(text))


def test_buckets_pad_and_do_not_change_results(checkpoints):
    c = checkpoints("roberta", "for_sequence_classification", LABELS, std=1.0)
    rng = random.Random(2)
    texts = [random_sentence(rng, 1, 12) for _ in range(6)]
    plain = bombus.text.text_classification(c.model, c.tokenizer, top_k=None)(texts)
    bucketed = bombus.text.text_classification(c.model, c.tokenizer, top_k=None, sequence_length=[16, 32, 48])
    shapes = []
    forward = bucketed.model.forward
    bucketed.model.forward = lambda **x: shapes.append(tuple(x["input_ids"].shape)) or forward(**x)
    try:
        got = bucketed(texts)
    finally:
        bucketed.model.forward = forward
    assert all(same(a, b) for a, b in zip(got, plain))
    assert shapes and all(s[1] in (16, 32, 48) for s in shapes)


def test_truncate_only_when_asked(checkpoints):
    c = checkpoints("bert", "for_sequence_classification", LABELS, std=1.0)
    long_text = " ".join(["museum"] * 100)  # 102 tokens, the model takes 64
    with pytest.raises(InputError, match="max_positions"):
        bombus.text.text_classification(c.model, c.tokenizer)(long_text)
    cut = bombus.text.text_classification(c.model, c.tokenizer, truncate=True, top_k=None)(long_text)
    with torch.no_grad():
        enc = c.ref_tokenizer(long_text, truncation=True, max_length=64, return_tensors="pt")
        want = c.ref(**enc).logits[0].softmax(-1)
    index = {label: i for i, label in LABELS.items()}
    assert all(close(p["score"], want[index[p["label"]]]) for p in cut["predictions"])
    with pytest.raises(ConfigError, match="sequence_length"):
        bombus.text.text_classification(c.model, c.tokenizer, sequence_length=[0, 8])
    with pytest.raises(ConfigError, match="batch_size"):
        bombus.text.text_classification(c.model, c.tokenizer, batch_size=0)


def test_results_are_json(checkpoints):
    import json

    c = checkpoints("bert", "for_token_classification", {0: "O", 1: "B-X"}, std=1.0)
    result = bombus.text.token_classification(c.model, c.tokenizer, ignored_labels=[])(["a b", ""])
    assert json.loads(json.dumps(result)) == result
