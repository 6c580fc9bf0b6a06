"""Files in and out of Ray Data: read a .jsonl, .csv or .parquet file as a Dataset, and write a Dataset's
batches, in order, as one file of the same kinds, written atomically (a failed run leaves no partial file)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import pyarrow as pa

from ...errors import InputError

FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}
# CPUs a read task reserves: none. Reading is light next to the model, and any share would deadlock an actor pool
# that holds every CPU of the cluster (the reads wait for a CPU the actors never release).
READ_CPUS = 0


def file_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"{path}: unknown file type {suffix or '(none)'!r}; use .jsonl, .csv or .parquet")
    return FORMATS[suffix]


def read_dataset(path: str | os.PathLike, text_columns: Iterable[str] = ()) -> Any:
    """A Ray Dataset of the rows of `path` (.jsonl, .csv or .parquet, or a folder of .parquet files). CSV
    columns in `text_columns` are read as strings (a column of numbers stays text)."""
    import ray.data

    source = Path(path)
    if not source.exists():
        raise InputError(f"{path} does not exist")
    kind = "parquet" if source.is_dir() else file_format(source)
    if kind == "parquet":
        return ray.data.read_parquet(str(source), num_cpus=READ_CPUS)
    if kind == "jsonl":
        return ray.data.read_json(str(source), lines=True, file_extensions=None, num_cpus=READ_CPUS)
    from pyarrow import csv

    options = csv.ConvertOptions(column_types={name: pa.string() for name in text_columns})
    return ray.data.read_csv(str(source), convert_options=options, file_extensions=None, num_cpus=READ_CPUS)


class _Writer:
    """One output file of a format, from Arrow batches."""

    def __init__(self, path: Path, kind: str):
        self.path, self.kind = path, kind
        self.handle: Any = None
        self.schema: pa.Schema | None = None

    def write(self, batch: pa.Table) -> None:
        if self.schema is None:
            self.schema = batch.schema
            self._open()
        elif batch.schema != self.schema:
            batch = batch.cast(self.schema)  # a block whose inferred types differ (e.g. an all-null column)
        if self.kind == "parquet":
            self.handle.write_table(batch)
        elif self.kind == "jsonl":
            self.handle.writelines(json.dumps(row, ensure_ascii=False, default=str) + "\n"
                                   for row in batch.to_pylist())
        else:
            self.handle.write(_flat(batch))

    def _open(self) -> None:
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            self.handle = pq.ParquetWriter(self.path, self.schema)
        elif self.kind == "jsonl":
            self.handle = open(self.path, "w", encoding="utf-8")
        else:
            from pyarrow import csv

            self.handle = csv.CSVWriter(self.path, _flat(self.schema.empty_table()).schema)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        elif self.kind == "jsonl":
            self.path.write_text("", encoding="utf-8")  # no rows: an empty file, still written


def _flat(table: pa.Table) -> pa.Table:
    """CSV holds no lists or structs: those columns become JSON text."""
    for i, field in enumerate(table.schema):
        if pa.types.is_nested(field.type):
            text = pa.array([None if v is None else json.dumps(v, ensure_ascii=False)
                             for v in table.column(i).to_pylist()], type=pa.string())
            table = table.set_column(i, pa.field(field.name, pa.string()), text)
    return table


def write_batches(batches: Iterable[pa.Table], path: str | os.PathLike, *,
                  on_batch: Callable[[pa.Table], None] | None = None) -> int:
    """Write `batches` in order to `path` (its format from its extension) through a temporary file renamed
    into place at the end; returns the number of rows. `on_batch` sees each batch after it is written."""
    target = Path(path)
    kind = file_format(target)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.partial")
    writer = _Writer(temporary, kind)
    rows = 0
    try:
        for batch in batches:
            writer.write(batch)
            rows += batch.num_rows
            if on_batch is not None:
                on_batch(batch)
        writer.close()
        os.replace(temporary, target)
    except BaseException:
        if writer.handle is not None:
            writer.handle.close()
        temporary.unlink(missing_ok=True)
        raise
    return rows
