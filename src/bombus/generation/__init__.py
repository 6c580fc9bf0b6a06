"""Text generation: `generate(model, input_ids, ...)` (also `model.generate`), `stream(...)` for text as it
is produced, `GenerationConfig` / `load_generation_config` for options, and the logits processors.

Options carry transformers' `GenerationConfig` names and defaults, and outputs match transformers'
`generate` token for token (greedy, beam search, every processor; sampling too for the same RNG state).
"""

from . import processors
from .config import DEFAULTS, GenerationConfig, load_generation_config
from .search import StopStrings, generate, steps
from .streaming import Streamer, TextStreamer, stream

__all__ = [
    "DEFAULTS",
    "GenerationConfig",
    "StopStrings",
    "Streamer",
    "TextStreamer",
    "generate",
    "load_generation_config",
    "processors",
    "steps",
    "stream",
]
