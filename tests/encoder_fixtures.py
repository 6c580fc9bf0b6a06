"""Reference models, inputs and comparisons for the encoder families (BERT, RoBERTa, DistilBERT, ALBERT).

Every family x architecture maps to its transformers class; `random_config` draws a small random config in
the family's own HF field names; `reference` builds the model with every parameter randomised.
"""

from __future__ import annotations

import random
import warnings

import torch
import transformers

from reference import assert_close, randomize

T = transformers
ARCHS = {
    "bert": {
        "base": T.BertModel, "for_masked_language_modeling": T.BertForMaskedLM,
        "for_sequence_classification": T.BertForSequenceClassification,
        "for_token_classification": T.BertForTokenClassification,
        "for_question_answering": T.BertForQuestionAnswering, "for_multiple_choice": T.BertForMultipleChoice,
        "for_next_sentence_prediction": T.BertForNextSentencePrediction,
        "for_pre_training": T.BertForPreTraining, "for_causal_language_modeling": T.BertLMHeadModel,
    },
    "roberta": {
        "base": T.RobertaModel, "for_masked_language_modeling": T.RobertaForMaskedLM,
        "for_sequence_classification": T.RobertaForSequenceClassification,
        "for_token_classification": T.RobertaForTokenClassification,
        "for_question_answering": T.RobertaForQuestionAnswering,
        "for_multiple_choice": T.RobertaForMultipleChoice, "for_causal_language_modeling": T.RobertaForCausalLM,
    },
    "distilbert": {
        "base": T.DistilBertModel, "for_masked_language_modeling": T.DistilBertForMaskedLM,
        "for_sequence_classification": T.DistilBertForSequenceClassification,
        "for_token_classification": T.DistilBertForTokenClassification,
        "for_question_answering": T.DistilBertForQuestionAnswering,
        "for_multiple_choice": T.DistilBertForMultipleChoice,
    },
    "albert": {
        "base": T.AlbertModel, "for_masked_language_modeling": T.AlbertForMaskedLM,
        "for_sequence_classification": T.AlbertForSequenceClassification,
        "for_token_classification": T.AlbertForTokenClassification,
        "for_question_answering": T.AlbertForQuestionAnswering, "for_multiple_choice": T.AlbertForMultipleChoice,
        "for_pre_training": T.AlbertForPreTraining,
    },
}
ALL = [(family, arch) for family, archs in ARCHS.items() for arch in archs]
ACTIVATIONS = ["gelu", "relu", "gelu_new", "silu", "tanh", "gelu_pytorch_tanh"]

# transformers output name -> bombus output name
OUTPUTS = {"last_hidden_state": "hidden_state", "pooler_output": "pooled_state", "logits": "logits",
           "prediction_logits": "language_modeling_logits",
           "seq_relationship_logits": "next_sentence_prediction_logits",
           "sop_logits": "sentence_order_prediction_logits", "start_logits": "start_logits",
           "end_logits": "end_logits", "loss": "loss"}


def random_config(family: str, seed: int, arch: str = "base", **overrides) -> transformers.PretrainedConfig:
    """A small random config of `family`; causal LM configs are decoders (`is_decoder`)."""
    rng = random.Random(seed)
    heads = rng.choice([1, 2, 4])
    hidden = heads * rng.choice([4, 8])
    common = dict(vocab_size=rng.randint(60, 120), max_position_embeddings=rng.choice([40, 64]),
                  num_labels=rng.randint(1, 4) if seed % 2 else 3)
    if arch in ("for_question_answering", "for_pre_training"):
        common["num_labels"] = 2  # the reference's span and sentence-order heads need two
    if family == "distilbert":
        config = dict(common, dim=hidden, n_heads=heads, n_layers=rng.randint(1, 3),
                      hidden_dim=rng.choice([16, 37, 64]), activation=rng.choice(["gelu", "relu"]),
                      sinusoidal_pos_embds=rng.random() < 0.5, pad_token_id=0)
        return transformers.DistilBertConfig(**{**config, **overrides})
    config = dict(common, hidden_size=hidden, num_attention_heads=heads, num_hidden_layers=rng.randint(1, 3),
                  intermediate_size=rng.choice([16, 37, 64]), hidden_act=rng.choice(ACTIVATIONS),
                  type_vocab_size=rng.randint(1, 3), layer_norm_eps=rng.choice([1e-12, 1e-5]))
    if family == "albert":
        groups = rng.randint(1, config["num_hidden_layers"])
        config.update(embedding_size=rng.choice([8, 12, hidden]), num_hidden_groups=groups,
                      inner_group_num=rng.randint(1, 2), pad_token_id=0)
        return transformers.AlbertConfig(**{**config, **overrides})
    config.update(pad_token_id=1 if family == "roberta" else rng.choice([0, 3]),
                  is_decoder=arch == "for_causal_language_modeling", add_cross_attention=False)
    cls = transformers.RobertaConfig if family == "roberta" else transformers.BertConfig
    return cls(**{**config, **overrides})


