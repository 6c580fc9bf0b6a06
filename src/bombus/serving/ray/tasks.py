"""The tasks bombus runs over the rows of a table: which serving each is, the columns it reads, and the Arrow
types of the result columns it writes (fixed per task, so every batch of a data set has one schema, even a
batch whose rows all failed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa

from ...errors import ConfigError, InputError

SCORED_LABELS = pa.list_(pa.struct([("label", pa.string()), ("score", pa.float64())]))
ERROR_COLUMN = "error"


@dataclass(frozen=True)
class Task:
    """One task: `serving` names its factory in `bombus.text`, `architecture` the head its model is loaded
    with (None: as the checkpoint is), `inputs` the columns it needs and `optional` the ones it reads when a
    data set has them; `results` maps each key of the serving's result to its column name and Arrow type."""

    serving: str
    architecture: str | None
    results: dict[str, tuple[str, pa.DataType]]
    inputs: tuple[str, ...] = ("text",)
    optional: tuple[str, ...] = ()
    # Options the checkpoint implies (model source, user options) -> options, under the user's own.
    defaults: Callable[[str, dict[str, Any]], dict[str, Any]] | None = field(default=None, compare=False)

    def item(self, row: dict[str, Any]) -> Any:
        """The serving's input for one row (`row` keyed by the task's input names)."""
        present = {name: row[name] for name in self.optional if row.get(name) is not None}
        if len(self.inputs) == 1 and not present:
            return row[self.inputs[0]]
        return {**{name: row[name] for name in self.inputs}, **present}


def _embedding_defaults(model: str, options: dict[str, Any]) -> dict[str, Any]:
    from ...text import embedding_options

    if options.get("output_attribute", "hidden_state") != "hidden_state":
        return {"pooling": None}  # pooled_state is one vector already
    return embedding_options(model)  # the checkpoint's sentence-transformers pooling and normalisation


TASKS: dict[str, Task] = {
    "embed": Task("text_embedding", None, {"embedding": ("embedding", pa.list_(pa.float32()))},
                  defaults=_embedding_defaults),
    "classify": Task("text_classification", "for_sequence_classification",
                     {"predictions": ("predictions", SCORED_LABELS)}, optional=("text_pair",)),
    "zero-shot": Task("zero_shot_classification", "for_sequence_classification",
                      {"predictions": ("predictions", SCORED_LABELS)}, optional=("candidate_labels",)),
    "fill-mask": Task("fill_mask", "for_masked_language_modeling", {"predictions": ("predictions", pa.list_(
        pa.struct([("score", pa.float64()), ("token", pa.string()), ("token_id", pa.int64()),
                   ("sequence", pa.string())])))}),
    "tag": Task("token_classification", "for_token_classification", {"entities": ("entities", pa.list_(
        pa.struct([("label", pa.string()), ("score", pa.float64()), ("start", pa.int64()), ("end", pa.int64()),
                   ("phrase", pa.string())])))}),
    "answer": Task("question_answering", "for_question_answering", {"results": ("answers", pa.list_(
        pa.struct([("text", pa.string()), ("start", pa.int64()), ("end", pa.int64()), ("score", pa.float64())])))},
        inputs=("question", "context")),
    "generate": Task("generation", "for_causal_language_modeling", {
        "text": ("generated_text", pa.string()),
        "token_summary": ("token_summary", pa.struct([("input", pa.int64()), ("output", pa.int64()),
                                                      ("padding", pa.int64())]))}),
}


def task_named(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; the tasks are {', '.join(TASKS)}") from None


def result_types(task: Task, serving: Any) -> dict[str, pa.DataType]:
    """Result column name -> Arrow type for this serving (an embedding without pooling is one vector per token)."""
    types = {column: kind for column, kind in task.results.values()}
    if task.serving == "text_embedding" and serving.pooling is None and serving.output_attribute == "hidden_state":
        types["embedding"] = pa.list_(pa.list_(pa.float32()))
    return types


def input_columns(task: Task, columns: dict[str, str] | None) -> dict[str, str]:
    """The task's input name -> data set column, `columns` renaming some (e.g. {"text": "sentence"})."""
    columns = dict(columns or {})
    unknown = set(columns) - set(task.inputs) - set(task.optional)
    if unknown:
        raise ConfigError(f"columns names {sorted(unknown)}, which the {task.serving} task does not read; it reads "
                          f"{', '.join(task.inputs + task.optional)}")
    return {name: columns.get(name, name) for name in task.inputs + task.optional}


def check_columns(task: Task, names: list[str], columns: dict[str, str], where: str = "the data set") -> None:
    """A clear error when the data set lacks an input column or already has a result column."""
    for name in task.inputs:
        if columns[name] not in names:
            hint = " (pass text_column=/--text-column to read another)" if name == "text" else ""
            raise InputError(f"{where} has no column {columns[name]!r}, which the task needs as its {name}{hint}; "
                             f"its columns are {names}")
    written = [column for column, _ in task.results.values()] + [ERROR_COLUMN]
    clashes = [c for c in written if c in names]
    if clashes:
        raise InputError(f"{where} already has the column(s) {clashes}, which the results would overwrite; rename "
                         f"them first")
