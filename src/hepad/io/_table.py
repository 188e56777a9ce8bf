"""Shared by the CSV and Parquet readers: Arrow tables -> EventSet.

Column rules: numeric (integer, floating, boolean) columns become float32 features; other
columns are dropped and reported once (logging warning + ``provenance["dropped_columns"]``).
Columns named ``labels``/``label``, ``weights``/``weight`` and ``process`` are not features:
they fill the EventSet's labels, weights and process (so a truth label never leaks into the
model inputs). A table written by hepad from the object layout carries the schema metadata
``hepad_layout=adc2021`` and is read back as (N, 19, 4).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import _layout as L
from ..errors import FormatError, InputError, MissingKeyError, closest
from ..events import EventSet

log = logging.getLogger(__name__)

SIDE_COLUMNS = {"labels": "labels", "label": "labels", "weights": "weights", "weight": "weights",
                "process": "process"}
LAYOUT_META = b"hepad_layout"
PROVENANCE_META = b"hepad_provenance"
#: column names of the object layout in a flat table: MET_pt, MET_eta, MET_phi, MET_type, e1_pt...
OBJECT_COLUMNS = tuple(f"{s}_{v}" for s in L.SLOT_NAMES for v in ("pt", "eta", "phi", "type"))


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


@dataclass
class Plan:
    """Which columns of a table become what."""

    features: tuple[str, ...]
    side: dict[str, str]  # column name -> EventSet attribute
    dropped: tuple[str, ...]
    objects: bool
    provenance: dict[str, Any] = field(default_factory=dict)
    types: dict[str, pa.DataType] = field(default_factory=dict)

    @property
    def read_columns(self) -> list[str]:
        return list(self.features) + [c for c in self.side if c not in self.features]


def plan_columns(
    schema: pa.Schema, path: Path, fmt: str, columns: Sequence[str] | None
) -> Plan:
    """Decide the feature / side / dropped columns of ``schema``; errors name the file."""
    plan = _plan_columns(schema, path, fmt, columns)
    plan.types = {f.name: f.type for f in schema}
    return plan


def _plan_columns(
    schema: pa.Schema, path: Path, fmt: str, columns: Sequence[str] | None
) -> Plan:
    names = list(schema.names)
    meta = schema.metadata or {}
    prov: dict[str, Any] = {}
    if PROVENANCE_META in meta:
        try:
            prov = dict(json.loads(meta[PROVENANCE_META]))
        except (TypeError, ValueError):
            prov = {}
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise FormatError(f"{path}: duplicate column names {', '.join(dupes)}; rename them.")
    side = {c: SIDE_COLUMNS[c] for c in names if c in SIDE_COLUMNS}
    # Two spellings of one side column (label and labels): keep the plural.
    seen: dict[str, str] = {}
    shadowed: set[str] = set()  # the other spelling: never a feature (truth must not leak)
    for c, attr in list(side.items()):
        if attr in seen:
            loser = c if c != attr else seen[attr]
            del side[loser]
            shadowed.add(loser)
        seen[attr] = c
    if columns:
        missing = [c for c in columns if c not in names]
        if missing:
            raise MissingKeyError(
                f"{path}: no column {missing[0]!r}.{closest(missing[0], names)} "
                f"The file has {len(names)} columns: {_short(names)}."
            )
        bad = [c for c in columns if not _is_numeric(schema.field(c).type)]
        if bad:
            raise FormatError(
                f"{path}: column {bad[0]!r} is not numeric ({schema.field(bad[0]).type}); "
                "choose numeric columns."
            )
        side = {c: a for c, a in side.items() if c not in columns}
        return Plan(tuple(columns), side, (), False, prov)
    objects = meta.get(LAYOUT_META) == b"adc2021" and all(c in names for c in OBJECT_COLUMNS)
    if objects:
        return Plan(OBJECT_COLUMNS, side, (), True, prov)
    features, dropped = [], []
    for f in schema:
        if f.name in shadowed:
            dropped.append(f.name)
            continue
        attr = side.get(f.name)
        if attr is not None:
            text = pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
            if _is_numeric(f.type) or (attr == "process" and text):
                continue
            del side[f.name]  # unusable as labels/weights: an ordinary column
        (features if _is_numeric(f.type) else dropped).append(f.name)
    if not features:
        raise FormatError(
            f"{path}: no numeric column to use as features"
            + (f" (non-numeric: {_short(dropped)})" if dropped else "")
            + ". Check the delimiter and header, or convert the columns to numbers."
        )
    if dropped:
        log.warning(
            "%s: dropped %d non-numeric column(s): %s (pass columns= to choose explicitly)",
            path, len(dropped), ", ".join(dropped),
        )
    if side:
        log.info("%s: using column(s) %s as event labels/weights/process, not features",
                 path, ", ".join(side))
    return Plan(tuple(features), side, tuple(dropped), False, prov)


def _short(names: Sequence[str], n: int = 12) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def to_events(table: pa.Table | pa.RecordBatch, plan: Plan, provenance: dict[str, Any]) -> EventSet:
    """Convert the planned columns of ``table`` to an EventSet (float32; nulls become NaN)."""
    n = table.num_rows
    data = np.empty((n, len(plan.features)), dtype=np.float32)
    for j, name in enumerate(plan.features):
        data[:, j] = _as_float(table.column(name))
    side: dict[str, np.ndarray] = {}
    for col, attr in plan.side.items():
        arr = table.column(col)
        if attr == "process":
            side[attr] = np.asarray(arr.fill_null("").to_pylist(), dtype=str)
        else:
            side[attr] = _as_float(arr)
    if "labels" in side:
        lab = side["labels"]
        if not np.isfinite(lab).all() or np.any(lab != np.round(lab)):
            raise FormatError(
                f"{provenance.get('source')}: the label column holds non-integer or missing "
                "values; labels must be 0 (background) or 1 (signal)."
            )
    prov = {**plan.provenance, **provenance}
    if plan.dropped:
        prov["dropped_columns"] = list(plan.dropped)
    if plan.objects:
        out = data.reshape(n, L.N_SLOTS, L.N_COLUMNS)
        return EventSet(out, labels=side.get("labels"), weights=side.get("weights"),
                        process=side.get("process"), provenance=prov)
    return EventSet(data, feature_names=plan.features, labels=side.get("labels"),
                    weights=side.get("weights"), process=side.get("process"), provenance=prov)


def _as_float(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if pa.types.is_boolean(arr.type):
        arr = pc.cast(arr, pa.int8())
    out = pc.cast(arr, pa.float64(), safe=False)
    if isinstance(out, pa.ChunkedArray):
        out = out.combine_chunks() if out.num_chunks != 1 else out.chunk(0)
    with np.errstate(over="ignore"):  # |x| > 3.4e38 becomes inf, and validation names it
        return out.to_numpy(zero_copy_only=False).astype(np.float32)


def rebatch(
    batches: Iterable[pa.RecordBatch],
    chunk_size: int,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[pa.Table]:
    """Re-cut a stream of record batches into tables of exactly ``chunk_size`` rows.

    Rows before ``start`` (counted from the first batch) and from ``stop`` on are skipped;
    reading stops as soon as ``stop`` is reached.
    """
    pending: list[pa.RecordBatch] = []
    n_pending = 0
    pos = 0
    for batch in batches:
        lo, hi = pos, pos + batch.num_rows
        pos = hi
        if hi <= start:
            continue
        if lo < start:
            batch = batch.slice(start - lo)
            lo = start
        if stop is not None and hi > stop:
            batch = batch.slice(0, max(0, stop - lo))
        if batch.num_rows:
            pending.append(batch)
            n_pending += batch.num_rows
        while n_pending >= chunk_size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, chunk_size)
            rest = table.slice(chunk_size)
            pending = rest.to_batches()
            n_pending = rest.num_rows
        if stop is not None and pos >= stop:
            break
    if n_pending:
        yield pa.Table.from_batches(pending)


def empty_error(path: Path) -> InputError:
    return InputError(f"{path}: the file holds no events (a header but no rows).")