def reference(family: str, arch: str, config, seed: int = 0, attn: str = "eager"):
    """The transformers model of `family`/`arch` with every parameter random."""
    config._attn_implementation = attn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ARCHS[family][arch](config)
    return randomize(model, seed)


def batch(config, batch_size: int = 3, length: int = 9, seed: int = 0, padding: str = "right",
          choices: int | None = None):
    """Random ids (never the pad token, except at padding) and their attention mask; `choices` gives
    `[batch, choices, length]`."""
    g = torch.Generator().manual_seed(seed)
    rows = batch_size * (choices or 1)
    pad = config.pad_token_id
    ids = torch.randint(0, config.vocab_size - 1, (rows, length), generator=g)
    ids = ids + (ids >= pad).long()  # skip the pad id
    mask = torch.ones(rows, length, dtype=torch.long)
    for row in range(1, rows):
        n = int(torch.randint(2, length, (1,), generator=g))
        if padding == "right":
            mask[row, n:] = 0
        elif padding == "left":
            mask[row, : length - n] = 0
    ids = ids.masked_fill(mask == 0, pad)
    if choices:
        return ids.view(batch_size, choices, length), mask.view(batch_size, choices, length)
    return ids, mask


def labels_for(arch: str, config, ids: torch.Tensor, mask: torch.Tensor, seed: int = 0) -> dict:
    """Label inputs that make each architecture compute its loss."""
    g = torch.Generator().manual_seed(seed)
    batch_size = ids.shape[0]
    if arch in ("for_masked_language_modeling", "for_causal_language_modeling", "for_pre_training"):
        labels = {"labels": ids.masked_fill(mask == 0, -100).masked_fill(torch.rand(ids.shape, generator=g) < 0.3,
                                                                          -100)}
        if arch == "for_pre_training":
            key = "sentence_order_label" if isinstance(config, transformers.AlbertConfig) else "next_sentence_label"
            labels[key] = torch.randint(0, 2, (batch_size,), generator=g)
        return labels
    if arch == "for_token_classification":
        return {"labels": torch.randint(0, config.num_labels, ids.shape, generator=g).masked_fill(mask == 0, -100)}
    if arch == "for_sequence_classification":
        if config.num_labels == 1:
            return {"labels": torch.randn(batch_size, generator=g)}
        return {"labels": torch.randint(0, config.num_labels, (batch_size,), generator=g)}
    if arch == "for_next_sentence_prediction":
        return {"labels": torch.randint(0, 2, (batch_size,), generator=g)}
    if arch == "for_multiple_choice":
        return {"labels": torch.randint(0, ids.shape[1], (batch_size,), generator=g)}
    if arch == "for_question_answering":
        return {"start_positions": torch.tensor([0, 3, 50, 2])[:batch_size],
                "end_positions": torch.tensor([2, 4, 1, 7])[:batch_size]}
    return {}


def renamed(output) -> dict:
    """A transformers output under bombus' names (to compare two references with `compare`)."""
    names = {**OUTPUTS, "hidden_states": "hidden_states", "attentions": "attentions"}
    return {name: getattr(output, ref_name) for ref_name, name in names.items()
            if getattr(output, ref_name, None) is not None}


def _rows(t: torch.Tensor, mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """`t` in the reference's layout (multiple choice: flat rows), keeping the non-padding positions."""
    t = t.reshape(like.shape)
    if mask is None or t.dim() < 2 or t.shape[:2] != mask.shape:
        return t
    return t[mask.bool()]


def compare(ours, ref, mask: torch.Tensor | None = None) -> int:
    """Assert every output the reference gave equals ours (at non-padding positions where `mask` is
    given, `[rows, seq]`); returns how many outputs were compared."""
    if mask is not None:
        mask = mask.reshape(-1, mask.shape[-1])
    compared = 0
    for ref_name, name in OUTPUTS.items():
        value = getattr(ref, ref_name, None)
        if value is None:
            continue
        assert name in ours, f"bombus output lacks {name} (reference has {ref_name})"
        assert_close(_rows(ours[name], mask, value), _rows(value, mask, value), what=name)
        compared += 1
    for group in ("hidden_states", "attentions", "cross_attentions"):
        values = getattr(ref, group, None)
        if values is None or (not values and group not in ours):
            continue
        assert len(ours[group]) == len(values), f"{group}: {len(ours[group])} != reference {len(values)}"
        for i, (a, b) in enumerate(zip(ours[group], values)):
            if group != "hidden_states":  # [rows, heads, query, key]: keep the non-padding queries
                a, b = a.reshape(b.shape).transpose(1, 2), b.transpose(1, 2)
            assert_close(_rows(a, mask, b), _rows(b, mask, b), what=f"{group}[{i}]")
            compared += 1
    assert compared > 0
    return compared
