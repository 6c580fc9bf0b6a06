"""LLaMA: every architecture against transformers, with random configs (GQA, every rope scaling kind, tied
and untied, biases, explicit head_dim), padding, caches, saving and errors."""

import json
import random
import warnings

import pytest
import torch
import transformers

import bombus
from reference import padded_batch as batch, assert_cached_decoding_equals_full, assert_close, randomize, save

ARCHS = {
    "base": transformers.LlamaModel,
    "for_causal_language_modeling": transformers.LlamaForCausalLM,
    "for_sequence_classification": transformers.LlamaForSequenceClassification,
}
ROPES = {
    "default": None,
    "linear": {"rope_type": "linear", "factor": 2.5},
    "dynamic": {"rope_type": "dynamic", "factor": 3.0},
    # a short original length and a small base put every frequency band (kept, ramped, divided) in play
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16},
}


def random_config(seed: int, **overrides) -> transformers.LlamaConfig:
    rng = random.Random(seed)
    heads = rng.choice([2, 4])
    kv_heads = rng.choice([h for h in (1, 2, 4) if heads % h == 0])  # GQA, MQA or plain
    hidden = heads * rng.choice([4, 8])
    rope = overrides.pop("rope", ROPES[list(ROPES)[seed % len(ROPES)]])
    config = dict(
        vocab_size=rng.randint(60, 120), hidden_size=hidden, intermediate_size=rng.choice([20, 36, 48]),
        num_hidden_layers=rng.randint(1, 3), num_attention_heads=heads, num_key_value_heads=kv_heads,
        # an explicit head size that differs from hidden_size // heads half of the time
        head_dim=rng.choice([hidden // heads, 2 * hidden // heads, 6]),
        max_position_embeddings=rng.choice([24, 32]), rms_norm_eps=rng.choice([1e-5, 1e-6]),
        hidden_act=rng.choice(["silu", "gelu", "relu"]), attention_bias=rng.random() < 0.5,
        mlp_bias=rng.random() < 0.5, tie_word_embeddings=rng.random() < 0.5,
        num_labels=rng.randint(1, 4) if seed % 2 else 3, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        rope_parameters={"rope_type": "default", "rope_theta": rng.choice([10000.0, 500.0]), **(rope or {})},
    )
    config.update(overrides)
    return transformers.LlamaConfig(**config)


def reference(arch: str, config, seed: int = 0, attn: str = "eager", std: float = 0.2):
    config._attn_implementation = attn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ARCHS[arch](config)
    return randomize(model, seed, std)


def compare(ours, ref, mask=None):
    compared = 0
    for name, ref_name in {"logits": "logits", "hidden_state": "last_hidden_state", "loss": "loss"}.items():
        value = getattr(ref, ref_name, None)
        if value is None:
            continue
        m = mask if (mask is not None and value.dim() >= 2 and value.shape[:2] == mask.shape) else None
        assert_close(ours[name], value, mask=m, what=name)
        compared += 1
    if getattr(ref, "hidden_states", None) is not None:
        assert len(ours.hidden_states) == len(ref.hidden_states)
        for i, (a, b) in enumerate(zip(ours.hidden_states, ref.hidden_states)):
            assert_close(a, b, mask=mask, what=f"hidden_states[{i}]")
    if getattr(ref, "attentions", None) is not None:
        assert len(ours.attentions) == len(ref.attentions)
        for i, (a, b) in enumerate(zip(ours.attentions, ref.attentions)):
            keep = mask.bool() if mask is not None else torch.ones(a.shape[0], a.shape[2], dtype=torch.bool)
            assert_close(a.transpose(1, 2)[keep], b.transpose(1, 2)[keep], what=f"attentions[{i}]")
    assert compared > 0


def labels_for(arch, config, ids, mask):
    if arch == "for_causal_language_modeling":
        return {"labels": ids.masked_fill(mask == 0, -100)}
    if arch == "for_sequence_classification":
        if config.num_labels == 1:
            return {"labels": torch.randn(ids.shape[0])}
        return {"labels": torch.randint(0, config.num_labels, (ids.shape[0],))}
    return {}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("arch", list(ARCHS))
def test_parity_every_architecture(tmp_path, arch, seed):
    config = random_config(seed)
    ref = reference(arch, config, seed)
    save(ref, tmp_path, safetensors=seed % 2 == 0)
    model = bombus.load_model(tmp_path)
    assert model.architecture == arch
    assert model.spec.kv_heads == config.num_key_value_heads and model.spec.head_dim == config.head_dim
    ids, mask = batch(config, seed=seed)
    extra = labels_for(arch, config, ids, mask)
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True, **extra)
        theirs = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True, **extra)
    compare(ours, theirs, mask)


