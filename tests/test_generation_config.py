"""`GenerationConfig`: loading (generation_config.json, else config.json), layering, defaults as transformers,
and a clear `GenerationError` for unknown or contradictory options."""

from __future__ import annotations

import json
import random
import warnings

import pytest
import torch
from generation_fixtures import one_thread, random_batch, ref_generate, run_both, tiny  # noqa: F401

import bombus
from bombus.errors import GenerationError, SourceError
from bombus.generation import DEFAULTS, GenerationConfig, load_generation_config


def test_load_generation_config_json(tmp_path, tiny):
    from transformers import GenerationConfig as RefConfig

    ref_config = RefConfig(max_new_tokens=7, num_beams=3, length_penalty=0.5, eos_token_id=[5, 9], pad_token_id=2,
                           no_repeat_ngram_size=2, do_sample=False, output_scores=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_config.save_pretrained(tmp_path)
    loaded = load_generation_config(tmp_path)
    assert loaded.max_new_tokens == 7 and loaded.num_beams == 3 and loaded.eos_token_id == [5, 9]
    assert loaded.length_penalty == 0.5 and loaded.pad_token_id == 2 and loaded.no_repeat_ngram_size == 2
    ids, mask = random_batch(random.Random(0), 2, tiny.vocab_size)
    expected = ref_generate(tiny.ref, ids, mask, generation_config=ref_config)
    assert torch.equal(tiny.ours.generate(ids, attention_mask=mask, generation_config=loaded), expected)
    # Round trip through our own writer, which transformers reads.
    (tmp_path / "again").mkdir()
    loaded.save(tmp_path / "again")
    assert RefConfig.from_pretrained(tmp_path / "again").num_beams == 3
    assert load_generation_config(tmp_path / "again") == loaded


def test_fallback_to_config_json(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "gpt2", "n_embd": 8, "bos_token_id": 3, "eos_token_id": 4, "max_length": 50,
         "task_specific_params": {"text-generation": {"do_sample": True}}}))
    config = load_generation_config(tmp_path)
    assert config == GenerationConfig(bos_token_id=3, eos_token_id=4, max_length=50)
    with pytest.raises(SourceError):
        load_generation_config(tmp_path / "missing")


def test_checkpoint_files_tolerate_unsupported_options(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps(
        {"transformers_version": "4.40.0", "_from_model_config": True, "low_memory": False, "num_beam_groups": 1,
         "diversity_penalty": 0.5, "top_p": 0.9}))
    with pytest.warns(UserWarning, match="diversity_penalty"):
        config = load_generation_config(tmp_path)
    assert config == GenerationConfig(top_p=0.9)


@pytest.mark.parametrize("options, message", [
    ({"max_new_token": 5}, "did you mean 'max_new_tokens'"),
    ({"num_beam_groups": 2, "num_beams": 4}, "group beam search is a transformers 5 `custom_generate`"),
    ({"low_memory": True}, "low_memory.*dropped"),
    ({"watermarking_config": {"bias": 2.0}}, "watermarking"),
    ({"prompt_lookup_num_tokens": 3}, "assisted"),
    ({"top_h": 0.0, "do_sample": True}, "top_h"),
    ({"guidance_scale": float("nan")}, "guidance_scale"),
    ({"output_scores": 1, "return_dict_in_generate": True}, "output_scores"),
    ({"return_dict_in_generate": True, "output_hidden_states": True, "penalty_alpha": 0.5, "top_k": 3},
     "contrastive"),
    ({"negative_prompt_ids": torch.tensor([[5]])}, "guidance_scale"),
    ({"guidance_scale": 2.0, "negative_prompt_ids": torch.tensor([[5], [6]])}, "one negative prompt per prompt"),
    ({"max_new_tokens": 5, "max_length": 9}, "set only one"),
    ({"min_new_tokens": 2, "min_length": 9}, "set only one"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_new_tokens": 100}, "max_positions"),
    ({"max_length": 3}, "no room"),
    ({"num_return_sequences": 2}, "greedy"),
    ({"num_beams": 2, "num_return_sequences": 3}, "exceeds num_beams"),
    ({"do_sample": True, "temperature": 0.0}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"early_stopping": "sometimes"}, "early_stopping"),
    ({"eos_token_id": -1}, "eos_token_id"),
    ({"bad_words_ids": [5]}, "bad_words_ids"),
    ({"stop_strings": "stop"}, "tokenizer"),
    ({"suppress_tokens": [5], "forced_eos_token_id": 5}, "suppress_tokens"),
    ({"penalty_alpha": 0.5, "top_k": 1}, "top_k >= 2"),
    ({"num_beams": 0}, "num_beams"),
    ({"do_sample": "yes"}, "do_sample"),
])
def test_bad_options_raise(tiny, options, message):
    with pytest.raises(GenerationError, match=message):
        tiny.ours.generate(torch.tensor([[5, 6, 7, 8]]), **options)


