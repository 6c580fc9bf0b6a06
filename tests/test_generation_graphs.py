"""The CUDA-graph decoding loop (`bombus.generation.graphs`) checked on the CPU: buckets, and the loop itself with
the step replayed eagerly (`capture=False`), which must give token for token what the step-by-step loop gives
(padding rows in the bucket, the stop condition read every few steps, rows ending at different steps).
The captured graphs themselves are checked in test_cuda.py."""

from __future__ import annotations

import random

import pytest
import torch
from generation_fixtures import eos_mid_generation, one_thread, other_lm, random_batch, tiny  # noqa: F401

from bombus.generation import graphs, search


def test_batch_buckets_are_the_smallest_that_hold_the_rows():
    assert [graphs.batch_bucket(n) for n in (1, 2, 3, 5, 8, 9, 64, 65, 512)] == [1, 2, 4, 8, 8, 16, 64, 128, 512]
    assert graphs.batch_bucket(513) == 1024 and graphs.batch_bucket(1100) == 1536  # multiples of the largest


def test_length_buckets_are_powers_of_two_capped_at_the_model_limit():
    assert [graphs.length_bucket(n) for n in (1, 64, 65, 159, 160, 1000)] == [64, 64, 128, 256, 256, 1024]
    assert graphs.length_bucket(600, 1024) == 1024 and graphs.length_bucket(600, 700) == 700
    assert graphs.length_bucket(700, 700) == 700 and graphs.length_bucket(40, 50) == 50


def _drain(loop):
    """Runs a decoding generator to its end: (the tokens it yielded, the sequences it returned)."""
    yielded = []
    with torch.no_grad():
        while True:
            try:
                yielded.append(next(loop).clone())
            except StopIteration as done:
                return yielded, done.value


def _graph_loop(model, ids, mask, check_every, **fields):
    """The graph loop with an eager step: (yielded tokens, returned sequences)."""
    run = search._Run.prepare(model, ids, mask, None, None, None, None, None, fields)
    return _drain(graphs.greedy_or_sample(run, capture=False, check_every=check_every))


def _eager_loop(model, ids, mask, **fields):
    run = search._Run.prepare(model, ids, mask, None, None, None, None, None, fields)
    assert not graphs.wanted(run)  # on the CPU: the step-by-step loop
    return _drain(run.decode())


def _assert_same(graph, eager, what):
    (g_steps, g_out), (e_steps, e_out) = graph, eager
    assert torch.equal(g_out, e_out), f"{what}\ngraph loop {g_out.tolist()}\nstep loop  {e_out.tolist()}"
    assert len(g_steps) == len(e_steps) and all(torch.equal(a, b) for a, b in zip(g_steps, e_steps)), what


@pytest.mark.parametrize("seed", range(4))
def test_greedy_over_a_replayed_step_equals_the_step_loop(tiny, seed):
    """Random batch sizes (so rows fill a bucket), left padding, an EOS that ends rows at different steps, and
    stop checks every 1, 3 or 8 steps: the same tokens, yielded in the same steps, cut at the same length."""
    rng = random.Random(seed)
    model = tiny.ours
    ids, mask = random_batch(rng, rng.choice([1, 3, 5]), tiny.vocab_size, max_len=8)
    eos = eos_mid_generation(tiny, ids, mask, rng)
    # (an EOS id outside the vocabulary, as a spec's default can be, is never generated)
    fields = dict(max_new_tokens=rng.randint(5, 20), eos_token_id=[eos, tiny.vocab_size + 7], pad_token_id=0)
    eager = _eager_loop(model, ids, mask, **fields)
    for check_every in (1, 3, 8):
        _assert_same(_graph_loop(model, ids, mask, check_every, **fields), eager, f"check_every={check_every}")
    fields["eos_token_id"] = None  # no EOS: runs to the maximum length
    _assert_same(_graph_loop(model, ids, mask, 4, **fields), _eager_loop(model, ids, mask, **fields), "no EOS")


@pytest.mark.parametrize("seed", range(3))
def test_sampling_and_processors_over_a_replayed_step_equal_the_step_loop(tiny, seed):
    """Sampling (same seed, same draws) and greedy with logits processors take the loop's other branch."""
    rng = random.Random(seed)
    model = tiny.ours
    ids, mask = random_batch(rng, 3, tiny.vocab_size, max_len=8)
    eos = eos_mid_generation(tiny, ids, mask, rng)
    for fields in (dict(do_sample=True, top_k=20, temperature=0.8, seed=seed),
                   dict(do_sample=False, repetition_penalty=1.3, min_new_tokens=2)):
        fields.update(max_new_tokens=12, eos_token_id=eos, pad_token_id=0)
        _assert_same(_graph_loop(model, ids, mask, 4, **fields), _eager_loop(model, ids, mask, **fields),
                     str(fields))


def test_other_families_decode_over_a_replayed_step(other_lm):
    """LLaMA (rotary, grouped KV heads) and RoBERTa/BERT decoders over a bucketed cache, rows filling a bucket."""
    rng = random.Random(5)
    ids, mask = random_batch(rng, 3, other_lm.vocab_size, max_len=8, pad_id=other_lm.ours.spec.pad_token_id or 0)
    fields = dict(max_new_tokens=10, eos_token_id=None, pad_token_id=0)
    _assert_same(_graph_loop(other_lm.ours, ids, mask, 3, **fields), _eager_loop(other_lm.ours, ids, mask, **fields),
                 "other family")


