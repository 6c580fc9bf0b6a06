"""Offline batch inference on Ray Data: any bombus task over the text rows of a data set, with a pool of
actors that each load the model once.

    import ray, bombus.serving.ray as bray
    ds = ray.data.read_parquet("texts.parquet")
    out = bray.map_batches(ds, "embed", model="sentence-transformers/all-MiniLM-L6-v2", actors=4)
    out.write_parquet("embedded/")          # or out.iter_batches(), out.take(10), ...

The same, spelled out with Ray's own API (`Predictor` is the callable class):

    ds.map_batches(bray.Predictor, fn_constructor_args=("embed", "model-folder"), batch_format="pyarrow",
                   batch_size=256, compute=ray.data.ActorPoolStrategy(size=4))

Each output batch is the input batch with the task's result columns appended (`tasks.TASKS`) and an
`error` column: null where the row ran, the error where it did not (a text that is missing, not a string,
empty or too long...). A failed row keeps its place; nothing is dropped. Ray restarts an actor that dies and
retries its batch, so a lost actor loses no row and duplicates none.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa

from ...errors import BombusError, ConfigError, InputError
from .tasks import ERROR_COLUMN, Task, check_columns, input_columns, result_types, task_named


def build_serving(task: Task, model: str, *, tokenizer: str | None = None, device: str = "cpu",
                  dtype: Any = None, **options: Any) -> Any:
    """Load `model` (with the task's head) and its tokenizer, and create the task's serving with `options`."""
    import torch

    from ... import text
    from ...loading import load_model
    from ...tokenizer import load_tokenizer

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    loaded = load_model(model, architecture=task.architecture, dtype=dtype, device=device)
    options = {**(task.defaults(model, options) if task.defaults else {}), **options}
    return getattr(text, task.serving)(loaded, load_tokenizer(tokenizer or model), **options)


class Predictor:
    """A callable class for `ray.data.Dataset.map_batches` (with an actor pool, so the model loads once per
    actor): runs `task` on each batch and returns it with the result columns and an `error` column appended.

    Arguments: `task`, one of `tasks.TASKS` (embed, classify, zero-shot, fill-mask, tag, answer, generate);
    `model`, a model folder, .gguf file or hub repo id that every actor can read. Options:
    - `tokenizer` [None: the model's];
    - `columns` [None]: the task's input names -> column names, e.g. {"text": "sentence"}; the inputs are
      "text" ("question" and "context" for answer), optionally "text_pair" (classify) and
      "candidate_labels" (zero-shot) when the data set has them;
    - `device` ["cpu"], `dtype` [None: the checkpoint's; "float32", "bfloat16", ...];
    - any other option goes to the task's serving (`bombus.text`): `batch_size` (rows per model call),
      `sequence_length`, `truncate`, `max_new_tokens`, `candidate_labels`, `pooling`, ...

    Batches may be pyarrow Tables (`batch_format="pyarrow"`, what it returns), pandas DataFrames or dicts of
    arrays.
    """

    def __init__(self, task: str, model: str, *, tokenizer: str | None = None, columns: dict[str, str] | None = None,
                 device: str = "cpu", dtype: Any = None, **options: Any):
        self.task = task_named(task)
        self.columns = input_columns(self.task, columns)
        self.serving = build_serving(self.task, model, tokenizer=tokenizer, device=device, dtype=dtype, **options)
        self.types = result_types(self.task, self.serving)

    def __call__(self, batch: Any) -> pa.Table:
        table = _as_table(batch)
        check_columns(self.task, table.column_names, self.columns, where="the batch")
        values = {name: table.column(column).to_pylist() for name, column in self.columns.items()
                  if column in table.column_names}
        items = [self.task.item({name: column[i] for name, column in values.items()}) for i in range(table.num_rows)]
        results, errors = self.run(items)
        for key, (column, _) in self.task.results.items():
            kind = self.types[column]
            table = table.append_column(pa.field(column, kind), pa.array(
                [None if r is None else r[key] for r in results], type=kind))
        return table.append_column(pa.field(ERROR_COLUMN, pa.string()), pa.array(errors, type=pa.string()))

    def run(self, items: list[Any]) -> tuple[list[Any], list[str | None]]:
        """Each item's result (None where it failed) and error message (None where it ran). The batch runs as
        one call; only when it fails are its rows checked one by one, and the good ones run together."""
        none: list[Any] = [None] * len(items)
        try:
            return list(self.serving(items)), list(none)
        except Exception:  # noqa: BLE001 -- some row is bad: find which below
            pass
        results, errors = list(none), list(none)
        good = []
        for i, item in enumerate(items):
            try:
                self.serving.prepare(item)  # checks and tokenizes this row alone
                good.append(i)
            except Exception as e:  # noqa: BLE001 -- a row that cannot be tokenized is that row's error
                errors[i] = _message(e)
        try:
            for i, result in zip(good, self.serving([items[i] for i in good]) if good else []):
                results[i] = result
        except BombusError:  # a failure in the model stage: one row at a time
            for i in good:
                try:
                    results[i] = self.serving([items[i]])[0]
                except BombusError as e:
                    errors[i] = _message(e)
        return results, errors

    def __repr__(self) -> str:
        return f"Predictor({self.task.serving}, {self.serving!r})"


def map_batches(dataset: Any, task: str, model: str, *, tokenizer: str | None = None, text_column: str = "text",
                columns: dict[str, str] | None = None, actors: int | tuple[int, int] = 1, batch_rows: int = 256,
                num_cpus: float = 1.0, num_gpus: float = 0.0, device: str = "cpu", dtype: Any = None,
                **options: Any) -> Any:
    """Run `task` over `dataset` (a `ray.data.Dataset` of text rows) on a pool of actors; returns the lazy
    output Dataset, in input order (`preserve_order`), each row with its result columns and `error`.

    Options: `model`, `tokenizer`, `columns`, `device`, `dtype` and the serving's options as in `Predictor`;
    `text_column` ["text"]: the column holding the texts (prompts for generate); `actors` [1]: the pool
    size, or (min, max) to autoscale; `batch_rows` [256]: rows per actor call (the serving's
    `batch_size` option is rows per model call); `num_cpus` [1.0] / `num_gpus` [0.0]: what each actor
    reserves (on CPU, torch in an actor uses as many threads as it reserves CPUs). Leave a CPU free for
    reading, or `materialize()` the data set first: read tasks queued behind actors that hold every CPU of
    the cluster wait forever. A data set without an input column raises `InputError` here, before any actor starts.
    """
    import ray.data

    spec = task_named(task)
    renamed = {**({"text": text_column} if "text" in spec.inputs else {}), **(columns or {})}
    names = input_columns(spec, renamed)
    schema = dataset.schema()
    if schema is not None:
        check_columns(spec, list(schema.names), names)
    size = {"min_size": actors[0], "max_size": actors[1]} if isinstance(actors, tuple) else {"size": actors}
    out = dataset.map_batches(
        Predictor, fn_constructor_args=(task, model),
        fn_constructor_kwargs=dict(tokenizer=tokenizer, columns=names, device=device, dtype=_dtype_name(dtype),
                                   **options),
        batch_format="pyarrow", batch_size=batch_rows, compute=ray.data.ActorPoolStrategy(**size),
        num_cpus=num_cpus, num_gpus=num_gpus)
    out.context.execution_options.preserve_order = True  # rows come out in input order
    return out


def _as_table(batch: Any) -> pa.Table:
    if isinstance(batch, pa.Table):
        return batch
    if hasattr(batch, "to_dict") and hasattr(batch, "columns"):  # pandas
        return pa.Table.from_pandas(batch, preserve_index=False)
    return pa.table({name: list(values) for name, values in dict(batch).items()})


def _message(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def _dtype_name(dtype: Any) -> str | None:
    """dtypes travel to the actors as names."""
    return None if dtype is None else str(dtype).removeprefix("torch.")


def run_file(source: str, output: str, task: str, model: str, *, address: str | None = None,
             progress: bool = True, text_column: str = "text", columns: dict[str, str] | None = None,
             **options: Any) -> dict[str, Any]:
    """Run `task` over the rows of the file `source` (.jsonl, .csv, .parquet) on Ray and write them, in order,
    with their result columns, to `output` (its format from its extension; written atomically). Joins Ray
    at `address` (`cluster.connect`), shows a progress bar on stderr unless `progress=False`; `options` as
    in `map_batches`. Returns {"rows", "failed", "failed_rows" (the first 10 failed row numbers, from 0)}."""
    import ray.data

    from .cluster import connect
    from .files import file_format, read_dataset, write_batches

    file_format(output)  # a bad output name fails before anything runs
    if Path(source).resolve() == Path(output).resolve():
        raise InputError(f"--output {output} is the input file; write the results to a new file")
    spec = task_named(task)
    renamed = {**({"text": text_column} if "text" in spec.inputs else {}), **(columns or {})}
    connect(address)
    _check_room(options.get("actors", 1), options.get("num_cpus", 1.0), options.get("num_gpus", 0.0))
    ray.data.DataContext.get_current().enable_progress_bars = False  # bombus shows its own bar
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # Read (and split) everything into Ray's object store (spilled to disk when large) before the actors start:
    # tasks queued behind an actor pool that holds every CPU would never run.
    dataset = read_dataset(source, input_columns(spec, renamed).values()).materialize()
    total = dataset.count()
    # One block per actor call, so that every actor of the pool gets work (a small file is a single block).
    rows_per_call = options.get("batch_rows", 256)
    dataset = dataset.repartition(max(1, -(-total // rows_per_call))).materialize()
    out = map_batches(dataset, task, model, text_column=text_column, columns=columns, **options)
    failed: list[int] = []
    seen = 0
    bar = _bar(total) if progress else None

    def count(batch: pa.Table) -> None:
        nonlocal seen
        errors = batch.column(ERROR_COLUMN).is_valid().to_pylist()
        failed.extend(seen + i for i, bad in enumerate(errors) if bad)
        seen += batch.num_rows
        if bar is not None:
            bar.update(batch.num_rows)

    try:
        rows = write_batches(out.iter_batches(batch_format="pyarrow", batch_size=None), output, on_batch=count)
    finally:
        if bar is not None:
            bar.close()
    return {"rows": rows, "failed": len(failed), "failed_rows": failed[:10]}


def _check_room(actors: Any, num_cpus: float, num_gpus: float) -> None:
    """A clear error, rather than a wait without end, when the cluster cannot hold the actors asked for."""
    import ray

    smallest = actors[0] if isinstance(actors, tuple) else actors
    have = ray.cluster_resources()
    for name, each in (("CPU", num_cpus), ("GPU", num_gpus)):
        if each and smallest * each > have.get(name, 0):
            raise ConfigError(f"the Ray cluster has {have.get(name, 0):g} {name}s; {smallest} actor(s) x {each:g} "
                              f"{name} each need {smallest * each:g}: ask for fewer actors or less per actor "
                              f"(--actors, --actor-cpus), or add nodes")


def _bar(total: int | None) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="row", file=sys.stderr, leave=False)
