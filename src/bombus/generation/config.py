"""`GenerationConfig`: the options of `generate`, under transformers' `GenerationConfig` names.

A config holds what a user or a checkpoint *set*; every field defaults to None ("unset"). `generate` stacks
three layers — the model's own config (its `generation_config.json`), the `generation_config` argument, and
keyword arguments, each overriding the one before — and fills what is still unset with `DEFAULTS`, the
values transformers uses when nothing sets them. `GenerationConfig.docs()` lists every option with its doc
and default.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GenerationError


def _opt(doc: str) -> Any:
    return field(default=None, metadata={"doc": doc})


@dataclass
class GenerationConfig:
    """Options of `generate`; unset (None) fields take the value in `DEFAULTS`. See `GenerationConfig.docs()`."""

    # Length.
    max_new_tokens: int | None = _opt("Number of tokens to generate, prompt excluded. Wins over `max_length`.")
    max_length: int | None = _opt(
        "Total length (prompt + new tokens). Unset together with `max_new_tokens`: 20 new tokens, capped at the "
        "model's `max_positions` (transformers' behaviour)."
    )
    min_new_tokens: int | None = _opt("EOS is forbidden until this many tokens were generated.")
    min_length: int | None = _opt("EOS is forbidden while the total length (prompt incl. padding) is below this.")
    early_stopping: bool | str | None = _opt(
        "Beam search: True stops as soon as `num_beams` hypotheses are finished; False stops when the best "
        "running beam can no longer beat them (heuristic); 'never' runs the exact search."
    )
    max_time: float | None = _opt("Stop after this many seconds (checked once per step).")
    stop_strings: str | list[str] | None = _opt(
        "Stop a row when its text ends with one of these strings (needs `tokenizer=` in `generate`)."
    )
    # Strategy.
    do_sample: bool | None = _opt("Sample from the processed distribution instead of taking the argmax.")
    num_beams: int | None = _opt("Beam search when > 1.")
    penalty_alpha: float | None = _opt("Contrastive search when > 0 together with `top_k` > 1 (and no sampling).")
    use_cache: bool | None = _opt("Accepted for compatibility; bombus always decodes with its static KV cache.")
    # Logits processing.
    temperature: float | None = _opt("Divide the logits by this before sampling (sampling only; > 0).")
    top_k: int | None = _opt("Sampling: keep the k most likely tokens (0 disables). Contrastive search: k candidates.")
    top_p: float | None = _opt("Sampling: keep the smallest set of most likely tokens whose probability reaches p.")
    min_p: float | None = _opt("Sampling: drop tokens less likely than `min_p` times the most likely one.")
    top_h: float | None = _opt(
        "Sampling: keep the most likely tokens (of the top 100) while their cumulated entropy stays within "
        "`top_h` x the entropy of those 100 (0 < top_h <= 1)."
    )
    typical_p: float | None = _opt("Sampling: locally typical sampling with this probability mass.")
    epsilon_cutoff: float | None = _opt("Sampling: drop tokens with probability below this (0 < e < 1).")
    eta_cutoff: float | None = _opt("Sampling: eta sampling cutoff (0 < eta < 1).")
    repetition_penalty: float | None = _opt("Divide (positive) / multiply (negative) logits of seen tokens by this.")
    length_penalty: float | None = _opt("Beam search: scores are divided by length ** length_penalty.")
    no_repeat_ngram_size: int | None = _opt("No n-gram of this size may occur twice (prompt included).")
    bad_words_ids: list[list[int]] | None = _opt("Token id sequences that must never be generated.")
    sequence_bias: list[list[Any]] | dict | None = _opt("[[token ids], bias] pairs added to completing tokens' logits.")
    forced_bos_token_id: int | None = _opt("Token forced as the first one when the prompt is a single token.")
    forced_eos_token_id: int | list[int] | None = _opt("Token forced as the last one when `max_length` is reached.")
    suppress_tokens: list[int] | None = _opt("Tokens that are never generated.")
    begin_suppress_tokens: list[int] | None = _opt("Tokens that are not generated at the first step.")
    exponential_decay_length_penalty: tuple[int, float] | None = _opt(
        "(start_index, decay_factor): raise EOS logits exponentially after start_index new tokens."
    )
    renormalize_logits: bool | None = _opt("Log-softmax the scores after all processors.")
    remove_invalid_values: bool | None = _opt("Replace nan/inf logits so generation cannot crash.")
    guidance_scale: float | None = _opt(
        "Classifier-free guidance: scores = g * (log p(x | prompt) - log p(x | u)) + log p(x | u), where u is "
        "`negative_prompt_ids` (a `generate` argument), else each row's last prompt token. 1 disables."
    )
    # Output.
    num_return_sequences: int | None = _opt("Sequences returned per prompt (sampling, or <= num_beams with beams).")
    return_dict_in_generate: bool | None = _opt(
        "Return an `Output` (`sequences`, plus what the `output_*` options ask for; beam search adds "
        "`beam_indices`, and `sequences_scores` with `output_scores`) instead of the token ids."
    )
    output_scores: bool | None = _opt("With return_dict_in_generate: `scores`, each step's processed scores.")
    output_logits: bool | None = _opt("With return_dict_in_generate: `logits`, each step's raw logits.")
    output_hidden_states: bool | None = _opt(
        "With return_dict_in_generate: `hidden_states`, per step the model's hidden states (not with "
        "contrastive search)."
    )
    output_attentions: bool | None = _opt(
        "With return_dict_in_generate: `attentions`, per step each layer's attention weights (not with "
        "contrastive search)."
    )
    # Special tokens.
    pad_token_id: int | None = _opt("Fills finished rows. Unset: the (first) EOS token, as transformers does.")
    bos_token_id: int | None = _opt("Beginning-of-sequence token: the prompt when `input_ids` is None.")
    eos_token_id: int | list[int] | None = _opt("A row finishes when it generates (any of) these tokens.")
    # bombus.
    seed: int | None = _opt("Sampling seed: the same seed gives the same tokens. Unset: torch's global RNG.")
    cuda_graph: bool | None = _opt("On CUDA, greedy and sampling replay the decode step from a captured CUDA graph "
                                   "(`bombus.generation.graphs`); False decodes step by step as on the CPU.")
    compile: bool | None = _opt("Greedy and sampling run the decode step compiled by torch.compile "
                                "(`bombus.generation.graphs`; on CUDA the compiled step is what the graph "
                                "captures): faster steps after a first call that compiles (seconds to a "
                                "minute per batch and cache-length bucket, once per process). Same tokens "
                                "as without in float32.")

    # ---- construction -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any], *, strict: bool = True) -> GenerationConfig:
        """Build a config from transformers-style names.

        `strict=True` (the default, used for user options) raises `GenerationError` on a name bombus does not
        know. `strict=False` (used for checkpoint files) skips metadata keys and transformers options that are
        unset or at their neutral value, and warns about the rest, which are then ignored.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        kept: dict[str, Any] = {}
        ignored: list[str] = []
        for name, value in values.items():
            if name in known:
                kept[name] = value
            elif strict:
                raise GenerationError(_unknown_message(name, known))
            elif name in _METADATA_KEYS or _is_neutral(name, value):
                continue
            else:
                ignored.append(f"{name}={value!r}")
        if ignored:
            warnings.warn(
                "generation options that bombus does not implement were ignored: " + ", ".join(sorted(ignored)),
                stacklevel=3,
            )
        return cls(**kept)

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set (not None)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def update(self, **values: Any) -> GenerationConfig:
        """A copy with `values` set (unknown names raise `GenerationError`)."""
        known = {f.name for f in dataclasses.fields(self)}
        for name in values:
            if name not in known:
                raise GenerationError(_unknown_message(name, known))
        return dataclasses.replace(self, **values)

    def save(self, folder: str | os.PathLike) -> None:
        """Write the set fields as `generation_config.json` in `folder` (transformers reads it)."""
        path = os.path.join(folder, "generation_config.json")
        values = self.to_dict()
        values.pop("seed", None)  # not transformers options
        values.pop("cuda_graph", None)
        values.pop("compile", None)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(values, f, indent=2, sort_keys=True)
        os.replace(tmp, path)

    @classmethod
    def docs(cls) -> str:
        """One line per option: name, default, doc."""
        lines = []
        for f in dataclasses.fields(cls):
            default = "20 new tokens" if f.name == "max_length" else repr(DEFAULTS.get(f.name))
            lines.append(f"{f.name} (default {default}): {f.metadata['doc']}")
        return "\n".join(lines)