def test_steps_are_reused_and_released(tiny):
    model = tiny.ours
    owner = graphs.runner(model, capture=False)
    first = owner.acquire(3, 30)
    assert (first.batch, first.length, first.busy) == (4, 64, True)
    second = owner.acquire(4, 40)  # same buckets, first still busy: a step of its own
    assert second is not first and second.cache is not first.cache
    owner.release(first)
    assert owner.acquire(2 + 1, 64) is first
    owner.release(first)
    owner.release(second)
    graphs.release(model)
    assert graphs.runner(model, capture=False) is not owner


def test_generate_on_the_cpu_takes_the_graph_loop_only_to_compile(tiny, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the graph loop ran on the CPU")

    monkeypatch.setattr(graphs, "greedy_or_sample", refuse)
    ids = torch.tensor([[5, 6, 7]])
    assert tiny.ours.generate(ids, max_new_tokens=3).shape == (1, 6)
    assert tiny.ours.generate(ids, max_new_tokens=3, cuda_graph=False).shape == (1, 6)
    with pytest.raises(AssertionError, match="graph loop ran"):
        tiny.ours.generate(ids, max_new_tokens=3, compile=True)


def test_compiled_step_equals_the_step_loop(tiny):
    """`compile=True` (torch.compile of the decode step, float32 on the CPU): greedy with rows ending at
    different steps, and seeded sampling, give exactly the step-by-step loop's tokens, whatever the batch."""
    rng = random.Random(11)
    model = tiny.ours
    for rows in (1, 3):
        ids, mask = random_batch(rng, rows, tiny.vocab_size, max_len=8)
        eos = eos_mid_generation(tiny, ids, mask, rng)
        for fields in (dict(max_new_tokens=12, eos_token_id=eos, pad_token_id=0),
                       dict(max_new_tokens=12, do_sample=True, top_k=20, seed=rows, eos_token_id=eos, pad_token_id=0)):
            want = model.generate(ids, attention_mask=mask, **fields)
            got = model.generate(ids, attention_mask=mask, compile=True, **fields)
            assert torch.equal(got, want), f"{fields}\ncompiled {got.tolist()}\nstep loop {want.tolist()}"
    assert graphs.runner(model, capture=False, compile=True).compile


def test_other_families_compiled_equal_the_step_loop(other_lm):
    rng = random.Random(7)
    ids, mask = random_batch(rng, 2, other_lm.vocab_size, max_len=8, pad_id=other_lm.ours.spec.pad_token_id or 0)
    fields = dict(max_new_tokens=8, eos_token_id=None, pad_token_id=0)
    assert torch.equal(other_lm.ours.generate(ids, attention_mask=mask, compile=True, **fields),
                       other_lm.ours.generate(ids, attention_mask=mask, **fields))


def test_compiled_int4_step_runs(tiny):
    """Quantised layers (bfloat16 arithmetic) compile too; rounding may differ from eager, so the compiled
    step's logits are compared with a tolerance."""
    import bombus

    model = bombus.load_model(tiny.folder, quantize="int4")
    eager = graphs.CapturedStep(model, 1, 64, capture=False)
    compiled = graphs.CapturedStep(model, 1, 64, capture=False, compile=True)
    for step in (eager, compiled):
        step.start([], 0)
        step.tokens.fill_(5)
    for _ in range(3):
        torch.testing.assert_close(compiled.replay().clone(), eager.replay().clone(), atol=0.05, rtol=0.05)


def test_compile_option_is_checked(tiny):
    from bombus.errors import GenerationError

    with pytest.raises(GenerationError, match="compile"):
        tiny.ours.generate(torch.tensor([[5, 6]]), max_new_tokens=2, compile="yes")


def test_cuda_graph_option_is_checked(tiny):
    from bombus.errors import GenerationError

    with pytest.raises(GenerationError, match="cuda_graph"):
        tiny.ours.generate(torch.tensor([[5, 6]]), max_new_tokens=2, cuda_graph="yes")


def test_graph_loop_problems_are_named(tiny):
    model = tiny.ours
    run = lambda **f: search._Run.prepare(model, torch.tensor([[5, 6]]), None, None, None, None, None, None,
                                          dict(max_new_tokens=2, **f))
    assert graphs.problem(run()) is None
    assert "beam" in graphs.problem(run(num_beams=2))
    assert "padding token" in graphs.problem(run(pad_token_id=tiny.vocab_size))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_the_captured_step_reads_no_tensor_on_the_host(family):
    """A CUDA graph cannot hold a host read (`.item()`, `bool(t)`, a value-dependent Python branch). On the meta
    device every such read raises, so a step that runs there is capturable as far as the host is concerned."""
    import bombus
    from bombus.models.gpt2 import Gpt2Spec
    from bombus.models.llama import LlamaSpec

    common = dict(vocab_size=64, hidden_size=32, num_blocks=2, num_attention_heads=4, max_positions=128,
                  architecture="for_causal_language_modeling")
    spec = (bombus.configure(Gpt2Spec(), **common) if family == "gpt2" else
            bombus.configure(LlamaSpec(), num_key_value_heads=2, intermediate_size=48, **common))
    with torch.device("meta"):
        model = bombus.models.family(spec.model_type)(spec).eval()
    step = graphs.CapturedStep(model, 4, 64, capture=False)
    step.start([1, 500], 0)
    assert step.replay().shape == (4, 64) and step.tokens.shape == (4, 1)
    with pytest.raises(RuntimeError, match="meta"):
        bool(step.unfinished.any())  # (the meta device does refuse host reads)