@pytest.mark.parametrize("kind", list(ROPES))
@pytest.mark.parametrize("kv_heads", [1, 4])
def test_every_rope_scaling_kind(tmp_path, kind, kv_heads):
    config = random_config(7, rope=ROPES[kind], num_attention_heads=4, num_key_value_heads=kv_heads,
                           hidden_size=32, head_dim=8, max_position_embeddings=32)
    ref = reference("for_causal_language_modeling", config)
    save(ref, tmp_path)
    model = bombus.load_model(tmp_path)
    assert (model.spec.rotary_embedding_scaling_strategy or {}).get("rope_type", "default") == kind
    ids = torch.randint(3, config.vocab_size, (2, 30))
    positions = torch.arange(30)[None].expand(2, 30) * torch.tensor([[1], [2]])  # up to position 58
    if kind != "dynamic":  # dynamic: within max_positions it *is* the default; beyond, tested below
        positions = positions.clamp(max=31)
    with torch.no_grad():
        ours = model(input_ids=ids, position_ids=positions).logits
        assert_close(ours, ref(input_ids=ids, position_ids=positions).logits, what=kind)
        if kind != "default":  # the scaling changes the result: a test that ignored it would fail
            plain = bombus.load_model(tmp_path, rotary_embedding_scaling_strategy=None)
            assert not torch.allclose(plain(input_ids=ids, position_ids=positions).logits, ours, atol=1e-3)


def test_dynamic_rope_beyond_max_positions(tmp_path):
    config = random_config(3, rope=ROPES["dynamic"], max_position_embeddings=16)
    ref = reference("for_causal_language_modeling", config)
    save(ref, tmp_path)
    model = bombus.load_model(tmp_path)
    ids = torch.randint(3, config.vocab_size, (2, 40))  # 2.5 x the trained length: NTK-scaled frequencies
    with torch.no_grad():
        ours = model(input_ids=ids).logits
        theirs = ref(input_ids=ids).logits
        short = model(input_ids=ids[:, :10]).logits  # back within max_positions: the default frequencies
        theirs_short = reference("for_causal_language_modeling", config)(input_ids=ids[:, :10]).logits
    assert_close(ours, theirs, what="dynamic beyond max_positions")
    assert_close(short, theirs_short, what="dynamic within max_positions")
    assert not torch.allclose(ours[:, :10], short, atol=1e-4)  # the long forward really scaled


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("padding", ["left", "right"])
def test_cache_incremental_equals_full_forward(tmp_path, seed, padding):
    config = random_config(seed)
    save(reference("for_causal_language_modeling", config, seed), tmp_path)
    model = bombus.load_model(tmp_path)
    ids, mask = batch(config, length=10, seed=seed, padding=padding)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = assert_cached_decoding_equals_full(model, ids, mask, prefix=4, cache_length=12, positions=positions)
    assert cache.keys[0].shape == (3, config.num_key_value_heads, 12, config.head_dim)


def test_default_positions_follow_the_cache(tmp_path):
    config = random_config(1)
    save(reference("for_causal_language_modeling", config), tmp_path)
    model = bombus.load_model(tmp_path)
    ids = torch.randint(3, config.vocab_size, (2, 8))
    with torch.no_grad():
        full = model(input_ids=ids).logits
        cache = model.init_cache(2, 8)
        first = model(input_ids=ids[:, :5], cache=cache).logits
        rest = model(input_ids=ids[:, 5:], cache=cache).logits
    assert_close(torch.cat([first, rest], 1), full)


