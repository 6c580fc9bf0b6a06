"""RoBERTa (Liu et al., 2019): BERT with positions counted from the padding token and a two-layer
sentence classification head on the first token; everything else is `Bert`'s.

Architectures: base (with `pooled_state`), for_masked_language_modeling, for_sequence_classification,
for_token_classification, for_question_answering, for_multiple_choice, for_causal_language_modeling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..checkpoint import Key
from ..errors import ConfigError
from ..layers.heads import ClassificationHead, LanguageModelingHead
from ..spec import option
from .bert import BASE, CAUSAL_LM, CHOICE, MASKED_LM, SEQUENCE, SPAN, TOKEN, Bert, BertSpec


@dataclass(frozen=True, kw_only=True)
class RobertaSpec(BertSpec):
    """RoBERTa options: BERT's, with RoBERTa's special tokens (HF `RobertaConfig` keys in `hf`)."""

    model_type = "roberta"
    hf_defaults = {"vocab_size": 50265}

    pad_token_id: int = option(1, "the id of the padding token; position ids count from it",
                               hf="pad_token_id")
    bos_token_id: int | None = option(0, "the id of the beginning-of-sequence token", hf="bos_token_id")
    eos_token_id: int | list | None = option(2, "the id of the end-of-sequence token", hf="eos_token_id")

    def validate(self) -> None:
        super().validate()
        if self.pad_token_id is None:
            raise ConfigError("RoBERTa needs pad_token_id: its position ids count from the padding token")


class Roberta(Bert):
    spec_class = RobertaSpec
    base_prefix = "roberta"
    hf_classes = {
        BASE: "RobertaModel",
        MASKED_LM: "RobertaForMaskedLM",
        SEQUENCE: "RobertaForSequenceClassification",
        TOKEN: "RobertaForTokenClassification",
        SPAN: "RobertaForQuestionAnswering",
        CHOICE: "RobertaForMultipleChoice",
        CAUSAL_LM: "RobertaForCausalLM",
    }
    pooled = (BASE, CHOICE)

    def _embeddings(self, size=None, **options):
        return super()._embeddings(size, position_padding_idx=self.spec.pad_token_id, **options)

    def _head(self, name: str) -> nn.Module:
        s = self.spec
        if name == "lm_head":  # always the exact GELU, whatever `activation` says
            return LanguageModelingHead(s.hidden_size, s.vocab_size, transform_activation="gelu",
                                        norm_epsilon=s.layer_norm_epsilon, bias=True)
        if name == "sequence_head":  # dropout -> dense -> tanh -> dropout -> projection, on the first token
            return ClassificationHead(s.hidden_size, s.num_labels, dense=True, dropout=self._classifier_dropout)
        if name == "choice_head":
            return ClassificationHead(s.hidden_size, 1, dropout=s.dropout_rate)
        return super()._head(name)

    def _positions(self, input_ids, length: int, cache) -> torch.Tensor:
        """`pad + 1, pad + 2, ...` over non-padding tokens, `pad` at padding (so left padding is exact);
        with a cache, counting on from the real tokens already in it. Input embeddings carry no padding
        information, so every position counts."""
        pad = self.spec.pad_token_id
        past = cache.mask.sum(-1, keepdim=True) if cache is not None else 0
        if input_ids is None:
            return pad + 1 + past + torch.arange(length, device=self.device)[None]
        real = input_ids.ne(pad).long()
        return (real.cumsum(-1) + past) * real + pad

    def _max_length(self) -> int:
        return self.spec.max_positions - self.spec.pad_token_id - 1

    checkpoint_keys = {
        **Bert.checkpoint_keys,
        "lm_head.dense": Key("lm_head.dense", in_base=False),
        "lm_head.norm": Key("lm_head.layer_norm", in_base=False),
        "lm_head.decoder.weight": Key("lm_head.decoder.weight", in_base=False),
        "lm_head.decoder.bias": Key("lm_head.decoder.bias", in_base=False, also=("lm_head.bias",)),
        "sequence_head.dense": Key("classifier.dense", in_base=False),
        "sequence_head.output": Key("classifier.out_proj", in_base=False),
    }
