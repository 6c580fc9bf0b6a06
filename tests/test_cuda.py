"""On a CUDA GPU: half-precision loading straight onto the device, the three attention paths, CUDA-graph decoding
(token for token what step-by-step decoding gives), fp16 training and a serving. Every test is marked `cuda` and
skips where no GPU is present (tests/conftest.py)."""

from __future__ import annotations

import random
import warnings

import pytest
import torch
from generation_fixtures import eos_mid_generation, one_thread, other_lm, random_batch, tiny  # noqa: F401
from reference import randomize, save

import bombus
from bombus.generation import graphs

pytestmark = pytest.mark.cuda


def _relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ours, ref = ours.double().cpu(), ref.double().cpu()
    return float((ours - ref).norm() / ref.norm())


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """GPT-2 with 64-wide heads (flash attention's sizes): transformers' reference in float32 on the CPU."""
    import transformers

    config = transformers.GPT2Config(n_embd=256, n_layer=2, n_head=4, vocab_size=128, n_positions=128, pad_token_id=0)
    ref = randomize(transformers.GPT2LMHeadModel(config), std=0.05)
    return save(ref, tmp_path_factory.mktemp("wide")), ref


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_loads_straight_onto_the_gpu(wide, dtype):
    folder, ref = wide
    torch.cuda.reset_peak_memory_stats()
    model = bombus.load_model(folder, device="cuda", dtype=dtype)
    assert {p.device.type for p in model.parameters()} == {"cuda"} and model.dtype == dtype
    ids = torch.randint(1, 128, (3, 40))
    with torch.no_grad():
        ours = model(input_ids=ids.cuda()).logits
        expected = ref(input_ids=ids).logits
    assert ours.dtype == dtype and _relative_error(ours, expected) < 1e-2


def test_attention_paths_agree_in_half_precision(wide):
    folder, ref = wide
    ids = torch.randint(1, 128, (2, 64))
    with torch.no_grad():
        expected = ref(input_ids=ids).logits
    outputs = {}
    for kind in ("sdpa", "eager", "flash"):
        model = bombus.load_model(folder, device="cuda", dtype=torch.float16, attention=kind)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # flash must run (no fallback warning); an unusable kernel raises
            with torch.no_grad():
                outputs[kind] = model(input_ids=ids.cuda()).logits
        assert _relative_error(outputs[kind], expected) < 1e-2, kind
    assert _relative_error(outputs["flash"], outputs["sdpa"]) < 5e-3
    assert _relative_error(outputs["eager"], outputs["sdpa"]) < 5e-3
    mask = torch.ones_like(ids)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("error")  # a mask with nothing masked is dropped: flash runs
        assert torch.equal(model(input_ids=ids.cuda(), attention_mask=mask.cuda()).logits, outputs["flash"])
    mask[1, :5] = 0
    with pytest.warns(UserWarning, match="falls back.*no arbitrary mask"):
        model(input_ids=ids.cuda(), attention_mask=mask.cuda())
    # The backward pass runs through flash attention too (training).
    model.train()
    loss = model(input_ids=ids.cuda(), labels=ids.cuda()).loss
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def _both(model, ids, mask, **fields):
    with torch.no_grad():
        graphed = model.generate(ids.cuda(), attention_mask=mask.cuda(), **fields)
        stepped = model.generate(ids.cuda(), attention_mask=mask.cuda(), cuda_graph=False, **fields)
    assert torch.equal(graphed, stepped), f"{fields}\ngraph {graphed.tolist()}\nsteps {stepped.tolist()}"
    return graphed


@pytest.mark.parametrize("seed", range(3))
def test_graph_decoding_equals_step_by_step_decoding(tiny, seed):
    rng = random.Random(seed)
    model = bombus.load_model(tiny.folder, device="cuda")
    ids, mask = random_batch(rng, rng.choice([1, 3, 6]), tiny.vocab_size, max_len=8)
    eos = eos_mid_generation(tiny, ids, mask, rng)
    out = _both(model, ids, mask, max_new_tokens=rng.randint(6, 30), eos_token_id=eos, pad_token_id=0)
    captured = [s for steps in graphs.runner(model).steps.values() for s in steps]
    assert captured and all(s.graph is not None for s in captured), "the decode step was captured"
    assert torch.equal(out.cpu(), tiny.ours.generate(ids, attention_mask=mask, max_new_tokens=out.shape[1] - ids.shape[1],
                                                      eos_token_id=eos, pad_token_id=0))  # = the CPU
    _both(model, ids, mask, max_new_tokens=12, do_sample=True, top_k=10, seed=seed, eos_token_id=eos, pad_token_id=0)
    _both(model, ids, mask, max_new_tokens=12, repetition_penalty=1.5, eos_token_id=None, pad_token_id=0)