# transformers' `_get_default_generation_params`: the values used when nothing sets an option.
DEFAULTS: dict[str, Any] = {
    "max_length": 20,  # new tokens when neither max_length nor max_new_tokens is set (see `resolve_lengths`)
    "min_length": 0,
    "do_sample": False,
    "early_stopping": False,
    "num_beams": 1,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "num_return_sequences": 1,
    "renormalize_logits": False,
    "remove_invalid_values": False,
    "use_cache": True,
    "cuda_graph": True,
    "compile": False,
    "guidance_scale": 1.0,
    "return_dict_in_generate": False,
    "output_scores": False,
    "output_logits": False,
    "output_hidden_states": False,
    "output_attentions": False,
}

GenerationConfig.__doc__ = f"{GenerationConfig.__doc__}\n\nOptions:\n" + "\n".join(
    f"    {line}" for line in GenerationConfig.docs().splitlines())

# Keys transformers writes into generation_config.json that are not options.
_METADATA_KEYS = {"transformers_version", "_from_model_config", "_commit_hash", "_original_object_hash"}

# transformers options bombus does not implement: (the values at which they do nothing, why). A checkpoint
# that sets one of them to anything else gets a warning (the option is ignored), a user option gets an error.
_COMMUNITY = "a transformers 5 `custom_generate` method, not part of its core generate"
_ASSISTED = "assisted / speculative decoding, which bombus does not implement"
_NEUTRAL: dict[str, tuple[tuple, str]] = {
    "num_beam_groups": ((1,), f"group beam search is {_COMMUNITY}"),
    "diversity_penalty": ((0.0,), f"group beam search is {_COMMUNITY}"),
    "constraints": ((), f"constrained beam search is {_COMMUNITY}"),
    "force_words_ids": ((), f"constrained beam search is {_COMMUNITY}"),
    "dola_layers": ((), f"DoLa decoding is {_COMMUNITY}"),
    "low_memory": ((False,), "transformers 5 dropped it too (it raises for beam search)"),
    "encoder_repetition_penalty": ((1.0,), "it needs an encoder-decoder model"),
    "encoder_no_repeat_ngram_size": ((0,), "it needs an encoder-decoder model"),
    "decoder_start_token_id": ((), "it needs an encoder-decoder model"),
    "token_healing": ((False,), "token healing is not implemented"),
    "watermarking_config": ((), "watermarking is not implemented"),
    "cache_implementation": ((), "bombus always decodes with its own static cache"),
    "cache_config": ((), "bombus always decodes with its own static cache"),
    "max_cache_len": ((), "bombus sizes its static cache to prompt + max_new_tokens"),
    "prefill_chunk_size": ((), "the prompt is prefilled in one pass"),
    "continuous_batching_config": ((), "continuous batching is not configured through generate"),
    "disable_compile": ((), "bombus compiles the decode step only when its own `compile` option is set"),
    "compile_config": ((), "bombus compiles the decode step only when its own `compile` option is set"),
    "is_assistant": ((False,), _ASSISTED),
    "num_assistant_tokens": ((), _ASSISTED),
    "num_assistant_tokens_schedule": ((), _ASSISTED),
    "assistant_confidence_threshold": ((), _ASSISTED),
    "assistant_lookbehind": ((), _ASSISTED),
    "target_lookbehind": ((), _ASSISTED),
    "assistant_early_exit": ((), _ASSISTED),
    "assistant_ensemble_weight": ((), _ASSISTED),
    "prompt_lookup_num_tokens": ((), _ASSISTED),
    "max_matching_ngram_size": ((), _ASSISTED),
    "speculation_type": ((), _ASSISTED),
    "use_mtp": ((False,), _ASSISTED),
}


