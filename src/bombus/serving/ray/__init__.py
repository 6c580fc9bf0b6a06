"""bombus on Ray (`pip install bombus[ray]`): offline batch inference with Ray Data (`map_batches`,
`Predictor`, `run_file`) and online serving with Ray Serve (`deployment`, and `serve.run`). Nothing here
imports Ray until it is used."""

try:
    import pyarrow  # noqa: F401
except ImportError as e:  # pragma: no cover - the extra is missing
    raise ImportError("bombus.serving.ray needs the ray extra: pip install 'bombus[ray]'") from e

from .cluster import connect
from .data import Predictor, map_batches, run_file
from .files import read_dataset, write_batches
from .tasks import TASKS

__all__ = ["TASKS", "Predictor", "connect", "deployment", "map_batches", "read_dataset", "run_file", "write_batches"]


def __getattr__(name: str):
    if name == "deployment":  # importing Ray Serve takes seconds: only when asked for
        from .serve import deployment

        return deployment
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
