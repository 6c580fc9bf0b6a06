"""Token ids outside the embedding tables raise a bombus InputError naming the input, the id and the size,
in every family (not the embedding's bare IndexError)."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

import bombus
from bombus.errors import InputError

CONFIGS = {
    "gpt2": transformers.GPT2Config(vocab_size=57, n_embd=8, n_head=2, n_layer=1, n_positions=16),
    "bert": transformers.BertConfig(vocab_size=61, hidden_size=8, num_attention_heads=2, num_hidden_layers=1,
                                    intermediate_size=16, max_position_embeddings=16, type_vocab_size=3),
    "roberta": transformers.RobertaConfig(vocab_size=53, hidden_size=8, num_attention_heads=2, num_hidden_layers=1,
                                          intermediate_size=16, max_position_embeddings=18, type_vocab_size=1),
    "distilbert": transformers.DistilBertConfig(vocab_size=47, dim=8, n_heads=2, n_layers=1, hidden_dim=16,
                                                max_position_embeddings=16),
    "albert": transformers.AlbertConfig(vocab_size=59, embedding_size=4, hidden_size=8, num_attention_heads=2,
                                        num_hidden_layers=1, intermediate_size=16, max_position_embeddings=16,
                                        type_vocab_size=2),
    "llama": transformers.LlamaConfig(vocab_size=51, hidden_size=8, num_attention_heads=2, num_key_value_heads=1,
                                      num_hidden_layers=1, intermediate_size=16, max_position_embeddings=16),
}
# family -> (an architecture, whether its input is [batch, choices, seq])
ARCHITECTURES = {"gpt2": ("for_causal_language_modeling", False), "bert": ("for_multiple_choice", True),
                 "roberta": ("for_causal_language_modeling", False), "distilbert": ("base", False),
                 "albert": ("for_masked_language_modeling", False), "llama": ("base", False)}


def build(family: str, tmp_path, architecture: str = "base"):
    config = CONFIGS[family].to_dict()
    if family == "roberta" and architecture == "for_causal_language_modeling":
        config["is_decoder"] = True
    (tmp_path / "config.json").write_text(json.dumps(config))
    return bombus.build_model(bombus.load_spec(tmp_path, architecture))


@pytest.mark.parametrize("family", CONFIGS)
@pytest.mark.parametrize("head", [False, True])
def test_out_of_range_input_ids(tmp_path, family, head):
    architecture, choices = ARCHITECTURES[family] if head else ("base", False)
    model = build(family, tmp_path, architecture)
    vocab = CONFIGS[family].vocab_size
    shape = (2, 2, 5) if choices else (2, 5)
    ids = torch.randint(0, vocab, shape)
    ids.view(-1)[-1] = vocab - 1
    with torch.no_grad():
        model(input_ids=ids)  # the largest valid id is fine
        for bad in (vocab, vocab + 1000, -1):
            wrong = ids.clone()
            wrong[(1, 1, 3) if choices else (1, 3)] = bad
            where = r"\[1, 1, 3\]" if choices else r"\[1, 3\]"
            with pytest.raises(InputError, match=rf"input_ids holds id {bad} at position {where}.*vocab_size is "
                                                 rf"{vocab} \(valid ids: 0 to {vocab - 1}\)"):
                model(input_ids=wrong)


@pytest.mark.parametrize("family,limit,size_name", [("bert", 3, "max_token_types"), ("albert", 2, "max_token_types"),
                                                    ("roberta", 1, "max_token_types"), ("gpt2", 57, "vocab_size")])
def test_out_of_range_token_type_ids(tmp_path, family, limit, size_name):
    model = build(family, tmp_path)
    ids = torch.randint(0, 40, (2, 4))
    types = torch.zeros_like(ids)
    with torch.no_grad():
        model(input_ids=ids, token_type_ids=types + limit - 1)
        types[0, 2] = limit
        with pytest.raises(InputError, match=rf"token_type_ids holds id {limit} at position \[0, 2\].*"
                                             rf"{size_name} is {limit}"):
            model(input_ids=ids, token_type_ids=types)



def _bad_inputs(family: str, choices: bool):
    """(what, inputs, message) for inputs that used to end in a bare torch error deep inside the model."""
    shape = (2, 2, 5) if choices else (2, 5)
    ids, ones = torch.randint(2, 40, shape), torch.ones(shape, dtype=torch.long)
    width = 4 if family == "albert" else 8
    cases = [
        ("float ids", dict(input_ids=ids.float()), "integer token ids"),
        ("list ids", dict(input_ids=ids.tolist()), "must be a torch tensor"),
        ("empty", dict(input_ids=ids[..., :0]), "empty"),
        ("mask shape", dict(input_ids=ids, attention_mask=ones[..., :4]), "attention_mask has shape"),
        ("4D mask", dict(input_ids=ids, attention_mask=torch.ones(*shape, 5)), "attention_mask has shape"),
        ("positions shape", dict(input_ids=ids, position_ids=torch.arange(3)), "position_ids has shape"),
        ("embeddings width", dict(input_embeddings=torch.randn(*shape, width + 1)), f"embeds tokens in {width}"),
        ("integer embeddings", dict(input_embeddings=ones[..., None].expand(*shape, width)), "floating point"),
    ]
    if family != "llama":  # learned position tables
        cases.append(("positions range", dict(input_ids=ids, position_ids=ones * 40), "position_ids holds id 40"))
    if family != "distilbert" and family != "llama":
        cases.append(("types shape", dict(input_ids=ids, token_type_ids=ones[..., :3]), "token_type_ids has shape"))
    return cases


@pytest.mark.parametrize("family", CONFIGS)
def test_bad_inputs_raise_input_error(tmp_path, family):
    architecture, choices = ARCHITECTURES[family]
    model = build(family, tmp_path, architecture)
    for what, inputs, message in _bad_inputs(family, choices):
        with pytest.raises(InputError, match=message), torch.no_grad():
            model(**inputs)


@pytest.mark.parametrize("family,architecture,labels,message", [
    ("gpt2", "for_causal_language_modeling", torch.zeros(7, dtype=torch.long), r"labels has shape \[7\]"),
    ("gpt2", "for_causal_language_modeling", torch.full((2, 5), 99), "labels holds 99"),
    ("llama", "for_causal_language_modeling", torch.rand(2, 5), "integer class ids"),
    ("bert", "for_multiple_choice", torch.tensor([0, 2]), "labels holds 2"),
    ("albert", "for_masked_language_modeling", torch.zeros(2, 4, dtype=torch.long), "labels has shape"),
    ("distilbert", "for_sequence_classification", torch.tensor([5, 0]), "labels holds 5"),
    ("roberta", "for_token_classification", torch.rand(2, 5), "integer class ids"),
])
def test_bad_labels_raise_input_error(tmp_path, family, architecture, labels, message):
    model = build(family, tmp_path, architecture)
    choices = architecture == "for_multiple_choice"
    ids = torch.randint(2, 40, (2, 2, 5) if choices else (2, 5))
    with torch.no_grad():
        with pytest.raises(InputError, match=message):
            model(input_ids=ids, labels=labels)


def test_encoder_states_and_choice_tokens(tmp_path):
    config = dict(CONFIGS["gpt2"].to_dict(), add_cross_attention=True)
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = bombus.build_model(bombus.load_spec(tmp_path, "for_causal_language_modeling"))
    ids = torch.randint(0, 40, (2, 5))
    with torch.no_grad():
        model(input_ids=ids, encoder_hidden_states=torch.randn(2, 3, 8), encoder_attention_mask=torch.ones(2, 3))
        for states, mask, message in [(torch.randn(2, 3, 7), None, "encoder_hidden_state has shape"),
                                      (torch.randn(3, 3, 8), None, "one row per input row"),
                                      (torch.randn(2, 3, 8), torch.ones(2, 4), "encoder_attention_mask has shape")]:
            with pytest.raises(InputError, match=message):
                model(input_ids=ids, encoder_hidden_states=states, encoder_attention_mask=mask)
    double = bombus.build_model(bombus.load_spec(tmp_path, "for_double_heads"))
    ids = torch.randint(0, 40, (2, 3, 5))
    with torch.no_grad():
        double(input_ids=ids, mc_token_ids=torch.full((2, 3), 4))
        with pytest.raises(InputError, match=r"mc_token_ids must be positions in \[0, 4\]"):
            double(input_ids=ids, mc_token_ids=torch.full((2, 3), 5))
