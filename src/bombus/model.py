"""`Model`: the base of every family's model — spec and architecture, input names, caches, weight init
and tying, saving in HF format, and generation."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from .checkpoint import SAFETENSORS, KeyMap, hf_state, save_state, write_atomic
from .errors import CheckpointError, ConfigError, InputError
from .layers.attention import Attention, check_implementation
from .layers.cache import Cache
from .layers.linear import ONEDNN
from .layers.norms import RMSNorm
from .output import Output
from .spec import Spec

# transformers' input names -> ours (Bumblebee's).
ALIASES = {
    "head_mask": "attention_head_mask",
    "inputs_embeds": "input_embeddings",
    "encoder_hidden_states": "encoder_hidden_state",
    "past_key_values": "cache",
    "cross_attn_head_mask": "cross_attention_head_mask",
}


# Forward keywords that are not tensors.
_SCALAR_INPUTS = {"output_hidden_states", "output_attentions", "logits_to_keep", "use_cache", "cache"}


class Model(nn.Module):
    """Base class of bombus models. A family sets the class attributes and implements `forward`.

    Class attributes: `spec_class`; `hf_classes` (architecture -> transformers class name, which also
    lists the architectures the family has); `checkpoint_keys` (our names -> checkpoint `Key`s) and
    `base_prefix` (e.g. "transformer"); `tied` (parameter -> the parameter it shares weights with when
    `spec.tie_word_embeddings`); `generative` architectures get `generate`.
    """

    spec_class: ClassVar[type[Spec]]
    hf_classes: ClassVar[dict[str, str]]
    checkpoint_keys: ClassVar[dict]
    base_prefix: ClassVar[str] = ""
    tied: ClassVar[dict[str, str]] = {}
    generative: ClassVar[tuple[str, ...]] = ("for_causal_language_modeling",)

    def __init__(self, spec: Spec):
        super().__init__()
        if spec.architecture not in self.hf_classes:
            raise ConfigError(f"unknown architecture {spec.architecture!r} for {spec.model_type}; expected one "
                              f"of: {', '.join(self.hf_classes)}")
        self.spec = spec

    @property
    def architecture(self) -> str:
        return self.spec.architecture

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @classmethod
    def keymap(cls) -> KeyMap:
        return KeyMap(cls.checkpoint_keys, cls.base_prefix)

    # -- inputs ---------------------------------------------------------------------------------------

    def inputs(self, kwargs: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
        """Resolve transformers aliases and reject unknown or doubly-given inputs."""
        resolved: dict[str, Any] = {}
        for name, value in kwargs.items():
            ours = ALIASES.get(name, name)
            if ours not in allowed:
                raise InputError(f"{type(self).__name__} ({self.architecture}) has no input {name!r}; "
                                 f"inputs: {', '.join(sorted(allowed))}")
            if ours in resolved and resolved[ours] is not None and value is not None:
                raise InputError(f"input {ours!r} given twice (as {ours!r} and its alias {name!r})")
            if value is not None or ours not in resolved:
                resolved[ours] = value
        return resolved

    def check_sequence(self, input_ids, input_embeddings, max_positions: int | None,
                       inputs: dict[str, Any] | None = None) -> tuple[int, ...]:
        """Shape `[batch..., seq]` of the input; errors for both/neither given or a too-long sequence, and
        (given the resolved `inputs`) for the other inputs' types, shapes and id ranges (`check_inputs`)."""
        for name, value in (("input_ids", input_ids), ("input_embeddings", input_embeddings)):
            if value is not None and not isinstance(value, torch.Tensor):
                raise InputError(f"{name} must be a torch tensor, got {type(value).__name__} (tokenizers "
                                 "return tensors: model(**tok(texts)))")
        if input_ids is not None and input_embeddings is not None:
            raise InputError("give either input_ids or input_embeddings, not both")
        if input_ids is None and input_embeddings is None:
            raise InputError("one of input_ids or input_embeddings is required")
        shape = tuple(input_ids.shape) if input_ids is not None else tuple(input_embeddings.shape[:-1])
        if max_positions is not None and shape[-1] > max_positions:
            raise InputError(f"sequence length {shape[-1]} exceeds max_positions={max_positions} of this "
                             f"model; truncate the input (e.g. tokenizer length={max_positions})")
        if input_ids is not None:
            if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex or input_ids.dtype == torch.bool:
                raise InputError(f"input_ids must hold integer token ids (torch.long), got dtype {input_ids.dtype}")
            self.check_ids(input_ids, getattr(self.spec, "vocab_size", None), "input_ids", "vocab_size")
        elif not input_embeddings.dtype.is_floating_point:
            raise InputError(f"input_embeddings must be floating point, got dtype {input_embeddings.dtype}")
        if 0 in shape:
            raise InputError(f"the input is empty (shape {list(shape)}); give at least one token per row")
        if inputs is not None:
            self.check_inputs(inputs, shape)
        return shape

    def check_inputs(self, x: dict[str, Any], shape: tuple[int, ...]) -> None:
        """`InputError` (not a bare torch error deep inside) for inputs that do not fit the input of `shape`
        `[batch..., seq]`: masks, token types and positions of another shape (positions may broadcast over
        the batch, as in transformers), non-integer ids, learned positions beyond the table, input
        embeddings or encoder states of the wrong width, encoder masks that do not match the encoder states."""
        for name, value in x.items():
            if name not in _SCALAR_INPUTS and value is not None and not isinstance(value, torch.Tensor):
                raise InputError(f"{name} must be a torch tensor, got {type(value).__name__}")
        cache = x.get("cache")
        for name in ("attention_mask", "token_type_ids", "position_ids"):
            value = x.get(name)
            if value is None:
                continue
            if name != "attention_mask" and (value.dtype.is_floating_point or value.dtype == torch.bool):
                raise InputError(f"{name} must hold integer ids (torch.long), got dtype {value.dtype}")
            got, lead = tuple(value.shape), shape[:-1]
            if name == "attention_mask" and cache is not None:  # it may cover the cached tokens too
                fits = len(got) == len(shape) and got[:-1] == lead and got[-1] >= shape[-1]
            elif name == "position_ids":
                fits = len(got) == len(shape) and got[-1] == shape[-1] and all(g in (1, n) for g, n in zip(got, lead))
            else:
                fits = got == shape
            if not fits:
                raise InputError(f"{name} has shape {list(got)}, but the input is {list(shape)}"
                                 + (" ([batch, seq] masks only: build 4D masks from it inside the model)"
                                    if name == "attention_mask" and len(got) != len(shape) else ""))
        embeddings = getattr(self, "embeddings", None)
        table = getattr(embeddings, "position", None)
        if isinstance(table, nn.Embedding):
            self.check_ids(x.get("position_ids"), table.num_embeddings, "position_ids", "max_positions")
        width = embeddings.token.embedding_dim if embeddings is not None else None
        embeds = x.get("input_embeddings")
        if embeds is not None and width is not None and embeds.shape[-1] != width:
            raise InputError(f"input_embeddings has width {embeds.shape[-1]}, but the model embeds tokens in "
                             f"{width} dimensions (shape [batch, seq, {width}])")
        encoder = x.get("encoder_hidden_state")
        if encoder is not None:
            hidden = getattr(self.spec, "hidden_size", None)
            rows = math.prod(shape[:-1])
            if encoder.dim() != 3 or encoder.shape[0] != rows or (hidden and encoder.shape[-1] != hidden):
                raise InputError(f"encoder_hidden_state has shape {list(encoder.shape)}; expected [{rows}, "
                                 f"encoder_seq, {hidden}] (one row per input row, width hidden_size)")
            encoder_mask = x.get("encoder_attention_mask")
            if encoder_mask is not None and tuple(encoder_mask.shape) != tuple(encoder.shape[:2]):
                raise InputError(f"encoder_attention_mask has shape {list(encoder_mask.shape)}, but the encoder "
                                 f"states are {list(encoder.shape[:2])} ([batch, encoder_seq])")

    @staticmethod
    def check_ids(ids: torch.Tensor | None, limit: int | None, name: str, size_name: str) -> None:
        """`InputError` naming the first id of the input `name` outside `[0, limit)` (`limit` being the
        spec's embedding size `size_name`), instead of the embedding's bare IndexError. Checked on CPU only,
        where reading the values costs no device sync (on CUDA a bad id trips a device-side assert)."""
        if ids is None or not limit or ids.device.type != "cpu" or ids.numel() == 0 \
                or torch.compiler.is_compiling():
            return
        low, high = torch.aminmax(ids)
        if int(low) >= 0 and int(high) < limit:
            return
        position = ((ids < 0) | (ids >= limit)).nonzero()[0].tolist()
        raise InputError(f"{name} holds id {int(ids[tuple(position)])} at position {position}, but the model's "
                         f"{size_name} is {limit} (valid ids: 0 to {limit - 1}); check that the tokenizer belongs "
                         f"to this model")

    def output_flags(self, x: dict[str, Any]) -> tuple[bool, bool]:
        """`(output_hidden_states, output_attentions)`: the forward keyword if given, else the spec's."""
        def flag(name: str) -> bool:
            return bool(getattr(self.spec, name)) if x.get(name) is None else bool(x[name])

        return flag("output_hidden_states"), flag("output_attentions")

    # -- weights --------------------------------------------------------------------------------------

    def init_module(self, module: nn.Module, leaf: str | None = None) -> None:
        """Initialise `module`'s parameters (only `leaf` if given) as the reference does: normal with
        std `initializer_scale` for weights, zeros for biases, ones for norm weights."""
        scale = self.spec.initializer_scale
        for name, param in module.named_parameters(recurse=False):
            if leaf is not None and name != leaf:
                continue
            with torch.no_grad():
                if isinstance(module, (nn.LayerNorm, RMSNorm)):
                    param.fill_(1.0 if name == "weight" else 0.0)
                elif name == "bias":
                    param.zero_()
                else:
                    param.normal_(0.0, scale)
                    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                        param[module.padding_idx].zero_()

    def init_weights(self) -> None:
        tied = self.tied_names()  # initialised as their source (an embedding keeps its zero padding row)
        for prefix, module in self.named_modules():
            for leaf, _ in module.named_parameters(recurse=False):
                if f"{prefix}.{leaf}".lstrip(".") not in tied:
                    self.init_module(module, leaf)
        self.tie_weights()

    def tie_weights(self) -> None:
        if not self.spec.tie_word_embeddings:
            return
        for target, source in self.tied.items():
            if _has(self, target):
                module_name, _, leaf = target.rpartition(".")
                setattr(self.get_submodule(module_name), leaf, self.get_parameter(source))

    def tied_names(self) -> set[str]:
        return {t for t in self.tied if _has(self, t)} if self.spec.tie_word_embeddings else set()

    def resize_token_embeddings(self, num_tokens: int) -> nn.Embedding:
        """Give the token embedding (and the LM head's weight and bias, tied or not) `num_tokens` rows, e.g.
        `len(tok)` after `tok.add_special_tokens(...)`. Existing rows are kept; new rows are initialised as
        `build_model` does (normal with std `initializer_scale`; zero bias); shrinking drops the last rows.
        `spec.vocab_size` follows, so `save_pretrained` writes it. Returns the token embedding module."""
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 1:
            raise InputError(f"resize_token_embeddings: num_tokens must be a positive int, got {num_tokens!r}")
        sources = {s.rpartition(".")[0] for s in self.tied.values()} or {"embeddings.token"}
        embedding = self.get_submodule(next(iter(sources)))
        old = embedding.num_embeddings
        if num_tokens == old:
            return embedding
        _resize_rows(embedding, "weight", num_tokens, self.spec.initializer_scale)
        embedding.num_embeddings = num_tokens
        if embedding.padding_idx is not None and embedding.padding_idx >= num_tokens:
            embedding.padding_idx = None
        for target in self.tied:  # the output projections that mirror the embedding (LM heads)
            module_name, _, leaf = target.rpartition(".")
            try:
                head = self.get_submodule(module_name)
            except AttributeError:
                continue  # this architecture has no LM head
            if not self.spec.tie_word_embeddings:
                _resize_rows(head, leaf, num_tokens, self.spec.initializer_scale)
            if getattr(head, "bias", None) is not None and head.bias.shape[0] == old:
                _resize_rows(head, "bias", num_tokens, 0.0)
            if hasattr(head, "out_features"):
                head.out_features = num_tokens
        if hasattr(self.spec, "vocab_size"):
            self.spec = dataclasses.replace(self.spec, vocab_size=num_tokens)
        self.tie_weights()
        return embedding

    def last_token_index(self, input_ids: torch.Tensor | None, batch_size: int) -> torch.Tensor | int:
        """Each row's last non-padding position (where decoder-only models classify a sequence), found as
        transformers does: the rightmost token that is not `pad_token_id`, so left and right padding work."""
        pad = self.spec.pad_token_id
        if pad is None:
            if batch_size > 1:
                raise InputError("sequence classification of a batch needs pad_token_id in the spec (to find each "
                                 "row's last token); set it, e.g. load_model(..., pad_token_id=0)")
            return -1
        if input_ids is None:
            warn_once("input_embeddings given: sequence classification uses the last position of each row, "
                      "since padding cannot be detected without input_ids")
            return -1
        positions = torch.arange(input_ids.shape[-1], device=input_ids.device)
        return (positions * (input_ids != pad)).argmax(-1)

    def linear_weight_names(self) -> set[str]:
        """Names of the Linear weights the decoding layout stores column-major (a tied weight under its
        source's name): see `decoding_layout`."""
        tied = {t: self.tied[t] for t in self.tied_names()}
        names = {f"{prefix}.weight".lstrip(".") for prefix, m in self.named_modules() if self._column_major(m)}
        return {tied.get(name, name) for name in names}

    def _column_major(self, module: nn.Module) -> bool:
        # Measured (docs/PERFORMANCE.md), one token times the weight: oneDNN reads the vocabulary projection
        # 20-30% faster column-major and the blocks' weights as fast or (width 1024) 1.7x faster row-major;
        # MKL (F.linear, where oneDNN is missing) reads every weight ~30% faster column-major.
        vocabulary = getattr(self.spec, "vocab_size", None)
        return isinstance(module, nn.Linear) and (not ONEDNN or module.out_features == vocabulary)

    def decoding_layout(self) -> "Model":
        """Store the Linear weights a decode step reads fastest column-major so (`[in, out]` in memory; the
        parameter keeps its `[out, in]` shape): with oneDNN (bombus' float32 CPU Linear) the projection to
        the vocabulary, else every Linear weight. Values are unchanged. `load_model` reads generative
        architectures' weights in this layout (`linear_weight_names`) and calls this for any left; returns the
        model."""
        for module in self.modules():
            if self._column_major(module) and module.weight.is_contiguous() and module.weight.dim() == 2:
                module.weight.data = module.weight.data.t().contiguous().t()
        return self

    @property
    def attention(self) -> str:
        """How attention is computed: "sdpa" (default), "eager" or "flash" (see `set_attention`)."""
        return next((m.implementation for m in self.modules() if isinstance(m, Attention)), "sdpa")

    def set_attention(self, implementation: str) -> "Model":
        """Choose how every attention layer computes: "sdpa" (default: PyTorch's scaled_dot_product_attention,
        which picks its fastest kernel), "eager" (explicit matmul-softmax-matmul, as transformers' eager
        path), or "flash" (SDPA restricted to its flash kernel; needs CUDA and float16/bfloat16 weights, and
        calls with a mask — padding, a KV cache — fall back to SDPA's other kernels with a warning saying
        why). All three give equal outputs within the dtype's tolerance. Returns the model."""
        check_implementation(implementation, self.device, self.dtype)
        for module in self.modules():
            if isinstance(module, Attention):
                module.implementation = implementation
        return self

    # -- caches ----------------------------------------------------------------------------------------

    def cache_layout(self) -> tuple[int, int, int]:
        """`(layers, kv_heads, head_dim)` of the KV cache; families with a decoder override."""
        raise InputError(f"{type(self).__name__} has no decoder, so it has no cache")

    def init_cache(self, batch_size: int, max_length: int, *, dtype: torch.dtype | None = None,
                   device: torch.device | str | None = None) -> Cache:
        """A static KV cache for `batch_size` rows of up to `max_length` tokens (prompt + new tokens)."""
        layers, heads, head_dim = self.cache_layout()
        limit = getattr(self.spec, "max_positions", None)
        if limit is not None and max_length > limit:
            raise InputError(f"cache max_length {max_length} exceeds max_positions={limit} of this model")
        return Cache(num_layers=layers, batch_size=batch_size, max_length=max_length, num_kv_heads=heads,
                     head_dim=head_dim, dtype=dtype or self.dtype, device=device or self.device)

    # -- saving and generation --------------------------------------------------------------------------

    def save_pretrained(self, directory: str | Path) -> None:
        """Write `config.json` and `model.safetensors` (each atomically) that transformers'
        `from_pretrained` loads with identical outputs."""
        quantized = [name for name, m in self.named_modules() if getattr(m, "quantized", False)]
        if quantized:
            raise CheckpointError(f"cannot save_pretrained a model with quantized layers ({quantized[0]}, ...: "
                                  f"int4/int8 weights kept from a GGUF file); transformers checkpoints hold float "
                                  f"weights: load it with quantize='dequantize' to save it")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.spec.to_hf_config()
        config["dtype"] = str(self.dtype).removeprefix("torch.")
        state = hf_state(self, self.keymap(), with_prefix=self.architecture != "base", skip=self.tied_names())
        save_state(state, directory / SAFETENSORS)
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        write_atomic(directory / "config.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))

    def generate(self, *args, **kwargs) -> torch.Tensor | Output:
        """Generate tokens (an `Output` with `return_dict_in_generate=True`); see `bombus.generation.generate`
        for every option."""
        if self.architecture not in self.generative:
            raise InputError(f"{self.architecture} cannot generate text; load the model with architecture="
                             f"'for_causal_language_modeling'")
        from .generation import generate

        return generate(self, *args, **kwargs)


def _resize_rows(module: nn.Module, name: str, rows: int, std: float) -> None:
    """Replace `module.<name>` by a parameter with `rows` rows: the old ones kept, new ones normal(0, std)."""
    old = getattr(module, name)
    new = torch.empty((rows, *old.shape[1:]), dtype=old.dtype, device=old.device)
    with torch.no_grad():
        keep = min(rows, old.shape[0])
        new[:keep] = old[:keep]
        if std > 0:
            new[keep:].normal_(0.0, std)
        else:
            new[keep:].zero_()
    setattr(module, name, nn.Parameter(new, requires_grad=old.requires_grad))


def _has(module: nn.Module, name: str) -> bool:
    try:
        module.get_parameter(name)
        return True
    except AttributeError:
        return False


def warn_once(message: str, _seen: set[str] = set()) -> None:
    if message not in _seen:
        _seen.add(message)
        warnings.warn(message, stacklevel=3)
