"""A source's tokenizer files (each looked up or downloaded, and parsed, once) and the family they make."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import TokenizerError
from ..hub import resolve_file
from .families import _CLASS_TO_FAMILY, _FAMILIES


class _Files:
    """The files of a source, each looked up (or downloaded) and parsed once."""

    def __init__(self, source, revision, token):
        self.source, self._revision, self._token = source, revision, token
        self._paths: dict[str, Path | None] = {}
        self._json: dict[str, Any] = {}

    def path(self, name: str) -> Path | None:
        if name not in self._paths:
            self._paths[name] = resolve_file(self.source, name, revision=self._revision, token=self._token,
                                             required=False)
        return self._paths[name]

    def json(self, name: str) -> Any:
        if name not in self._json:
            path = self.path(name)
            try:
                self._json[name] = None if path is None else json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                raise TokenizerError(f"{path} is not valid JSON ({e}); the file is corrupt: download it again"
                                     ) from None
            if self._json[name] is not None and not isinstance(self._json[name], dict):
                raise TokenizerError(f"{path} holds a JSON {type(self._json[name]).__name__}, expected an object "
                                     f"(a mapping of keys to values); the file is not a {name}")
        return self._json[name]


def _family(files: _Files, tokenizer_class: str | None) -> str:
    """tokenizer_config "tokenizer_class", else config.json "model_type", else the files present."""
    has_json = files.path("tokenizer.json") is not None
    if tokenizer_class:
        name = _CLASS_TO_FAMILY.get(tokenizer_class.removesuffix("Fast"))
        if name is not None or has_json:
            return name or "generic"
        raise TokenizerError(f"tokenizer_class {tokenizer_class!r} of {files.source} needs a tokenizer.json; "
                             f"without one bombus reads the files of {sorted(_CLASS_TO_FAMILY)}")
    model_type = (files.json("config.json") or {}).get("model_type")
    if model_type in _FAMILIES:
        return model_type
    if has_json:
        return "generic"
    for names, family in ((("spiece.model",), "albert"), (("vocab.txt",), "bert"),
                          (("vocab.json", "merges.txt"), "gpt2"), (("encoder.json", "vocab.bpe"), "gpt2")):
        if all(files.path(n) is not None for n in names):
            return family
    where = "" if Path(files.source).expanduser().is_dir() else " (or the hub repo is not found or not cached)"
    raise TokenizerError(
        f"no tokenizer files in {files.source}{where}: expected tokenizer.json, or vocab.json + merges.txt, "
        f"encoder.json + vocab.bpe, vocab.txt or spiece.model. Pass the folder or repo with the model's tokenizer."
    )
