"""GPT-2: every architecture against transformers, with random configs, padding, caches and errors."""

import random
import warnings

import pytest
import torch
import transformers

import bombus
from reference import padded_batch as batch, assert_cached_decoding_equals_full, assert_close, randomize, save

ARCHS = {
    "base": transformers.GPT2Model,
    "for_causal_language_modeling": transformers.GPT2LMHeadModel,
    "for_sequence_classification": transformers.GPT2ForSequenceClassification,
    "for_token_classification": transformers.GPT2ForTokenClassification,
    "for_question_answering": transformers.GPT2ForQuestionAnswering,
    "for_double_heads": transformers.GPT2DoubleHeadsModel,
}


def random_config(seed: int, **overrides) -> transformers.GPT2Config:
    rng = random.Random(seed)
    heads = rng.choice([1, 2, 4])
    config = dict(
        vocab_size=rng.randint(60, 120), n_positions=rng.choice([24, 32, 48]), n_embd=heads * rng.choice([4, 8]),
        n_layer=rng.randint(1, 3), n_head=heads, n_inner=rng.choice([None, 20, 40]),
        activation_function=rng.choice(["gelu_new", "gelu", "relu", "tanh", "gelu_pytorch_tanh", "silu"]),
        scale_attn_weights=rng.random() < 0.8, scale_attn_by_inverse_layer_idx=rng.random() < 0.5,
        reorder_and_upcast_attn=rng.random() < 0.5, layer_norm_epsilon=rng.choice([1e-5, 1e-6]),
        num_labels=rng.randint(1, 4) if seed % 2 else 3, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        summary_type=rng.choice(["cls_index", "last", "first", "mean"]),
        summary_activation=rng.choice([None, "tanh"]), summary_proj_to_labels=rng.random() < 0.7,
    )
    config.update(overrides)
    return transformers.GPT2Config(**config)


def reference(arch: str, config, seed: int = 0, attn: str = "eager"):
    config._attn_implementation = attn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ARCHS[arch](config)
    return randomize(model, seed)


def compare(ours, ref, mask=None):
    names = {"logits": "logits", "hidden_state": "last_hidden_state", "start_logits": "start_logits",
             "end_logits": "end_logits", "mc_logits": "mc_logits", "loss": "loss", "mc_loss": "mc_loss"}
    compared = 0
    for name, ref_name in names.items():
        value = getattr(ref, ref_name, None)
        if value is None:
            continue
        assert name in ours, f"bombus output lacks {name}"
        m = mask if (mask is not None and value.dim() >= 2 and value.shape[:2] == mask.shape) else None
        assert_close(ours[name], value, mask=m, what=name)
        compared += 1
    if getattr(ref, "hidden_states", None) is not None:
        assert len(ours.hidden_states) == len(ref.hidden_states)
        for i, (a, b) in enumerate(zip(ours.hidden_states, ref.hidden_states)):
            assert_close(a, b, mask=mask if a.shape[:2] == mask.shape else None, what=f"hidden_states[{i}]")
    if getattr(ref, "attentions", None) is not None:
        assert len(ours.attentions) == len(ref.attentions)
        for i, (a, b) in enumerate(zip(ours.attentions, ref.attentions)):
            assert_close(a.transpose(-3, -2)[mask.bool()] if mask is not None and a.dim() == 4 else a,
                         b.transpose(-3, -2)[mask.bool()] if mask is not None and b.dim() == 4 else b,
                         what=f"attentions[{i}]")
    assert compared > 0


