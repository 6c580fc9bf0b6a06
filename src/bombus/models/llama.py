"""LLaMA (Touvron et al., 2023): a decoder-only, pre-norm transformer with RMSNorm, rotary positions,
grouped-query attention and a gated SiLU MLP. Also the layout of Llama 2/3, SmolLM, TinyLlama, ...

Architectures: base, for_causal_language_modeling, for_sequence_classification (on the last non-padding
token). Checkpoints: safetensors/.bin like every family, and GGUF files (`bombus.gguf`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..checkpoint import Key
from ..errors import ConfigError, InputError
from ..layers.embeddings import Embeddings
from ..layers.heads import ClassificationHead, LanguageModelingHead
from ..layers.losses import causal_lm_loss, classification_loss
from ..layers.norms import RMSNorm
from ..layers.rotary import Rotary, check_scaling
from ..layers.transformer import Block, BlockOptions, Transformer
from ..model import Model
from ..output import Output
from ..spec import Spec, option

BASE, CAUSAL_LM, SEQUENCE = "base", "for_causal_language_modeling", "for_sequence_classification"


@dataclass(frozen=True, kw_only=True)
class LlamaSpec(Spec):
    """LLaMA options (Bumblebee names; HF `LlamaConfig` keys in `hf`)."""

    model_type = "llama"
    # transformers' LlamaConfig defaults, for config.json files that leave a key out
    hf_defaults = {"max_positions": 2048, "layer_norm_epsilon": 1e-6, "bos_token_id": 1, "eos_token_id": 2}

    vocab_size: int = option(32000, "the vocabulary size of the token embedding", hf="vocab_size")
    max_positions: int = option(1024, "the longest sequence the model was trained for (with dynamic rope "
                                "scaling, the length beyond which it scales)", hf="max_position_embeddings")
    hidden_size: int = option(4096, "the dimensionality of hidden layers", hf="hidden_size")
    intermediate_size: int = option(11008, "the dimensionality of the gated feed-forward layer",
                                    hf="intermediate_size")
    attention_head_size: int | None = option(None, "the size of each attention head; None means hidden_size "
                                             "// num_attention_heads", hf="head_dim")
    num_blocks: int = option(32, "the number of Transformer blocks in the decoder", hf="num_hidden_layers")
    num_attention_heads: int = option(32, "the number of attention heads (queries) in each attention layer",
                                      hf="num_attention_heads")
    num_key_value_heads: int | None = option(None, "the number of key/value heads (grouped-query attention); "
                                             "None means num_attention_heads", hf="num_key_value_heads")
    activation: str = option("silu", "the activation of the gated feed-forward layer", hf="hidden_act")
    rotary_embedding_base: float = option(10000.0, "the base of the rotary position frequencies",
                                          hf="rope_theta")
    rotary_embedding_scaling_strategy: dict | None = option(
        None, "rotary scaling, as transformers' rope_scaling: None (plain RoPE) or {'rope_type': 'linear' | "
        "'dynamic' | 'llama3', 'factor': ..., and for llama3 'low_freq_factor', 'high_freq_factor', "
        "'original_max_position_embeddings'}", hf=("rope_scaling", "rope_parameters"))
    layer_norm_epsilon: float = option(1e-12, "the epsilon of the RMS norms", hf="rms_norm_eps")
    attention_bias: bool = option(False, "whether the q/k/v/output projections have biases", hf="attention_bias")
    mlp_bias: bool = option(False, "whether the feed-forward projections have biases", hf="mlp_bias")
    attention_dropout_rate: float = option(0.0, "the dropout rate for attention weights", hf="attention_dropout")
    tie_word_embeddings: bool = option(False, "whether the language modeling head shares the token "
                                       "embedding weights", hf="tie_word_embeddings")
    bos_token_id: int | None = option(1, "the id of the beginning-of-sequence token", hf="bos_token_id")
    eos_token_id: int | list | None = option(2, "the id(s) of the end-of-sequence token", hf="eos_token_id")

    @property
    def head_dim(self) -> int:
        return self.attention_head_size or self.hidden_size // self.num_attention_heads

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    def validate(self) -> None:
        super().validate()
        if self.num_attention_heads % self.kv_heads:
            raise ConfigError(f"num_attention_heads={self.num_attention_heads} must be a multiple of "
                              f"num_key_value_heads={self.kv_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"rotary embeddings need an even head size, got {self.head_dim}")
        check_scaling(self.rotary_embedding_scaling_strategy)

    @classmethod
    def _adapt_from_hf(cls, values: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        # transformers 5 writes `rope_parameters` ({rope_type, rope_theta, ...}); older files `rope_theta`
        # and `rope_scaling` ({type or rope_type, factor, ...}). rope_scaling wins when both are given, as
        # in transformers' `convert_rope_params_to_dict`.
        rope = dict(config.get("rope_scaling") or config.get("rope_parameters") or {})
        theta = rope.pop("rope_theta", None)
        values["rotary_embedding_base"] = float(theta if theta is not None else config.get("rope_theta", 10000.0))
        kind = rope.pop("rope_type", rope.pop("type", "default"))
        rope.pop("type", None)
        if kind == "default":
            values["rotary_embedding_scaling_strategy"] = None
        else:
            if kind == "llama3":
                rope.setdefault("original_max_position_embeddings",
                                config.get("original_max_position_embeddings",
                                           values.get("max_positions", cls.hf_defaults["max_positions"])))
            values["rotary_embedding_scaling_strategy"] = {"rope_type": kind, **rope}
        return values

    def to_hf_config(self) -> dict[str, Any]:
        config = super().to_hf_config()
        # Both forms: transformers 5 reads rope_parameters, 4.x reads rope_theta and rope_scaling.
        config["rope_parameters"] = {"rope_type": "default", "rope_theta": self.rotary_embedding_base,
                                     **(self.rotary_embedding_scaling_strategy or {})}
        config["head_dim"] = self.head_dim
        config["num_key_value_heads"] = self.kv_heads
        return config


class Llama(Model):
    spec_class = LlamaSpec
    base_prefix = "model"
    hf_classes = {BASE: "LlamaModel", CAUSAL_LM: "LlamaForCausalLM", SEQUENCE: "LlamaForSequenceClassification"}
    tied = {"lm_head.decoder.weight": "embeddings.token.weight"}

    def __init__(self, spec: LlamaSpec):
        super().__init__(spec)
        s = spec
        pad = s.pad_token_id if s.pad_token_id is not None and 0 <= s.pad_token_id < s.vocab_size else None
        self.embeddings = Embeddings(s.vocab_size, s.hidden_size, padding_idx=pad)
        self.rotary = Rotary(s.head_dim, base=s.rotary_embedding_base, scaling=s.rotary_embedding_scaling_strategy,
                             max_positions=s.max_positions)
        options = BlockOptions(
            hidden_size=s.hidden_size, num_heads=s.num_attention_heads, intermediate_size=s.intermediate_size,
            activation=s.activation, norm="rms_norm", norm_epsilon=s.layer_norm_epsilon, norm_position="pre",
            num_kv_heads=s.kv_heads, head_dim=s.head_dim, attention_bias=s.attention_bias,
            attention_output_bias=s.attention_bias, mlp_bias=s.mlp_bias, gated_mlp=True,
            attention_dropout=s.attention_dropout_rate)
        self.transformer = Transformer([[Block(options)] for _ in range(s.num_blocks)],
                                       final_norm=RMSNorm(s.hidden_size, eps=s.layer_norm_epsilon))
        if s.architecture == CAUSAL_LM:
            self.lm_head = LanguageModelingHead(s.hidden_size, s.vocab_size)
        elif s.architecture == SEQUENCE:
            self.score = ClassificationHead(s.hidden_size, s.num_labels, bias=False)
        self.tie_weights()

    def cache_layout(self) -> tuple[int, int, int]:
        return self.spec.num_blocks, self.spec.kv_heads, self.spec.head_dim

    INPUTS = {"input_ids", "attention_mask", "position_ids", "attention_head_mask", "input_embeddings", "cache",
              "labels", "output_hidden_states", "output_attentions", "logits_to_keep", "use_cache",
              "token_type_ids"}

    def forward(self, **kwargs) -> Output:
        """Inputs (Bumblebee names; transformers names accepted as aliases): `input_ids` or
        `input_embeddings`, `attention_mask`, `position_ids` (default: the cache offset + 0, 1, ...; they
        set the rotary angles), `attention_head_mask`, `cache`, `labels`, `output_hidden_states`,
        `output_attentions`, `logits_to_keep` (LM logits of the last k positions only; 0 = all)."""
        x = self.inputs(kwargs, self.INPUTS)
        s = self.spec
        if x.get("token_type_ids") is not None:
            raise InputError("LLaMA has no token type embeddings: token_type_ids must be None")
        ids, embeds = x.get("input_ids"), x.get("input_embeddings")
        dynamic = (s.rotary_embedding_scaling_strategy or {}).get("rope_type") == "dynamic"
        shape = self.check_sequence(ids, embeds, None if dynamic else s.max_positions, x)
        if len(shape) != 2:
            raise InputError(f"input_ids must be [batch, seq] (input_embeddings [batch, seq, hidden]); found "
                             f"shape {list(shape)}")
        batch, length = shape
        cache, positions = x.get("cache"), x.get("position_ids")
        if positions is None:
            start = cache.offset if cache is not None else 0
            positions = (start + torch.arange(length, device=self.device))[None].expand(batch, length)
        hidden = self.embeddings(ids, embeds)
        output_hidden_states, output_attentions = self.output_flags(x)
        hidden, hidden_states, attentions, _ = self.transformer(
            hidden, attention_mask=x.get("attention_mask"), causal=True, cache=cache,
            rotary=self.rotary(positions, hidden.dtype), head_mask=x.get("attention_head_mask"),
            output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        out = Output(hidden_state=hidden)
        if output_hidden_states:
            out.hidden_states = hidden_states
        if output_attentions:
            out.attentions = attentions
        if cache is not None:
            out.cache = cache
        labels = x.get("labels")
        if s.architecture == CAUSAL_LM:
            keep = x.get("logits_to_keep") or 0
            out.logits = self.lm_head(hidden[:, -keep:] if keep else hidden)
            if labels is not None:
                out.loss = causal_lm_loss(out.logits, labels)
        elif s.architecture == SEQUENCE:
            logits = self.score(hidden)
            out.logits = logits[torch.arange(batch, device=logits.device), self.last_token_index(ids, batch)]
            if labels is not None:
                out.loss = classification_loss(out.logits, labels, s.num_labels, s.problem_type)
        return out

    checkpoint_keys = {
        "embeddings.token": "embed_tokens",
        "transformer.groups.{i}.0.attention_norm": "layers.{i}.input_layernorm",
        "transformer.groups.{i}.0.attention.query": "layers.{i}.self_attn.q_proj",
        "transformer.groups.{i}.0.attention.key": "layers.{i}.self_attn.k_proj",
        "transformer.groups.{i}.0.attention.value": "layers.{i}.self_attn.v_proj",
        "transformer.groups.{i}.0.attention.output": "layers.{i}.self_attn.o_proj",
        "transformer.groups.{i}.0.mlp_norm": "layers.{i}.post_attention_layernorm",
        "transformer.groups.{i}.0.mlp.gate": "layers.{i}.mlp.gate_proj",
        "transformer.groups.{i}.0.mlp.up": "layers.{i}.mlp.up_proj",
        "transformer.groups.{i}.0.mlp.down": "layers.{i}.mlp.down_proj",
        "transformer.final_norm": "norm",
        "lm_head.decoder": Key("lm_head", in_base=False),
        "score.output": Key("score", in_base=False),
    }

    # GGUF tensor names (llama.cpp's `blk.{i}.*`) -> ours. `permute` marks the rows llama.cpp reordered for
    # its interleaved RoPE: undone at load with that many heads (see `bombus.gguf`).
    gguf_keys = {
        "token_embd": "embeddings.token",
        "blk.{i}.attn_norm": "transformer.groups.{i}.0.attention_norm",
        "blk.{i}.attn_q": ("transformer.groups.{i}.0.attention.query", "num_attention_heads"),
        "blk.{i}.attn_k": ("transformer.groups.{i}.0.attention.key", "kv_heads"),
        "blk.{i}.attn_v": "transformer.groups.{i}.0.attention.value",
        "blk.{i}.attn_output": "transformer.groups.{i}.0.attention.output",
        "blk.{i}.ffn_norm": "transformer.groups.{i}.0.mlp_norm",
        "blk.{i}.ffn_gate": "transformer.groups.{i}.0.mlp.gate",
        "blk.{i}.ffn_up": "transformer.groups.{i}.0.mlp.up",
        "blk.{i}.ffn_down": "transformer.groups.{i}.0.mlp.down",
        "output_norm": "transformer.final_norm",
        "output": "lm_head.decoder",
    }
