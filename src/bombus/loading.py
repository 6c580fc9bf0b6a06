"""The entry points: `load_spec`, `build_model`, `load_model`."""

from __future__ import annotations

import functools
import os
from typing import Any

import torch

from .checkpoint import find_weight_files, load_state
from .errors import ConfigError, SourceError
from .gguf import gguf_path
from .hub import resolve_file
from .layers.attention import check_implementation
from .model import Model
from .models import architecture_of, family
from .quantize import QUANTIZE_MODES, quantize_model
from .spec import Spec, configure, read_config


def load_spec(source: str | os.PathLike, architecture: str | None = None, *, revision: str | None = None,
              token: str | bool | None = None, gguf_file: str | None = None, **options: Any) -> Spec:
    """The spec of the checkpoint at `source` (a local folder or a hub repo id), read from its
    config.json, or of a GGUF file (`source` a .gguf path, or `gguf_file` a file in `source`), read from
    its metadata. `architecture` overrides the one config.json names (default "base" when it names none;
    for GGUF "for_causal_language_modeling"); other keyword `options` override spec options (unknown
    names raise `ConfigError`)."""
    gguf = gguf_path(source, gguf_file, revision=revision, token=token)
    if gguf is not None:
        from . import gguf as gguf_format

        return gguf_format.load_spec(gguf, architecture, **options)
    try:
        path = resolve_file(source, "config.json", revision=revision, token=token)
    except SourceError as e:
        raise ConfigError(f"cannot load a model from {source}: {e} (every checkpoint needs its config.json)"
                          ) from None
    config = read_config(path)
    model_type = config.get("model_type")
    if model_type is None:
        raise ConfigError(f"{path} has no 'model_type'; expected e.g. \"gpt2\"")
    cls = family(model_type)
    if architecture is None:
        names = config.get("architectures") or []
        architecture = architecture_of(names[0])[1] if names else "base"
    return configure(cls.spec_class.from_hf_config(config, architecture=architecture), **options)


def _quantize_blocks_when_read(model: Model, mode: str):
    """A `load_state` callback quantising each transformer block as soon as all its tensors are read, so
    loading with `quantize=` never holds the whole model in float (its peak: the float embeddings, the
    quantised blocks and one float block). Blocks with a tensor missing from the files wait for the final
    `quantize_model`, after their initialisation."""
    from .layers.transformer import Block

    waiting: dict[int, tuple[torch.nn.Module, set[str]]] = {}
    block_of: dict[str, int] = {}
    for prefix, module in model.named_modules():
        if isinstance(module, Block):
            names = {f"{prefix}.{n}" for n, _ in [*module.named_parameters(), *module.named_buffers()]}
            waiting[id(module)] = (module, names)
            block_of.update(dict.fromkeys(names, id(module)))

    def loaded(name: str) -> None:
        key = block_of.get(name)
        if key is None or key not in waiting:
            return
        module, names = waiting[key]
        names.discard(name)
        if not names:
            del waiting[key]
            quantize_model(module, mode)
            _trim_heap()  # the block's float tensors are free now: give their pages back

    return loaded


