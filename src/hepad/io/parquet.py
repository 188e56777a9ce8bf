"""Parquet reader and writer (pyarrow): flat numeric columns, or the object layout.

Reading streams record batches (bounded memory) and skips whole row groups before an
``entry_range``. Non-numeric columns are dropped and reported; ``columns=`` selects.
Writing stores the object layout as 76 columns ``MET_pt, MET_eta, MET_phi, MET_type, e1_pt, ...``
with schema metadata ``hepad_layout=adc2021`` (so it reads back as (N, 19, 4)); flat events as
their feature columns; ``labels``/``weights``/``process`` as columns; provenance as JSON metadata.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._atomic import atomic_path
from ..errors import FormatError, InputError
from ..events import EventSet
from . import _table


def _open(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise FormatError(
            f"{path}: not a readable Parquet file ({str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}). "
            "It may be truncated or corrupt."
        ) from None


def iterate(
    path: str | os.PathLike[str],
    chunk_size: int = 100_000,
    key: str | None = None,
    columns: Sequence[str] | None = None,
    entry_range: tuple[int, int | None] | None = None,
) -> Iterator[EventSet]:
    """Yield EventSets of ``chunk_size`` rows (``key`` is ignored)."""
    path = Path(path)
    pf = _open(path)
    plan = _table.plan_columns(pf.schema_arrow, path, "parquet", columns)
    n_total = pf.metadata.num_rows
    if n_total == 0:
        raise _table.empty_error(path)
    start, stop = entry_range or (0, None)
    # Skip whole row groups before start; rebatch then counts from the first kept group.
    groups, first_row, row = [], None, 0
    for i in range(pf.num_row_groups):
        n = pf.metadata.row_group(i).num_rows
        if row + n > start and (stop is None or row < stop):
            groups.append(i)
            first_row = row if first_row is None else first_row
        row += n
    prov = {"source": str(path), "format": "parquet"}
    if not groups:
        yield _table.to_events(pf.schema_arrow.empty_table().select(plan.read_columns), plan, prov)
        return
    batches = pf.iter_batches(batch_size=min(chunk_size, 65_536), row_groups=groups,
                              columns=plan.read_columns, use_threads=False)
    offset = first_row or 0
    for table in _table.rebatch(batches, chunk_size, start - offset,
                                None if stop is None else stop - offset):
        yield _table.to_events(table, plan, prov)


def read(
    path: str | os.PathLike[str],
    key: str | None = None,
    columns: Sequence[str] | None = None,
    entry_range: tuple[int, int | None] | None = None,
) -> EventSet:
    """Read a Parquet file (or ``entry_range`` rows of it) into one EventSet."""
    chunks = list(iterate(path, chunk_size=1 << 62, columns=columns, entry_range=entry_range))
    return chunks[0] if len(chunks) == 1 else EventSet.concat(chunks)


def count(path: str | os.PathLike[str], key: str | None = None) -> int:
    """Rows in the file, from the footer."""
    return int(_open(Path(path)).metadata.num_rows)


def list_keys(path: str | os.PathLike[str]) -> dict[str, tuple]:
    """``{"": column names}``."""
    return {"": tuple(_open(Path(path)).schema_arrow.names)}


def _to_table(events: EventSet) -> pa.Table:
    if events.is_objects:
        flat = events.data.reshape(len(events), int(np.prod(events.data.shape[1:])))
        names = _table.OBJECT_COLUMNS
    else:
        flat, names = events.data, events.feature_names
    clash = [n for n in names if n in _table.SIDE_COLUMNS]
    if clash:
        raise InputError(
            f"{events.source}: feature {clash[0]!r} would read back as event "
            f"{_table.SIDE_COLUMNS[clash[0]]}; rename the feature before writing Parquet."
        )
    cols = {n: pa.array(np.ascontiguousarray(flat[:, j])) for j, n in enumerate(names)}
    if events.labels is not None:
        cols["labels"] = pa.array(events.labels)
    if events.weights is not None:
        cols["weights"] = pa.array(events.weights)
    if events.process is not None:
        cols["process"] = pa.array(events.process.tolist(), type=pa.string())
    prov = {k: v for k, v in events.provenance.items() if k not in ("source", "format", "key")}
    meta = {_table.PROVENANCE_META: json.dumps(prov, default=str).encode()}
    if events.is_objects:
        meta[_table.LAYOUT_META] = b"adc2021"
    return pa.table(cols).replace_schema_metadata(meta)


def write(
    chunks: Iterable[EventSet],
    path: str | os.PathLike[str],
    compression: str | None = "zstd",
    **_: object,
) -> Path:
    """Write EventSet chunks to one Parquet file, atomically (one row group per chunk)."""
    path = Path(path)
    with atomic_path(path, suffix=".parquet.tmp") as tmp:
        writer = None
        schema = None
        try:
            for events in chunks:
                table = _to_table(events)
                if writer is None:
                    schema = table.schema
                    writer = pq.ParquetWriter(tmp, schema, compression=compression or "none")
                elif table.schema.remove_metadata() != schema.remove_metadata():
                    raise InputError(
                        f"{path}: chunk from {events.source} has different columns than the "
                        "first chunk; all chunks must share layout and features."
                    )
                writer.write_table(table.replace_schema_metadata(schema.metadata))
            if writer is None:
                raise InputError(f"{path}: no events to write.")
        finally:
            if writer is not None:
                writer.close()
    return path
