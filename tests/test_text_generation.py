"""generation: greedy text equal to transformers' generate, batched = one by one, stop sequences, streaming,
token summaries."""

import random

import pytest
import torch

import bombus.text
from bombus.errors import ConfigError, GenerationError, InputError
from text_fixtures import checkpoints, random_sentence  # noqa: F401


@pytest.fixture(scope="module")
def lm(checkpoints):
    return checkpoints("gpt2", "for_causal_language_modeling", std=0.3)


def reference_text(c, prompt, max_new_tokens):
    ids = c.ref_tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = c.ref.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=50256)
    new = out[0, ids.shape[1]:]
    eos = (new == 50256).nonzero()
    count = int(eos[0]) + 1 if len(eos) else len(new)
    return c.ref_tokenizer.decode(new[:count], skip_special_tokens=True), ids.shape[1], count


def test_greedy_matches_transformers_batched(lm):
    rng = random.Random(0)
    prompts = [random_sentence(rng, 1, 10) for _ in range(5)]
    serving = bombus.text.generation(lm.model, lm.tokenizer, max_new_tokens=8, batch_size=5, batch_timeout_ms=50)
    results = serving(prompts)
    assert serving.stats["batches"] == 1  # the list ran as one left-padded batch
    longest = max(r["token_summary"]["input"] for r in results)
    for prompt, result in zip(prompts, results):
        text, prompt_tokens, count = reference_text(lm, prompt, 8)
        assert result["text"] == text
        assert result["token_summary"] == {"input": prompt_tokens, "output": count, "padding": longest - prompt_tokens}
    full = bombus.text.generation(lm.model, lm.tokenizer, max_new_tokens=8, return_full_text=True)(prompts[0])
    assert full["text"] == prompts[0] + results[0]["text"]


def test_stop_sequences_and_streaming(lm):
    plain = bombus.text.generation(lm.model, lm.tokenizer, max_new_tokens=12)
    prompt = "Hello world, this is"
    text = plain(prompt)["text"]
    assert len(text) > 4
    stop = text[len(text) // 2: len(text) // 2 + 2]  # a piece of what greedy decoding will produce
    stopped = bombus.text.generation(lm.model, lm.tokenizer, max_new_tokens=12, stop_sequences=[stop])(prompt)
    assert stopped["text"] == text[: text.find(stop)]
    assert stopped["token_summary"]["output"] <= plain(prompt)["token_summary"]["output"]
    streaming = bombus.text.generation(lm.model, lm.tokenizer, max_new_tokens=12, stream=True)
    chunks = list(streaming(prompt))
    assert "".join(chunks) == text and len(chunks) > 1
    stop_stream = bombus.text.generation(lm.model, lm.tokenizer, max_new_tokens=12, stream=True, stop_sequences=stop)
    assert "".join(stop_stream(prompt)) == stopped["text"]
    with pytest.raises(InputError, match="one prompt"):
        streaming([prompt, prompt])


def test_errors(lm, checkpoints):
    with pytest.raises(GenerationError, match="max_new_token"):
        bombus.text.generation(lm.model, lm.tokenizer, max_new_token=3)
    with pytest.raises(ConfigError, match="generative"):
        c = checkpoints("gpt2", "for_sequence_classification")
        bombus.text.generation(c.model, c.tokenizer)
    with pytest.raises(ConfigError, match="num_return_sequences"):
        bombus.text.generation(lm.model, lm.tokenizer, num_return_sequences=2, do_sample=True)
    with pytest.raises(ConfigError, match="return_dict_in_generate"):
        bombus.text.generation(lm.model, lm.tokenizer, return_dict_in_generate=True, output_scores=True)
    serving = bombus.text.generation(lm.model, lm.tokenizer, max_new_tokens=2, sequence_length=8)
    long_prompt = "word " * 20
    with pytest.raises(InputError, match="truncate=True"):
        serving(long_prompt)
    cut = bombus.text.generation(lm.model, lm.tokenizer, max_new_tokens=2, sequence_length=8, truncate=True)(long_prompt)
    assert cut["token_summary"]["input"] == 8
