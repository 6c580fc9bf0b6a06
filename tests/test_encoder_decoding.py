"""BERT and RoBERTa as decoders (for_causal_language_modeling): cross-attention, the static cache,
`logits_to_keep`, and generation against transformers."""

import warnings

import pytest
import torch

import bombus
from encoder_fixtures import batch, compare, random_config, reference
from reference import assert_cached_decoding_equals_full, assert_close, save

ARCH = "for_causal_language_modeling"


def decoder(tmp_path, family, seed, cross):
    config = random_config(family, seed, ARCH, add_cross_attention=cross, bos_token_id=0, eos_token_id=2)
    ref = reference(family, ARCH, config, seed)
    save(ref, tmp_path)
    return config, ref, bombus.load_model(tmp_path)


def encoder_states(config, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, 5, config.hidden_size, generator=g), torch.tensor([[1] * 5, [1, 1, 1, 0, 0],
                                                                             [1, 1, 1, 1, 0]])


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_decoder_parity(tmp_path, family, cross):
    """Causal attention and cross-attention (with its mask and cross_attentions) match the reference."""
    config, ref, model = decoder(tmp_path, family, 20, cross)
    ids, mask = batch(config, seed=20)
    enc, enc_mask = encoder_states(config, 20) if cross else (None, None)
    kwargs = dict(encoder_hidden_states=enc, encoder_attention_mask=enc_mask) if cross else {}
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True,
                     output_attentions=True, **kwargs)
        theirs = ref(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True,
                     output_attentions=True, **kwargs)
    compare(ours, theirs, mask)
    assert ("cross_attentions" in ours) == cross


@pytest.mark.parametrize("padding", ["none", "right", "left"])
@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_incremental_decoding_equals_full_forward(tmp_path, family, cross, padding):
    """A prefix, then one token at a time through `init_cache`, gives the full forward's logits."""
    config, _, model = decoder(tmp_path, family, 21, cross)
    ids, mask = batch(config, seed=21, length=8, padding=padding)
    enc, enc_mask = encoder_states(config, 21) if cross else (None, None)
    assert_cached_decoding_equals_full(model, ids, mask, prefix=3, cache_length=12, encoder_hidden_state=enc,
                                       encoder_attention_mask=enc_mask)


def test_logits_to_keep(tmp_path):
    config, _, model = decoder(tmp_path, "roberta", 22, False)
    ids, _ = batch(config, seed=22)
    with torch.no_grad():
        assert_close(model(input_ids=ids, logits_to_keep=1).logits, model(input_ids=ids).logits[:, -1:])


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_generate_matches_transformers(tmp_path, family):
    config, ref, model = decoder(tmp_path, family, 23, False)
    ids, mask = batch(config, seed=23, length=6, padding="left")
    ours = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ref.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                              pad_token_id=config.pad_token_id)
    assert torch.equal(ours, theirs)


def test_only_the_decoder_has_a_cache(tmp_path):
    config = random_config("roberta", 24)
    save(reference("roberta", "base", config, 24), tmp_path)
    model = bombus.load_model(tmp_path)
    with pytest.raises(bombus.errors.InputError, match="no decoder"):
        model.init_cache(1, 8)
    with pytest.raises(bombus.errors.InputError, match="has no input 'cache'"):
        model(input_ids=torch.tensor([[5, 6]]), cache=None)
