"""The OpenAI request fields: validation into engine options, with a clear `APIError` (HTTP 400) for wrong
types, values out of range, and fields bombus cannot honour (never silently ignored)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .engine import SamplingOptions


class APIError(Exception):
    """An error answer: HTTP `status` and OpenAI's error body `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                             413: "invalid_request_error", 503: "overloaded_error"}.get(status, "server_error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


# Fields of the OpenAI API that bombus cannot honour, with the value that means "not used" (accepted).
UNSUPPORTED = {
    "suffix": None, "presence_penalty": 0, "frequency_penalty": 0, "logit_bias": {}, "tools": [],
    "tool_choice": "none", "functions": [], "function_call": "none", "parallel_tool_calls": None,
    "response_format": {"type": "text"}, "audio": None, "modalities": ["text"], "prediction": None,
    "dimensions": None, "service_tier": None, "store": False, "reasoning_effort": None, "web_search_options": None,
}
COMMON = {"model", "max_tokens", "temperature", "top_p", "n", "stop", "seed", "stream", "stream_options", "user",
          "metadata", "top_k", "repetition_penalty", "ignore_eos"}
COMPLETION_FIELDS = COMMON | {"prompt", "logprobs", "echo", "best_of"}
CHAT_FIELDS = COMMON | {"messages", "logprobs", "top_logprobs", "max_completion_tokens"}
EMBEDDING_FIELDS = {"model", "input", "encoding_format", "user"}


def check_fields(body: dict[str, Any], allowed: set[str], route: str) -> None:
    for name, value in body.items():
        if name in UNSUPPORTED:
            harmless = UNSUPPORTED[name]
            if value is None or value == harmless or (name == "logit_bias" and not value):
                continue
            raise bad(f"{name!r} is not supported by bombus serve ({route}); remove it", param=name,
                      code="unsupported_field")
        if name not in allowed:
            raise bad(f"unknown field {name!r} for {route}; the fields are {sorted(allowed)}", param=name,
                      code="unknown_field")


