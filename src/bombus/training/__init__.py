"""Fine-tuning and training: `train(model, data, ...)`, `evaluate(model, data, ...)`.

`loop.py` holds the loop (optimizer, schedule, accumulation, evaluation, checkpoints, resume, early stop),
`data.py` turns files, rows or ready batches into batches of tensors, `tasks.py` maps tasks to
architectures and computes their metrics.
"""

from .data import read_rows
from .loop import TrainingResult, evaluate, train
from .tasks import TASKS, Metrics

__all__ = ["TASKS", "Metrics", "TrainingResult", "evaluate", "read_rows", "train"]
