"""Serving runtime: gathering concurrent calls into batches (and, later, continuous batching and HTTP)."""

from .batcher import Batcher

__all__ = ["Batcher"]
