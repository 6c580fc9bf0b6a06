"""The attention option (`attention="sdpa" | "eager" | "flash"`): the paths agree, and flash says why it cannot run.
On the CPU only sdpa and eager run; flash on a GPU is checked in test_cuda.py."""

from __future__ import annotations

import pytest
import torch
from reference import assert_close, padded_batch, randomize, save

import bombus
from bombus.errors import ConfigError
from bombus.layers.attention import flash_problem


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    import transformers

    gpt2 = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=64, n_positions=32, pad_token_id=0)
    bert = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                                   vocab_size=64, max_position_embeddings=32)
    llama = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                     intermediate_size=48, vocab_size=64, max_position_embeddings=32)
    out = {}
    for name, model in (("gpt2", transformers.GPT2LMHeadModel(gpt2)), ("bert", transformers.BertModel(bert)),
                        ("llama", transformers.LlamaForCausalLM(llama))):
        out[name] = (save(randomize(model), tmp_path_factory.mktemp(name)), model.config)
    return out


@pytest.mark.parametrize("family", ["gpt2", "bert", "llama"])
def test_eager_and_sdpa_give_the_same_outputs(folders, family):
    folder, config = folders[family]
    config.pad_token_id = 0
    ids, mask = padded_batch(config, batch_size=3, length=10, padding="left" if family != "bert" else "right")
    sdpa, eager = bombus.load_model(folder), bombus.load_model(folder, attention="eager")
    assert (sdpa.attention, eager.attention) == ("sdpa", "eager")
    with torch.no_grad():
        a = sdpa(input_ids=ids, attention_mask=mask)
        b = eager(input_ids=ids, attention_mask=mask)
    key = "logits" if "logits" in a else "hidden_state"
    assert_close(b[key], a[key], mask=mask, what=f"{family} eager vs sdpa")
    assert eager.set_attention("sdpa") is eager and eager.attention == "sdpa"


def test_eager_float16_with_left_padding_stays_finite(tmp_path):
    """Scores plus float16's minimum overflow to -inf; a padding query sees only masked keys, and its nan would
    reach every row through the values. The eager path keeps masked scores finite, as SDPA does."""
    import transformers

    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=64, n_positions=32, pad_token_id=0)
    folder = save(randomize(transformers.GPT2LMHeadModel(config), std=1.0), tmp_path)  # large scores
    ids, mask = padded_batch(config, batch_size=3, length=10, padding="left")
    outputs = {}
    for kind in ("eager", "sdpa"):
        model = bombus.load_model(folder, dtype=torch.float16, attention=kind)
        with torch.no_grad():
            outputs[kind] = model(input_ids=ids, attention_mask=mask).logits
        assert torch.isfinite(outputs[kind]).all(), kind
    assert_close(outputs["eager"], outputs["sdpa"], mask=mask, atol=0.1, rtol=0.02, what="float16 eager vs sdpa")


def test_unknown_attention_and_flash_on_the_cpu_raise(folders):
    folder, _ = folders["gpt2"]
    with pytest.raises(ConfigError, match="'flash_attention_2' is not one of 'sdpa', 'eager', 'flash'"):
        bombus.load_model(folder, attention="flash_attention_2")
    with pytest.raises(ConfigError, match="CUDA.*device='cuda', dtype=torch.float16"):
        bombus.load_model(folder, attention="flash")
    model = bombus.load_model(folder, dtype=torch.bfloat16)
    with pytest.raises(ConfigError, match="CUDA devices only"):
        model.set_attention("flash")
    assert model.attention == "sdpa"  # unchanged after the refusal


def test_flash_problems_name_the_cause():
    cuda = torch.device("cuda")
    assert flash_problem(cuda, torch.float16) is None
    assert flash_problem(cuda, torch.bfloat16, head_dim=128) is None
    assert "float16 or bfloat16" in flash_problem(cuda, torch.float32)
    assert "reorder_and_upcast_attn" in flash_problem(cuda, torch.float16, upcast=True)
    assert "no arbitrary mask" in flash_problem(cuda, torch.float16, masked=True)
    assert "head size" in flash_problem(cuda, torch.float16, head_dim=320)
    assert "CUDA devices only" in flash_problem(torch.device("cpu"), torch.float16)


def test_build_model_takes_dtype_device_and_attention():
    from bombus.models.gpt2 import Gpt2Spec

    spec = bombus.configure(Gpt2Spec(), vocab_size=64, hidden_size=32, num_blocks=1, num_attention_heads=4,
                            max_positions=16, architecture="for_causal_language_modeling")
    torch.manual_seed(3)
    full = bombus.build_model(spec)
    torch.manual_seed(3)
    half = bombus.build_model(spec, dtype=torch.bfloat16, device="cpu", attention="eager")
    assert half.dtype == torch.bfloat16 and half.attention == "eager" and not half.training
    for (name, a), b in zip(full.named_parameters(), half.parameters()):  # same seed, same weights
        torch.testing.assert_close(a.to(torch.bfloat16), b, atol=0, rtol=0, msg=lambda m: f"{name}: {m}")
