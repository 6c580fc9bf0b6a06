"""Continuous batching (`bombus.serving.engine.Engine`) in-process: requests arriving at random times into a
batch of few slots (so rows join and leave while others decode) give exactly what `model.generate` gives
each request alone (greedy, and seeded sampling); the reference is transformers' own greedy decoding."""

from __future__ import annotations

import random
import threading
import time

import pytest
import torch

import bombus
from bombus.errors import InputError
from bombus.serving.engine import Engine, QueueFull, SamplingOptions
from server_fixtures import build_models

EOS = 50256


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    folder = build_models(tmp_path_factory.mktemp("engine"), only=("tiny-lm",))["tiny-lm"]
    return folder, bombus.load_model(folder), bombus.load_tokenizer(folder)


def _run(engine: Engine, requests: list[tuple[list[int], SamplingOptions]], rng: random.Random,
         cancel: set[int] = frozenset()) -> dict[int, tuple[list[int], str]]:
    results: dict[int, tuple[list[int], str]] = {}
    done = threading.Event()
    sequences = {}

    def handler(i):
        tokens: list[int] = []

        def on_event(event):
            tokens.extend(t.id for t in event.tokens)
            if i in cancel and len(tokens) >= 2:
                sequences[i].cancel()
            if event.finish_reason:
                results[i] = (tokens, event.finish_reason)
                if len(results) == len(requests):
                    done.set()
        return on_event

    for i, (prompt, options) in enumerate(requests):
        sequences[i] = engine.submit(prompt, options, handler(i), request_id=str(i))
        time.sleep(rng.random() * 0.01)
    assert done.wait(120), f"only {len(results)} of {len(requests)} finished"
    return results


def _alone(model, prompt: list[int], options: SamplingOptions) -> list[int]:
    fields = dict(max_new_tokens=options.max_new_tokens, do_sample=not options.greedy)
    if not options.greedy:
        fields.update(temperature=options.temperature, top_p=options.top_p, top_k=options.top_k or None,
                      seed=options.seed)
    new = model.generate(torch.tensor([prompt]), **fields)[0, len(prompt):].tolist()
    return new[:new.index(EOS) + 1] if EOS in new else new


@pytest.mark.parametrize("window", [None, 16])
def test_rows_join_and_leave_with_the_output_they_get_alone(lm, window):
    folder, model, tokenizer = lm
    import transformers

    ref = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
    rng = random.Random(1)
    engine = Engine(model, tokenizer, max_batch_size=4, max_length=80, window=window)
    try:
        requests = []
        for i in range(14):
            prompt = [rng.randrange(EOS) for _ in range(rng.randint(1, 30))]
            greedy = i % 3 != 2
            options = SamplingOptions(max_new_tokens=rng.randint(1, 45), temperature=0.0 if greedy else 0.8,
                                      top_p=1.0 if greedy else 0.9, top_k=0 if greedy else 20, seed=100 + i)
            requests.append((prompt, options))
        results = _run(engine, requests, rng)
        assert engine.steps < sum(o.max_new_tokens for _, o in requests) * 0.8, "rows should share steps"
        for i, (prompt, options) in enumerate(requests):
            tokens, reason = results[i]
            assert tokens == _alone(model, prompt, options), f"request {i} ({options})"
            assert reason == ("stop" if tokens[-1] == EOS else "length")
            if options.greedy:  # transformers' own greedy decoding agrees
                with torch.no_grad():
                    expected = ref.generate(torch.tensor([prompt]), max_new_tokens=options.max_new_tokens,
                                            do_sample=False, pad_token_id=EOS)[0, len(prompt):].tolist()
                assert tokens == expected[:len(tokens)] and len(tokens) == len(expected)
    finally:
        engine.close()
    assert engine.active == 0 and engine.queue_depth == 0


def test_cancelled_rows_free_their_slot_and_the_others_are_unchanged(lm):
    _, model, tokenizer = lm
    rng = random.Random(2)
    engine = Engine(model, tokenizer, max_batch_size=3, max_length=96)
    try:
        requests = [([rng.randrange(EOS) for _ in range(rng.randint(2, 20))],
                     SamplingOptions(max_new_tokens=40, temperature=0.0, ignore_eos=True)) for _ in range(8)]
        results = _run(engine, requests, rng, cancel={1, 4, 6})
        for i, (prompt, options) in enumerate(requests):
            tokens, reason = results[i]
            if i in {1, 4, 6}:
                assert reason == "cancelled" and len(tokens) < 40
            else:
                assert reason == "length"
                new = model.generate(torch.tensor([prompt]), max_new_tokens=40, do_sample=False,
                                     eos_token_id=None)[0, len(prompt):].tolist()
                assert tokens == new
    finally:
        engine.close()


