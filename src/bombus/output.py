"""`Output`: what every model returns — a dict whose entries are also attributes."""

from __future__ import annotations

from typing import Any


class Output(dict):
    """A dict of model outputs with attribute access: `out["logits"]` and `out.logits` are the same.

    Entries that a forward did not produce are absent (not None), so `"loss" in out` tells whether a loss
    was computed.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"this Output has no {name!r}; it has: {', '.join(self) or 'nothing'}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value
