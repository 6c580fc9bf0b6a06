"""question_answering against a brute-force re-computation from the reference model's logits: every valid span
of every window (cut by transformers' tokenizer with the same overlap) scored P(start) * P(end)."""

import random

import pytest
import torch

import bombus.text
from bombus.errors import ConfigError, InputError
from text_fixtures import checkpoints, close, random_sentence  # noqa: F401

FAMILIES = ["bert", "distilbert", "roberta", "albert", "gpt2"]


def strip(text, start, end):
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def reference_answers(c, question, context, *, window, stride, top_k, max_answer_length):
    """The best distinct character spans over all windows, by brute force; and the number of windows."""
    enc = c.ref_tokenizer(question, context, truncation="only_second", max_length=window, stride=stride,
                          return_overflowing_tokens=True, return_offsets_mapping=True)
    best = {}
    for w in range(len(enc["input_ids"])):
        inputs = {k: torch.tensor([enc[k][w]]) for k in c.ref_tokenizer.model_input_names if k in enc}
        with torch.no_grad():
            out = c.ref(**inputs)
        context_tokens = [i for i, s in enumerate(enc.sequence_ids(w)) if s == 1]
        p_start = out.start_logits[0, context_tokens].softmax(-1).tolist()
        p_end = out.end_logits[0, context_tokens].softmax(-1).tolist()
        for a, s in enumerate(context_tokens):
            for b, e in enumerate(context_tokens):
                if s <= e < s + max_answer_length:
                    span = strip(context, enc["offset_mapping"][w][s][0], enc["offset_mapping"][w][e][1])
                    best[span] = max(best.get(span, 0.0), p_start[a] * p_end[b])
    ranked = sorted(best.items(), key=lambda kv: -kv[1])[:top_k]
    return ranked, len(enc["input_ids"])


def check(ours, ranked, context):
    assert len(ours["results"]) == len(ranked)
    for answer, ((start, end), score) in zip(ours["results"], ranked):
        assert close(answer["score"], score)
        if (answer["start"], answer["end"]) != (start, end):  # allowed only for a tie
            assert close(answer["score"], score, 1e-6), (answer, start, end, score)
        assert answer["text"] == context[answer["start"]:answer["end"]]
        assert answer["text"] == answer["text"].strip()


@pytest.mark.parametrize("family", FAMILIES)
def test_short_context_matches_reference(checkpoints, family):
    c = checkpoints(family, "for_question_answering")
    rng = random.Random(family)
    question, context = random_sentence(rng, 2, 5) + "?", random_sentence(rng, 5, 12)
    top_k, longest = rng.randint(1, 4), rng.randint(1, 6)
    ours = bombus.text.question_answering(c.model, c.tokenizer, top_k=top_k, max_answer_length=longest)(
        {"question": question, "context": context})
    ranked, windows = reference_answers(c, question, context, window=64, stride=0, top_k=top_k,
                                        max_answer_length=longest)
    assert windows == 1
    check(ours, ranked, context)


@pytest.mark.parametrize("family", FAMILIES)
def test_long_context_is_read_in_windows(checkpoints, family):
    c = checkpoints(family, "for_question_answering")
    rng = random.Random(f"long-{family}")
    questions = [random_sentence(rng, 2, 4) + "?" for _ in range(2)]
    contexts = [" ".join(random_sentence(rng, 8, 14) for _ in range(rng.randint(6, 9))) for _ in range(2)]
    window, stride = rng.choice([24, 32, 40]), rng.randint(1, 6)
    serving = bombus.text.question_answering(c.model, c.tokenizer, top_k=3, max_answer_length=8, doc_stride=stride,
                                             sequence_length=window)
    for (question, context), ours in zip(zip(questions, contexts), serving(list(zip(questions, contexts)))):
        ranked, windows = reference_answers(c, question, context, window=window, stride=stride, top_k=3,
                                            max_answer_length=8)
        assert windows > 2
        check(ours, ranked, context)


def test_context_longer_than_the_model_window(checkpoints):
    """No sequence_length: the window is the model's max_positions (64 here)."""
    c = checkpoints("bert", "for_question_answering")
    rng = random.Random(5)
    question, context = "who went there?", " ".join(random_sentence(rng, 10, 14) for _ in range(12))
    ours = bombus.text.question_answering(c.model, c.tokenizer, doc_stride=16)((question, context))
    ranked, windows = reference_answers(c, question, context, window=64, stride=16, top_k=1, max_answer_length=15)
    assert windows > 2
    check(ours, ranked, context)


def test_input_errors(checkpoints):
    c = checkpoints("bert", "for_question_answering")
    serving = bombus.text.question_answering(c.model, c.tokenizer, sequence_length=16)
    for bad in [{"question": "", "context": "Paris"}, {"question": "Where?", "context": "  "},
                {"question": "Where?"}, ("only one",), "a str"]:
        with pytest.raises(InputError):
            serving(bad)
    with pytest.raises(InputError, match="no room for the context"):
        serving({"question": "why " * 20, "context": "because"})
    with pytest.raises(ConfigError, match="doc_stride"):
        bombus.text.question_answering(c.model, c.tokenizer, doc_stride=-1)
    with pytest.raises(ConfigError, match="exceeds the model's window"):
        bombus.text.question_answering(c.model, c.tokenizer, sequence_length=65)
