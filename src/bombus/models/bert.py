"""BERT (Devlin et al., 2019): a post-norm transformer encoder over token + learned position + token type
embeddings, with a pooler (`tanh(dense(first token))`) for sentence-level heads.

`Bert` is also the template of the other encoder families: RoBERTa, ALBERT and DistilBERT subclass it and
change only their pieces (`_embeddings`, `_transformer`, `_positions`, `_head`, the pooled architectures
and the checkpoint table).

Architectures: base, for_masked_language_modeling, for_sequence_classification, for_token_classification,
for_question_answering, for_multiple_choice (input `[batch, num_choices, seq]`), for_next_sentence_prediction,
for_pre_training (masked LM + next sentence), for_causal_language_modeling (a decoder: causal attention,
optional cross-attention over `encoder_hidden_state`, a static KV cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import Key
from ..errors import ConfigError, InputError
from ..layers.embeddings import Embeddings
from ..layers.heads import ClassificationHead, LanguageModelingHead, Pooler
from ..layers.losses import causal_lm_loss, check_class_labels, classification_loss, span_loss, token_loss
from ..layers.transformer import Block, BlockOptions, Transformer
from ..model import Model
from ..output import Output
from ..spec import Spec, option

BASE, CAUSAL_LM, MASKED_LM = "base", "for_causal_language_modeling", "for_masked_language_modeling"
SEQUENCE, TOKEN, SPAN = "for_sequence_classification", "for_token_classification", "for_question_answering"
CHOICE, NEXT_SENTENCE, PRE_TRAINING = "for_multiple_choice", "for_next_sentence_prediction", "for_pre_training"

# The head modules each architecture adds to the backbone (built by `Bert._head`).
HEADS = {MASKED_LM: ("lm_head",), CAUSAL_LM: ("lm_head",), PRE_TRAINING: ("lm_head", "sentence_head"),
         NEXT_SENTENCE: ("sentence_head",), SEQUENCE: ("sequence_head",), TOKEN: ("token_head",),
         SPAN: ("span_head",), CHOICE: ("choice_head",)}


# Checkpoint keys the encoder families share: embeddings, and the one-layer classification heads.
EMBEDDING_KEYS = {
    "embeddings.token": "embeddings.word_embeddings",
    "embeddings.position": "embeddings.position_embeddings",
    "embeddings.token_type": "embeddings.token_type_embeddings",
    "embeddings.norm": "embeddings.LayerNorm",
}
CLASSIFIER_KEYS = {
    "sequence_head.output": Key("classifier", in_base=False),
    "token_head.output": Key("classifier", in_base=False),
    "choice_head.output": Key("classifier", in_base=False),
    "span_head.output": Key("qa_outputs", in_base=False),
}


def check_heads(spec: Spec) -> None:
    """Encoder specs: the heads must split the hidden size evenly."""
    if spec.hidden_size % spec.num_attention_heads:
        raise ConfigError(f"hidden_size={spec.hidden_size} is not a multiple of "
                          f"num_attention_heads={spec.num_attention_heads}")
    if spec.pad_token_id is not None and not 0 <= spec.pad_token_id < spec.vocab_size:
        raise ConfigError(f"pad_token_id={spec.pad_token_id} is not a token id: vocab_size is {spec.vocab_size}")


class NumericClassifierDropout:
    """Spec mixin for references (ALBERT, DistilBERT) whose heads need a number where the spec's None
    means "dropout_rate": config.json gets that number."""

    def _value_to_hf(self, name: str, value: Any) -> Any:
        if name == "classifier_dropout_rate" and value is None:
            return self.dropout_rate
        return super()._value_to_hf(name, value)


@dataclass(frozen=True, kw_only=True)
class EncoderSpec(Spec):
    """The options BERT and ALBERT share (Bumblebee names; HF `BertConfig` keys in `hf`)."""

    vocab_size: int = option(30522, "the vocabulary size of the token embedding", hf="vocab_size")
    max_positions: int = option(512, "the vocabulary size of the position embedding: the longest sequence the "
                                "model can process", hf="max_position_embeddings")
    max_token_types: int = option(2, "the vocabulary size of the token type (segment) embedding: how many "
                                  "token groups the input can distinguish", hf="type_vocab_size")
    hidden_size: int = option(768, "the dimensionality of hidden layers", hf="hidden_size")
    num_blocks: int = option(12, "the number of Transformer blocks in the encoder", hf="num_hidden_layers")
    num_attention_heads: int = option(12, "the number of attention heads for each attention layer in the "
                                      "encoder", hf="num_attention_heads")
    intermediate_size: int = option(3072, "the dimensionality of the intermediate (feed-forward) layer in the "
                                    "encoder", hf="intermediate_size")
    activation: str = option("gelu", "the activation function", hf="hidden_act")
    dropout_rate: float = option(0.1, "the dropout rate for embedding and encoder", hf="hidden_dropout_prob")
    attention_dropout_rate: float = option(0.1, "the dropout rate for attention weights",
                                           hf="attention_probs_dropout_prob")
    classifier_dropout_rate: float | None = option(None, "the dropout rate for the classification head; None "
                                                   "means dropout_rate", hf="classifier_dropout")
    layer_norm_epsilon: float = option(1e-12, "the epsilon used by the layer normalization layers",
                                       hf="layer_norm_eps")
    pad_token_id: int | None = option(0, "the id of the padding token", hf="pad_token_id")

    def validate(self) -> None:
        check_heads(self)

    @classmethod
    def _adapt_from_hf(cls, values: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        kind = config.get("position_embedding_type", "absolute")
        if kind not in (None, "absolute"):
            raise ConfigError(f"position_embedding_type={kind!r} is not supported (transformers 5 dropped it "
                              "too); bombus supports 'absolute' position embeddings")
        return super()._adapt_from_hf(values, config)


@dataclass(frozen=True, kw_only=True)
class BertSpec(EncoderSpec):
    """BERT options. Attention is causal exactly in for_causal_language_modeling: config.json's
    `is_decoder` is written so on save, and not read."""

    model_type = "bert"

    use_cross_attention: bool = option(False, "whether cross-attention layers should be added to the model "
                                       "(only relevant for the decoder, for_causal_language_modeling)",
                                       hf="add_cross_attention")

    def to_hf_config(self) -> dict[str, Any]:
        config = super().to_hf_config()
        # The reference's decoder switch: causal attention (and cross-attention) only when set.
        config["is_decoder"] = self.architecture == CAUSAL_LM
        return config


class Bert(Model):
    spec_class = BertSpec
    base_prefix = "bert"
    hf_classes = {
        BASE: "BertModel",
        MASKED_LM: "BertForMaskedLM",
        SEQUENCE: "BertForSequenceClassification",
        TOKEN: "BertForTokenClassification",
        SPAN: "BertForQuestionAnswering",
        CHOICE: "BertForMultipleChoice",
        NEXT_SENTENCE: "BertForNextSentencePrediction",
        PRE_TRAINING: "BertForPreTraining",
        CAUSAL_LM: "BertLMHeadModel",
    }
    tied = {"lm_head.decoder.weight": "embeddings.token.weight"}
    # Architectures whose backbone has the pooler; sentence heads of the others read the first token.
    pooled: tuple[str, ...] = (BASE, SEQUENCE, CHOICE, NEXT_SENTENCE, PRE_TRAINING)
    # Pre-training's sentence task: (label input, logits output).
    sentence_task = ("next_sentence_label", "next_sentence_prediction_logits")

    def __init__(self, spec: BertSpec):
        super().__init__(spec)
        self.embeddings = self._embeddings()
        self.transformer = self._transformer()
        if spec.architecture in self.pooled:
            self.pooler = Pooler(spec.hidden_size)
        for name in HEADS.get(spec.architecture, ()):
            setattr(self, name, self._head(name))
        self.tie_weights()

    # -- the pieces families change ----------------------------------------------------------------------

    def _embeddings(self, size: int | None = None, **options) -> Embeddings:
        s = self.spec
        return Embeddings(s.vocab_size, size or s.hidden_size, max_positions=s.max_positions,
                          max_token_types=s.max_token_types, norm_epsilon=s.layer_norm_epsilon,
                          dropout=s.dropout_rate, padding_idx=s.pad_token_id, **options)

    def _block_options(self) -> BlockOptions:
        s = self.spec
        return BlockOptions(
            hidden_size=s.hidden_size, num_heads=s.num_attention_heads, intermediate_size=s.intermediate_size,
            activation=s.activation, norm_epsilon=s.layer_norm_epsilon, norm_position="post",
            cross_attention=s.use_cross_attention, dropout=s.dropout_rate,
            attention_dropout=s.attention_dropout_rate)

    def _transformer(self) -> Transformer:
        options = self._block_options()
        return Transformer([[Block(options)] for _ in range(self.spec.num_blocks)])

    @property
    def _classifier_dropout(self) -> float:
        s = self.spec
        return s.dropout_rate if s.classifier_dropout_rate is None else s.classifier_dropout_rate

    def _head(self, name: str) -> nn.Module:
        """The head module `name` (see `HEADS`)."""
        s = self.spec
        if name == "lm_head":
            return LanguageModelingHead(s.hidden_size, s.vocab_size, transform_activation=s.activation,
                                        norm_epsilon=s.layer_norm_epsilon, bias=True)
        if name in ("sentence_head", "span_head"):
            return ClassificationHead(s.hidden_size, 2)
        size = 1 if name == "choice_head" else s.num_labels
        return ClassificationHead(s.hidden_size, size, dropout=self._classifier_dropout)

    def _positions(self, input_ids, length: int, cache) -> torch.Tensor:
        """Position ids `[batch or 1, length]` when none are given: counted on from the cache."""
        start = cache.offset if cache is not None else 0
        return (start + torch.arange(length, device=self.device))[None]

    def _max_length(self) -> int:
        return self.spec.max_positions

    # -- the shared forward ---------------------------------------------------------------------------------

    def cache_layout(self) -> tuple[int, int, int]:
        s = self.spec
        if self.architecture != CAUSAL_LM:
            return super().cache_layout()
        return self.transformer.num_layers, s.num_attention_heads, s.hidden_size // s.num_attention_heads

    INPUTS = {"input_ids", "attention_mask", "token_type_ids", "position_ids", "attention_head_mask",
              "input_embeddings", "output_hidden_states", "output_attentions"}
    ARCH_INPUTS = {
        CAUSAL_LM: {"labels", "encoder_hidden_state", "encoder_attention_mask", "cross_attention_head_mask",
                    "cache", "logits_to_keep", "use_cache"},
        SPAN: {"start_positions", "end_positions"},
    }

    def _allowed(self) -> set[str]:
        extra = self.ARCH_INPUTS.get(self.architecture, {"labels"} if self.architecture != BASE else set())
        if self.architecture == PRE_TRAINING:
            extra = extra | {self.sentence_task[0]}
        return self.INPUTS | extra

    def forward(self, **kwargs) -> Output:
        """Inputs (Bumblebee names; transformers names accepted as aliases): `input_ids` or
        `input_embeddings` (`[batch, seq]`, or `[batch, num_choices, seq]` for for_multiple_choice),
        `attention_mask`, `token_type_ids`, `position_ids`, `attention_head_mask` (`[num_blocks, heads]`),
        `output_hidden_states`, `output_attentions`; the decoder (for_causal_language_modeling) also takes
        `encoder_hidden_state`, `encoder_attention_mask`, `cross_attention_head_mask`, `cache` and
        `logits_to_keep` (LM logits of the last k positions only; 0 = all). Labels add a `loss`: `labels`,
        `start_positions`/`end_positions` (question answering), and for pre-training `labels` and the
        sentence task's label."""
        x = self.inputs(kwargs, self._allowed())
        arch, cache = self.architecture, x.get("cache")
        ids, embeds = x.get("input_ids"), x.get("input_embeddings")
        shape = self.check_sequence(ids, embeds, self._max_length(), x)
        self._check_shapes(shape, x)
        flat = lambda t: None if t is None else t.reshape(-1, t.shape[-1])  # choices: [B, C, T] -> [B*C, T]
        ids, mask, types, positions = (flat(x.get(name)) for name in
                                       ("input_ids", "attention_mask", "token_type_ids", "position_ids"))
        if embeds is not None:
            embeds = embeds.reshape(-1, shape[-1], embeds.shape[-1])
        if positions is None:
            positions = self._positions(ids, shape[-1], cache)
        if x.get("encoder_hidden_state") is not None and not self.spec.use_cross_attention:
            raise InputError("encoder_hidden_state given, but this model has no cross-attention layers; load it "
                             "with use_cross_attention=True")
        hidden = self.embeddings(ids, embeds, positions.expand(len(embeds if ids is None else ids), -1), types)
        output_hidden_states, output_attentions = self.output_flags(x)
        hidden, hidden_states, attentions, cross_attentions = self.transformer(
            hidden, attention_mask=mask, causal=arch == CAUSAL_LM, cache=cache,
            head_mask=x.get("attention_head_mask"), encoder_state=x.get("encoder_hidden_state"),
            encoder_attention_mask=x.get("encoder_attention_mask"),
            cross_head_mask=x.get("cross_attention_head_mask"),
            output_hidden_states=output_hidden_states, output_attentions=output_attentions)

        unflat = lambda t: t.reshape(*shape[:-1], *t.shape[1:])  # back to the input's [batch (, choices)]
        out = Output(hidden_state=unflat(hidden))
        pooled = self.pooler(hidden) if hasattr(self, "pooler") else None
        if pooled is not None:
            out.pooled_state = unflat(pooled)
        if output_hidden_states:
            out.hidden_states = tuple(map(unflat, hidden_states))
        if output_attentions:
            out.attentions = tuple(map(unflat, attentions))
            if cross_attentions:
                out.cross_attentions = tuple(map(unflat, cross_attentions))
        if cache is not None:
            out.cache = cache
        self._apply_heads(out, hidden, hidden[:, 0] if pooled is None else pooled, shape, x)
        return out

    def _check_shapes(self, shape: tuple[int, ...], x: dict) -> None:
        choices = self.architecture == CHOICE
        if len(shape) != (3 if choices else 2):
            expected = "[batch, num_choices, seq]" if choices else "[batch, seq]"
            raise InputError(f"{self.architecture} expects input_ids of shape {expected} (input_embeddings with "
                             f"a trailing hidden dimension), found {list(shape)}")
        if self.embeddings.token_type is not None:
            self.check_ids(x.get("token_type_ids"), self.spec.max_token_types, "token_type_ids", "max_token_types")

    def _apply_heads(self, out: Output, hidden: torch.Tensor, summary: torch.Tensor, shape, x: dict) -> None:
        """Head outputs and losses. `hidden` is `[rows, seq, hidden]`, `summary` one vector per row (the
        pooled state, or the first token's where the architecture has no pooler)."""
        arch, s, labels = self.architecture, self.spec, x.get("labels")
        if hasattr(self, "lm_head"):
            keep = x.get("logits_to_keep") or 0
            logits = self.lm_head(hidden[:, -keep:] if keep else hidden)
            out["language_modeling_logits" if arch == PRE_TRAINING else "logits"] = logits
            if labels is not None:
                out.loss = (causal_lm_loss if arch == CAUSAL_LM else token_loss)(logits, labels)
        if hasattr(self, "sentence_head"):
            logits = self.sentence_head(summary)
            label_name, logits_name = self.sentence_task if arch == PRE_TRAINING else ("labels", "logits")
            out[logits_name] = logits
            sentence_labels = x.get(label_name)
            if sentence_labels is not None:
                check_class_labels(sentence_labels, (logits.shape[0],), logits.shape[-1], label_name)
                loss = F.cross_entropy(logits.float(), sentence_labels.reshape(-1).to(logits.device))
                out.loss = out.loss + loss if "loss" in out else loss
        elif arch == SEQUENCE:
            out.logits = self.sequence_head(summary)
            if labels is not None:
                out.loss = classification_loss(out.logits, labels, s.num_labels, s.problem_type)
        elif arch == TOKEN:
            out.logits = self.token_head(hidden)
            if labels is not None:
                out.loss = token_loss(out.logits, labels)
        elif arch == SPAN:
            start, end = self.span_head(hidden).unbind(-1)
            out.start_logits, out.end_logits = start.contiguous(), end.contiguous()
            if x.get("start_positions") is not None and x.get("end_positions") is not None:
                out.loss = span_loss(start, end, x["start_positions"], x["end_positions"])
        elif arch == CHOICE:
            out.logits = self.choice_head(summary).reshape(shape[:-1])  # [batch, num_choices]
            if labels is not None:
                check_class_labels(labels, tuple(out.logits.shape[:-1]), out.logits.shape[-1])
                out.loss = F.cross_entropy(out.logits.float(), labels.reshape(-1).to(out.logits.device))

    # -- checkpoints -------------------------------------------------------------------------------------------

    checkpoint_keys = {
        **EMBEDDING_KEYS,
        **CLASSIFIER_KEYS,
        "transformer.groups.{i}.0.attention.query": "encoder.layer.{i}.attention.self.query",
        "transformer.groups.{i}.0.attention.key": "encoder.layer.{i}.attention.self.key",
        "transformer.groups.{i}.0.attention.value": "encoder.layer.{i}.attention.self.value",
        "transformer.groups.{i}.0.attention.output": "encoder.layer.{i}.attention.output.dense",
        "transformer.groups.{i}.0.attention_norm": "encoder.layer.{i}.attention.output.LayerNorm",
        "transformer.groups.{i}.0.cross_attention.query": "encoder.layer.{i}.crossattention.self.query",
        "transformer.groups.{i}.0.cross_attention.key": "encoder.layer.{i}.crossattention.self.key",
        "transformer.groups.{i}.0.cross_attention.value": "encoder.layer.{i}.crossattention.self.value",
        "transformer.groups.{i}.0.cross_attention.output": "encoder.layer.{i}.crossattention.output.dense",
        "transformer.groups.{i}.0.cross_attention_norm": "encoder.layer.{i}.crossattention.output.LayerNorm",
        "transformer.groups.{i}.0.mlp.intermediate": "encoder.layer.{i}.intermediate.dense",
        "transformer.groups.{i}.0.mlp.output": "encoder.layer.{i}.output.dense",
        "transformer.groups.{i}.0.mlp_norm": "encoder.layer.{i}.output.LayerNorm",
        "pooler.dense": "pooler.dense",
        "lm_head.dense": Key("cls.predictions.transform.dense", in_base=False),
        "lm_head.norm": Key("cls.predictions.transform.LayerNorm", in_base=False),
        "lm_head.decoder.weight": Key("cls.predictions.decoder.weight", in_base=False),
        # The output bias is the decoder's, tied to the head's `bias`; files hold either or both.
        "lm_head.decoder.bias": Key("cls.predictions.decoder.bias", in_base=False, also=("cls.predictions.bias",)),
        "sentence_head.output": Key("cls.seq_relationship", in_base=False),
    }
