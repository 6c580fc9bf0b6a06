"""GPT-2 (Radford et al., 2019): a decoder-only, pre-norm transformer with learned positions.

Architectures: base, for_causal_language_modeling, for_sequence_classification (on the last non-padding
token), for_token_classification, for_question_answering, for_double_heads (LM + multiple choice).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..checkpoint import Key
from ..errors import ConfigError, InputError
from ..layers.embeddings import Embeddings
from ..layers.heads import ClassificationHead, LanguageModelingHead, SequenceSummary
from ..layers.losses import (causal_lm_loss, check_class_labels, classification_loss, span_loss,
                             token_loss)
from ..layers.linear import Linear
from ..layers.transformer import Block, BlockOptions, Transformer
from ..model import Model
from ..output import Output
from ..spec import Spec, option


@dataclass(frozen=True, kw_only=True)
class Gpt2Spec(Spec):
    """GPT-2 options (Bumblebee names; HF `GPT2Config` keys in `hf`)."""

    model_type = "gpt2"
    hf_defaults = {"num_blocks": 12, "num_attention_heads": 12, "activation": "gelu_new",
                   "bos_token_id": 50256, "eos_token_id": 50256}

    vocab_size: int = option(50257, "the vocabulary size of the token embedding", hf="vocab_size")
    max_positions: int = option(1024, "the vocabulary size of the position embedding: the longest sequence "
                                "the model can process", hf=("n_positions", "max_position_embeddings"))
    hidden_size: int = option(768, "the dimensionality of hidden layers", hf=("n_embd", "hidden_size"))
    num_blocks: int = option(24, "the number of Transformer blocks in the decoder",
                             hf=("n_layer", "num_hidden_layers"))
    num_attention_heads: int = option(16, "the number of attention heads for each attention layer",
                                      hf=("n_head", "num_attention_heads"))
    intermediate_size: int | None = option(None, "the dimensionality of the feed-forward layer; None means "
                                           "4 times hidden_size", hf=("n_inner", "intermediate_size"))
    activation: str = option("gelu_approx_tanh", "the activation function", hf="activation_function")
    scale_attention_weights: bool = option(True, "whether to scale attention weights to have variance of 1",
                                           hf="scale_attn_weights")
    scale_attn_by_inverse_layer_idx: bool = option(False, "whether to additionally scale attention weights "
                                                   "by 1 / (layer index + 1)",
                                                   hf="scale_attn_by_inverse_layer_idx")
    reorder_and_upcast_attn: bool = option(False, "whether to compute attention scores in float32 in half "
                                           "precision", hf="reorder_and_upcast_attn")
    dropout_rate: float = option(0.1, "the dropout rate for embedding and encoder", hf="resid_pdrop")
    embeddings_dropout_rate: float = option(0.1, "the dropout rate for embeddings", hf="embd_pdrop")
    attention_dropout_rate: float = option(0.1, "the dropout rate for attention weights", hf="attn_pdrop")
    classifier_dropout_rate: float = option(0.1, "the dropout rate for the classification head",
                                            hf="summary_first_dropout")
    layer_norm_epsilon: float = option(1e-5, "the epsilon used by the layer normalization layers",
                                       hf="layer_norm_epsilon")
    use_cross_attention: bool = option(False, "whether cross-attention layers should be added to the model",
                                       hf="add_cross_attention")
    summary_type: str = option("cls_index", "double heads: how a sequence is summarised ('last', 'first', "
                               "'mean', 'cls_index')", hf="summary_type")
    summary_use_proj: bool = option(True, "double heads: project the summary", hf="summary_use_proj")
    summary_activation: str | None = option(None, "double heads: activation after the projection, e.g. "
                                            "'tanh'", hf="summary_activation")
    summary_proj_to_labels: bool = option(True, "double heads: project to num_labels (else hidden_size)",
                                          hf="summary_proj_to_labels")
    bos_token_id: int | None = option(50256, "the id of the beginning-of-sequence token", hf="bos_token_id")
    eos_token_id: int | list | None = option(50256, "the id of the end-of-sequence token", hf="eos_token_id")

    def validate(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"hidden_size={self.hidden_size} (n_embd) is not a multiple of "
                              f"num_attention_heads={self.num_attention_heads} (n_head)")


class Gpt2(Model):
    spec_class = Gpt2Spec
    base_prefix = "transformer"
    hf_classes = {
        "base": "GPT2Model",
        "for_causal_language_modeling": "GPT2LMHeadModel",
        "for_sequence_classification": "GPT2ForSequenceClassification",
        "for_token_classification": "GPT2ForTokenClassification",
        "for_question_answering": "GPT2ForQuestionAnswering",
        "for_double_heads": "GPT2DoubleHeadsModel",
    }
    generative = ("for_causal_language_modeling", "for_double_heads")
    tied = {"lm_head.decoder.weight": "embeddings.token.weight"}

    def __init__(self, spec: Gpt2Spec):
        super().__init__(spec)
        s = spec
        self.embeddings = Embeddings(s.vocab_size, s.hidden_size, max_positions=s.max_positions,
                                     dropout=s.embeddings_dropout_rate)
        options = BlockOptions(
            hidden_size=s.hidden_size, num_heads=s.num_attention_heads,
            intermediate_size=s.intermediate_size or 4 * s.hidden_size, activation=s.activation,
            norm_epsilon=s.layer_norm_epsilon, norm_position="pre", cross_attention=s.use_cross_attention,
            upcast_attention=s.reorder_and_upcast_attn, dropout=s.dropout_rate,
            attention_dropout=s.attention_dropout_rate, fused_qkv=True)
        head_dim = s.hidden_size // s.num_attention_heads
        scale = head_dim ** -0.5 if s.scale_attention_weights else 1.0
        self.transformer = Transformer(
            [[Block(options, attention_scale=scale / (i + 1 if s.scale_attn_by_inverse_layer_idx else 1))]
             for i in range(s.num_blocks)],
            final_norm=nn.LayerNorm(s.hidden_size, eps=s.layer_norm_epsilon))
        arch = s.architecture
        if arch in ("for_causal_language_modeling", "for_double_heads"):
            self.lm_head = LanguageModelingHead(s.hidden_size, s.vocab_size)
        if arch == "for_double_heads":
            self.multiple_choice_head = SequenceSummary(
                s.hidden_size, summary_type=s.summary_type, activation_name=s.summary_activation,
                # one score per choice: the reference forces num_labels = 1 for this head
                projection_size=(1 if s.summary_proj_to_labels else s.hidden_size) if s.summary_use_proj else None,
                first_dropout=s.classifier_dropout_rate)
        elif arch == "for_sequence_classification":
            self.score = ClassificationHead(s.hidden_size, s.num_labels, bias=False)
        elif arch == "for_token_classification":
            self.classifier = ClassificationHead(s.hidden_size, s.num_labels, dropout=s.classifier_dropout_rate)
        elif arch == "for_question_answering":
            self.qa_outputs = Linear(s.hidden_size, 2)
        self.tie_weights()

    def cache_layout(self) -> tuple[int, int, int]:
        s = self.spec
        return s.num_blocks, s.num_attention_heads, s.hidden_size // s.num_attention_heads

    INPUTS = {"input_ids", "attention_mask", "token_type_ids", "position_ids", "attention_head_mask",
              "input_embeddings", "encoder_hidden_state", "encoder_attention_mask",
              "cross_attention_head_mask", "cache", "labels", "output_hidden_states", "output_attentions",
              "logits_to_keep", "use_cache"}
    HEAD_INPUTS = {"for_double_heads": {"mc_token_ids", "mc_labels"},
                   "for_question_answering": {"start_positions", "end_positions"}}

    def forward(self, **kwargs) -> Output:
        """Inputs (Bumblebee names; transformers names accepted as aliases): `input_ids` or
        `input_embeddings`, `attention_mask`, `token_type_ids`, `position_ids`, `attention_head_mask`,
        `encoder_hidden_state`, `encoder_attention_mask`, `cross_attention_head_mask`, `cache`, `labels`
        (and `mc_token_ids`/`mc_labels`, `start_positions`/`end_positions` for their heads),
        `output_hidden_states`, `output_attentions`, `logits_to_keep` (LM logits of the last k positions
        only; 0 = all)."""
        x = self.inputs(kwargs, self.INPUTS | self.HEAD_INPUTS.get(self.architecture, set()))
        s = self.spec
        ids, embeds = x.get("input_ids"), x.get("input_embeddings")
        shape = self.check_sequence(ids, embeds, s.max_positions, x)
        length = shape[-1]
        flat = lambda t: None if t is None else t.reshape(-1, t.shape[-1])  # double heads: [B, C, T] -> [B*C, T]
        ids, mask, types, positions = flat(ids), flat(x.get("attention_mask")), flat(x.get("token_type_ids")), \
            flat(x.get("position_ids"))
        if embeds is not None:
            embeds = embeds.reshape(-1, length, embeds.shape[-1])
        cache = x.get("cache")
        if positions is None:
            start = cache.offset if cache is not None else 0
            positions = (start + torch.arange(length, device=self.device))[None].expand(
                (ids if ids is not None else embeds).shape[0], length)
        self.check_ids(types, s.vocab_size, "token_type_ids", "vocab_size")  # embedded as tokens
        hidden = self.embeddings(ids, embeds, positions,
                                 extra=None if types is None else self.embeddings.token(types))
        output_hidden_states, output_attentions = self.output_flags(x)
        hidden, hidden_states, attentions, cross_attentions = self.transformer(
            hidden, attention_mask=mask, causal=True, cache=cache, head_mask=x.get("attention_head_mask"),
            encoder_state=x.get("encoder_hidden_state"), encoder_attention_mask=x.get("encoder_attention_mask"),
            cross_head_mask=x.get("cross_attention_head_mask"),
            output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        unflat = lambda t: t.reshape(*shape, *t.shape[2:])
        out = Output(hidden_state=unflat(hidden))
        if output_hidden_states:
            out.hidden_states = tuple(unflat(h) for h in hidden_states)
        if output_attentions:
            out.attentions = tuple(a.reshape(*shape[:-1], *a.shape[1:]) for a in attentions)
            if cross_attentions:
                out.cross_attentions = cross_attentions
        if cache is not None:
            out.cache = cache
        self._head(out, hidden, ids, x)
        return out

    def _head(self, out: Output, hidden: torch.Tensor, ids, x: dict) -> None:
        arch, s, labels = self.architecture, self.spec, x.get("labels")
        if arch in ("for_causal_language_modeling", "for_double_heads"):
            keep = x.get("logits_to_keep") or 0
            logits = self.lm_head(hidden[:, -keep:] if keep else hidden)
            out.logits = logits.reshape(*out.hidden_state.shape[:-2], *logits.shape[-2:])
            if labels is not None:
                out.loss = causal_lm_loss(out.logits, labels)
        if arch == "for_double_heads":
            self._check_choice_tokens(x.get("mc_token_ids"), out.hidden_state.shape[:-1])
            mc_logits = self.multiple_choice_head(out.hidden_state, x.get("mc_token_ids")).squeeze(-1)
            out.mc_logits = mc_logits
            if x.get("mc_labels") is not None:
                check_class_labels(x["mc_labels"], tuple(mc_logits.shape[:-1]), mc_logits.shape[-1], "mc_labels")
                out.mc_loss = nn.functional.cross_entropy(mc_logits.float().view(-1, mc_logits.shape[-1]),
                                                          x["mc_labels"].view(-1))
        elif arch == "for_sequence_classification":
            logits = self.score(hidden)
            out.logits = logits[torch.arange(logits.shape[0], device=logits.device), self.last_token_index(ids, logits.shape[0])]
            if labels is not None:
                out.loss = classification_loss(out.logits, labels, s.num_labels, s.problem_type)
        elif arch == "for_token_classification":
            out.logits = self.classifier(hidden)
            if labels is not None:
                out.loss = token_loss(out.logits, labels)
        elif arch == "for_question_answering":
            start, end = self.qa_outputs(hidden).float().unbind(-1)
            out.start_logits, out.end_logits = start.contiguous(), end.contiguous()
            if x.get("start_positions") is not None and x.get("end_positions") is not None:
                out.loss = span_loss(start, end, x["start_positions"], x["end_positions"])

    @staticmethod
    def _check_choice_tokens(mc_token_ids, shape) -> None:
        """mc_token_ids: one position per choice (`[batch, num_choices]`) inside the sequence."""
        if mc_token_ids is None:
            return
        if tuple(mc_token_ids.shape) != tuple(shape[:-1]) or mc_token_ids.dtype.is_floating_point:
            raise InputError(f"mc_token_ids must hold one integer position per choice, shape {list(shape[:-1])}; "
                             f"got {list(mc_token_ids.shape)} of dtype {mc_token_ids.dtype}")
        if mc_token_ids.device.type == "cpu" and mc_token_ids.numel() and \
                not (0 <= int(mc_token_ids.min()) and int(mc_token_ids.max()) < shape[-1]):
            raise InputError(f"mc_token_ids must be positions in [0, {shape[-1] - 1}] (the sequence length is "
                             f"{shape[-1]}); got {mc_token_ids.tolist()}")

    checkpoint_keys = {
        "embeddings.token": "wte",
        "embeddings.position": "wpe",
        "transformer.groups.{i}.0.attention_norm": "h.{i}.ln_1",
        "transformer.groups.{i}.0.attention.qkv": Key("h.{i}.attn.c_attn", transpose=True),
        "transformer.groups.{i}.0.attention.output": Key("h.{i}.attn.c_proj", transpose=True),
        "transformer.groups.{i}.0.cross_attention_norm": "h.{i}.ln_cross_attn",
        "transformer.groups.{i}.0.cross_attention.query": Key("h.{i}.crossattention.q_attn", transpose=True),
        "transformer.groups.{i}.0.cross_attention.key": Key("h.{i}.crossattention.c_attn", transpose=True,
                                                            chunk=(0, 2)),
        "transformer.groups.{i}.0.cross_attention.value": Key("h.{i}.crossattention.c_attn", transpose=True,
                                                              chunk=(1, 2)),
        "transformer.groups.{i}.0.cross_attention.output": Key("h.{i}.crossattention.c_proj", transpose=True),
        "transformer.groups.{i}.0.mlp_norm": "h.{i}.ln_2",
        "transformer.groups.{i}.0.mlp.intermediate": Key("h.{i}.mlp.c_fc", transpose=True),
        "transformer.groups.{i}.0.mlp.output": Key("h.{i}.mlp.c_proj", transpose=True),
        "transformer.final_norm": "ln_f",
        "lm_head.decoder": Key("lm_head", in_base=False),
        "multiple_choice_head.projection": Key("multiple_choice_head.summary", in_base=False),
        "score.output": Key("score", in_base=False),
        "classifier.output": Key("classifier", in_base=False),
        "qa_outputs": Key("qa_outputs", in_base=False),
    }
