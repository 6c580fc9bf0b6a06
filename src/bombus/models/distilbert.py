"""DistilBERT (Sanh et al., 2019): a 6-block BERT distilled from BERT-base, without token types or pooler;
positions are learned, or initialised with the fixed sinusoidal table (`sinusoidal_pos_embds`). Sentence
heads read the first token through a ReLU layer. `token_type_ids` (which BERT tokenizers return) are
accepted and have no effect.

Architectures: base, for_masked_language_modeling, for_sequence_classification, for_token_classification,
for_question_answering, for_multiple_choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..checkpoint import Key
from ..errors import ConfigError
from ..layers.embeddings import sinusoidal_table
from ..layers.heads import ClassificationHead
from ..spec import Spec, option
from .bert import (BASE, CHOICE, CLASSIFIER_KEYS, EMBEDDING_KEYS, MASKED_LM, SEQUENCE, SPAN, TOKEN, Bert,
                   NumericClassifierDropout, check_heads)


@dataclass(frozen=True, kw_only=True)
class DistilbertSpec(NumericClassifierDropout, Spec):
    """DistilBERT options (Bumblebee names; HF `DistilBertConfig` keys in `hf`)."""

    model_type = "distilbert"
    hf_defaults = {"classifier_dropout_rate": 0.2}
    # Fixed by the reference, not options.
    max_token_types: ClassVar[int] = 0
    layer_norm_epsilon: ClassVar[float] = 1e-12

    vocab_size: int = option(30522, "the vocabulary size of the token embedding", hf="vocab_size")
    max_positions: int = option(512, "the vocabulary size of the position embedding: the longest sequence the "
                                "model can process", hf="max_position_embeddings")
    sinusoidal_pos_embds: bool = option(False, "whether position embeddings start from the fixed sinusoidal "
                                        "table instead of random values", hf="sinusoidal_pos_embds")
    hidden_size: int = option(768, "the dimensionality of hidden layers", hf=("dim", "hidden_size"))
    num_blocks: int = option(6, "the number of Transformer blocks in the encoder",
                             hf=("n_layers", "num_hidden_layers"))
    num_attention_heads: int = option(12, "the number of attention heads for each attention layer in the "
                                      "encoder", hf=("n_heads", "num_attention_heads"))
    intermediate_size: int = option(3072, "the dimensionality of the intermediate layer in the transformer "
                                    "feed-forward network (FFN) in the encoder", hf="hidden_dim")
    activation: str = option("gelu", "the activation function", hf="activation")
    dropout_rate: float = option(0.1, "the dropout rate for embedding and encoder", hf="dropout")
    attention_dropout_rate: float = option(0.1, "the dropout rate for attention weights", hf="attention_dropout")
    classifier_dropout_rate: float | None = option(None, "the dropout rate for the classification head; None "
                                                   "means dropout_rate", hf="seq_classif_dropout")
    qa_dropout_rate: float = option(0.1, "the dropout rate before the question answering head",
                                    hf="qa_dropout")
    use_cross_attention: bool = option(False, "whether cross-attention layers should be added to the model; "
                                       "DistilBERT has no decoder, so it must stay false")
    pad_token_id: int | None = option(0, "the id of the padding token", hf="pad_token_id")

    def validate(self) -> None:
        check_heads(self)
        if self.use_cross_attention:
            raise ConfigError("DistilBERT has no decoder: use_cross_attention must be false")

class Distilbert(Bert):
    spec_class = DistilbertSpec
    base_prefix = "distilbert"
    hf_classes = {
        BASE: "DistilBertModel",
        MASKED_LM: "DistilBertForMaskedLM",
        SEQUENCE: "DistilBertForSequenceClassification",
        TOKEN: "DistilBertForTokenClassification",
        SPAN: "DistilBertForQuestionAnswering",
        CHOICE: "DistilBertForMultipleChoice",
    }
    pooled = ()

    def _head(self, name: str) -> nn.Module:
        s = self.spec
        if name in ("sequence_head", "choice_head"):  # first token -> dense -> ReLU -> dropout -> projection
            return ClassificationHead(s.hidden_size, s.num_labels if name == "sequence_head" else 1, dense=True,
                                      activation_name="relu", dropout=self._classifier_dropout,
                                      dropout_first=False)
        if name == "token_head":
            return ClassificationHead(s.hidden_size, s.num_labels, dropout=s.dropout_rate)
        if name == "span_head":
            return ClassificationHead(s.hidden_size, 2, dropout=s.qa_dropout_rate)
        return super()._head(name)

    def init_module(self, module: nn.Module, leaf: str | None = None) -> None:
        super().init_module(module, leaf)
        if module is self.embeddings.position and self.spec.sinusoidal_pos_embds:
            with torch.no_grad():
                module.weight.copy_(sinusoidal_table(*module.weight.shape))

    checkpoint_keys = {
        **EMBEDDING_KEYS,
        **CLASSIFIER_KEYS,
        "transformer.groups.{i}.0.attention.query": "transformer.layer.{i}.attention.q_lin",
        "transformer.groups.{i}.0.attention.key": "transformer.layer.{i}.attention.k_lin",
        "transformer.groups.{i}.0.attention.value": "transformer.layer.{i}.attention.v_lin",
        "transformer.groups.{i}.0.attention.output": "transformer.layer.{i}.attention.out_lin",
        "transformer.groups.{i}.0.attention_norm": "transformer.layer.{i}.sa_layer_norm",
        "transformer.groups.{i}.0.mlp.intermediate": "transformer.layer.{i}.ffn.lin1",
        "transformer.groups.{i}.0.mlp.output": "transformer.layer.{i}.ffn.lin2",
        "transformer.groups.{i}.0.mlp_norm": "transformer.layer.{i}.output_layer_norm",
        "lm_head.dense": Key("vocab_transform", in_base=False),
        "lm_head.norm": Key("vocab_layer_norm", in_base=False),
        "lm_head.decoder": Key("vocab_projector", in_base=False),
        "sequence_head.dense": Key("pre_classifier", in_base=False),
        "choice_head.dense": Key("pre_classifier", in_base=False),
    }
