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

