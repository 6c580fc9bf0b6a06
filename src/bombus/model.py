"""`Model`: the base of every family's model — spec and architecture, input names, caches, weight init
and tying, saving in HF format, and generation."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from .checkpoint import SAFETENSORS, KeyMap, hf_state, save_state, write_atomic
from .errors import ConfigError, InputError
from .layers.cache import Cache
from .layers.norms import RMSNorm
from .spec import Spec

# transformers' input names -> ours (Bumblebee's).
ALIASES = {
    "head_mask": "attention_head_mask",
    "inputs_embeds": "input_embeddings",
    "encoder_hidden_states": "encoder_hidden_state",
    "past_key_values": "cache",
    "cross_attn_head_mask": "cross_attention_head_mask",
}


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

    def check_sequence(self, input_ids, input_embeddings, max_positions: int | None) -> tuple[int, ...]:
        """Shape `[batch..., seq]` of the input; errors for both/neither given or a too-long sequence."""
        if input_ids is not None and input_embeddings is not None:
            raise InputError("give either input_ids or input_embeddings, not both")
        if input_ids is None and input_embeddings is None:
            raise InputError("one of input_ids or input_embeddings is required")
        shape = tuple(input_ids.shape) if input_ids is not None else tuple(input_embeddings.shape[:-1])
        if max_positions is not None and shape[-1] > max_positions:
            raise InputError(f"sequence length {shape[-1]} exceeds max_positions={max_positions} of this "
                             f"model; truncate the input (e.g. tokenizer length={max_positions})")
        return shape

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
        for module in self.modules():
            self.init_module(module)
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
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.spec.to_hf_config()
        config["dtype"] = str(self.dtype).removeprefix("torch.")
        state = hf_state(self, self.keymap(), with_prefix=self.architecture != "base", skip=self.tied_names())
        save_state(state, directory / SAFETENSORS)
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        write_atomic(directory / "config.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))

    def generate(self, *args, **kwargs) -> torch.Tensor:
        """Generate tokens; see `bombus.generation.generate` for every option."""
        if self.architecture not in self.generative:
            raise InputError(f"{self.architecture} cannot generate text; load the model with architecture="
                             f"'for_causal_language_modeling'")
        from .generation import generate

        return generate(self, *args, **kwargs)


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
