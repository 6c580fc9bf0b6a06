"""Model specs: frozen dataclasses of options, read from and written to HF `config.json`.

Each option is a dataclass field declared with `option(default, doc, hf=...)`: its name is Bumblebee's,
`hf` names the config.json key(s) it corresponds to (the first is written back; the rest are accepted
aliases), and the doc string feeds `Spec.describe()`, so documentation cannot drift from the code.
Unknown config.json fields are kept in `hf_extra` and written back unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .errors import ConfigError

_NO_HF = ()


def option(default: Any = dataclasses.MISSING, doc: str = "", *, hf: str | tuple[str, ...] = _NO_HF,
           factory: Any = dataclasses.MISSING) -> Any:
    """Declare a spec option: a default (or `factory` for mutable defaults), a one-line doc, HF key(s)."""
    hf_keys = (hf,) if isinstance(hf, str) else tuple(hf)
    metadata = {"doc": doc, "hf": hf_keys}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True, kw_only=True)
class Spec:
    """Options shared by every family. Families subclass this and add (or re-default) their own."""

    model_type: ClassVar[str] = ""
    # HF config defaults that differ from the spec defaults: used when config.json omits a key, so a
    # config.json means the same thing to bombus as to transformers.
    hf_defaults: ClassVar[dict[str, Any]] = {}

    architecture: str = option("base", "the architecture (head) of the model")
    num_labels: int = option(2, "the number of labels to use in the last layer for the classification task")
    id_to_label: dict = option(doc="a map from class index to label", factory=dict)
    problem_type: str | None = option(
        None, "classification loss: 'regression', 'single_label_classification' or "
        "'multi_label_classification'; inferred from the labels when not set", hf="problem_type")
    initializer_scale: float = option(
        0.02, "the standard deviation of the normal initializer used for initializing kernel parameters",
        hf="initializer_range")
    output_hidden_states: bool = option(False, "whether the model should return all hidden states",
                                        hf="output_hidden_states")
    output_attentions: bool = option(False, "whether the model should return all attentions",
                                     hf="output_attentions")
    pad_token_id: int | None = option(None, "the id of the padding token", hf="pad_token_id")
    bos_token_id: int | None = option(None, "the id of the beginning-of-sequence token", hf="bos_token_id")
    eos_token_id: int | list | None = option(None, "the id(s) of the end-of-sequence token",
                                             hf="eos_token_id")
    tie_word_embeddings: bool = option(True, "whether the language modeling head shares the token "
                                       "embedding weights", hf="tie_word_embeddings")
    hf_extra: dict = option(doc="config.json fields bombus does not use, preserved on save", factory=dict)

    # -- construction -------------------------------------------------------------------------------

    def __post_init__(self) -> None:
        if self.id_to_label and len(self.id_to_label) != self.num_labels:
            # id_to_label is authoritative when given (HF derives num_labels from id2label).
            object.__setattr__(self, "num_labels", len(self.id_to_label))
        self._check_values()
        self.validate()

    def _check_values(self) -> None:
        """`ConfigError` naming the option (and its config.json key) for a value of the wrong type, a size
        that is not positive, or a dropout rate outside [0, 1], before any layer is built from it."""
        hints = typing.get_type_hints(type(self))
        for f in self.options():
            value, hint = getattr(self, f.name), hints.get(f.name)
            key = f.metadata.get("hf", ())
            where = f"{f.name} (config.json {key[0]!r})" if key else f.name
            allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
            if not any(_is_a(value, t) for t in allowed):
                names = " or ".join("None" if t is type(None) else getattr(t, "__name__", str(t)) for t in allowed)
                raise ConfigError(f"{where} must be {names}, got {value!r}")
            if f.name in _SIZES and value is not None and value < 1:
                raise ConfigError(f"{where} must be a positive size, got {value!r}")
            if f.name == "max_token_types" and value < 0:
                raise ConfigError(f"{where} must be >= 0, got {value!r}")
            if f.name.endswith("dropout_rate") and value is not None and not 0 <= value <= 1:
                raise ConfigError(f"{where} is a dropout probability: it must be in [0, 1], got {value!r}")
        if self.num_labels < 1:
            raise ConfigError(f"num_labels must be >= 1, got {self.num_labels}")

    def validate(self) -> None:
        """Check option consistency; families extend this. Raises `ConfigError`."""

    @classmethod
    def options(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if f.name != "hf_extra"]

    @classmethod
    def describe(cls) -> str:
        """Documentation of every option, with its default, generated from the field declarations."""
        lines = []
        for f in cls.options():
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            lines.append(f"  * {f.name} - {f.metadata.get('doc', '')}. Defaults to {default!r}")
        return "\n".join(lines)

    # -- HF config.json -----------------------------------------------------------------------------

    @classmethod
    def from_hf_config(cls, config: dict[str, Any], *, architecture: str | None = None) -> "Spec":
        """Build a spec from a config.json dict (either name set: `n_embd` or `hidden_size`, ...)."""
        config = dict(config)
        values: dict[str, Any] = {}
        used: set[str] = {"architectures", "model_type", "transformers_version", "id2label", "label2id",
                          "num_labels", "torch_dtype", "dtype"}
        for f in cls.options():
            for key in f.metadata.get("hf", ()):
                if key in config:
                    values[f.name] = config[key]
                    break
            else:
                if f.metadata.get("hf") and f.name in cls.hf_defaults:
                    values[f.name] = cls.hf_defaults[f.name]
            used.update(f.metadata.get("hf", ()))
        if "id2label" in config and config["id2label"]:
            try:
                values["id_to_label"] = {int(k): v for k, v in dict(config["id2label"]).items()}
            except (TypeError, ValueError):
                raise ConfigError(f"config.json 'id2label' must map class indices to labels, e.g. "
                                  f'{{"0": "NEGATIVE"}}; got {config["id2label"]!r}') from None
            values["num_labels"] = len(values["id_to_label"])
        elif "num_labels" in config:
            values["num_labels"] = int(config["num_labels"])
        values = cls._adapt_from_hf(values, config)
        if architecture is not None:
            values["architecture"] = architecture
        values["hf_extra"] = {k: v for k, v in config.items() if k not in used}
        return cls(**values)

    @classmethod
    def _adapt_from_hf(cls, values: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        """Hook for family-specific conversions (e.g. `n_inner: null` meaning 4 x hidden size)."""
        return values

    def to_hf_config(self) -> dict[str, Any]:
        """The config.json dict transformers reads for this spec (architectures, model_type included)."""
        from .models import hf_class_name

        config: dict[str, Any] = dict(self.hf_extra)
        for f in self.options():
            keys = f.metadata.get("hf", ())
            if keys:
                config[keys[0]] = self._value_to_hf(f.name, getattr(self, f.name))
        labels = self.id_to_label or {i: f"LABEL_{i}" for i in range(self.num_labels)}
        config["id2label"] = {str(i): label for i, label in labels.items()}
        config["label2id"] = {label: i for i, label in labels.items()}
        config["model_type"] = self.model_type
        config["architectures"] = [hf_class_name(self.model_type, self.architecture)]
        return config

    def _value_to_hf(self, name: str, value: Any) -> Any:
        """Hook for family-specific conversions on save (inverse of `_adapt_from_hf`); families that
        override it call this for the conversions every family shares."""
        if name == "activation":
            # Bumblebee's name for GPT-2's tanh-approximated GELU is not one transformers knows.
            return {"gelu_approx_tanh": "gelu_new"}.get(value, value)
        return value


# Options that count something (a table, a width, a number of blocks): 1 or more.
_SIZES = {"vocab_size", "hidden_size", "num_blocks", "num_attention_heads", "intermediate_size", "max_positions",
          "embedding_size", "num_groups", "block_depth", "attention_head_size", "num_key_value_heads"}


def _is_a(value: Any, kind: Any) -> bool:
    """Whether `value` fits the annotation `kind` (an int is a float; a bool is not an int)."""
    if kind is type(None):
        return value is None
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    origin = typing.get_origin(kind) or kind
    return isinstance(origin, type) and isinstance(value, origin)


def configure(spec: Spec, **options: Any) -> Spec:
    """A copy of `spec` with `options` changed. Unknown option names raise `ConfigError`."""
    known = {f.name for f in dataclasses.fields(spec)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for {type(spec).__name__}; "
            f"known options: {', '.join(sorted(known - {'hf_extra'}))}"
        )
    if "num_labels" in options and "id_to_label" not in options and spec.id_to_label:
        options["id_to_label"] = {}
    return dataclasses.replace(spec, **options)


def read_config(path: Path) -> dict[str, Any]:
    """Parse a config.json, raising `ConfigError` that names the file on bad JSON."""
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must hold a JSON object, found {type(config).__name__}")
    return config