def _number(body: dict, name: str, default: float, low: float, high: float, *, low_open: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad(f"{name} must be a number, got {value!r}", param=name)
    if value < low or value > high or (low_open and value == low):
        interval = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise bad(f"{name} must lie in {interval}, got {value}", param=name)
    return float(value)


def integer(body: dict, name: str, default: int | None, low: int | None = None, high: int | None = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"{name} must be an integer, got {value!r}", param=name)
    if (low is not None and value < low) or (high is not None and value > high):
        raise bad(f"{name} must lie in [{low}, {high if high is not None else '...'}], got {value}", param=name)
    return value


def boolean(body: dict, name: str, default: bool = False) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad(f"{name} must be true or false, got {value!r}", param=name)
    return value


def stop_strings(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    values = [stop] if isinstance(stop, str) else stop
    if not isinstance(values, list) or not all(isinstance(s, str) and s for s in values) or len(values) > 4:
        raise bad(f"stop must be a non-empty string or a list of up to 4 of them, got {stop!r}", param="stop")
    return tuple(values)


def include_usage(body: dict) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict) or set(options) - {"include_usage", "continuous_usage_stats"}:
        raise bad(f"stream_options must be {{\"include_usage\": bool}}, got {options!r}", param="stream_options")
    if options and not body.get("stream"):
        raise bad("stream_options is only allowed with stream=true", param="stream_options")
    return boolean(options, "include_usage")


@dataclass
class Generation:
    """A generation request's settings beside the per-sequence `SamplingOptions`."""

    n: int
    stream: bool
    include_usage: bool
    max_tokens: int | None  # None: as many as the context leaves
    seed: int | None
    temperature: float
    top_p: float
    top_k: int
    repetition_penalty: float
    stop: tuple[str, ...]
    logprobs: int | None
    ignore_eos: bool
    echo: bool = False  # /v1/completions: the text starts with the prompt (with logprobs: the prompt's too)

    def options(self, max_new_tokens: int, choice: int) -> SamplingOptions:
        """The sampling options of choice `choice` (its seed is `seed + choice`: choices differ, reproducibly)."""
        seed = None if self.seed is None else self.seed + choice
        return SamplingOptions(max_new_tokens=max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                               top_k=self.top_k, repetition_penalty=self.repetition_penalty, seed=seed,
                               stop=self.stop, logprobs=self.logprobs, ignore_eos=self.ignore_eos,
                               prompt_logprobs=self.echo and self.logprobs is not None)


def generation(body: dict, *, chat: bool, default_max_tokens: int | None) -> Generation:
    echo = False if chat else boolean(body, "echo")
    max_tokens = integer(body, "max_tokens", None, 1 if chat else 0)
    if max_tokens == 0 and not echo:  # as OpenAI: 0 returns the prompt alone (with logprobs: scored)
        raise bad("max_tokens 0 generates nothing: it is allowed only with echo=true (the prompt alone, with "
                  "logprobs its log-probabilities); give max_tokens of at least 1", param="max_tokens")
    if chat and body.get("max_completion_tokens") is not None:
        if max_tokens is not None:
            raise bad("give max_tokens or max_completion_tokens, not both", param="max_completion_tokens")
        max_tokens = integer(body, "max_completion_tokens", None, 1)
    if chat:
        logprobs_flag = boolean(body, "logprobs")
        top = integer(body, "top_logprobs", None, 0, 20)
        if top is not None and not logprobs_flag:
            raise bad("top_logprobs needs logprobs=true", param="top_logprobs")
        logprobs = (top or 0) if logprobs_flag else None
    else:
        logprobs = integer(body, "logprobs", None, 0, 20)
    n = integer(body, "n", 1, 1, 16)
    best_of = integer(body, "best_of", None, 1)
    if best_of is not None and best_of != n:
        raise bad("best_of other than n is not supported by bombus serve; remove it", param="best_of",
                  code="unsupported_field")
    seed = integer(body, "seed", None)
    if seed is not None and not 0 <= seed < 2 ** 63:
        raise bad(f"seed must lie in [0, 2**63), got {seed}", param="seed")
    return Generation(
        n=n, stream=boolean(body, "stream"), include_usage=include_usage(body),
        max_tokens=max_tokens if max_tokens is not None else default_max_tokens, seed=seed,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, low_open=True),
        top_k=integer(body, "top_k", 0, 0), repetition_penalty=_number(body, "repetition_penalty", 1.0, 0.0, 10.0,
                                                                        low_open=True),
        stop=stop_strings(body), logprobs=logprobs, ignore_eos=boolean(body, "ignore_eos"), echo=echo)


def prompts(body: dict) -> list[str | list[int]]:
    """`prompt` of /v1/completions: a string, a list of strings, token ids, or a list of token id lists."""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return list(prompt)
        if all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            return [list(prompt)]
        if all(isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p)
               for p in prompt):
            return [list(p) for p in prompt]
    raise bad("prompt must be a string, a non-empty list of strings, a list of token ids or a list of such lists",
              param="prompt")


ROLES = ("system", "developer", "user", "assistant", "tool")


def messages(body: dict) -> list[dict[str, str]]:
    """`messages` of /v1/chat/completions as `[{"role", "content": str}]` (text content parts joined)."""
    value = body.get("messages")
    if not isinstance(value, list) or not value:
        raise bad("messages must be a non-empty list of {\"role\", \"content\"} objects", param="messages")
    out = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise bad(f"{where} must be an object with a role in {list(ROLES)}", param=where)
        extra = set(message) - {"role", "content", "name"}
        if extra:
            raise bad(f"{where}: field(s) {sorted(extra)} are not supported by bombus serve", param=where,
                      code="unsupported_field")
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise bad(f"{where}.content: only text parts ({{\"type\": \"text\", \"text\": ...}}) are "
                              f"supported", param=where, code="unsupported_field")
                parts.append(part["text"])
            content = "".join(parts)
        if not isinstance(content, str):
            raise bad(f"{where}.content must be a string or a list of text parts", param=where)
        out.append({"role": message["role"], "content": content})
    return out


def embedding_inputs(body: dict) -> list[str]:
    value = body.get("input")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise bad("input must be a string or a non-empty list of strings (token ids are not supported)",
                  param="input")
    if any(not v for v in value):
        raise bad("input must not contain empty strings", param="input")
    return value