def labels_for(arch, config, ids, mask):
    if arch == "for_causal_language_modeling":
        return {"labels": ids.masked_fill(mask == 0, -100)}
    if arch == "for_token_classification":
        return {"labels": torch.randint(0, config.num_labels, ids.shape).masked_fill(mask == 0, -100)}
    if arch == "for_sequence_classification":
        if config.num_labels == 1:
            return {"labels": torch.randn(ids.shape[0])}
        return {"labels": torch.randint(0, config.num_labels, (ids.shape[0],))}
    if arch == "for_question_answering":
        return {"start_positions": torch.tensor([0, 3, 50])[: ids.shape[0]],
                "end_positions": torch.tensor([2, 4, 1])[: ids.shape[0]]}
    return {}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("arch", [a for a in ARCHS if a != "for_double_heads"])
def test_parity_every_architecture(tmp_path, arch, seed):
    config = random_config(seed)
    ref = reference(arch, config, seed)
    save(ref, tmp_path, safetensors=seed % 2 == 0)
    model = bombus.load_model(tmp_path)
    assert model.architecture == arch
    ids, mask = batch(config, seed=seed)
    extra = labels_for(arch, config, ids, mask)
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True,
                     **extra)
        theirs = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True,
                     **extra)
    compare(ours, theirs, mask)


@pytest.mark.parametrize("seed", range(3))
def test_double_heads(tmp_path, seed):
    # Only "cls_index" is comparable: the reference's "first"/"last"/"mean" index the choices dimension
    # of its [batch, choices, seq, hidden] states (bombus summarises over tokens, as documented).
    config = random_config(seed, num_labels=1, summary_type="cls_index")
    ref = reference("for_double_heads", config, seed)
    save(ref, tmp_path, safetensors=seed % 2 == 1)
    model = bombus.load_model(tmp_path)
    choices, length = 3, 7
    ids = torch.randint(3, config.vocab_size, (2, choices, length))
    mc_token_ids = torch.randint(0, length, (2, choices))
    extra = dict(mc_token_ids=mc_token_ids, labels=ids, mc_labels=torch.tensor([0, 2]))
    with torch.no_grad():
        ours = model(input_ids=ids, **extra)
        theirs = ref(input_ids=ids, **extra)
    assert ours.logits.shape == (2, choices, length, config.vocab_size)
    compare(ours, theirs)


@pytest.mark.parametrize("seed", range(3))
def test_position_ids_embeddings_and_token_types(tmp_path, seed):
    config = random_config(seed)
    ref = reference("for_causal_language_modeling", config, seed)
    save(ref, tmp_path)
    model = bombus.load_model(tmp_path)
    ids, mask = batch(config, seed=seed, padding="left")
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    types = torch.randint(0, config.vocab_size, ids.shape)
    embeds = torch.randn(*ids.shape, config.n_embd)
    with torch.no_grad():
        compare(model(input_ids=ids, attention_mask=mask, position_ids=positions, token_type_ids=types),
                ref(input_ids=ids, attention_mask=mask, position_ids=positions, token_type_ids=types), mask)
        compare(model(input_embeddings=embeds, attention_mask=mask),
                ref(inputs_embeds=embeds, attention_mask=mask), mask)
        # transformers' names are accepted as aliases
        compare(model(inputs_embeds=embeds), ref(inputs_embeds=embeds))


@pytest.mark.parametrize("seed", range(3))
def test_cross_attention(tmp_path, seed):
    config = random_config(seed, add_cross_attention=True)
    ref = reference("for_causal_language_modeling", config, seed)
    save(ref, tmp_path)
    model = bombus.load_model(tmp_path)
    assert model.spec.use_cross_attention
    ids, mask = batch(config, seed=seed)
    encoder = torch.randn(ids.shape[0], 5, config.n_embd)
    encoder_mask = torch.ones(ids.shape[0], 5, dtype=torch.long)
    encoder_mask[0, 3:] = 0
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask, encoder_hidden_state=encoder,
                     encoder_attention_mask=encoder_mask, output_attentions=True)
        theirs = ref(input_ids=ids, attention_mask=mask, encoder_hidden_states=encoder,
                     encoder_attention_mask=encoder_mask, output_attentions=True)
    compare(ours, theirs, mask)
    assert len(ours.cross_attentions) == config.n_layer
    for a, b in zip(ours.cross_attentions, theirs.cross_attentions):
        assert_close(a.transpose(1, 2)[mask.bool()], b.transpose(1, 2)[mask.bool()], what="cross_attentions")