def test_compiled_step_is_what_the_graph_captures(tiny):
    """compile=True on CUDA: Inductor's kernels are captured and replayed; float32 tokens as step by step."""
    rng = random.Random(7)
    model = bombus.load_model(tiny.folder, device="cuda")
    graphs.release(model)
    ids, mask = random_batch(rng, 3, tiny.vocab_size, max_len=8)
    eos = eos_mid_generation(tiny, ids, mask, rng)
    fields = dict(max_new_tokens=20, eos_token_id=eos, pad_token_id=0)
    with torch.no_grad():
        compiled = model.generate(ids.cuda(), attention_mask=mask.cuda(), compile=True, **fields)
        captured = [s for steps in graphs.runner(model, compile=True).steps.values() for s in steps]
        stepped = model.generate(ids.cuda(), attention_mask=mask.cuda(), cuda_graph=False, **fields)
    assert captured and all(s.graph is not None and s.compiled for s in captured)
    assert torch.equal(compiled, stepped), f"compiled+captured {compiled.tolist()}\nsteps {stepped.tolist()}"


def test_graph_decoding_other_families(other_lm):
    model = bombus.load_model(other_lm.folder, device="cuda")
    ids, mask = random_batch(random.Random(1), 3, other_lm.vocab_size, max_len=8,
                             pad_id=other_lm.ours.spec.pad_token_id or 0)
    _both(model, ids, mask, max_new_tokens=10, eos_token_id=None, pad_token_id=0)


def test_graph_decoding_in_half_precision_follows_float32(tiny):
    """bf16 over a captured step against float32 step-by-step: the first tokens agree (random weights are peaked)."""
    ids = torch.tensor([[5, 9, 13, 2], [7, 7, 8, 3]])
    full = bombus.load_model(tiny.folder, device="cuda").generate(ids.cuda(), max_new_tokens=4, eos_token_id=None,
                                                                  cuda_graph=False)
    half = bombus.load_model(tiny.folder, device="cuda", dtype=torch.bfloat16).generate(
        ids.cuda(), max_new_tokens=4, eos_token_id=None)
    assert torch.equal(half[:, :6], full[:, :6])


def test_fp16_training_on_the_gpu():
    from training_fixtures import tiny_gpt2

    model = tiny_gpt2("for_causal_language_modeling", 50).cuda()
    g = torch.Generator().manual_seed(0)
    batches = [{"input_ids": (ids := torch.randint(1, 50, (4, 16), generator=g)), "labels": ids} for _ in range(8)]
    result = bombus.train(model, batches, epochs=3, learning_rate=3e-3, fp16=True, progress=False)
    losses = [h["loss"] for h in result.history]
    assert model.dtype == torch.float32 and model.device.type == "cuda"
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def _close(a, b, path="result"):
    """JSON-like results equal, floats within 1e-3."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert b.device.type == "cuda", f"{path} left on {b.device}"  # results stay where the model is
        torch.testing.assert_close(b.cpu(), a, atol=1e-3, rtol=1e-3)
    elif isinstance(a, float):
        assert a == pytest.approx(b, abs=1e-3), path
    else:
        assert a == b, path


def test_servings_on_the_gpu_give_what_they_give_on_the_cpu(tmp_path):
    from training_fixtures import bert_tokenizer, gpt2_tokenizer, tiny_bert, tiny_gpt2

    bert_tok, gpt2_tok = bert_tokenizer(tmp_path / "bert"), gpt2_tokenizer(tmp_path / "gpt2")
    texts = ["red cat sits", "the big dog runs near one bird", "two"]
    cases = [
        (tiny_bert("for_sequence_classification", len(bert_tok), num_labels=3), bert_tok,
         bombus.text.text_classification, {}, texts),
        (tiny_bert("for_token_classification", len(bert_tok), num_labels=3), bert_tok,
         bombus.text.token_classification, {"aggregation": "simple", "ignored_labels": ()}, texts),
        (tiny_bert("for_masked_language_modeling", len(bert_tok)), bert_tok, bombus.text.fill_mask, {},
         ["the [MASK] cat", "a big [MASK]"]),
        (tiny_bert("for_question_answering", len(bert_tok)), bert_tok, bombus.text.question_answering, {},
         [{"question": "which animal", "context": "the red cat sits near a dog"}]),
        (tiny_bert("base", len(bert_tok)), bert_tok, bombus.text.text_embedding, {"pooling": "mean"}, texts),
        (tiny_gpt2("base", len(gpt2_tok)), gpt2_tok, bombus.text.text_embedding, {"pooling": "last_token"}, texts),
        (tiny_gpt2("for_causal_language_modeling", len(gpt2_tok)), gpt2_tok, bombus.text.generation,
         {"max_new_tokens": 6}, texts),
    ]
    for model, tok, serving, options, inputs in cases:
        on_cpu = serving(model, tok, **options)(inputs)
        on_gpu = serving(model.cuda(), tok, **options)(inputs)
        _close(on_cpu, on_gpu, serving.__name__)