@pytest.mark.parametrize("seed", range(2))
def test_left_padded_batch_equals_one_by_one(tmp_path, seed):
    config = random_config(seed)
    ref = reference("for_causal_language_modeling", config, seed)
    save(ref, tmp_path)
    model = bombus.load_model(tmp_path)
    ids, mask = batch(config, seed=seed, padding="left")
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        for row in range(ids.shape[0]):
            real = mask[row].bool()
            alone = model(input_ids=ids[row, real][None]).logits[0]
            assert_close(batched[row, real], alone, what=f"row {row}")
            assert_close(alone, ref(input_ids=ids[row, real][None]).logits[0], what=f"reference row {row}")


def test_generate_matches_transformers_greedy(tmp_path):
    config = random_config(2, tie_word_embeddings=True)
    ref = reference("for_causal_language_modeling", config, std=0.5)
    save(ref, tmp_path)
    model = bombus.load_model(tmp_path)
    ids, mask = batch(config, batch_size=2, length=6, padding="left")
    with torch.no_grad():
        ours = model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, eos_token_id=None)
        theirs = ref.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, eos_token_id=None,
                              pad_token_id=config.pad_token_id)
    assert torch.equal(ours, theirs)


def test_logits_to_keep_and_sdpa_equals_eager(tmp_path):
    config = random_config(1, num_attention_heads=4, num_key_value_heads=2, hidden_size=16, head_dim=4)
    ref = reference("for_causal_language_modeling", config, attn="sdpa")
    save(ref, tmp_path)
    model = bombus.load_model(tmp_path)
    ids, mask = batch(config, padding="left")
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask)
        eager = model(input_ids=ids, attention_mask=mask, output_attentions=True)
        last = model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits
        compare(full, ref(input_ids=ids, attention_mask=mask), mask)
    assert last.shape == (3, 1, config.vocab_size)
    assert_close(last, full.logits[:, -1:])
    assert "attentions" not in full and len(eager.attentions) == config.num_hidden_layers
    assert_close(eager.logits, full.logits, mask=mask)


def test_head_mask_equals_zeroed_output_columns(tmp_path):
    config = random_config(5, num_attention_heads=4, num_key_value_heads=2, hidden_size=16, head_dim=4,
                           num_hidden_layers=2)
    save(reference("for_causal_language_modeling", config), tmp_path)
    model, zeroed = bombus.load_model(tmp_path), bombus.load_model(tmp_path)
    with torch.no_grad():
        zeroed.transformer.groups[1][0].attention.output.weight[:, 8:12] = 0  # head 2 of block 1
    head_mask = torch.ones(2, 4)
    head_mask[1, 2] = 0
    ids, mask = batch(config)
    with torch.no_grad():
        assert_close(model(input_ids=ids, attention_mask=mask, attention_head_mask=head_mask).logits,
                     zeroed(input_ids=ids, attention_mask=mask).logits, mask=mask)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_save_pretrained_round_trip_through_transformers(tmp_path, arch):
    config = random_config(3, rope=ROPES["llama3"], num_labels=2)
    save(reference(arch, config), tmp_path / "ref")
    model = bombus.load_model(tmp_path / "ref")
    model.save_pretrained(tmp_path / "ours")
    reloaded = ARCHS[arch].from_pretrained(tmp_path / "ours", attn_implementation="eager").eval()
    assert reloaded.config.rope_parameters["rope_type"] == "llama3"
    again = bombus.load_model(tmp_path / "ours")
    for name in ("rotary_embedding_base", "rotary_embedding_scaling_strategy", "attention_head_size",
                 "num_key_value_heads", "tie_word_embeddings", "attention_bias", "mlp_bias"):
        assert getattr(again.spec, name) == getattr(model.spec, name), name
    ids = torch.randint(3, config.vocab_size, (1, 20))
    with torch.no_grad():
        compare(model(input_ids=ids), reloaded(input_ids=ids))


