"""multiple_choice against the reference heads: BERT for_multiple_choice and GPT-2 double heads."""

import random

import pytest
import torch

import bombus.text
from bombus.errors import ConfigError, InputError
from text_fixtures import checkpoints, close, random_sentence  # noqa: F401


def reference_scores(c, prompt, choices, double_heads):
    if double_heads:
        rows = [c.ref_tokenizer(f"{prompt} {choice}")["input_ids"] for choice in choices]
        width = max(map(len, rows))
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])[None]
        last = torch.tensor([[len(r) - 1 for r in rows]])
        with torch.no_grad():
            logits = c.ref(input_ids=ids, mc_token_ids=last).mc_logits[0]
    else:
        enc = c.ref_tokenizer([prompt] * len(choices), choices, padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = c.ref(**{k: v[None] for k, v in enc.items()}).logits[0]
    return logits.softmax(-1)


@pytest.mark.parametrize("family,arch", [("bert", "for_multiple_choice"), ("gpt2", "for_double_heads")])
def test_matches_reference(checkpoints, family, arch):
    c = checkpoints(family, arch)
    rng = random.Random(arch)
    items = [{"prompt": random_sentence(rng), "choices": [random_sentence(rng, 1, 6) for _ in range(rng.randint(2, 5))]}
             for _ in range(5)]
    serving = bombus.text.multiple_choice(c.model, c.tokenizer, batch_size=4)
    for item, got in zip(items, serving(items)):
        want = reference_scores(c, item["prompt"], item["choices"], arch == "for_double_heads")
        assert [p["index"] for p in got["predictions"]] == want.argsort(descending=True).tolist()
        for p in got["predictions"]:
            assert close(p["score"], want[p["index"]])
            assert p["choice"] == item["choices"][p["index"]]
    assert serving((items[0]["prompt"], items[0]["choices"])) == serving(items[0])


def test_errors(checkpoints):
    c = checkpoints("bert", "for_multiple_choice")
    serving = bombus.text.multiple_choice(c.model, c.tokenizer)
    for bad in [{"prompt": "x", "choices": []}, {"choices": ["a"]}, ("x", "not a list"), "x"]:
        with pytest.raises(InputError):
            serving(bad)
    with pytest.raises(ConfigError, match="for_multiple_choice"):
        bombus.text.multiple_choice(checkpoints("bert", "base").model, c.tokenizer)
