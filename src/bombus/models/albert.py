"""ALBERT (Lan et al., 2019): BERT with factorised embeddings (`embedding_size`, then a projection to
`hidden_size`) and parameters shared across blocks: `num_groups` groups of `block_depth` blocks each, block
i running group `int(i / (num_blocks / num_groups))`, as the reference maps them.

Architectures: base, for_masked_language_modeling, for_sequence_classification, for_token_classification,
for_question_answering, for_multiple_choice, for_pre_training (masked LM + sentence order prediction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from ..checkpoint import Key
from ..errors import ConfigError
from ..layers.heads import ClassificationHead, LanguageModelingHead
from ..layers.transformer import Block, Transformer
from ..spec import option
from .bert import (BASE, CHOICE, CLASSIFIER_KEYS, EMBEDDING_KEYS, MASKED_LM, PRE_TRAINING, SEQUENCE, SPAN, TOKEN,
                   Bert, EncoderSpec, NumericClassifierDropout)

# Block j of group g, ours and the reference's.
_OURS, _THEIRS = "transformer.groups.{g}.{j}.", "encoder.albert_layer_groups.{g}.albert_layers.{j}."


@dataclass(frozen=True, kw_only=True)
class AlbertSpec(NumericClassifierDropout, EncoderSpec):
    """ALBERT options: BERT's encoder options with ALBERT's defaults, plus the factorised embeddings and
    the block sharing (Bumblebee names; HF `AlbertConfig` keys in `hf`)."""

    model_type = "albert"
    hf_defaults = {"hidden_size": 4096, "num_attention_heads": 64, "activation": "gelu_new",
                   "classifier_dropout_rate": 0.1}
    use_cross_attention: ClassVar[bool] = False  # ALBERT has no decoder

    vocab_size: int = option(30000, "the vocabulary size of the token embedding", hf="vocab_size")
    embedding_size: int = option(128, "the dimensionality of all input embeddings", hf="embedding_size")
    num_blocks: int = option(12, "the number of blocks in the encoder; each block contains block_depth "
                             "Transformer blocks", hf="num_hidden_layers")
    num_groups: int = option(1, "the number of groups of encoder blocks; parameters in the same group are "
                             "shared", hf="num_hidden_groups")
    block_depth: int = option(1, "the number of Transformer blocks in each encoder block", hf="inner_group_num")
    intermediate_size: int = option(16384, "the dimensionality of the intermediate (feed-forward) layer in the "
                                    "encoder", hf="intermediate_size")
    dropout_rate: float = option(0.0, "the dropout rate for embedding and encoder", hf="hidden_dropout_prob")
    attention_dropout_rate: float = option(0.0, "the dropout rate for attention weights",
                                           hf="attention_probs_dropout_prob")
    classifier_dropout_rate: float | None = option(None, "the dropout rate for the classification head; None "
                                                   "means dropout_rate", hf="classifier_dropout_prob")
    bos_token_id: int | None = option(2, "the id of the beginning-of-sequence token", hf="bos_token_id")
    eos_token_id: int | list | None = option(3, "the id of the end-of-sequence token", hf="eos_token_id")

    def validate(self) -> None:
        super().validate()
        if not 1 <= self.num_groups <= self.num_blocks or self.block_depth < 1:
            raise ConfigError(f"ALBERT needs 1 <= num_groups <= num_blocks and block_depth >= 1, found "
                              f"num_groups={self.num_groups}, num_blocks={self.num_blocks}, "
                              f"block_depth={self.block_depth}")

class Albert(Bert):
    spec_class = AlbertSpec
    base_prefix = "albert"
    hf_classes = {
        BASE: "AlbertModel",
        MASKED_LM: "AlbertForMaskedLM",
        SEQUENCE: "AlbertForSequenceClassification",
        TOKEN: "AlbertForTokenClassification",
        SPAN: "AlbertForQuestionAnswering",
        CHOICE: "AlbertForMultipleChoice",
        PRE_TRAINING: "AlbertForPreTraining",
    }
    pooled = (BASE, SEQUENCE, CHOICE, PRE_TRAINING)
    sentence_task = ("sentence_order_label", "sentence_order_prediction_logits")

    def _embeddings(self, size=None, **options):
        return super()._embeddings(self.spec.embedding_size, hidden_size=self.spec.hidden_size, **options)

    def _transformer(self) -> Transformer:
        s, options = self.spec, self._block_options()
        groups = [[Block(options) for _ in range(s.block_depth)] for _ in range(s.num_groups)]
        return Transformer(groups, group_of=[int(i / (s.num_blocks / s.num_groups)) for i in range(s.num_blocks)])

    def _head(self, name: str) -> nn.Module:
        s = self.spec
        if name == "lm_head":  # projects back to the embedding size, whose weights it shares
            return LanguageModelingHead(s.hidden_size, s.vocab_size, embedding_size=s.embedding_size,
                                        transform_activation=s.activation, norm_epsilon=s.layer_norm_epsilon,
                                        bias=True)
        if name == "sentence_head":
            return ClassificationHead(s.hidden_size, s.num_labels, dropout=self._classifier_dropout)
        return super()._head(name)

    checkpoint_keys = {
        **EMBEDDING_KEYS,
        **CLASSIFIER_KEYS,
        "embeddings.projection": "encoder.embedding_hidden_mapping_in",
        _OURS + "attention.query": _THEIRS + "attention.query",
        _OURS + "attention.key": _THEIRS + "attention.key",
        _OURS + "attention.value": _THEIRS + "attention.value",
        _OURS + "attention.output": _THEIRS + "attention.dense",
        _OURS + "attention_norm": _THEIRS + "attention.LayerNorm",
        _OURS + "mlp.intermediate": _THEIRS + "ffn",
        _OURS + "mlp.output": _THEIRS + "ffn_output",
        _OURS + "mlp_norm": _THEIRS + "full_layer_layer_norm",
        "pooler.dense": "pooler",
        "lm_head.dense": Key("predictions.dense", in_base=False),
        "lm_head.norm": Key("predictions.LayerNorm", in_base=False),
        "lm_head.decoder.weight": Key("predictions.decoder.weight", in_base=False),
        "lm_head.decoder.bias": Key("predictions.decoder.bias", in_base=False, also=("predictions.bias",)),
        "sentence_head.output": Key("sop_classifier.classifier", in_base=False),
    }
