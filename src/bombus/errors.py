"""Every failure a user can cause is a `BombusError`; the subclass says which part of the input was wrong."""


class BombusError(Exception):
    """Base class of all bombus errors."""


class ConfigError(BombusError, ValueError):
    """A spec option or config.json field is unknown, missing or inconsistent."""


class CheckpointError(BombusError):
    """A weights file is missing, corrupt, unsafe, or does not fit the model."""


class InputError(BombusError, ValueError):
    """Model, tokenizer or serving inputs have the wrong shape, type or content."""


class SourceError(BombusError, FileNotFoundError):
    """A source (local folder or hub repo id) or a file in it cannot be found."""


class TokenizerError(BombusError):
    """Tokenizer files are missing or corrupt, or text cannot be tokenized as asked."""


class GenerationError(BombusError, ValueError):
    """Generation options are unknown or contradict each other."""


class TrainingError(InputError):
    """Training data or options are wrong: a missing column, a label out of range, an empty file, ..."""