def _is_neutral(name: str, value: Any) -> bool:
    if value is None:
        return True
    neutral = _NEUTRAL.get(name)
    if neutral is None:
        return False
    # () marks options of features bombus does not have (assistants, compile, other caches): no effect.
    return neutral[0] == () or value in neutral[0]


def _unknown_message(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    if name in _NEUTRAL:
        return f"generation option {name!r} is not supported by bombus: {_NEUTRAL[name][1]}"
    return f"unknown generation option {name!r}{hint} (GenerationConfig.docs() lists the options)"


def load_generation_config(
    source: str | os.PathLike, *, revision: str | None = None, token: str | bool | None = None
) -> GenerationConfig:
    """Read the generation options of a checkpoint: `generation_config.json`, else the generation fields of
    `config.json` (as transformers' `GenerationConfig.from_model_config` does).

    `source` is a local folder or a hub repo id. Options bombus does not implement are ignored with a warning.
    """
    from .. import hub
    from ..errors import SourceError

    path = hub.resolve_file(source, "generation_config.json", revision=revision, token=token, required=False)
    from_model_config = path is None
    if path is None:
        path = hub.resolve_file(source, "config.json", revision=revision, token=token, required=False)
    if path is None:
        raise SourceError(f"neither generation_config.json nor config.json found in {source!s}")
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise GenerationError(f"cannot read {path}: {e}") from None
    if not isinstance(values, dict):
        raise GenerationError(f"{path} holds a {type(values).__name__}, expected a JSON object")
    if from_model_config:
        known = {f.name for f in dataclasses.fields(GenerationConfig)}
        values = {k: v for k, v in values.items() if k in known and v is not None}
        values.pop("seed", None)
        values.pop("cuda_graph", None)
        values.pop("compile", None)
    return GenerationConfig.from_dict(values, strict=False)


# ---- resolution ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """A config with every option decided, lengths in absolute terms, and token ids normalised."""

    values: dict[str, Any]
    eos_token_ids: tuple[int, ...]  # empty: no EOS
    pad_token_id: int | None
    max_length: int  # total length of the output (prompt + new)
    min_length: int

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def mode(self) -> str:
        """'greedy', 'sample', 'beam', 'beam_sample' or 'contrastive' (transformers' get_generation_mode)."""
        if self.num_beams == 1:
            if self.do_sample:
                return "sample"
            if self.top_k is not None and self.top_k > 1 and self.penalty_alpha is not None and self.penalty_alpha > 0:
                return "contrastive"
            return "greedy"
        return "beam_sample" if self.do_sample else "beam"


def merge(
    base: GenerationConfig | None, given: GenerationConfig | dict | None, kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Stack the layers (model config < `generation_config` argument < kwargs) into one dict of set values.

    A layer that sets a length option (`max_new_tokens` / `max_length`, `min_new_tokens` / `min_length`) hides
    the other spelling from the layers below, so a checkpoint's `max_length` never fights a user's
    `max_new_tokens`. Setting both spellings in the same layer is a contradiction and raises.
    """
    if isinstance(given, dict):
        given = GenerationConfig.from_dict(given)
    elif given is not None and not isinstance(given, GenerationConfig):
        raise GenerationError(
            f"generation_config must be a bombus GenerationConfig or a dict, got {type(given).__name__}"
        )
    top = GenerationConfig.from_dict({k: v for k, v in kwargs.items() if v is not None})
    # An explicit None keyword unsets the option in every layer (transformers: `eos_token_id=None` turns EOS
    # off, `top_k=None` turns top-k off; other options fall back to their defaults).
    cleared = {k for k, v in kwargs.items() if v is None}
    GenerationConfig.from_dict(dict.fromkeys(cleared, 0))  # unknown names raise
    layers = [c.to_dict() for c in (base, given, top) if c is not None]
    merged: dict[str, Any] = {}
    for i, layer in enumerate(layers):
        user_layer = i > 0 or base is None
        for new, total in (("max_new_tokens", "max_length"), ("min_new_tokens", "min_length")):
            if new in layer and total in layer and user_layer:
                raise GenerationError(
                    f"both {new}={layer[new]} and {total}={layer[total]} are set; they say the same thing "
                    f"({total} counts the prompt, {new} does not): set only one"
                )
            if new in layer or total in layer:
                merged.pop(new, None)
                merged.pop(total, None)
        merged.update(layer)
    for name in cleared:
        merged.pop(name, None)
    if "top_k" in cleared:
        merged["top_k"] = 0
    return merged


def resolve(values: dict[str, Any], *, prompt_length: int, max_positions: int | None) -> Resolved:
    """Fill defaults, validate every option, and turn the length options into absolute lengths."""
    v = {f.name: None for f in dataclasses.fields(GenerationConfig)}
    v.update(values)
    has_max_length = v["max_length"] is not None
    for name, default in DEFAULTS.items():
        if v[name] is None:
            v[name] = default

    _check_types(v)

    # Token ids.
    eos = v["eos_token_id"]
    eos_ids: tuple[int, ...] = () if eos is None else ((eos,) if isinstance(eos, int) else tuple(eos))
    pad = v["pad_token_id"]
    if pad is None and eos_ids:
        pad = eos_ids[0]  # transformers' fallback

    # Lengths (transformers' _prepare_generated_length).
    if v["max_new_tokens"] is not None:
        if v["max_new_tokens"] <= 0:
            raise GenerationError(f"max_new_tokens must be > 0, got {v['max_new_tokens']}")
        max_length = prompt_length + v["max_new_tokens"]
    elif has_max_length:
        max_length = v["max_length"]
    else:
        max_length = prompt_length + DEFAULTS["max_length"]
        if max_positions is not None:
            max_length = min(max_length, max_positions)
    if prompt_length >= max_length:
        what = "max_length" if has_max_length and v["max_new_tokens"] is None else "max_positions"
        raise GenerationError(
            f"the prompt has {prompt_length} tokens (padding included) but {what} allows at most {max_length} "
            "in total: no room to generate; set max_new_tokens or shorten the prompt"
        )
    if max_positions is not None and max_length > max_positions:
        raise GenerationError(
            f"prompt ({prompt_length} tokens, padding included) + new tokens = {max_length} exceeds the model's "
            f"max_positions ({max_positions}); lower max_new_tokens to at most {max_positions - prompt_length}"
        )
    min_length = v["min_length"]
    if v["min_new_tokens"] is not None:
        min_length = prompt_length + v["min_new_tokens"]

    _check_combinations(v)
    return Resolved(values=v, eos_token_ids=eos_ids, pad_token_id=pad, max_length=max_length, min_length=min_length)


def _fail(name: str, value: Any, expected: str) -> None:
    raise GenerationError(f"generation option {name}={value!r}: expected {expected}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_types(v: dict[str, Any]) -> None:
    def integer(name: str, low: int) -> None:
        x = v[name]
        if x is not None and (not _is_int(x) or x < low):
            _fail(name, x, f"an integer >= {low}")

    def number(name: str, ok, expected: str) -> None:
        x = v[name]
        if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float)) or not ok(float(x))):
            _fail(name, x, expected)

    for name, low in (("max_new_tokens", 1), ("max_length", 1), ("min_new_tokens", 0), ("min_length", 0),
                      ("num_beams", 1), ("top_k", 0), ("no_repeat_ngram_size", 0), ("num_return_sequences", 1),
                      ("seed", 0)):
        integer(name, low)
    for name in ("do_sample", "use_cache", "renormalize_logits", "remove_invalid_values", "cuda_graph", "compile",
                 "return_dict_in_generate", "output_scores", "output_logits", "output_hidden_states",
                 "output_attentions"):
        if not isinstance(v[name], bool):
            _fail(name, v[name], "True or False")
    if v["early_stopping"] not in (True, False, "never") or not isinstance(v["early_stopping"], (bool, str)):
        _fail("early_stopping", v["early_stopping"], "True, False or 'never'")
    number("temperature", lambda x: x > 0 and math.isfinite(x),
           "a number > 0 (for greedy decoding use do_sample=False)")
    number("top_p", lambda x: 0 <= x <= 1, "a number in [0, 1]")
    number("min_p", lambda x: 0 <= x <= 1, "a number in [0, 1]")
    number("top_h", lambda x: 0 < x <= 1, "a number in (0, 1]")
    number("guidance_scale", math.isfinite, "a finite number (1 disables guidance)")
    number("typical_p", lambda x: 0 < x <= 1, "a number in (0, 1]")
    number("epsilon_cutoff", lambda x: 0 <= x < 1, "a number in [0, 1)")
    number("eta_cutoff", lambda x: 0 <= x < 1, "a number in [0, 1)")
    number("repetition_penalty", lambda x: x > 0 and math.isfinite(x), "a number > 0")
    number("length_penalty", math.isfinite, "a finite number")
    number("penalty_alpha", lambda x: 0 <= x <= 1, "a number in [0, 1]")
    number("max_time", lambda x: x > 0, "a number of seconds > 0")

    for name in ("pad_token_id", "bos_token_id", "forced_bos_token_id"):
        integer(name, 0)
    for name in ("eos_token_id", "forced_eos_token_id"):
        x = v[name]
        if x is not None and not (_is_int(x) and x >= 0) and not (
            isinstance(x, (list, tuple)) and len(x) > 0 and all(_is_int(i) and i >= 0 for i in x)
        ):
            _fail(name, x, "a token id >= 0 or a non-empty list of them")
    for name in ("suppress_tokens", "begin_suppress_tokens"):
        x = v[name]
        if x is not None and not (isinstance(x, (list, tuple)) and all(_is_int(i) and i >= 0 for i in x)):
            _fail(name, x, "a list of token ids >= 0")
    x = v["bad_words_ids"]
    if x is not None and not (
        isinstance(x, (list, tuple)) and len(x) > 0
        and all(isinstance(s, (list, tuple)) and len(s) > 0 and all(_is_int(i) and i >= 0 for i in s) for s in x)
    ):
        _fail("bad_words_ids", x, "a non-empty list of non-empty lists of token ids")
    x = v["stop_strings"]
    if x is not None and not (isinstance(x, str) and x) and not (
        isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(s, str) and s for s in x)
    ):
        _fail("stop_strings", x, "a non-empty string or list of non-empty strings")
    x = v["exponential_decay_length_penalty"]
    if x is not None and not (
        isinstance(x, (list, tuple)) and len(x) == 2 and _is_int(x[0]) and isinstance(x[1], (int, float))
    ):
        _fail("exponential_decay_length_penalty", x, "a pair (start_index: int, decay_factor: float)")


def _check_combinations(v: dict[str, Any]) -> None:
    if v["num_return_sequences"] > 1:
        if v["num_beams"] == 1 and not v["do_sample"]:
            raise GenerationError(
                f"num_return_sequences={v['num_return_sequences']} needs sampling (do_sample=True) or beam search "
                "(num_beams >= num_return_sequences): greedy decoding has a single answer"
            )
        if v["num_beams"] > 1 and v["num_return_sequences"] > v["num_beams"]:
            raise GenerationError(
                f"num_return_sequences={v['num_return_sequences']} exceeds num_beams={v['num_beams']}"
            )
    if v["penalty_alpha"] is not None and v["penalty_alpha"] > 0 and v["num_beams"] == 1 and not v["do_sample"]:
        if v["top_k"] is None or v["top_k"] < 2:
            raise GenerationError(f"contrastive search (penalty_alpha={v['penalty_alpha']}) needs top_k >= 2")
    if v["suppress_tokens"]:
        suppressed = set(v["suppress_tokens"])
        for name in ("forced_bos_token_id", "forced_eos_token_id"):
            forced = v[name]
            if forced is None:
                continue
            forced_set = {forced} if isinstance(forced, int) else set(forced)
            if forced_set and forced_set <= suppressed:
                raise GenerationError(
                    f"every token of {name} ({sorted(forced_set)}) is also in suppress_tokens: forcing a "
                    "suppressed token leaves no valid token at that step"
                )