def _trim_heap() -> None:
    """Return the C heap's free pages to the system (glibc's `malloc_trim`; nothing elsewhere). Freed tensors
    of a few MB live in the heap, whose holes otherwise stay resident: quantising GPT-2 medium while loading
    kept ~1.5 GB resident without it."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _model_class(spec: Spec) -> type[Model]:
    return family(spec.model_type)


def build_model(spec: Spec, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
                attention: str = "sdpa") -> Model:
    """A model of `spec` with random weights (normal with std `initializer_scale`), in eval mode, built and
    initialised directly on `device` (default CPU) in `dtype` (default float32); `attention` as in
    `Model.set_attention`."""
    with torch.device(device or "cpu"):
        model = _model_class(spec)(spec)
    model.init_weights()  # in float32, so a seed gives the same weights in every dtype
    return model.to(dtype=dtype).set_attention(attention).eval()


def load_model(source: str | os.PathLike, *, architecture: str | None = None, dtype: torch.dtype | None = None,
               device: torch.device | str | None = None, revision: str | None = None,
               token: str | bool | None = None, gguf_file: str | None = None, quantize: str | None = None,
               attention: str = "sdpa", **options: Any) -> Model:
    """Load the pretrained model at `source` (a local folder or a hub repo id `owner/name`).

    Options: `architecture` (default: the one config.json names; a base checkpoint loads into a head
    architecture with new head weights, a head checkpoint into base); `dtype` (default float32) and
    `device` (default CPU; e.g. "cuda") that weights are converted to while loading, one tensor at a time
    straight onto the device; `attention` "sdpa" (default), "eager" or "flash" (`Model.set_attention`);
    `revision` and `token` for the hub; other keywords override spec options (e.g. `num_labels=3`).
    Returns the model in eval mode.

    `quantize` (CPU, float checkpoints): None (default) keeps float weights; "int8" makes every Linear
    layer int8 (per-row weights, activations quantised per call: `bombus.quantize.DynamicInt8Linear`; an LM
    head tied to the token embedding reads the embedding's int8 rows: `TiedInt8Linear`);
    "int4" makes them 4-bit in groups of 64 inputs with bfloat16 activations (`Int4Linear`). Either way the
    token embedding is stored in int8. See `bombus.quantize.quantize_model`; docs/PERFORMANCE.md for the
    speed and the error measured.

    GGUF files (llama.cpp): `source` a .gguf path, or `gguf_file="name.gguf"` in a folder or hub repo.
    `quantize` for GGUF: "keep" (default on CPU) keeps Q4_0/Q4_1 weights in 4 bits and Q8_0 ones in
    8 bits (see `bombus.gguf`), "dequantize" makes every weight a `dtype` float.
    """
    check_implementation(attention, torch.device(device or "cpu"), dtype or torch.float32)  # before any reading
    gguf = gguf_path(source, gguf_file, revision=revision, token=token)
    if gguf is not None:
        from . import gguf as gguf_format

        return gguf_format.load_model(gguf, architecture=architecture, dtype=dtype, device=device,
                                      quantize=quantize, **options).set_attention(attention)
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise ConfigError(f"quantize must be one of {', '.join(map(repr, QUANTIZE_MODES))} or None for "
                          f"{source} (a config.json checkpoint; 'keep'/'dequantize' apply to GGUF files), "
                          f"got {quantize!r}")
    if quantize is not None and torch.device(device or "cpu").type != "cpu":
        raise ConfigError(f"quantize={quantize!r} runs PyTorch's CPU kernels; device {device} is not supported "
                          f"(load float weights there: quantize=None, e.g. with dtype=torch.bfloat16)")
    spec = load_spec(source, architecture, revision=revision, token=token, **options)
    files = find_weight_files(source, revision=revision, token=token)
    dtype = dtype or torch.float32
    device = torch.device(device or "cpu")
    with torch.device("meta"):
        model = _model_class(spec)(spec)
    decoding = model.architecture in model.generative and device.type == "cpu" and quantize is None
    load_state(model, files, model.keymap(), dtype=dtype, device=device, init=model.init_module,
               tied=model.tied_names(), column_major=model.linear_weight_names() if decoding else frozenset(),
               loaded=_quantize_blocks_when_read(model, quantize) if quantize is not None else None)
    model.tie_weights()
    if model.architecture in model.generative:
        # The checkpoint's generation defaults (generation_config.json, else config.json), as generate uses.
        from .generation import load_generation_config

        model.generation_config = load_generation_config(source, revision=revision, token=token)
        if device.type == "cpu" and quantize is None:
            model.decoding_layout()
    if quantize is not None:
        quantize_model(model, quantize)
        _trim_heap()
    return model.set_attention(attention).eval()
