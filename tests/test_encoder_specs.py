"""Encoder families: options and their defaults, config.json round trips, ALBERT's parameter sharing,
head masks, and errors on bad input."""

import json
import warnings

import pytest
import torch
import transformers
import transformers.activations

import bombus
from bombus.errors import ConfigError, InputError
from bombus.models import family as family_class
from encoder_fixtures import ARCHS, batch, compare, random_config, reference
from reference import assert_close, save

# The seeds' (Bumblebee's) defaults.
SEED_DEFAULTS = {
    "roberta": dict(vocab_size=30522, max_positions=512, max_token_types=2, hidden_size=768, num_blocks=12,
                    num_attention_heads=12, intermediate_size=3072, activation="gelu", dropout_rate=0.1,
                    attention_dropout_rate=0.1, classifier_dropout_rate=None, layer_norm_epsilon=1e-12,
                    initializer_scale=0.02, output_hidden_states=False, output_attentions=False, num_labels=2,
                    id_to_label={}, use_cross_attention=False),
    "distilbert": dict(vocab_size=30522, max_positions=512, hidden_size=768, num_blocks=6, num_attention_heads=12,
                       intermediate_size=3072, activation="gelu", dropout_rate=0.1, attention_dropout_rate=0.1,
                       classifier_dropout_rate=None, initializer_scale=0.02, num_labels=2, id_to_label={},
                       use_cross_attention=False, output_hidden_states=False, output_attentions=False),
    "albert": dict(vocab_size=30000, max_positions=512, max_token_types=2, embedding_size=128, hidden_size=768,
                   num_blocks=12, num_groups=1, block_depth=1, num_attention_heads=12, intermediate_size=16384,
                   activation="gelu", dropout_rate=0.0, attention_dropout_rate=0.0, classifier_dropout_rate=None,
                   layer_norm_epsilon=1e-12, initializer_scale=0.02, output_hidden_states=False,
                   output_attentions=False, num_labels=2, id_to_label={}),
}
SEED_DEFAULTS["bert"] = SEED_DEFAULTS["roberta"]


@pytest.mark.parametrize("family", ARCHS)
def test_defaults_are_the_seeds(family):
    spec = family_class(family).spec_class()
    assert {name: getattr(spec, name) for name in SEED_DEFAULTS[family]} == SEED_DEFAULTS[family]
    for name in SEED_DEFAULTS[family]:
        assert f"* {name} - " in spec.describe()


