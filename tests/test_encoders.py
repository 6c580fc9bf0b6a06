"""BERT, RoBERTa, DistilBERT, ALBERT: every architecture against transformers on random configs, with
padding, batching, both attention paths, saving, and base <-> head loading."""

import warnings

import pytest
import torch
import transformers

import bombus
from bombus.models.distilbert import DistilbertSpec
from encoder_fixtures import ALL, ARCHS, batch, compare, labels_for, random_config, reference, renamed
from reference import assert_close, save

CHOICES = 3


def inputs_for(arch, config, seed=0, padding="right"):
    ids, mask = batch(config, seed=seed, padding=padding,
                      choices=CHOICES if arch == "for_multiple_choice" else None)
    return ids, mask


def run_both(model, ref, **inputs):
    with torch.no_grad():
        ours = model(**inputs, output_hidden_states=True, output_attentions=True)
        theirs = ref(**inputs, output_hidden_states=True, output_attentions=True)
    return ours, theirs


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("family,arch", ALL)
def test_parity_every_architecture(tmp_path, family, arch, seed):
    """All outputs (hidden states, attentions, pooled state, logits, losses) on a random config; the
    checkpoint saved as safetensors or as pytorch_model.bin."""
    config = random_config(family, seed, arch)
    ref = reference(family, arch, config, seed)
    save(ref, tmp_path, safetensors=seed != 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no missing or unused weights
        model = bombus.load_model(tmp_path)
    assert model.architecture == arch
    ids, mask = inputs_for(arch, config, seed)
    ours, theirs = run_both(model, ref, input_ids=ids, attention_mask=mask,
                            **labels_for(arch, config, ids, mask, seed))
    compare(ours, theirs, mask)
    if getattr(theirs, "loss", None) is not None:
        assert "loss" in ours


@pytest.mark.parametrize("family,arch", [(f, a) for f, a in ALL if f in ("roberta", "bert")])
def test_left_padding(tmp_path, family, arch):
    """RoBERTa counts positions over real tokens only, so left padding gives the reference's outputs."""
    config = random_config(family, 7, arch)
    ref = reference(family, arch, config, 7)
    save(ref, tmp_path)
    ids, mask = inputs_for(arch, config, 7, padding="left")
    compare(*run_both(bombus.load_model(tmp_path), ref, input_ids=ids, attention_mask=mask), mask)


@pytest.mark.parametrize("family,padding", [("bert", "right"), ("roberta", "right"), ("roberta", "left"),
                                            ("distilbert", "right"), ("albert", "right")])
def test_batched_equals_one_by_one(tmp_path, family, padding):
    config = random_config(family, 4)
    save(reference(family, "base", config, 4), tmp_path)
    model = bombus.load_model(tmp_path)
    ids, mask = batch(config, batch_size=4, seed=4, padding=padding)
    with torch.no_grad():
        together = model(input_ids=ids, attention_mask=mask)
        for row in range(len(ids)):
            real = mask[row].bool()
            alone = model(input_ids=ids[row, real][None])
            assert_close(together.hidden_state[row, real], alone.hidden_state[0], what=f"row {row}")


@pytest.mark.parametrize("family", ARCHS)
def test_sdpa_equals_eager(tmp_path, family):
    """The SDPA path (no attentions asked) equals the eager one, and the reference's SDPA."""
    arch = "for_masked_language_modeling"
    config = random_config(family, 8, arch)
    ref = reference(family, arch, config, 8, attn="sdpa")
    save(ref, tmp_path)
    model = bombus.load_model(tmp_path)
    ids, mask = batch(config, seed=8)
    with torch.no_grad():
        eager = model(input_ids=ids, attention_mask=mask, output_attentions=True)
        fast = model(input_ids=ids, attention_mask=mask)
        theirs = ref(input_ids=ids, attention_mask=mask)
    assert "attentions" not in fast and len(eager.attentions) == len(eager.attentions)
    assert_close(fast.logits, eager.logits, what="sdpa vs eager")
    assert_close(fast.logits, theirs.logits, what="sdpa vs reference sdpa")


@pytest.mark.parametrize("family,arch", ALL)
def test_save_pretrained_loads_in_transformers(tmp_path, family, arch):
    config = random_config(family, 9, arch)
    ref = reference(family, arch, config, 9)
    save(ref, tmp_path / "ref")
    model = bombus.load_model(tmp_path / "ref")
    model.save_pretrained(tmp_path / "ours")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again, info = type(ref).from_pretrained(tmp_path / "ours", attn_implementation="eager",
                                                output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"], info
    ids, mask = inputs_for(arch, config, 9)
    with torch.no_grad():
        theirs = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
        reloaded = again(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    compare(renamed(reloaded), theirs, mask)
    # and bombus reads its own files back
    assert_close(bombus.load_model(tmp_path / "ours")(input_ids=ids, attention_mask=mask).hidden_state,
                 model(input_ids=ids, attention_mask=mask).hidden_state, what="reload")


@pytest.mark.filterwarnings("ignore:checkpoint weights not used", "ignore:newly initialised")  # poolers
@pytest.mark.parametrize("family", ARCHS)
def test_base_checkpoint_into_head_and_back(tmp_path, family):
    config = random_config(family, 10)
    base = reference(family, "base", config, 10)
    save(base, tmp_path / "base")
    ids, mask = batch(config, seed=10)
    with torch.no_grad():
        expected = base(input_ids=ids, attention_mask=mask).last_hidden_state
    for arch in ARCHS[family]:
        if arch == "base":
            continue
        with pytest.warns(UserWarning, match="newly initialised"):
            head = bombus.load_model(tmp_path / "base", architecture=arch)
        ids_, mask_ = inputs_for(arch, config, 10)
        with torch.no_grad():
            out = head(input_ids=ids_, attention_mask=mask_)
        if arch not in ("for_causal_language_modeling", "for_multiple_choice"):
            assert_close(out.hidden_state, expected, mask=mask, what=arch)
        assert all(torch.isfinite(v).all() for v in out.values() if isinstance(v, torch.Tensor))

    arch = "for_sequence_classification"
    head_ref = reference(family, arch, random_config(family, 10, arch), 10)
    save(head_ref, tmp_path / "head")
    with pytest.warns(UserWarning, match="not used"):
        model = bombus.load_model(tmp_path / "head", architecture="base")
    backbone = getattr(head_ref, head_ref.base_model_prefix)
    with torch.no_grad():
        assert_close(model(input_ids=ids, attention_mask=mask).hidden_state,
                     backbone(input_ids=ids, attention_mask=mask).last_hidden_state, what="head into base")


@pytest.mark.parametrize("arch", ["for_token_classification", "for_multiple_choice"])
@pytest.mark.parametrize("family", ARCHS)
def test_every_input(tmp_path, family, arch):
    """token_type_ids, position_ids and input_embeddings (by their transformers names too)."""
    config = random_config(family, 11, arch)
    ref = reference(family, arch, config, 11)
    save(ref, tmp_path)
    model = bombus.load_model(tmp_path)
    ids, mask = inputs_for(arch, config, 11)
    embeds = torch.randn(*ids.shape, ref.get_input_embeddings().weight.shape[1])
    extra = {} if family == "distilbert" else {"token_type_ids": torch.randint(0, config.type_vocab_size, ids.shape)}
    positions = {"position_ids": torch.randint(2, 20, ids.shape)}
    if family == "distilbert" and arch == "for_multiple_choice":
        positions = {}  # the reference passes them on unflattened, which fails
    compare(*run_both(model, ref, input_ids=ids, attention_mask=mask, **positions, **extra), mask)
    ours, theirs = run_both(model, ref, inputs_embeds=embeds, attention_mask=mask, **extra)
    compare(ours, theirs, mask)
    with torch.no_grad():
        by_our_name = model(input_embeddings=embeds, attention_mask=mask, **extra)
    assert_close(by_our_name.logits, ours.logits)
    if arch == "for_multiple_choice":
        assert ours.logits.shape == (ids.shape[0], CHOICES)


def test_output_flags_from_the_spec(tmp_path):
    config = random_config("bert", 13)
    save(reference("bert", "base", config, 13), tmp_path)
    model = bombus.load_model(tmp_path, output_hidden_states=True, output_attentions=True)
    ids, _ = batch(config, seed=13)
    out = model(input_ids=ids)
    assert len(out.hidden_states) == config.num_hidden_layers + 1 and len(out.attentions) == config.num_hidden_layers
    assert "hidden_states" not in model(input_ids=ids, output_hidden_states=False)


def test_build_model_initialises_like_the_reference():
    """Random init: normal weights, zero biases, unit norms, zero padding rows; DistilBERT's sinusoidal
    positions equal the reference's table."""
    spec = DistilbertSpec(
        vocab_size=50, max_positions=20, hidden_size=16, num_blocks=1, num_attention_heads=2,
        intermediate_size=24, sinusoidal_pos_embds=True, architecture="for_masked_language_modeling")
    model = bombus.build_model(spec)
    ref = transformers.DistilBertModel(transformers.DistilBertConfig(
        vocab_size=50, max_position_embeddings=20, dim=16, n_layers=1, n_heads=2, hidden_dim=24,
        sinusoidal_pos_embds=True))
    assert_close(model.embeddings.position.weight, ref.embeddings.position_embeddings.weight)
    assert model.embeddings.token.weight[0].abs().sum() == 0  # pad_token_id 0
    assert model.lm_head.decoder.weight is model.embeddings.token.weight
    assert model.lm_head.decoder.bias.abs().sum() == 0


@pytest.mark.parametrize("family,arch", [("bert", "base"), ("roberta", "for_multiple_choice"), ("albert", "base")])
def test_position_ids_broadcast_over_the_batch(tmp_path, family, arch):
    """position_ids of shape [1, seq] (transformers' own default buffer shape) apply to every row."""
    config = random_config(family, 5, arch)
    ref = reference(family, arch, config, 5)
    save(ref, tmp_path)
    ids, mask = inputs_for(arch, config, 5)
    positions = torch.randperm(ids.shape[-1], generator=torch.Generator().manual_seed(5)).view(
        *[1] * (ids.dim() - 1), -1)
    compare(*run_both(bombus.load_model(tmp_path), ref, input_ids=ids, attention_mask=mask, position_ids=positions),
            mask)
