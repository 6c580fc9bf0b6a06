"""GPT-2's byte-level alphabet: byte-level BPE vocabularies spell every byte with a printable character."""

from __future__ import annotations

import functools


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """Byte -> the printable character that spells it (do not modify the returned, shared dict)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    unprintable = [b for b in range(256) if b not in printable]
    return {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(unprintable)}


@functools.cache
def unicode_to_bytes() -> dict[str, int]:
    """Printable character -> the byte it spells (do not modify the returned, shared dict)."""
    return {c: b for b, c in bytes_to_unicode().items()}