def _zero_head(model, layer, head, cross=False):
    block = model.transformer.groups[layer][0]
    attention = block.cross_attention if cross else block.attention
    d = attention.head_dim
    with torch.no_grad():
        attention.output.weight[:, head * d:(head + 1) * d] = 0


@pytest.mark.parametrize("cross", [False, True])
def test_head_mask_equals_zeroed_output_rows(tmp_path, cross):
    config = random_config(5, n_head=4, n_embd=16, n_layer=2, add_cross_attention=cross)
    save(reference("for_causal_language_modeling", config), tmp_path)
    model, zeroed = bombus.load_model(tmp_path), bombus.load_model(tmp_path)
    ids, mask = batch(config)
    head_mask = torch.ones(2, 4)
    head_mask[0, 1] = head_mask[1, 3] = 0
    _zero_head(zeroed, 0, 1, cross)
    _zero_head(zeroed, 1, 3, cross)
    encoder = dict(encoder_hidden_state=torch.randn(3, 4, 16)) if cross else {}
    key = "cross_attention_head_mask" if cross else "attention_head_mask"
    with torch.no_grad():
        masked = model(input_ids=ids, attention_mask=mask, **{key: head_mask}, **encoder)
        expected = zeroed(input_ids=ids, attention_mask=mask, **encoder)
        plain = model(input_ids=ids, attention_mask=mask, **encoder)
    assert_close(masked.logits, expected.logits, mask=mask)
    assert not torch.allclose(masked.logits, plain.logits)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("padding", ["left", "right"])
def test_cache_incremental_equals_full_forward(tmp_path, seed, padding):
    config = random_config(seed, add_cross_attention=seed == 2)
    save(reference("for_causal_language_modeling", config, seed), tmp_path)
    model = bombus.load_model(tmp_path)
    ids, mask = batch(config, length=10, seed=seed, padding=padding)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    encoder = dict(encoder_hidden_state=torch.randn(3, 4, config.n_embd)) if seed == 2 else {}
    assert_cached_decoding_equals_full(model, ids, mask, prefix=4, cache_length=12, positions=positions, **encoder)


def test_logits_to_keep(tmp_path):
    config = random_config(1)
    save(reference("for_causal_language_modeling", config), tmp_path)
    model = bombus.load_model(tmp_path)
    ids, mask = batch(config)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        last = model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits
    assert last.shape == (3, 1, config.vocab_size)
    assert_close(last, full[:, -1:])


@pytest.mark.parametrize("seed", range(3))
def test_sdpa_equals_eager(tmp_path, seed):
    config = random_config(seed)
    save(reference("for_causal_language_modeling", config, seed), tmp_path)
    model = bombus.load_model(tmp_path)
    ids, mask = batch(config, seed=seed, padding="left")
    with torch.no_grad():
        sdpa = model(input_ids=ids, attention_mask=mask)
        eager = model(input_ids=ids, attention_mask=mask, output_attentions=True)
        sdpa_no_mask = model(input_ids=ids)
        eager_no_mask = model(input_ids=ids, output_attentions=True)
    assert "attentions" not in sdpa and len(eager.attentions) == config.n_layer
    assert_close(sdpa.logits, eager.logits, mask=mask)
    assert_close(sdpa_no_mask.logits, eager_no_mask.logits)


def test_reference_sdpa_model_matches(tmp_path):
    config = random_config(0)
    ref = reference("for_causal_language_modeling", config, attn="sdpa")
    save(ref, tmp_path)
    model = bombus.load_model(tmp_path)
    ids, mask = batch(config)
    with torch.no_grad():
        compare(model(input_ids=ids, attention_mask=mask), ref(input_ids=ids, attention_mask=mask), mask)


