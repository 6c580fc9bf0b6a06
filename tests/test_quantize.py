"""`load_model(..., quantize="int8" | "int4")`: weight-only quantisation of every Linear layer (and the token
embedding) of float checkpoints, compared with the same checkpoint in float32."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import pytest
import torch
import transformers
from torch import nn

import bombus
from bombus.errors import CheckpointError, ConfigError
from bombus.quantize import DynamicInt8Linear, Int4Linear, Int8Embedding, TiedInt8Linear, int8_rows
from reference import save

DEMO = Path(bombus.__file__).parent / "data" / "demo-gpt2"
# Relative error of a tiny random model's logits (norm of the difference / norm of float32's); measured
# about 0.004-0.013 (int8) and 0.08-0.09 (int4) on the configurations below.
TOLERANCE = {"int8": 0.03, "int4": 0.15}


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours.float() - ref.float()).norm() / ref.float().norm()).item()


@pytest.fixture(scope="module", params=[0, 1, 2])
def gpt2_folder(request, tmp_path_factory) -> Path:
    """Random tiny GPT-2s: 0 and 2 with the LM head tied to the token embedding (as GPT-2), 1 untied."""
    rng = random.Random(request.param)
    heads = rng.choice([2, 4])
    config = transformers.GPT2Config(vocab_size=rng.randint(200, 300), n_positions=64, n_embd=32 * rng.choice([1, 2]),
                                     n_layer=rng.randint(1, 3), n_head=heads, n_inner=rng.choice([None, 96]),
                                     tie_word_embeddings=request.param != 1)
    torch.manual_seed(request.param)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.GPT2LMHeadModel(config).eval()
    return save(model, tmp_path_factory.mktemp(f"gpt2-{request.param}"))


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory) -> Path:
    config = transformers.BertConfig(vocab_size=150, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, max_position_embeddings=64)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.BertModel(config).eval()
    return save(model, tmp_path_factory.mktemp("bert"))


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_decoder_logits_close_to_float32(gpt2_folder, mode):
    full = bombus.load_model(gpt2_folder)
    small = bombus.load_model(gpt2_folder, quantize=mode)
    layer = DynamicInt8Linear if mode == "int8" else Int4Linear
    assert not any(type(m) is nn.Linear for m in small.modules()), "a Linear layer was left in float"
    assert any(isinstance(m, layer) for m in small.modules())
    assert isinstance(small.embeddings.token, Int8Embedding)
    ids = torch.randint(0, full.spec.vocab_size, (3, 20), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # a left-padded row
    with torch.no_grad():
        want, got = full(input_ids=ids, attention_mask=mask).logits, small(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    error = relative_error(got[real], want[real])
    assert 0 < error < TOLERANCE[mode], f"{mode}: logits relative error {error:.4f}"


def vocabulary_copies(model: nn.Module) -> int:
    """How many copies of the `[vocab, hidden]` table the model holds: distinct storages of tensors of that
    shape (weights and buffers, each module's reference counted) plus fbgemm-packed layers with vocab outputs
    (their packed copy is not a tensor)."""
    vocab, hidden = model.spec.vocab_size, model.embeddings.token.embedding_dim
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    storages = {t.untyped_storage().data_ptr() for _, t in named if tuple(t.shape) == (vocab, hidden)}
    packed = [m for m in model.modules() if isinstance(m, DynamicInt8Linear) and m.out_features == vocab]
    return len(storages) + len(packed)


def test_int8_tied_head_shares_the_embedding_rows(gpt2_folder):
    """int8: an LM head tied to the token embedding reads the embedding's own int8 rows and scales (one copy
    of the vocabulary); an untied head keeps its own packed weights. Logits stay close to transformers'."""
    model = bombus.load_model(gpt2_folder, quantize="int8")
    head, table = model.lm_head.decoder, model.embeddings.token
    assert isinstance(table, Int8Embedding)
    if model.spec.tie_word_embeddings:
        assert isinstance(head, TiedInt8Linear)
        for ours, theirs in ((head.weight, table.weight), (head.scales, table.scales)):
            assert ours.untyped_storage().data_ptr() == theirs.untyped_storage().data_ptr()
        assert vocabulary_copies(model) == 1
    else:
        assert isinstance(head, DynamicInt8Linear)
        assert vocabulary_copies(model) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = transformers.GPT2LMHeadModel.from_pretrained(gpt2_folder).eval()
    assert (reference.lm_head.weight is reference.transformer.wte.weight) == model.spec.tie_word_embeddings
    ids = torch.randint(0, model.spec.vocab_size, (2, 12), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        error = relative_error(model(input_ids=ids).logits, reference(input_ids=ids).logits)
    assert 0 < error < TOLERANCE["int8"], error


def test_int8_tied_head_without_onednn_keeps_fbgemm(gpt2_folder, monkeypatch):
    """Where PyTorch lacks oneDNN (`_int_mm` would be a slow reference loop) the tied head stays fbgemm's."""
    monkeypatch.setattr(bombus.quantize, "ONEDNN", False)
    model = bombus.load_model(gpt2_folder, quantize="int8")
    assert isinstance(model.lm_head.decoder, DynamicInt8Linear)
    assert vocabulary_copies(model) == 2


@pytest.mark.parametrize("seed", range(4))
def test_tied_int8_linear_matches_dequantized_rows(seed):
    """`TiedInt8Linear` computes x @ (q * scale)^T (+ bias) up to its 8-bit activations, on random sizes,
    leading dimensions, an all-zero input row and bfloat16 inputs."""
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    vocab, width, rows = rng.randint(1, 300), rng.randint(1, 80), rng.randint(1, 9)
    q, scales = int8_rows(torch.randn(vocab, width, generator=generator))
    bias = torch.randn(vocab, generator=generator) if seed % 2 else None
    layer = TiedInt8Linear(Int8Embedding(q, scales), bias)
    x = torch.randn(2, rows, width, generator=generator)
    x[0, 0] = 0
    want = x @ (q.float() * scales[:, None]).T + (0 if bias is None else bias)
    got = layer(x)
    assert got.shape == (2, rows, vocab) and got.dtype == torch.float32
    assert relative_error(got, want) < 0.01
    assert torch.equal(got[0, 0], torch.zeros(vocab) if bias is None else bias)
    assert layer(x.bfloat16()).dtype == torch.bfloat16


def test_tied_int8_linear_needs_one_scale_per_row():
    table = Int8Embedding(torch.zeros(10, 64, dtype=torch.int8), torch.ones(10, 2))  # GGUF-like groups of 32
    with pytest.raises(ConfigError, match="one scale per row.*groups of 32"):
        TiedInt8Linear(table)


def test_masked_lm_int8_tied_head_with_bias(tmp_path):
    """BERT's masked-LM head (tied decoder with its own bias) shares the int8 rows too, close to transformers."""
    rng = random.Random(5)
    config = transformers.BertConfig(vocab_size=rng.randint(100, 200), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)
    torch.manual_seed(5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = transformers.BertForMaskedLM(config).eval()
        with torch.no_grad():
            reference.cls.predictions.bias.normal_()  # a bias that matters
    folder = save(reference, tmp_path / "bert-mlm")
    model = bombus.load_model(folder, quantize="int8")
    head = model.lm_head.decoder
    assert isinstance(head, TiedInt8Linear) and head.bias is not None and vocabulary_copies(model) == 1
    ids = torch.randint(0, config.vocab_size, (2, 10), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        error = relative_error(model(input_ids=ids).logits, reference(input_ids=ids).logits)
    assert 0 < error < TOLERANCE["int8"], error


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_cached_decoding_matches_full_forward(gpt2_folder, mode):
    """Generation through the static cache gives the tokens a full forward pass of the same quantised
    model would choose (the cache path and the uncached path agree)."""
    model = bombus.load_model(gpt2_folder, quantize=mode)
    ids = torch.randint(0, model.spec.vocab_size, (2, 6), generator=torch.Generator().manual_seed(2))
    out = model.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        logits = model(input_ids=out[:, :-1]).logits[:, ids.shape[1] - 1:]
    top2 = logits.topk(2, dim=-1).values
    decided = (top2[..., 0] - top2[..., 1]) > 1e-3  # ignore exact near-ties (bf16 rounding differs per shape)
    assert torch.equal(logits.argmax(-1)[decided], out[:, ids.shape[1]:][decided])


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_demo_model_perplexity_and_greedy(mode):
    """On real text (the demo GPT-2's held-out documentation), quantised weights keep the perplexity
    within 10% of float32's and, for int8, the first greedy tokens."""
    tok = bombus.load_tokenizer(DEMO)
    full, small = bombus.load_model(DEMO), bombus.load_model(DEMO, quantize=mode)
    texts = ["The \"with\" statement is used to wrap the execution of a block with methods defined by a context "
             "manager. This allows common try...except...finally usage patterns to be encapsulated for "
             "convenient reuse.",
             "A class definition is an executable statement. The inheritance list usually gives a list of base "
             "classes, so each item in the list should evaluate to a class object which allows subclassing."]
    rows = [{"text": t} for t in texts]
    ppl = {name: bombus.evaluate(m, rows, tokenizer=tok, max_length=128)["perplexity"]
           for name, m in (("fp32", full), (mode, small))}
    assert abs(ppl[mode] / ppl["fp32"] - 1) < 0.10, ppl
    if mode == "int8":
        inputs = tok(["The \"for\" statement", "An exception is"], pad_direction="left")
        want = full.generate(**inputs, max_new_tokens=4, do_sample=False)
        got = small.generate(**inputs, max_new_tokens=4, do_sample=False)
        assert torch.equal(got, want)


def test_encoder_int8_close_to_float32(bert_folder):
    full = bombus.load_model(bert_folder)
    small = bombus.load_model(bert_folder, quantize="int8")
    assert not any(type(m) is nn.Linear for m in small.modules())
    ids = torch.randint(0, 150, (2, 16), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    with torch.no_grad():
        want = full(input_ids=ids, attention_mask=mask).hidden_state
        got = small(input_ids=ids, attention_mask=mask).hidden_state
    error = relative_error(got[mask.bool()], want[mask.bool()])
    assert 0 < error < TOLERANCE["int8"], error


@pytest.mark.parametrize("bad", ["int3", "keep", "dequantize", "INT8", 8])
def test_bad_quantize_value(gpt2_folder, bad):
    with pytest.raises(ConfigError, match="quantize must be one of 'int8', 'int4'"):
        bombus.load_model(gpt2_folder, quantize=bad)


def test_quantize_needs_cpu(gpt2_folder):
    with pytest.raises(ConfigError, match="CPU kernels"):
        bombus.load_model(gpt2_folder, quantize="int8", device="meta")


def test_quantized_model_cannot_be_saved(gpt2_folder, tmp_path):
    model = bombus.load_model(gpt2_folder, quantize="int4")
    with pytest.raises(CheckpointError, match="quantized layers"):
        model.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out" / "model.safetensors").exists()


def _quantised_while_loading(monkeypatch) -> list[str]:
    """Records, for each quantize_model call, whether it ran inside load_state (a block) or after it."""
    from bombus import checkpoint, loading

    calls, inside = [], [False]
    real_load, real_quantize = checkpoint.load_state, loading.quantize_model

    def load_state(*args, **kwargs):
        inside[0] = True
        try:
            return real_load(*args, **kwargs)
        finally:
            inside[0] = False

    def quantize(module, mode, **kwargs):
        calls.append(("during" if inside[0] else "after", type(module).__name__))
        return real_quantize(module, mode, **kwargs)

    monkeypatch.setattr(loading, "load_state", load_state)
    monkeypatch.setattr(loading, "quantize_model", quantize)
    return calls


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_blocks_are_quantised_as_they_are_read_with_the_same_result(gpt2_folder, bert_folder, mode, monkeypatch):
    """load_model(quantize=) quantises each block once its tensors are read (the float model never exists
    whole) and gives exactly what quantising the loaded float model gives."""
    from bombus.quantize import quantize_model

    for folder, arch in ((gpt2_folder, None), (bert_folder, "for_masked_language_modeling")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the BERT folder has no MLM head: initialised, then quantised
            torch.manual_seed(0)
            expected = quantize_model(bombus.load_model(folder, architecture=arch), mode)
            with monkeypatch.context() as patch:
                calls = _quantised_while_loading(patch)
                torch.manual_seed(0)
                model = bombus.load_model(folder, architecture=arch, quantize=mode)
        blocks = sum(1 for c in calls if c == ("during", "Block"))
        assert blocks == len(model.transformer.groups) and calls[-1][0] == "after", calls
        assert not [m for m in model.modules() if type(m) in (nn.Linear, bombus.layers.linear.Linear)
                    and m.in_features % 32 == 0]
        ids = torch.randint(0, 150, (2, 7))
        with torch.no_grad():
            ours, ref = model(input_ids=ids), expected(input_ids=ids)
        assert torch.equal(ours["logits"], ref["logits"])
