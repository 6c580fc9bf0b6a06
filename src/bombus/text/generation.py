"""Text generation: continue a prompt (Bumblebee's `Text.generation`), batched or streamed as text chunks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Sequence

import torch

from ..errors import ConfigError, InputError
from ..generation import GenerationConfig, stream as stream_text
from .serving import Request, Serving, text_input

RUNTIME_OPTIONS = ("batch_size", "sequence_length", "truncate", "batch_timeout_ms")


class Generation(Serving):
    """See `generation`."""

    task = "generation"

    def __init__(self, model: torch.nn.Module, tokenizer: Any,
                 generation_config: GenerationConfig | dict | None = None, *, stream: bool = False,
                 return_full_text: bool = False, stop_sequences: Sequence[str] | str | None = None, **options: Any):
        runtime = {k: options.pop(k) for k in RUNTIME_OPTIONS if k in options}
        if getattr(model, "architecture", None) not in getattr(model, "generative", ()):
            raise ConfigError(f"generation needs a generative model (e.g. architecture='for_causal_language_modeling'),"
                              f" got {getattr(model, 'architecture', None)!r}")
        super().__init__(model, tokenizer, **runtime)
        if isinstance(stop_sequences, str):
            stop_sequences = [stop_sequences]
        self.stop_sequences = [s for s in (stop_sequences or [])]
        if not all(isinstance(s, str) and s for s in self.stop_sequences):
            raise ConfigError(f"stop_sequences must be non-empty str, got {stop_sequences!r}")
        if isinstance(generation_config, dict):
            generation_config = GenerationConfig.from_dict(generation_config)
        self.generation_config = generation_config
        self.fields = dict(options)
        if self.stop_sequences:
            self.fields["stop_strings"] = self.stop_sequences
        GenerationConfig().update(**self.fields)  # unknown option names fail now, not at the first call
        merged = {**(generation_config.to_dict() if generation_config else {}), **self.fields}
        if (merged.get("num_return_sequences") or 1) > 1:
            raise ConfigError("generation returns one text per prompt: num_return_sequences must be 1 (call "
                              "model.generate for several)")
        if merged.get("return_dict_in_generate"):
            raise ConfigError("generation returns texts: return_dict_in_generate (scores, logits...) is for "
                              "model.generate")
        self.stream = bool(stream)
        if self.stream and (merged.get("num_beams") or 1) > 1:
            raise ConfigError("stream=True cannot follow beam search (the best beam is known only at the end)")
        self.return_full_text = bool(return_full_text)

    def __call__(self, inputs: str | list[str]) -> Any:
        """A result per prompt; with `stream=True`, an iterator of text chunks for one prompt."""
        if not self.stream:
            return super().__call__(inputs)
        if isinstance(inputs, list):
            raise InputError("stream=True streams one prompt: pass a str, not a list")
        request = self.prepare(inputs)  # fail now, in the caller, not at the first next()
        return self._stream(request)

    def prepare(self, item: Any) -> Request:
        prompt = text_input(item, "the prompt")
        cut = self.max_length if (self.truncate and self.max_length is not None) else False
        # Cutting a prompt keeps its end: that is what the continuation follows.
        rows = self.tokenizer([prompt], truncation=cut, truncate_direction="left")
        length = rows["input_ids"].shape[1]
        if self.max_length is not None and length > self.max_length:
            raise InputError(f"the prompt has {length} tokens, more than the {self.max_length} this serving accepts "
                             f"({self._limit_source()}); shorten it, or create the serving with truncate=True")
        return Request(prompt, rows)

    def run(self, requests: list[Request]) -> list[Any]:
        inputs, spans = self.collate(requests, direction="left")  # generation continues at the right edge
        device = next(self.model.parameters()).device
        ids = self.model.generate(inputs["input_ids"].to(device), attention_mask=inputs["attention_mask"].to(device),
                                  generation_config=self.generation_config, tokenizer=self.tokenizer,
                                  **self.fields).cpu()
        width = inputs["input_ids"].shape[1]
        results = []
        for request, span in zip(requests, spans):
            row = span.start
            new = self._finished(ids[row, width:].tolist())
            text = self._cut(self.tokenizer.decode(new, skip_special_tokens=True))
            real = int(inputs["attention_mask"][row].sum())
            results.append({"text": request.input + text if self.return_full_text else text,
                            "token_summary": {"input": real, "output": len(new), "padding": width - real}})
        return results

    def _finished(self, new: list[int]) -> list[int]:
        """The tokens a row really generated: up to its first EOS (included), without the padding that fills
        rows finished before the others."""
        eos = self._eos_ids()
        for i, token in enumerate(new):
            if token in eos:
                return new[: i + 1]
        pad = self._config_value("pad_token_id")
        while new and pad is not None and new[-1] == pad:  # a row stopped by a stop sequence, then padded
            new = new[:-1]
        return new

    def _config_value(self, name: str) -> Any:
        for source in (self.fields, self.generation_config.to_dict() if self.generation_config else {},
                       _model_generation_config(self.model)):
            if source.get(name) is not None:
                return source[name]
        if name == "pad_token_id":
            eos = self._eos_ids()
            return min(eos) if eos else None
        return None

    def _eos_ids(self) -> set[int]:
        eos = self._config_value("eos_token_id")
        return set() if eos is None else ({eos} if isinstance(eos, int) else set(eos))

    def _cut(self, text: str) -> str:
        """The text before the first stop sequence (generation stops on it; the result leaves it out)."""
        cuts = [i for i in (text.find(s) for s in self.stop_sequences) if i >= 0]
        return text[: min(cuts)] if cuts else text

    def _stream(self, request: Request) -> Iterator[str]:
        if self.return_full_text:
            yield request.input
        chunks = stream_text(self.model, self.tokenizer, dict(request.rows), skip_prompt=True,
                             decode_kwargs={"skip_special_tokens": True},
                             generation_config=self.generation_config, **self.fields)
        yield from _until_stop(chunks, self.stop_sequences)


def _model_generation_config(model: torch.nn.Module) -> dict[str, Any]:
    own = getattr(model, "generation_config", None)
    if isinstance(own, GenerationConfig):
        return own.to_dict()
    if isinstance(own, dict):
        return own
    spec = model.spec
    return {"eos_token_id": getattr(spec, "eos_token_id", None), "pad_token_id": getattr(spec, "pad_token_id", None)}


def _until_stop(chunks: Iterator[str], stops: list[str]) -> Iterator[str]:
    """Pass chunks through, ending before the first stop sequence. Text that could be the start of a stop
    sequence is held back until the next chunk shows it is not."""
    if not stops:
        yield from chunks
        return
    hold = max(len(s) for s in stops) - 1
    buffer = ""
    for chunk in chunks:
        buffer += chunk
        cuts = [i for i in (buffer.find(s) for s in stops) if i >= 0]
        if cuts:
            if min(cuts) > 0:
                yield buffer[: min(cuts)]
            return
        if len(buffer) > hold:
            yield buffer[: len(buffer) - hold]
            buffer = buffer[len(buffer) - hold:]
    if buffer:
        yield buffer


def generation(model: torch.nn.Module, tokenizer: Any, generation_config: GenerationConfig | dict | None = None, *,
               stream: bool = False, return_full_text: bool = False, stop_sequences: Sequence[str] | str | None = None,
               **options: Any) -> Generation:
    """A serving that continues prompts with a generative model (`for_causal_language_modeling`).

    Input: a prompt str. Result: `{"text": str, "token_summary": {"input", "output", "padding"}}` — the new
    text, and the prompt's tokens, the tokens generated (up to and including EOS) and the padding tokens the
    prompt got to share a batch with longer ones.

    Options:
    - `generation_config` [None: the model's own]: a `GenerationConfig` (or dict), e.g.
      `bombus.generation.load_generation_config(source)`.
    - any `GenerationConfig` field by name: `max_new_tokens`, `do_sample`, `temperature`, `top_k`, `top_p`,
      `num_beams`, `repetition_penalty`, `seed`, ... (`GenerationConfig.docs()` lists them; unknown names raise).
    - `return_full_text` [False]: the result's text starts with the prompt.
    - `stop_sequences` [None]: strings that end generation; the text stops before the first one.
    - `stream` [False]: a call takes one prompt and returns an iterator of text chunks (chunks end at word
      boundaries; joined, they equal the non-streamed text).
    - the runtime options of `Serving`: prompts of concurrent calls are generated together, left-padded
      (`batch_size`, `sequence_length` buckets, `batch_timeout_ms`); `truncate=True` keeps a too-long
      prompt's end. With sampling, a batch shares one random stream, so a `seed` reproduces a batch, not
      each prompt alone.
    """
    return Generation(model, tokenizer, generation_config, stream=stream, return_full_text=return_full_text,
                      stop_sequences=stop_sequences, **options)
