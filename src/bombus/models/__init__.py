"""The family registry: HF `model_type` -> model class, and HF class names <-> architectures."""

from __future__ import annotations

from ..errors import ConfigError
from .albert import Albert
from .bert import Bert
from .distilbert import Distilbert
from .gpt2 import Gpt2
from .llama import Llama
from .roberta import Roberta

FAMILIES = {cls.spec_class.model_type: cls for cls in (Gpt2, Bert, Roberta, Distilbert, Albert, Llama)}


def family(model_type: str):
    """The model class of HF `model_type` (e.g. "gpt2")."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise ConfigError(f"unsupported model_type {model_type!r}; bombus supports: "
                          f"{', '.join(sorted(FAMILIES))}") from None


def architecture_of(hf_class: str) -> tuple[str, str]:
    """`(model_type, architecture)` of a transformers class name such as "GPT2LMHeadModel"."""
    for model_type, cls in FAMILIES.items():
        for architecture, name in cls.hf_classes.items():
            if name == hf_class:
                return model_type, architecture
    raise ConfigError(f"unknown architecture class {hf_class!r} in config.json 'architectures'; known: "
                      f"{', '.join(n for c in FAMILIES.values() for n in c.hf_classes.values())}")


def hf_class_name(model_type: str, architecture: str) -> str:
    return family(model_type).hf_classes[architecture]
