"""Chat templates: a conversation (a list of {"role", "content", ...} messages) rendered to prompt text by
the model's Jinja template, exactly as transformers' `apply_chat_template` renders it (`pip install jinja2`).

The environment is transformers' (`utils/chat_template_utils.py`): a sandbox with `trim_blocks` and
`lstrip_blocks`, the `loopcontrols` extension, the `{% generation %}` tag (rendered as plain text here),
a `tojson` filter that does not escape HTML, and `raise_exception`, `strftime_now`, `dict` and `namespace`
globals. Templates come from model repositories: they are untrusted code, hence the sandbox.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .errors import InputError, TokenizerError

# Names a message's reasoning is passed under; templates read the first (gpt-oss ones read "thinking").
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


@functools.lru_cache(maxsize=16)
def compile_template(template: str):
    """The compiled Jinja template (cached: chat templates are long and reused for every request)."""
    try:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise TokenizerError("chat templates need jinja2: pip install 'bombus[chat]'") from None

    class Generation(jinja2.ext.Extension):
        """`{% generation %}...{% endgeneration %}` marks assistant text for training masks; rendered as is."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            return caller()

    class Namespace(jinja2.utils.Namespace):
        # no dunder/underscore attributes: they lead to CPython internals
        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                Namespace._check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            Namespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(f"chat templates cannot set underscore attributes ({name!r})")

    class TemplateDict:
        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda f: datetime.now().strftime(f),
                       dict=TemplateDict(), namespace=Namespace)
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise TokenizerError(f"the chat template is not valid Jinja (line {e.lineno}: {e.message})") from None


def _plain(value: Any) -> Any:
    """Only JSON-like data reaches the sandbox; other objects become a placeholder naming their type."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):  # pydantic models (e.g. OpenAI SDK messages)
        return _plain(value.model_dump())
    if getattr(value, "shape", None) == () and callable(getattr(value, "item", None)):  # numpy/torch scalars
        return _plain(value.item())
    return f"<{type(value).__name__}>"


def _messages(conversation: Any) -> list[dict]:
    messages = []
    for i, message in enumerate(_plain(getattr(conversation, "messages", conversation))):
        if not isinstance(message, dict):
            raise InputError(f"chat message {i} must be a dict with 'role' and 'content', got {message!r}")
        message = {k: v for k, v in message.items() if v is not None}  # `content=None` renders as nothing
        reasoning = next((message[k] for k in _REASONING_FIELDS if message.get(k) is not None), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        messages.append(message)
    return messages


def is_batch(conversation: Any) -> bool:
    """Whether `conversation` is several conversations (a list of message lists)."""
    return isinstance(conversation, (list, tuple)) and bool(conversation) and (
        isinstance(conversation[0], (list, tuple)) or hasattr(conversation[0], "messages"))


def render(template: str, conversation: list, *, add_generation_prompt: bool = False,
           continue_final_message: bool | str = False, tools: list | None = None, documents: list | None = None,
           **variables: Any) -> str:
    """One conversation as prompt text. `variables` (e.g. the special tokens, `enable_thinking=False`)
    are visible to the template; `tools` are JSON schemas; `continue_final_message` leaves the last
    message open (no end-of-turn) so the model continues it."""
    if not conversation:
        raise InputError("cannot apply a chat template to an empty conversation: give at least one message")
    if continue_final_message and add_generation_prompt:
        raise InputError("continue_final_message and add_generation_prompt exclude each other: the first "
                         "continues the last message, the second starts a new assistant message")
    if tools is not None and any(not isinstance(t, dict) for t in tools):
        raise InputError("tools must be JSON schemas (dicts)")
    messages = _messages(conversation)
    final = None
    if continue_final_message:
        field = continue_final_message if isinstance(continue_final_message, str) else "content"
        final = messages[-1].get(field)
        if not isinstance(final, str):
            raise InputError(f"continue_final_message: the last message has no text {field!r} to continue")
        fields = [f for f in _REASONING_FIELDS if messages[-1].get(f) == final] if field in _REASONING_FIELDS \
            else [field]
        if not any(f in template for f in fields):
            raise InputError(f"continue_final_message: the chat template never reads {field!r}")
        for f in fields:
            messages[-1][f] = final + _CONTINUE_TAG
    import jinja2

    try:
        text = compile_template(template).render(messages=messages, tools=_plain(tools), documents=_plain(documents),
                                                 add_generation_prompt=add_generation_prompt, **_plain(variables))
    except jinja2.exceptions.TemplateError as e:
        raise InputError(f"the chat template refused the conversation: {e}") from None
    if final is not None:
        if final.strip() not in text or _CONTINUE_TAG.strip() not in text:
            raise InputError("continue_final_message: the chat template dropped (part of) the final message")
        at = text.rindex(_CONTINUE_TAG.strip())
        text = text[:at] if text[at:at + len(_CONTINUE_TAG)] == _CONTINUE_TAG else text[:at].rstrip()
    return text