def test_bfloat16_close_to_float32(tmp_path):
    config = random_config(3, n_embd=32, n_head=4)
    save(reference("for_causal_language_modeling", config, std=0.05) if False else
         randomize(transformers.GPT2LMHeadModel(config), 3, std=0.05), tmp_path)
    fp32 = bombus.load_model(tmp_path)
    bf16 = bombus.load_model(tmp_path, dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16
    ids, mask = batch(config)
    with torch.no_grad():
        a = fp32(input_ids=ids, attention_mask=mask).logits
        b = bf16(input_ids=ids, attention_mask=mask).logits
    assert b.dtype == torch.bfloat16
    assert_close(b.float(), a, mask=mask, atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_save_pretrained_round_trip_through_transformers(tmp_path, arch):
    config = random_config(2, num_labels=2, summary_type="cls_index")
    save(reference(arch, config), tmp_path / "ref")
    model = bombus.load_model(tmp_path / "ref")
    model.save_pretrained(tmp_path / "ours")
    assert not [p for p in (tmp_path / "ours").iterdir() if p.name.startswith(".")], "temporary files left"
    reloaded = ARCHS[arch].from_pretrained(tmp_path / "ours", attn_implementation="eager").eval()
    again = bombus.load_model(tmp_path / "ours")
    ids = torch.randint(3, config.vocab_size, (2, 3, 6) if arch == "for_double_heads" else (1, 6))
    with torch.no_grad():
        compare(model(input_ids=ids), reloaded(input_ids=ids))
        compare(again(input_ids=ids), reloaded(input_ids=ids))


def test_base_checkpoint_into_head_and_head_into_base(tmp_path):
    config = random_config(1)
    base = reference("base", config)
    save(base, tmp_path / "base")
    head = reference("for_question_answering", config)
    save(head, tmp_path / "head")
    ids, mask = batch(config)
    with pytest.warns(UserWarning, match="newly initialised.*qa_outputs"):
        qa = bombus.load_model(tmp_path / "base", architecture="for_question_answering")
    with pytest.warns(UserWarning, match="not used"):
        plain = bombus.load_model(tmp_path / "head", architecture="base")
    with torch.no_grad():
        assert_close(qa(input_ids=ids, attention_mask=mask).hidden_state,
                     base(input_ids=ids, attention_mask=mask).last_hidden_state, mask=mask)
        assert_close(plain(input_ids=ids, attention_mask=mask).hidden_state,
                     head.transformer(input_ids=ids, attention_mask=mask).last_hidden_state, mask=mask)
    # lm_head is tied: a causal LM from a base checkpoint needs no new weights
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        causal = bombus.load_model(tmp_path / "base", architecture="for_causal_language_modeling")
    assert causal.lm_head.decoder.weight is causal.embeddings.token.weight


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
def test_sharded_checkpoint(tmp_path, kind):
    import json

    from safetensors.torch import save_file

    config = random_config(0)
    ref = reference("for_causal_language_modeling", config)
    ref.config.architectures = ["GPT2LMHeadModel"]
    ref.config.save_pretrained(tmp_path)
    state = {k: v.contiguous() for k, v in ref.state_dict().items() if k != "lm_head.weight"}
    names = sorted(state)
    weight_map = {}
    for shard, part in enumerate((names[::2], names[1::2])):
        filename = f"model-{shard + 1:05d}-of-00002.{'safetensors' if kind == 'safetensors' else 'bin'}"
        tensors = {k: state[k] for k in part}
        save_file(tensors, tmp_path / filename) if kind == "safetensors" else torch.save(tensors, tmp_path / filename)
        weight_map.update({k: filename for k in part})
    index = "model.safetensors.index.json" if kind == "safetensors" else "pytorch_model.bin.index.json"
    (tmp_path / index).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    model = bombus.load_model(tmp_path)
    ids, mask = batch(config)
    with torch.no_grad():
        compare(model(input_ids=ids, attention_mask=mask), ref(input_ids=ids, attention_mask=mask), mask)


def test_sequence_classification_needs_pad_for_batches(tmp_path):
    config = random_config(0, pad_token_id=None)
    save(reference("for_sequence_classification", config), tmp_path)
    model = bombus.load_model(tmp_path)
    with pytest.raises(bombus.errors.InputError, match="pad_token_id"):
        model(input_ids=torch.randint(0, 50, (2, 5)))
    assert model(input_ids=torch.randint(0, 50, (1, 5))).logits.shape == (1, config.num_labels)


def test_spec_round_trips_hf_config():
    config = random_config(3, n_inner=None).to_dict()
    spec = bombus.spec_from_hf(config) if hasattr(bombus, "spec_from_hf") else None
    from bombus.models.gpt2 import Gpt2Spec

    spec = Gpt2Spec.from_hf_config(config, architecture="for_causal_language_modeling")
    assert spec.hidden_size == config["n_embd"] and spec.num_blocks == config["n_layer"]
    assert spec.intermediate_size is None
    back = spec.to_hf_config()
    for key in ("n_embd", "n_layer", "n_head", "n_positions", "activation_function", "scale_attn_weights",
                "reorder_and_upcast_attn", "scale_attn_by_inverse_layer_idx", "vocab_size", "n_inner"):
        assert back[key] == config[key], key
    # both name sets are read
    alias = {"model_type": "gpt2", "hidden_size": 48, "num_hidden_layers": 5, "num_attention_heads": 6}
    spec = Gpt2Spec.from_hf_config(alias)
    assert (spec.hidden_size, spec.num_blocks, spec.num_attention_heads) == (48, 5, 6)
    # a config.json without a key means what it means to transformers, not Bumblebee's default
    assert Gpt2Spec.from_hf_config({"model_type": "gpt2"}).num_blocks == transformers.GPT2Config().n_layer
    assert Gpt2Spec().num_blocks == 24  # Bumblebee's documented default


def test_configure_and_build_model():
    from bombus.models.gpt2 import Gpt2Spec

    spec = bombus.configure(Gpt2Spec(), vocab_size=50, hidden_size=16, num_blocks=2, num_attention_heads=2,
                            max_positions=16, architecture="for_causal_language_modeling")
    model = bombus.build_model(spec)
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 50)
    with pytest.raises(bombus.errors.ConfigError, match="hidden_sise"):
        bombus.configure(spec, hidden_sise=3)
    with pytest.raises(bombus.errors.ConfigError, match="for_masked"):
        bombus.build_model(bombus.configure(spec, architecture="for_masked_language_modeling"))


def test_c_attn_is_one_projection_written_back_unchanged(tmp_path):
    """GPT-2 keeps the checkpoint's fused q/k/v (`c_attn`) as one Linear: one matmul, and save_pretrained
    writes the same tensor back; cross-attention keeps its own projections."""
    from safetensors.torch import load_file

    config = random_config(3, add_cross_attention=True)
    save(reference("for_causal_language_modeling", config), tmp_path / "ref")
    model = bombus.load_model(tmp_path / "ref")
    for group in model.transformer.groups:
        block = group[0]
        assert block.attention.qkv is not None and not hasattr(block.attention, "query")
        assert block.cross_attention.qkv is None and hasattr(block.cross_attention, "query")
    model.save_pretrained(tmp_path / "ours")
    theirs, ours = load_file(tmp_path / "ref" / "model.safetensors"), load_file(tmp_path / "ours" / "model.safetensors")
    for i in range(config.n_layer):
        for name in (f"transformer.h.{i}.attn.c_attn.weight", f"transformer.h.{i}.attn.c_attn.bias"):
            assert torch.equal(ours[name], theirs[name]), name
