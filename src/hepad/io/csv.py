"""CSV reader (pyarrow.csv, streamed in blocks): numeric columns become flat features.

The first line is the header. Column types are inferred from the first block and then fixed
(numeric columns are read as float64, so an integer column holding a decimal further down does
not break the stream). Non-numeric columns are dropped and reported; ``columns=`` selects.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import FormatError
from ..events import EventSet
from . import _table

_BLOCK = 1 << 20  # bytes per parsed block: bounds memory while streaming


def _open(path: Path, plan: _table.Plan | None = None) -> pacsv.CSVStreamingReader:
    read = pacsv.ReadOptions(block_size=_BLOCK, use_threads=False)
    if plan is None:
        return pacsv.open_csv(path, read_options=read)
    # Fix the types seen in the first block; integers widen to float64 so a decimal further
    # down does not break the stream. Booleans keep their type (float64 cannot parse "true").
    convert = pacsv.ConvertOptions(
        column_types={
            c: (pa.bool_() if pa.types.is_boolean(plan.types[c]) else pa.float64())
            for c in plan.read_columns
            if plan.side.get(c) != "process"
        },
        include_columns=plan.read_columns,
    )
    return pacsv.open_csv(path, read_options=read, convert_options=convert)


def _plan(path: Path, columns: Sequence[str] | None) -> _table.Plan:
    try:
        reader = _open(path)
    except pa.ArrowInvalid as exc:
        msg = str(exc)
        if "Empty CSV file" in msg:
            raise FormatError(f"{path}: the CSV file is empty (no header line).") from None
        raise FormatError(f"{path}: not a readable CSV file ({msg.splitlines()[0]}).") from None
    schema = reader.schema
    if all(pa.types.is_null(f.type) for f in schema):
        # Header only: pyarrow types every column null. Say so instead of "non-numeric".
        raise _table.empty_error(path)
    return _table.plan_columns(schema, path, "csv", columns)


def _provenance(path: Path) -> dict:
    return {"source": str(path), "format": "csv"}


def iterate(
    path: str | os.PathLike[str],
    chunk_size: int = 100_000,
    key: str | None = None,
    columns: Sequence[str] | None = None,
    entry_range: tuple[int, int | None] | None = None,
) -> Iterator[EventSet]:
    """Yield EventSets of ``chunk_size`` rows from a CSV file (``key`` is ignored)."""
    path = Path(path)
    plan = _plan(path, columns)
    start, stop = entry_range or (0, None)
    prov = _provenance(path)
    seen = False
    for table in _table.rebatch(_batches(path, plan), chunk_size, start, stop):
        seen = True
        yield _table.to_events(table, plan, prov)
    if not seen:
        if count(path) == 0:
            raise _table.empty_error(path)
        yield _table.to_events(_empty(plan), plan, prov)


def _batches(path: Path, plan: _table.Plan) -> Iterable[pa.RecordBatch]:
    reader = _open(path, plan)
    try:
        for batch in reader:
            yield batch
    except pa.ArrowInvalid as exc:
        raise FormatError(
            f"{path}: cannot parse the CSV ({str(exc).splitlines()[0]}). A numeric column may "
            "hold text further down; pass columns= to choose columns, or fix the file."
        ) from None


def _empty(plan: _table.Plan) -> pa.Table:
    fields = [pa.field(c, pa.string() if plan.side.get(c) == "process" else pa.float64())
              for c in plan.read_columns]
    return pa.schema(fields).empty_table()


def read(
    path: str | os.PathLike[str],
    key: str | None = None,
    columns: Sequence[str] | None = None,
    entry_range: tuple[int, int | None] | None = None,
) -> EventSet:
    """Read a CSV file (or ``entry_range`` rows of it) into one flat EventSet."""
    path = Path(path)
    chunks = list(iterate(path, chunk_size=1 << 62, columns=columns, entry_range=entry_range))
    return chunks[0] if len(chunks) == 1 else EventSet.concat(chunks)


def count(path: str | os.PathLike[str], key: str | None = None) -> int:
    """Number of data rows; parses only the first column."""
    path = Path(path)
    reader = _open(path)
    first = reader.schema.names[0]
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=_BLOCK, use_threads=False),
        convert_options=pacsv.ConvertOptions(include_columns=[first],
                                             column_types={first: pa.string()}),
    )
    return sum(b.num_rows for b in reader)


def list_keys(path: str | os.PathLike[str]) -> dict[str, tuple]:
    """``{"": column names}``."""
    return {"": tuple(_open(Path(path)).schema.names)}
