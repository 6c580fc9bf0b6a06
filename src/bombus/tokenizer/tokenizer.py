"""The `Tokenizer` class: encoding (batching, padding, truncation, offsets), decoding, added tokens, chat
templates and saving, over a `tokenizers.Tokenizer` backend that `load_tokenizer` builds."""

from __future__ import annotations

import codecs
import json
import os
import threading
import warnings
from collections.abc import Sequence
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers
import torch
from tokenizers import AddedToken, decoders
from tokenizers import models as tk_models

from ..errors import InputError, TokenizerError
from .byte_level import unicode_to_bytes
from .families import _FAMILIES, _GENERAL_OPTIONS, _NO_LIMIT, _SPECIAL_NAMES


def _named(name: str) -> tuple[property, property]:
    """The `<name>` and `<name>_id` properties of a named special token (None when the tokenizer has none)."""

    def token(self) -> str | None:
        return self._token(name)

    def token_id(self) -> int | None:
        return self._id(name)

    token.__doc__ = f"The {name.replace('_', ' ')}, or None."
    token_id.__doc__ = f"The id of the {name.replace('_', ' ')}, or None."
    return property(token), property(token_id)


class Tokenizer:
    """A text tokenizer: `tok(texts)` gives a dict of torch tensors; `encode`, `decode`, `save_pretrained`.

    Build it with `load_tokenizer(source)`. Attributes: `family` ("gpt2", "roberta", "bert", "distilbert",
    "albert", or "generic" for another tokenizer.json), `backend` (the `tokenizers.Tokenizer`),
    `model_max_length` (None when unknown), `padding_side` / `truncation_side` (the defaults of
    `pad_direction` / `truncate_direction`), `model_input_names`, `clean_up_tokenization_spaces`, and
    `options` (tokenizer_config.json with the overrides). Special tokens: `bos_token`, `eos_token`,
    `unk_token`, `sep_token`, `pad_token`, `cls_token`, `mask_token` and their `..._id`s (None when the
    tokenizer has none; `pad_token` falls back to EOS), `special_tokens`, `additional_special_tokens`.
    """

    def __init__(self, backend: tokenizers.Tokenizer, *, family: str, special_tokens: dict[str, Any],
                 extra_special_tokens: list, options: dict[str, Any]):
        self.backend = backend
        self.family = family
        self.options = dict(options)
        self._specials = dict(special_tokens)
        self._extras = list(extra_special_tokens)
        names = options.get("model_input_names") or _FAMILIES[family].input_names
        self.model_input_names = tuple(names)
        max_len = options.get("model_max_length")
        self.model_max_length: int | None = int(max_len) if max_len is not None and max_len < _NO_LIMIT else None
        self.padding_side: str = _direction(options.get("padding_side") or "right", "padding_side")
        self.truncation_side: str = _direction(options.get("truncation_side") or "right", "truncation_side")
        self.clean_up_tokenization_spaces: bool = bool(options.get("clean_up_tokenization_spaces", False))
        self._lock = threading.Lock()  # the backend's truncation setting is shared state
        self._truncation: tuple | None = None
        self._warned_pad = False
        # tokenizers < 0.20 has no encode_batch_fast
        self._encode_fast = getattr(backend, "encode_batch_fast", backend.encode_batch)
        backend.no_padding()
        backend.no_truncation()

    # ------------------------------------------------------------------------------------------ properties
    def _token(self, name: str) -> str | None:
        value = self._specials.get(name)
        return None if value is None else str(value)

    def _id(self, name: str) -> int | None:
        text = self._token(name)
        return None if text is None else self.backend.token_to_id(text)

    @property
    def pad_token(self) -> str | None:
        """The padding token; GPT-2 has none, so its EOS token pads (as in Bumblebee)."""
        return self._token("pad_token") or self._token("eos_token")

    @property
    def pad_token_id(self) -> int | None:
        return self._id("pad_token") if self._token("pad_token") else self._id("eos_token")

    bos_token, bos_token_id = _named("bos_token")
    eos_token, eos_token_id = _named("eos_token")
    unk_token, unk_token_id = _named("unk_token")
    sep_token, sep_token_id = _named("sep_token")
    cls_token, cls_token_id = _named("cls_token")
    mask_token, mask_token_id = _named("mask_token")

    @property
    def special_tokens(self) -> dict[str, str]:
        """The named special tokens the files define, e.g. {"cls": "[CLS]", "sep": "[SEP]", ...}."""
        return {k.removesuffix("_token"): str(v) for k, v in self._specials.items() if v is not None}

    @property
    def additional_special_tokens(self) -> list[str]:
        return [str(t) for t in self._extras]

    @property
    def all_special_ids(self) -> list[int]:
        """Ids of every token the backend treats as special (skipped by `decode(skip_special_tokens=True)`)."""
        return sorted(i for i, t in self.backend.get_added_tokens_decoder().items() if t.special)

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens (transformers' `vocab_size`)."""
        return self.backend.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        """Size of the vocabulary including added tokens: the number of embedding rows a model needs."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, id: int) -> str | None:
        return self.backend.id_to_token(int(id))

    def convert_ids_to_tokens(self, ids: int | Sequence[int] | torch.Tensor,
                              skip_special_tokens: bool = False) -> str | list[str]:
        if isinstance(ids, int) or (isinstance(ids, torch.Tensor) and ids.dim() == 0):
            return self.backend.id_to_token(int(ids))
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self.backend.id_to_token(i) for i in _id_list(ids) if i not in skip]

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | None | list[int | None]:
        """Ids of tokens; a token not in the vocabulary gives the unk id (None if there is no unk token)."""
        if isinstance(tokens, str):
            found = self.backend.token_to_id(tokens)
            return self.unk_token_id if found is None else found
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self.backend.num_special_tokens_to_add(pair)

    def __repr__(self) -> str:
        return (f"Tokenizer(family={self.family!r}, vocab_size={self.vocab_size}, len={len(self)}, "
                f"special_tokens={self.special_tokens}, model_max_length={self.model_max_length})")

    # ------------------------------------------------------------------------------------------ adding tokens
    def add_tokens(self, tokens: str | AddedToken | Sequence[str | AddedToken], special: bool = False) -> int:
        """Add tokens to the vocabulary (never split, matched before the model); returns how many are new.

        Resize the model's embeddings to `len(tok)` after adding.
        """
        tokens = [tokens] if isinstance(tokens, (str, AddedToken)) else list(tokens)
        before = len(self)
        if special:
            self.backend.add_special_tokens(
                [AddedToken(t, normalized=False, special=True) if isinstance(t, str) else t for t in tokens])
        else:
            self.backend.add_tokens(tokens)
        return len(self) - before

    def add_special_tokens(self, tokens: dict[str, str | AddedToken | Sequence[str | AddedToken]]) -> int:
        """Set named special tokens ({"pad_token": "[PAD]", "additional_special_tokens": [...]}), adding them to
        the vocabulary when new; returns how many are new. Keys may also be short ("pad")."""
        new = []
        for key, value in tokens.items():
            key = key if key.endswith(("_token", "_tokens")) else f"{key}_token"
            if key in ("additional_special_tokens", "extra_special_tokens"):
                values = [value] if isinstance(value, (str, AddedToken)) else list(value)
                self._extras = values
                new += values
            elif key in _SPECIAL_NAMES:
                self._specials[key] = value
                new.append(value)
            else:
                raise InputError(f"add_special_tokens: unknown key {key!r}; expected one of "
                                 f"{[*_SPECIAL_NAMES, 'additional_special_tokens']}")
        return self.add_tokens(new, special=True)

    # ------------------------------------------------------------------------------------------ encoding
    def __call__(
        self,
        texts: str | Sequence[str] | Sequence[tuple[str, str]] | Sequence[Sequence[str]],
        *,
        add_special_tokens: bool = True,
        length: int | Sequence[int] | None = None,
        pad_direction: str | None = None,
        truncate_direction: str | None = None,
        truncation: bool | int = False,
        return_attention_mask: bool = True,
        return_token_type_ids: bool | None = None,
        return_special_tokens_mask: bool = False,
        return_offsets: bool = False,
        return_length: bool = False,
        is_split_into_words: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Tokenize a text, a batch of texts or a batch of (text, pair) tuples into `[batch, seq]` tensors.

        Options (defaults in brackets):
        - `add_special_tokens` [True]: add the family's special tokens (`[CLS] A [SEP] B [SEP]`, ...).
        - `length` [None: pad to the longest sequence]: an int pads every sequence to that length; a list of
          bucket lengths pads to the smallest that fits. A longer sequence is an error unless `truncation`.
        - `pad_direction` ["right", or tokenizer_config `padding_side`]: "right" or "left".
        - `truncation` [False]: True truncates to `length` (the largest bucket), else to `model_max_length`
          (no limit when unknown); an int truncates to that many tokens. Special tokens are kept; pairs lose
          tokens from the longer sequence first (transformers' "longest_first").
        - `truncate_direction` ["right", or tokenizer_config `truncation_side`]: "right" or "left".
        - `return_attention_mask` [True], `return_token_type_ids` [None: if the family uses them (BERT,
          ALBERT)], `return_special_tokens_mask` [False], `return_offsets` [False: `offsets`, character
          start/end `[batch, seq, 2]`], `return_length` [False: `length`, tokens before padding `[batch]`].
        - `is_split_into_words` [False]: the input is already split into words: a list of words, or a batch
          of such lists (or of pairs of them).
        A GPT-2 tokenizer has no padding token: it pads with its EOS token, and warns once.
        """
        batch, pair = _batch(texts, is_split_into_words)
        pad_direction = _direction(pad_direction or self.padding_side, "pad_direction")
        truncate_direction = _direction(truncate_direction or self.truncation_side, "truncate_direction")
        n_special = self.backend.num_special_tokens_to_add(pair) if add_special_tokens else 0
        max_length = self._max_length(truncation, length, n_special)
        encodings = self._encode_batch(batch, add_special_tokens, is_split_into_words, max_length,
                                       truncate_direction, offsets=return_offsets)
        lengths = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
        target = self._target_length(int(lengths.max(initial=0)), length)
        # Padding is vectorised: `real` marks the token positions of the padded [batch, target] grid, and
        # filling it in row-major order from the concatenated encodings places every row, left or right.
        columns = np.arange(target)
        real = columns < lengths[:, None] if pad_direction == "right" else columns >= target - lengths[:, None]
        pad_id = self.pad_token_id
        if (lengths < target).any():
            if pad_id is None:
                raise InputError("sequences of different lengths need padding, but this tokenizer has neither a "
                                 "pad nor an EOS token; add one: tok.add_special_tokens({'pad_token': '[PAD]'})")
            if self._token("pad_token") is None and not self._warned_pad:
                self._warned_pad = True
                warnings.warn(f"this tokenizer has no pad token: padding with its EOS token {self.eos_token!r} "
                              f"(id {pad_id}), as Bumblebee does", stacklevel=2)

        def grid(field: str, fill: int, width: int = 1) -> torch.Tensor:
            values = chain.from_iterable(map(attrgetter(field), encodings))
            if width > 1:
                values = chain.from_iterable(values)
            flat = np.fromiter(values, dtype=np.int64, count=int(lengths.sum()) * width)
            out = np.full((len(encodings), target, width), fill, dtype=np.int64)
            out[real] = flat.reshape(-1, width)
            return torch.from_numpy(out if width > 1 else out[..., 0])

        out = {"input_ids": grid("ids", pad_id or 0)}
        if return_attention_mask:
            out["attention_mask"] = torch.from_numpy(real.astype(np.int64))
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_token_type_ids:
            out["token_type_ids"] = grid("type_ids", 0)
        if return_special_tokens_mask:
            out["special_tokens_mask"] = grid("special_tokens_mask", 1)
        if return_offsets:
            out["offsets"] = grid("offsets", 0, width=2)
        if return_length:
            out["length"] = torch.from_numpy(lengths)
        return out

    def encode(self, text: str, pair: str | None = None, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text` (and `pair`), with special tokens: transformers' `tok(text, pair)["input_ids"]`."""
        # Like transformers, an empty pair counts as no pair.
        batch, _ = _batch([(text, pair)] if pair else [text], False)
        return self._encode_batch(batch, add_special_tokens, False, None, "right")[0].ids

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False) -> list[str]:
        """Token strings of `text` (without special tokens unless asked)."""
        batch, _ = _batch([(text, pair)] if pair else [text], False)  # an empty pair is no pair, as in encode
        return self._encode_batch(batch, add_special_tokens, False, None, "right")[0].tokens

    def _max_length(self, truncation: bool | int, length, n_special: int) -> int | None:
        if isinstance(length, int) and not isinstance(length, bool):
            lengths = [length]
        elif length is None:
            lengths = []
        elif isinstance(length, Sequence) and length and all(isinstance(n, int) and not isinstance(n, bool)
                                                              for n in length):
            lengths = list(length)
        else:
            raise InputError(f"length must be None, an int or a non-empty list of ints, got {length!r}")
        if any(n < max(n_special, 1) for n in lengths):
            raise InputError(f"length={length!r} is too small: every sequence needs {n_special} special token(s) "
                             f"and at least one position; pass a larger length")
        if truncation is True:
            max_length = max(lengths) if lengths else self.model_max_length
        elif truncation is False or truncation is None:
            return None
        elif isinstance(truncation, int) and truncation > 0:
            max_length = truncation
        else:
            raise InputError(f"truncation must be a bool or a positive int (max tokens), got {truncation!r}")
        if max_length is not None and max_length < n_special:
            raise InputError(f"truncation to {max_length} tokens is too short for the {n_special} special tokens "
                             f"each sequence needs; pass a larger length/truncation or add_special_tokens=False")
        return max_length

    def _target_length(self, longest: int, length) -> int:
        if length is None:
            return longest
        buckets = [length] if isinstance(length, int) else sorted(length)
        for bucket in buckets:
            if bucket >= longest:
                return bucket
        raise InputError(f"a sequence has {longest} tokens, more than length={length!r} allows; pass "
                         f"truncation=True to cut it, or a larger length")

    def _encode_batch(self, batch: list, add_special_tokens: bool, pretokenized: bool, max_length: int | None,
                      direction: str, offsets: bool = True) -> list[tokenizers.Encoding]:
        state = None if max_length is None else (max_length, direction)
        try:
            with self._lock:
                if state != self._truncation:
                    if state is None:
                        self.backend.no_truncation()
                    else:
                        self.backend.enable_truncation(max_length, strategy="longest_first", direction=direction)
                    self._truncation = state
                # encode_batch_fast skips the character offsets (about 15% faster) when they are not asked for.
                encode = self.backend.encode_batch if offsets else self._encode_fast
                return encode(batch, add_special_tokens=add_special_tokens, is_pretokenized=pretokenized)
        except (TypeError, ValueError, OverflowError) as e:
            _check_texts(batch)  # raises a clear InputError for lone surrogates
            raise InputError(f"cannot tokenize the input: {e}") from None
        except Exception as e:  # tokenizers raises plain Exception for truncation errors
            raise TokenizerError(f"tokenization failed: {e}") from None

    # ------------------------------------------------------------------------------------------ chat
    @property
    def chat_template(self) -> str | None:
        """The Jinja chat template (tokenizer_config.json, chat_template.jinja or GGUF metadata), or None."""
        template = self.options.get("chat_template")
        if isinstance(template, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
            template = {t["name"]: t["template"] for t in template}.get("default")
        return template

    def apply_chat_template(self, conversation: list, *, add_generation_prompt: bool = False,
                            continue_final_message: bool | str = False, tokenize: bool = True,
                            return_dict: bool = False, chat_template: str | None = None, tools: list | None = None,
                            documents: list | None = None, tokenizer_kwargs: dict | None = None, **variables: Any):
        """A conversation (`[{"role": ..., "content": ...}, ...]`, or a list of them) as the model's prompt,
        rendered exactly as transformers' `apply_chat_template` renders it (see `bombus.chat`).

        `add_generation_prompt` ends with the assistant's turn header; `continue_final_message` leaves the
        last message open. Returns the text (`tokenize=False`), its ids without added special tokens
        (default; the template writes them), or with `return_dict=True` the model inputs as `tok(...)`
        returns them (`tokenizer_kwargs`, e.g. `{"pad_direction": "left"}`, are passed on). Other keywords
        (e.g. `enable_thinking=False`) reach the template, beside the special tokens."""
        from ..chat import is_batch, render

        template = chat_template or self.chat_template
        if template is None:
            raise TokenizerError("this tokenizer has no chat template; pass chat_template=... (a Jinja string)")
        # the template sees transformers' special_tokens_map: {"bos_token": "<s>", ...}
        values = {**{k: str(v) for k, v in self._specials.items() if v is not None}, **variables}
        batch = is_batch(conversation)
        texts = [render(template, c, add_generation_prompt=add_generation_prompt, tools=tools, documents=documents,
                        continue_final_message=continue_final_message, **values)
                 for c in (conversation if batch else [conversation])]
        if return_dict:
            return self(texts if batch else texts[0], add_special_tokens=False, **(tokenizer_kwargs or {}))
        if not tokenize:
            return texts if batch else texts[0]
        ids = [self.encode(t, add_special_tokens=False) for t in texts]
        return ids if batch else ids[0]

    # ------------------------------------------------------------------------------------------ decoding
    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True,
               clean_up_tokenization_spaces: bool | None = None, errors: str = "replace") -> str:
        """Text of `ids` (a list, or a 1-D tensor). Bytes that are not valid UTF-8 (a character cut between
        tokens) follow `errors`: "replace" [default] gives U+FFFD, "ignore" drops them, "strict" raises.
        `clean_up_tokenization_spaces` [tokenizer_config, else False] removes spaces before punctuation
        (never for BPE tokenizers, as in transformers)."""
        ids = _id_list(ids)
        try:
            codecs.lookup_error(errors)
        except LookupError:
            raise InputError(f"errors={errors!r} is not a codec error handler; use 'replace', 'ignore' or "
                             f"'strict'") from None
        if errors == "replace":
            text = self.backend.decode(ids, skip_special_tokens=skip_special_tokens)
        else:
            text = self._decode_bytes(ids, skip_special_tokens, errors)
        return self._clean_up(text, clean_up_tokenization_spaces)

    def batch_decode(self, sequences: Sequence[Sequence[int]] | torch.Tensor, skip_special_tokens: bool = True,
                     clean_up_tokenization_spaces: bool | None = None, errors: str = "replace") -> list[str]:
        """`decode` of each row of a list of id lists or of a 2-D tensor."""
        if isinstance(sequences, torch.Tensor):
            if sequences.dim() != 2:
                raise InputError(f"batch_decode takes a 2-D tensor [batch, seq], got shape "
                                 f"{tuple(sequences.shape)}")
            sequences = sequences.tolist()
        rows = [_id_list(row) for row in sequences]
        if errors != "replace":
            return [self.decode(r, skip_special_tokens, clean_up_tokenization_spaces, errors) for r in rows]
        texts = self.backend.decode_batch(rows, skip_special_tokens=skip_special_tokens)
        return [self._clean_up(t, clean_up_tokenization_spaces) for t in texts]

    def _clean_up(self, text: str, clean_up: bool | None) -> str:
        clean_up = self.clean_up_tokenization_spaces if clean_up is None else clean_up
        # transformers 5 skips the clean-up for BPE models: it would eat real spaces before punctuation.
        if not clean_up or isinstance(self.backend.model, tk_models.BPE):
            return text
        for old, new in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                         (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
            text = text.replace(old, new)
        return text

    def _decode_bytes(self, ids: list[int], skip_special_tokens: bool, errors: str) -> str:
        # Only byte-level tokens can split a character; other decoders always give valid text.
        if not isinstance(self.backend.decoder, decoders.ByteLevel):
            return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        table = unicode_to_bytes()
        data = bytearray()
        for i in ids:
            token = None if i in skip else self.backend.id_to_token(i)
            if token is not None:  # like tokenizers: a token with a char outside the table is raw text
                data += bytes(table[c] for c in token) if all(c in table for c in token) else token.encode()
        try:
            return data.decode("utf-8", errors=errors)
        except UnicodeDecodeError as e:
            raise InputError(f"the ids decode to invalid UTF-8 ({e}); pass errors='replace' or 'ignore'") from None

    # ------------------------------------------------------------------------------------------ saving
    def save_pretrained(self, directory: str | os.PathLike) -> list[Path]:
        """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json, which bombus and
        transformers' `AutoTokenizer.from_pretrained` load back to the same tokenizer."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        data = json.loads(self.backend.to_str())
        data["truncation"] = data["padding"] = None  # call options, not part of the tokenizer
        added = {str(i): {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized, "rstrip": t.rstrip,
                          "single_word": t.single_word, "special": t.special}
                 for i, t in sorted(self.backend.get_added_tokens_decoder().items())}
        specials = {k: str(v) for k, v in self._specials.items() if v is not None}
        config = {k: v for k, v in self.options.items()
                  if k in _FAMILIES[self.family].options or k in _GENERAL_OPTIONS - set(_SPECIAL_NAMES)}
        config.pop("extra_special_tokens", None)
        config.update(specials, tokenizer_class=_FAMILIES[self.family].hf_class, added_tokens_decoder=added,
                      additional_special_tokens=self.additional_special_tokens,
                      model_max_length=self.model_max_length or int(1e30), padding_side=self.padding_side,
                      truncation_side=self.truncation_side,
                      clean_up_tokenization_spaces=self.clean_up_tokenization_spaces)
        if "model_input_names" in self.options:
            config["model_input_names"] = list(self.model_input_names)
        special_map = {**specials, "additional_special_tokens": self.additional_special_tokens}
        files = {"tokenizer.json": data, "tokenizer_config.json": config, "special_tokens_map.json": special_map}
        paths = []
        for name, content in files.items():
            path = directory / name
            tmp = path.with_suffix(".tmp")  # write then rename: never leave a half-written file
            tmp.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            tmp.replace(path)
            paths.append(path)
        return paths


# ---------------------------------------------------------------------------------------------------- helpers
def _direction(value: str, option: str) -> str:
    if value not in ("right", "left"):
        raise InputError(f"{option} must be 'right' or 'left', got {value!r}")
    return value


def _text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{where} is bytes that are not valid UTF-8 ({e}); decode it to str first") from None
    raise InputError(f"{where} must be a str, got {type(value).__name__}")


def _words(value: Any, where: str) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InputError(f"{where} must be a list of words when is_split_into_words=True, got "
                         f"{type(value).__name__}")
    return [_text(w, f"{where}[{i}]") for i, w in enumerate(value)]


def _batch(texts: Any, split: bool) -> tuple[list, bool]:
    """Normalise the input to a list for `encode_batch`, and say whether it holds pairs."""
    if isinstance(texts, (str, bytes, bytearray)) or (isinstance(texts, tuple) and len(texts) == 2 and not split
                                                       and all(isinstance(t, (str, bytes)) for t in texts)):
        texts = [texts]  # one text, or one (text, pair) tuple
    elif split and isinstance(texts, Sequence) and (not texts or isinstance(texts[0], (str, bytes))):
        texts = [texts]  # one list of words
    if not isinstance(texts, Sequence) or isinstance(texts, (str, bytes)):
        raise InputError(f"expected a str, a list of str or a list of (str, str) pairs, got "
                         f"{type(texts).__name__}")
    one = _words if split else _text
    is_pair = [isinstance(t, tuple) or (split and isinstance(t, list) and t and isinstance(t[0], (list, tuple)))
               for t in texts]
    if any(is_pair) and not all(is_pair):
        raise InputError("a batch must be all single texts or all (text, pair) tuples, not a mix")
    if texts and is_pair[0]:
        out = []
        for i, t in enumerate(texts):
            if len(t) != 2:
                raise InputError(f"texts[{i}] must be a (text, pair) tuple of two, got {len(t)} items")
            out.append((one(t[0], f"texts[{i}][0]"), one(t[1], f"texts[{i}][1]")))
        return out, True
    return [one(t, f"texts[{i}]") for i, t in enumerate(texts)], False


def _check_texts(batch: list) -> None:
    def check(text, where):
        for piece in [text] if isinstance(text, str) else text:
            try:
                piece.encode("utf-8")
            except UnicodeEncodeError as e:
                raise InputError(f"{where} holds a lone surrogate {piece[e.start]!r} at character {e.start}, "
                                 f"which is not valid Unicode text; fix the text (e.g. decode its bytes with "
                                 f"errors='replace')") from None

    for i, item in enumerate(batch):
        for j, part in enumerate(item if isinstance(item, tuple) else (item,)):
            check(part, f"texts[{i}]" + (f"[{j}]" if isinstance(item, tuple) else ""))


def _id_list(ids: Any) -> list[int]:
    if isinstance(ids, torch.Tensor):
        if ids.dim() > 1:
            raise InputError(f"decode takes a 1-D tensor of ids, got shape {tuple(ids.shape)}; use batch_decode")
        ids = ids.reshape(-1).tolist()
    elif isinstance(ids, int):
        ids = [ids]
    try:
        ids = [int(i) for i in ids]
    except (TypeError, ValueError):
        raise InputError(f"ids must be a list of ints or a 1-D tensor, got {type(ids).__name__}; use batch_decode "
                         f"for a batch") from None
    if any(i < 0 for i in ids):
        raise InputError(f"ids must be >= 0, got {min(ids)} (a -100 label or padding marker?); remove it first")
    return ids