@pytest.mark.parametrize("family", ARCHS)
def test_missing_config_keys_mean_what_they_mean_to_transformers(tmp_path, family):
    """A config.json without a key gets transformers' default for it, not the seed's."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": family}))
    spec = bombus.load_spec(tmp_path)
    hf = transformers.AutoConfig.for_model(family)
    for option in spec.options():
        key = option.metadata["hf"][0] if option.metadata["hf"] else None
        if key and key in hf.to_dict() and option.name not in ("problem_type",):
            value = getattr(spec, option.name)
            if option.name == "classifier_dropout_rate" and value is None:
                value = None if hf.to_dict()[key] is None else spec.dropout_rate
            assert value == hf.to_dict()[key], option.name


@pytest.mark.parametrize("family", ARCHS)
def test_config_round_trip(tmp_path, family):
    config = random_config(family, 30)
    save(reference(family, "for_sequence_classification", config, 30), tmp_path)
    spec = bombus.load_spec(tmp_path)
    written = spec.to_hf_config()
    again = type(config).from_dict(written)
    for key, value in config.to_dict().items():
        if key not in ("architectures", "transformers_version", "dtype", "_attn_implementation_autoset"):
            assert getattr(again, key, value) == value, key
    assert type(spec).from_hf_config(written, architecture=spec.architecture) == spec
    with pytest.raises(ConfigError, match="unknown option"):
        bombus.configure(spec, hiden_size=3)


@pytest.mark.parametrize("arch", list(ARCHS["albert"]))
def test_albert_groups_of_blocks(tmp_path, arch):
    """4 blocks sharing 2 groups of 2 Transformer blocks each, mapped to groups as the reference does; the
    same number of parameters."""
    config = random_config("albert", 31, arch, num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2)
    ref = reference("albert", arch, config, 31)
    save(ref, tmp_path)
    model = bombus.load_model(tmp_path)
    assert model.transformer.group_of == [0, 0, 1, 1]
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ref.parameters())
    ids, mask = batch(config, seed=31, choices=3 if arch == "for_multiple_choice" else None)
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
        theirs = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    assert len(ours.hidden_states) == 4 * 2 + 1
    compare(ours, theirs, mask)


@pytest.mark.parametrize("family", ARCHS)
def test_parameter_count(tmp_path, family):
    arch = "for_masked_language_modeling"
    ref = reference(family, arch, random_config(family, 32, arch), 32)
    save(ref, tmp_path)
    model = bombus.load_model(tmp_path)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ref.parameters())


def _output_projections(ref):
    """The attention output Linear of every reference layer (self- and cross-attention)."""
    names = ("attention.output.dense", "attention.out_lin", "attention.dense")
    found = {"self": [], "cross": []}
    for name, module in ref.named_modules():
        if name.endswith(names) and isinstance(module, torch.nn.Linear):
            found["cross" if "crossattention" in name else "self"].append(module)
    return found


@pytest.mark.parametrize("family", ARCHS)
def test_head_mask_equals_zeroed_output_columns(tmp_path, family):
    """transformers 5 dropped head masks; masking head h is zeroing the inputs h*d:(h+1)*d of the attention
    output projection (ALBERT shares its blocks, so there the head is masked in every block)."""
    arch = "for_causal_language_modeling" if family in ("bert", "roberta") else "base"
    config = random_config(family, 33, arch, **({"add_cross_attention": True} if arch != "base" else {}))
    ref = reference(family, arch, config, 33)
    save(ref, tmp_path)
    model = bombus.load_model(tmp_path)
    heads, blocks = config.num_attention_heads, config.num_hidden_layers
    head_dim = config.hidden_size // heads
    h = heads - 1
    mask = torch.ones(blocks, heads)
    mask[-1, h] = 0
    if family == "albert":
        mask = mask[-1]  # `[heads]`: every block
    inputs = {}
    if arch != "base":
        inputs = dict(encoder_hidden_state=torch.randn(2, 4, config.hidden_size),
                      cross_attention_head_mask=torch.ones(blocks, heads).index_fill_(1, torch.tensor([0]), 0))
    ids, _ = batch(config, batch_size=2, seed=33)
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=None, head_mask=mask, **inputs)
        unmasked = model(input_ids=ids, **{k: v for k, v in inputs.items() if k == "encoder_hidden_state"})
        layers = _output_projections(ref)
        for layer in layers["self"][-1:] if family != "albert" else layers["self"]:
            layer.weight[:, h * head_dim:(h + 1) * head_dim] = 0
        for layer in layers["cross"]:
            layer.weight[:, :head_dim] = 0
        theirs = ref(input_ids=ids, encoder_hidden_states=inputs.get("encoder_hidden_state"))
    name = "logits" if arch != "base" else "hidden_state"
    assert not torch.allclose(ours[name], unmasked[name])
    assert_close(ours[name], theirs.logits if arch != "base" else theirs.last_hidden_state, what="head mask")


def test_head_mask_shapes(tmp_path):
    config = random_config("bert", 34)
    save(reference("bert", "base", config, 34), tmp_path)
    model = bombus.load_model(tmp_path)
    ids, _ = batch(config, seed=34)
    heads = config.num_attention_heads
    with torch.no_grad():
        per_block = model(input_ids=ids, attention_head_mask=torch.ones(config.num_hidden_layers, heads))
        assert_close(per_block.hidden_state, model(input_ids=ids, attention_head_mask=torch.ones(heads)).hidden_state)
    with pytest.raises(InputError, match=r"attention_head_mask must have shape"):
        model(input_ids=ids, attention_head_mask=torch.ones(heads + 1))


@pytest.mark.filterwarnings("ignore:newly initialised", "ignore:checkpoint weights not used")
def test_bad_inputs_raise_clear_errors(tmp_path):
    config = random_config("roberta", 35, "for_multiple_choice")
    save(reference("roberta", "for_multiple_choice", config, 35), tmp_path)
    choice = bombus.load_model(tmp_path)
    ids, mask = batch(config, seed=35)
    with pytest.raises(InputError, match=r"\[batch, num_choices, seq\].*found \[3, 9\]"):
        choice(input_ids=ids)
    classifier = bombus.load_model(tmp_path, architecture="for_sequence_classification")
    with pytest.raises(InputError, match=r"\[batch, seq\].*found \[1, 3, 9\]"):
        classifier(input_ids=ids[None])
    with pytest.raises(InputError, match="attention_mask has shape"):
        classifier(input_ids=ids, attention_mask=mask[:, :4])
    with pytest.raises(InputError, match="either input_ids or input_embeddings"):
        classifier(input_ids=ids, inputs_embeds=torch.randn(3, 9, config.hidden_size))
    with pytest.raises(InputError, match="exceeds max_positions"):
        classifier(input_ids=torch.full((1, config.max_position_embeddings), 5))
    with pytest.raises(InputError, match="has no input 'encoder_hidden_states'"):
        classifier(input_ids=ids, encoder_hidden_states=torch.randn(3, 2, config.hidden_size))
    with pytest.raises(InputError, match="has no input 'start_positions'"):
        classifier(input_ids=ids, start_positions=torch.tensor([1]))
    decoder = bombus.load_model(tmp_path, architecture="for_causal_language_modeling")
    with pytest.raises(InputError, match="no cross-attention layers"):
        decoder(input_ids=ids, encoder_hidden_state=torch.randn(3, 2, config.hidden_size))


def test_bad_configs_raise_clear_errors(tmp_path):
    Bert, Roberta, Albert, Distilbert = (family_class(f).spec_class for f in
                                         ("bert", "roberta", "albert", "distilbert"))
    with pytest.raises(ConfigError, match="not a multiple of num_attention_heads"):
        Bert(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ConfigError, match="pad_token_id"):
        Roberta(pad_token_id=None)
    with pytest.raises(ConfigError, match="num_groups"):
        Albert(num_blocks=2, num_groups=3)
    with pytest.raises(ConfigError, match="no decoder"):
        Distilbert(use_cross_attention=True)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert",
                                                      "position_embedding_type": "relative_key"}))
    with pytest.raises(ConfigError, match="position_embedding_type"):
        bombus.load_spec(tmp_path)


def test_distilbert_accepts_and_ignores_token_types(tmp_path):
    config = random_config("distilbert", 36)
    save(reference("distilbert", "base", config, 36), tmp_path)
    model = bombus.load_model(tmp_path)
    ids, mask = batch(config, seed=36)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_close(model(input_ids=ids, token_type_ids=torch.ones_like(ids)).hidden_state,
                     model(input_ids=ids).hidden_state)


# Parametrised activations (prelu, xielu) carry weights of their own: no config.json names them for these families.
HF_ACTIVATIONS = sorted(set(transformers.activations.ACT2CLS) - {"prelu", "xielu"})


@pytest.mark.parametrize("name", HF_ACTIVATIONS)
def test_every_transformers_activation_name(name):
    """Each activation name transformers' configs accept gives the reference's function (a config with
    `hidden_act: gelu_python` or `leaky_relu` loads and matches)."""
    from bombus.layers.activations import activation

    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(0)) * 4
    assert_close(activation(name)(x), transformers.activations.ACT2FN[name](x), what=name)


@pytest.mark.parametrize("family,key,value,message", [
    ("gpt2", "n_embd", -1, r"hidden_size \(config.json 'n_embd'\) must be a positive size"),
    ("gpt2", "n_head", 1000, "not a multiple of num_attention_heads"),
    ("gpt2", "n_layer", 0, "must be a positive size"),
    ("gpt2", "embd_pdrop", -1, r"dropout probability: it must be in \[0, 1\]"),
    ("gpt2", "layer_norm_epsilon", "x", "layer_norm_epsilon .* must be float, got 'x'"),
    ("bert", "num_hidden_layers", "2", "num_blocks .* must be int, got '2'"),
    ("bert", "pad_token_id", 1000, "pad_token_id=1000 is not a token id"),
    ("bert", "type_vocab_size", -1, "must be >= 0"),
    ("roberta", "max_position_embeddings", None, "must be int, got None"),
    ("albert", "inner_group_num", 2.5, "block_depth .* must be int, got 2.5"),
    ("llama", "rms_norm_eps", "x", "must be float"),
    ("llama", "head_dim", "x", "must be int or None"),
    ("distilbert", "id2label", {"a": "x"}, "'id2label' must map class indices"),
])
def test_bad_config_values_raise_config_error(tmp_path, family, key, value, message):
    """A config.json value of the wrong type or range names the option, not a torch error while building."""
    config = {"gpt2": dict(vocab_size=50, n_embd=8, n_head=2, n_layer=1, n_positions=16),
              "llama": dict(vocab_size=50, hidden_size=8, num_attention_heads=2, num_hidden_layers=1,
                            intermediate_size=16)}.get(family, dict(vocab_size=50, hidden_size=8, num_attention_heads=2,
                                                                    num_hidden_layers=2, intermediate_size=16))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": family, **config, key: value}))
    with pytest.raises(ConfigError, match=message):
        bombus.build_model(bombus.load_spec(tmp_path))
