"""Chat: the assistant's reply to a conversation, rendered by the tokenizer's chat template (Bumblebee's
`Text.conversation`, on transformers' chat templates), batched or streamed as text chunks."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..chat import is_batch
from ..errors import ConfigError, InputError
from ..generation import GenerationConfig
from .generation import Generation
from .serving import Request


class Chat(Generation):
    """See `chat`."""

    task = "chat"

    def __init__(self, model: torch.nn.Module, tokenizer: Any,
                 generation_config: GenerationConfig | dict | None = None, *, stream: bool = False,
                 system_prompt: str | None = None, chat_template: str | None = None,
                 template_variables: dict[str, Any] | None = None,
                 stop_sequences: Sequence[str] | str | None = None, **options: Any):
        if options.get("return_full_text"):
            raise ConfigError("chat returns the assistant's reply only: return_full_text is not an option")
        options.pop("return_full_text", None)
        super().__init__(model, tokenizer, generation_config, stream=stream, stop_sequences=stop_sequences, **options)
        self.chat_template = chat_template or getattr(tokenizer, "chat_template", None)
        if not self.chat_template:
            raise ConfigError("chat needs a chat template, and this tokenizer has none (no chat_template in "
                              "tokenizer_config.json, chat_template.jinja or the GGUF metadata); pass "
                              "chat_template='...' (a Jinja string), or use a chat/instruct model")
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise ConfigError(f"system_prompt must be a str, got {type(system_prompt).__name__}")
        self.system_prompt = system_prompt
        self.template_variables = dict(template_variables or {})

    def __call__(self, inputs: Any) -> Any:
        """The reply to one conversation (a list of messages), or a list of replies to a list of
        conversations; with `stream=True`, an iterator of text chunks for one conversation."""
        batch = is_batch(inputs)
        if self.stream:
            if batch:
                raise InputError("stream=True streams one conversation: pass a list of messages, not a list of "
                                 "conversations")
            return self._stream(self.prepare(inputs))  # prepared now: bad input fails in the caller
        conversations = list(inputs) if batch else [inputs]
        results = self.batcher.map([self.prepare(c) for c in conversations])
        return results if batch else results[0]

    def prepare(self, item: Any) -> Request:
        messages = self._messages(item)
        while True:
            rows = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                                      chat_template=self.chat_template, **self.template_variables)
            length = rows["input_ids"].shape[1]
            if self.max_length is None or length <= self.max_length:
                return Request(messages, {k: rows[k] for k in ("input_ids", "attention_mask")})
            oldest = next((i for i, m in enumerate(messages[:-1]) if m.get("role") != "system"), None)
            if not self.truncate or oldest is None:
                raise InputError(f"the conversation has {length} tokens, more than the {self.max_length} this "
                                 f"serving accepts ({self._limit_source()}); shorten it, or create the serving "
                                 f"with truncate=True to drop its oldest messages")
            del messages[oldest]  # the oldest turn goes first; the system prompt and the last message stay

    def _messages(self, item: Any) -> list[dict]:
        if not isinstance(item, (list, tuple)) or not item:
            raise InputError(f"a conversation is a non-empty list of messages {{'role': ..., 'content': ...}}, got "
                             f"{item!r:.80}")
        for i, message in enumerate(item):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise InputError(f"message {i} of the conversation must be a dict with a str 'role' (and "
                                 f"'content'), got {message!r:.80}")
        messages = [dict(m) for m in item]
        if self.system_prompt is not None and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return messages


def chat(model: torch.nn.Module, tokenizer: Any, generation_config: GenerationConfig | dict | None = None, *,
         stream: bool = False, system_prompt: str | None = None, chat_template: str | None = None,
         template_variables: dict[str, Any] | None = None, stop_sequences: Sequence[str] | str | None = None,
         **options: Any) -> Chat:
    """A serving that answers conversations with a chat (instruct) model: each conversation is rendered by
    the tokenizer's chat template with the assistant's turn opened (`add_generation_prompt=True`), the
    model continues it, and the reply is the new text, up to the end-of-turn token.

    Input: a conversation, a list of messages `[{"role": "system" | "user" | "assistant", "content": str},
    ...]` (a list of conversations is a batch). Result: `{"text": str, "token_summary": {"input", "output",
    "padding"}}`; append `{"role": "assistant", "content": result["text"]}` to continue the conversation.

    Options:
    - `system_prompt` [None]: a system message put first in conversations that do not start with one.
    - `chat_template` [None: the tokenizer's]: a Jinja chat template; `template_variables` [None]: more
      variables the template sees (e.g. `{"enable_thinking": False}`).
    - `stream` [False]: a call takes one conversation and returns an iterator of text chunks.
    - `truncate` [False]: a conversation longer than the limit raises `InputError`; True drops its oldest
      messages (never the system prompt or the last message) until it fits.
    - `generation_config`, `stop_sequences`, any `GenerationConfig` field (`max_new_tokens`, `do_sample`,
      `temperature`, `top_p`, `seed`, ...) and the runtime options (`batch_size`, `sequence_length`,
      `batch_timeout_ms`): as for `generation`, whose machinery this serving uses.
    """
    return Chat(model, tokenizer, generation_config, stream=stream, system_prompt=system_prompt,
                chat_template=chat_template, template_variables=template_variables, stop_sequences=stop_sequences,
                **options)