def test_base_checkpoint_into_head_and_tied_lm_head(tmp_path):
    config = random_config(1, tie_word_embeddings=True)
    base = reference("base", config)
    save(base, tmp_path / "base")
    ids, mask = batch(config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a tied LM head needs no new weights
        causal = bombus.load_model(tmp_path / "base", architecture="for_causal_language_modeling")
    assert causal.lm_head.decoder.weight is causal.embeddings.token.weight
    with pytest.warns(UserWarning, match="newly initialised.*score"):
        clf = bombus.load_model(tmp_path / "base", architecture="for_sequence_classification")
    with torch.no_grad():
        expected = base(input_ids=ids, attention_mask=mask).last_hidden_state
        assert_close(causal(input_ids=ids, attention_mask=mask).hidden_state, expected, mask=mask)
        assert_close(clf(input_ids=ids, attention_mask=mask).hidden_state, expected, mask=mask)


def test_spec_reads_old_and_new_rope_config_keys():
    from bombus.models.llama import LlamaSpec

    old = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "rope_theta": 500000.0,
           "rope_scaling": {"type": "linear", "factor": 4.0}, "max_position_embeddings": 128}
    spec = LlamaSpec.from_hf_config(old)
    assert spec.rotary_embedding_base == 500000.0
    assert spec.rotary_embedding_scaling_strategy == {"rope_type": "linear", "factor": 4.0}
    new = {"model_type": "llama", "rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0,
                                                      "low_freq_factor": 1.0, "high_freq_factor": 4.0}}
    spec = LlamaSpec.from_hf_config(new)
    assert spec.rotary_embedding_base == 5e5
    # as transformers' standardisation: the original length defaults to max_position_embeddings (2048)
    assert spec.rotary_embedding_scaling_strategy["original_max_position_embeddings"] == 2048
    # config.json without keys means transformers' defaults, not Bumblebee's
    bare = LlamaSpec.from_hf_config({"model_type": "llama"})
    hf = transformers.LlamaConfig()
    assert (bare.max_positions, bare.layer_norm_epsilon, bare.tie_word_embeddings) == \
        (hf.max_position_embeddings, hf.rms_norm_eps, hf.tie_word_embeddings)
    assert bare.head_dim == hf.head_dim and bare.kv_heads == hf.num_key_value_heads
    written = bare.to_hf_config()
    assert written["rope_parameters"] == {"rope_type": "default", "rope_theta": 10000.0}
    json.dumps(written)


def test_errors(tmp_path):
    from bombus.models.llama import LlamaSpec

    with pytest.raises(bombus.errors.ConfigError, match="yarn"):
        LlamaSpec.from_hf_config({"model_type": "llama", "rope_scaling": {"rope_type": "yarn", "factor": 2.0}})
    with pytest.raises(bombus.errors.ConfigError, match="factor"):
        LlamaSpec(rotary_embedding_scaling_strategy={"rope_type": "linear"})
    with pytest.raises(bombus.errors.ConfigError, match="multiple of num_key_value_heads"):
        LlamaSpec(num_attention_heads=6, num_key_value_heads=4)
    spec = bombus.configure(LlamaSpec(), vocab_size=50, hidden_size=16, intermediate_size=24, num_blocks=1,
                            num_attention_heads=2, max_positions=8, architecture="for_causal_language_modeling")
    model = bombus.build_model(spec)
    ids = torch.tensor([[1, 2, 3]])
    assert model(input_ids=ids).logits.shape == (1, 3, 50)
    with pytest.raises(bombus.errors.InputError, match="token type"):
        model(input_ids=ids, token_type_ids=torch.zeros_like(ids))
    with pytest.raises(bombus.errors.InputError, match="max_positions"):
        model(input_ids=torch.ones(1, 9, dtype=torch.long))
    with pytest.raises(bombus.errors.InputError, match="pad_token_id"):
        bombus.build_model(bombus.configure(spec, architecture="for_sequence_classification"))(
            input_ids=torch.ones(2, 3, dtype=torch.long))


def test_bfloat16_close_to_float32(tmp_path):
    config = random_config(3, hidden_size=32, num_attention_heads=4, head_dim=8)
    save(reference("for_causal_language_modeling", config, std=0.05), tmp_path)
    fp32, bf16 = bombus.load_model(tmp_path), bombus.load_model(tmp_path, dtype=torch.bfloat16)
    ids, mask = batch(config)
    with torch.no_grad():
        a = fp32(input_ids=ids, attention_mask=mask).logits
        b = bf16(input_ids=ids, attention_mask=mask).logits
    assert b.dtype == torch.bfloat16
    assert_close(b.float(), a, mask=mask, atol=3e-2, rtol=3e-2)