def test_bad_inputs_raise(tiny):
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    with pytest.raises(GenerationError, match="shape"):
        tiny.ours.generate(ids, attention_mask=torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(GenerationError, match="right padding"):
        tiny.ours.generate(ids, attention_mask=torch.tensor([[1, 1, 1], [1, 1, 0]]))
    with pytest.raises(GenerationError, match="no tokens"):
        tiny.ours.generate(ids, attention_mask=torch.tensor([[1, 1, 1], [0, 0, 0]]))
    with pytest.raises(GenerationError, match="vocab_size"):
        tiny.ours.generate(torch.tensor([[5, 500]]))
    with pytest.raises(GenerationError, match="integer"):
        tiny.ours.generate(torch.tensor([[5.0, 6.0]]))
    with pytest.raises(GenerationError, match="streamer"):
        tiny.ours.generate(ids, num_beams=2, streamer=object())
    with pytest.raises(GenerationError, match="GenerationConfig"):
        tiny.ours.generate(ids, generation_config=42)


def test_defaults_as_transformers(tiny):
    ids = torch.tensor([[5, 6, 7]])
    # 20 new tokens by default...
    out, _ = run_both(tiny, ids, None, eos_token_id=None, pad_token_id=0)
    assert out.shape == (1, 23)
    # ... capped at max_positions (64).
    long = torch.randint(2, tiny.vocab_size, (1, 55))
    out, _ = run_both(tiny, long, None, eos_token_id=None, pad_token_id=0)
    assert out.shape == (1, 64)
    assert DEFAULTS["top_k"] == 50 and DEFAULTS["max_length"] == 20


def test_layers_override(tiny):
    """A checkpoint's max_length does not fight a user's max_new_tokens; kwargs beat the config argument."""
    model = bombus.load_model(tiny.folder)
    model.generation_config = GenerationConfig(max_length=40, eos_token_id=None, num_beams=1)
    ids = torch.tensor([[5, 6, 7]])
    assert model.generate(ids, eos_token_id=None, pad_token_id=0).shape == (1, 40)
    assert model.generate(ids, max_new_tokens=4, pad_token_id=0).shape == (1, 7)
    assert model.generate(ids, generation_config={"max_new_tokens": 6}, pad_token_id=0).shape == (1, 9)
    assert model.generate(ids, generation_config={"max_new_tokens": 6}, max_length=5, pad_token_id=0).shape == (1, 5)


def test_explicit_none_unsets(tiny):
    rng = random.Random(3)
    ids, mask = random_batch(rng, 2, tiny.vocab_size)
    # eos_token_id=None: the config's EOS no longer stops rows (transformers does the same).
    run_both(tiny, ids, mask, eos_token_id=None, pad_token_id=0, max_new_tokens=12)
    torch.manual_seed(0)
    expected = ref_generate(tiny.ref, ids, mask, do_sample=True, top_k=None, max_new_tokens=6)
    torch.manual_seed(0)
    assert torch.equal(tiny.ours.generate(ids, attention_mask=mask, do_sample=True, top_k=None, max_new_tokens=6),
                       expected)


def test_pad_falls_back_to_first_eos(tiny):
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    eos = int(tiny.ours.generate(ids, max_new_tokens=3, eos_token_id=None, pad_token_id=0)[0, 4])
    out = tiny.ours.generate(ids, max_new_tokens=8, eos_token_id=[eos, 99])
    assert torch.equal(out, ref_generate(tiny.ref, ids, None, max_new_tokens=8, eos_token_id=[eos, 99]))


def test_docs_and_update():
    docs = GenerationConfig.docs()
    for name in ("max_new_tokens", "top_p", "penalty_alpha", "stop_strings", "seed"):
        assert name in docs
    assert "top_k (default 50)" in docs
    config = GenerationConfig(top_k=5).update(top_p=0.5)
    assert config.to_dict() == {"top_k": 5, "top_p": 0.5}
    with pytest.raises(GenerationError, match="did you mean"):
        config.update(topp=0.3)