def test_stop_strings_cut_the_text(lm):
    _, model, tokenizer = lm
    engine = Engine(model, tokenizer, max_batch_size=2, max_length=96)
    try:
        prompt = tokenizer.encode("The weather today is")
        full = _run(engine, [(prompt, SamplingOptions(max_new_tokens=30, temperature=0.0, ignore_eos=True))],
                    random.Random(0))[0][0]
        text = tokenizer.decode(full)
        stop = text[len(text) // 2:len(text) // 2 + 3]
        pieces: list[str] = []
        finished = threading.Event()

        def on_event(event):
            pieces.append(event.text)
            if event.finish_reason:
                pieces.append(event.finish_reason)
                finished.set()

        engine.submit(prompt, SamplingOptions(max_new_tokens=30, temperature=0.0, ignore_eos=True, stop=(stop,)),
                      on_event)
        assert finished.wait(60)
        assert pieces[-1] == "stop"
        assert "".join(pieces[:-1]) == text[:text.find(stop)]
    finally:
        engine.close()


def test_limits_and_queue(lm):
    _, model, tokenizer = lm
    engine = Engine(model, tokenizer, max_batch_size=1, max_length=32, max_queue=1)
    try:
        with pytest.raises(InputError, match="max_tokens to at most 22"):
            engine.check(10, 23)
        with pytest.raises(InputError, match="shorten the prompt"):
            engine.check(32, 1)
        with pytest.raises(InputError, match=r"\[0, 50257\)"):
            engine.submit([50257], SamplingOptions(max_new_tokens=1), lambda e: None)
        gate = threading.Event()
        engine.submit([1, 2], SamplingOptions(max_new_tokens=20, temperature=0.0, ignore_eos=True),
                      lambda e: gate.wait(5))  # holds the engine thread: the next ones wait in the queue
        time.sleep(0.2)
        engine.submit([1, 2], SamplingOptions(max_new_tokens=1), lambda e: None)
        with pytest.raises(QueueFull):
            engine.submit([1, 2], SamplingOptions(max_new_tokens=1), lambda e: None)
        gate.set()
    finally:
        engine.close()


def test_a_row_computes_bit_for_bit_what_it_computes_alone(lm):
    """Log-probabilities (not just tokens) are identical for the same request alone, twice in one batch, and
    joining at different steps: a row's arithmetic does not depend on the other rows."""
    _, model, tokenizer = lm
    rng = random.Random(5)
    prompts = [[rng.randrange(EOS) for _ in range(rng.randint(2, 25))] for _ in range(5)]
    options = SamplingOptions(max_new_tokens=30, temperature=0.0, logprobs=0, ignore_eos=True)
    engine = Engine(model, tokenizer, max_batch_size=8, max_length=96)
    try:
        def logprobs(requests):
            collected: dict[int, list] = {}
            finished = threading.Event()

            def handler(i):
                def on_event(event):
                    collected.setdefault(i, []).extend((t.id, t.logprob) for t in event.tokens)
                    if event.finish_reason and sum(len(v) for v in collected.values()) == 30 * len(requests):
                        finished.set()
                return on_event

            for i, prompt in enumerate(requests):
                engine.submit(prompt, options, handler(i))
                time.sleep(rng.random() * 0.02)
            assert finished.wait(120)
            return [collected[i] for i in range(len(requests))]

        together = logprobs(prompts + prompts[::-1])
        for i, prompt in enumerate(prompts):
            alone = logprobs([prompt])[0]
            assert together[i] == alone and together[len(together) - 1 - i] == alone  # exact floats
    finally:
        engine.close()


@pytest.mark.parametrize("seed", range(3))
def test_rowwise_attention_gives_a_row_the_same_bits_alone(seed):
    """Random batches (1-32 rows, grouped heads, each row its own length) against each row alone over its own
    window of keys (a multiple of 64, as the engine's): bitwise equal."""
    from bombus.layers.attention import rowwise_attention

    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    for _ in range(4):
        batch, kv_heads = rng.randint(2, 32), rng.choice([1, 2, 3])
        group, dim = rng.choice([1, 3, 4]), rng.choice([16, 64])
        keys = 64 * rng.randint(2, 4) - rng.choice([0, 0, 5])  # some windows cut short (at max_length)
        q = torch.randn(batch, kv_heads * group, 1, dim, generator=g)
        k, v = torch.randn(2, batch, kv_heads, keys, dim, generator=g)
        lengths = [rng.randint(1, keys) for _ in range(batch)]
        bias = torch.zeros(batch, 1, 1, keys)
        for i, n in enumerate(lengths):
            bias[i, ..., n:] = float("-inf")
        together = rowwise_attention(q, k, v, bias, 0.125)
        for i, n in enumerate(lengths):
            w = min(keys, -(-n // 64) * 64)
            alone = rowwise_attention(q[i:i + 1], k[i:i + 1, :, :w], v[i:i + 1, :, :w], bias[i:i + 1, ..., :w], 0.125)
            assert torch.equal(together[i:i + 1], alone), (batch, kv_heads, group, dim, keys, i, n)


@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (6, 2), (8, 1)])
def test_rowwise_attention_equals_sdpa(heads, kv_heads):
    from bombus.layers.attention import rowwise_attention
    from bombus.layers.masks import cache_bias

    g = torch.Generator().manual_seed(heads * 10 + kv_heads)
    batch, keys, dim = 5, 37, 16
    q = torch.randn(batch, heads, 1, dim, generator=g)
    k = torch.randn(batch, kv_heads, keys, dim, generator=g)
    v = torch.randn(batch, kv_heads, keys, dim, generator=g)
    lengths = torch.randint(1, keys + 1, (batch,), generator=g)
    mask = torch.arange(keys)[None, :] < lengths[:, None]
    slots = (lengths - 1)[:, None]  # each row's query sits at its last slot (RowCache's per-row slots)
    bias = cache_bias(mask, slots, q.dtype)
    expected = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(heads // kv_heads, 1), v.repeat_interleave(heads // kv_heads, 1), attn_mask=bias,
        scale=0.3)
    assert torch.allclose(rowwise_attention(q, k, v, bias, 0.3), expected, atol=1e-6, rtol=1e-5)
