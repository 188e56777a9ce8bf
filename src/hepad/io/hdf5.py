"""HDF5 reader and writer: the ADC2021 layout (``Particles``, (N, 19, 4)) and flat (N, F) datasets.

Files written by hepad hold ``Particles`` (or ``data`` for flat features), optional ``labels``,
``weights`` and ``process`` datasets of length N, and the provenance as a JSON string in the
root attribute ``hepad_provenance``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np

from .._atomic import atomic_path
from ..errors import FormatError, InputError, MissingKeyError, closest
from ..events import EventSet

OBJECT_KEY = "Particles"
DEFAULT_FLAT_KEY = "data"
_SIDE_KEYS = ("labels", "weights", "process")
PROVENANCE_ATTR = "hepad_provenance"


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise FormatError(
            f"{path}: not a readable HDF5 file ({exc.__class__.__name__}: {exc}). "
            "It may be truncated or corrupt; regenerate or re-download it."
        ) from None


def _choose_key(f: h5py.File, path: Path, key: str | None) -> str:
    datasets = [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]
    if key is not None:
        if key not in f or not isinstance(f[key], h5py.Dataset):
            raise MissingKeyError(
                f"{path}: no dataset {key!r}; the file holds {', '.join(datasets) or 'no datasets'}."
                f"{closest(key, datasets)} Pass --key with one of them."
            )
        return key
    for candidate in (OBJECT_KEY, DEFAULT_FLAT_KEY):
        if candidate in datasets:
            return candidate
    if not datasets:
        raise FormatError(f"{path}: the HDF5 file holds no datasets.")
    raise MissingKeyError(
        f"{path}: neither {OBJECT_KEY!r} nor {DEFAULT_FLAT_KEY!r} found; the file holds "
        f"{', '.join(datasets)}. Pass --key with one of them."
    )


def _provenance(f: h5py.File, path: Path, key: str) -> dict:
    prov: dict = {}
    raw = f.attrs.get(PROVENANCE_ATTR)
    if raw is not None:
        try:
            prov = json.loads(raw)
        except (TypeError, ValueError):
            prov = {}
    prov.update({"source": str(path), "format": "hdf5", "key": key})
    return prov


def _side(f: h5py.File, name: str, sel: slice, n_total: int) -> np.ndarray | None:
    if name in f and isinstance(f[name], h5py.Dataset) and f[name].shape == (n_total,):
        arr = f[name][sel]
        if name == "process":
            arr = np.asarray([a.decode() if isinstance(a, bytes) else str(a) for a in arr])
        return arr
    return None


def _read_block(
    f: h5py.File, path: Path, key: str, start: int, stop: int, columns: Sequence[str] | None
) -> EventSet:
    ds = f[key]
    sel = slice(start, stop)
    try:
        data = ds[sel]
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: cannot read dataset {key!r} ({exc}); the file may be corrupt.") from None
    names: tuple[str, ...] = ()
    if data.ndim == 2:
        stored = ds.attrs.get("feature_names")
        if stored is not None:
            names = tuple(s.decode() if isinstance(s, bytes) else str(s) for s in stored)
        if columns:
            names = names or tuple(f"f{i}" for i in range(data.shape[1]))
            missing = [c for c in columns if c not in names]
            if missing:
                raise MissingKeyError(
                    f"{path}: dataset {key!r} has no column {missing[0]!r}.{closest(missing[0], names)}"
                )
            idx = [names.index(c) for c in columns]
            data, names = data[:, idx], tuple(columns)
    elif data.ndim != 3:
        raise FormatError(
            f"{path}: dataset {key!r} has shape {ds.shape}; expected (N, 19, 4) objects or (N, F) features."
        )
    if not np.issubdtype(data.dtype, np.number):
        raise FormatError(f"{path}: dataset {key!r} is not numeric (dtype {data.dtype}).")
    n_total = ds.shape[0]
    return EventSet(
        data=data,
        feature_names=names,
        labels=_side(f, "labels", sel, n_total),
        weights=_side(f, "weights", sel, n_total),
        process=_side(f, "process", sel, n_total),
        provenance=_provenance(f, path, key),
    )


def read_hdf5(
    path: str | os.PathLike[str],
    key: str | None = None,
    columns: Sequence[str] | None = None,
    entry_range: tuple[int, int] | None = None,
) -> EventSet:
    """Read one dataset (``Particles``, ``data`` or ``key``) of an HDF5 file."""
    path = Path(path)
    with _open(path) as f:
        k = _choose_key(f, path, key)
        n = f[k].shape[0] if f[k].shape else 0
        start, stop = (0, n) if entry_range is None else (max(0, entry_range[0]), min(n, entry_range[1]))
        if n == 0:
            raise InputError(f"{path}: dataset {k!r} holds no events.")
        return _read_block(f, path, k, start, stop, columns)


def iter_hdf5(
    path: str | os.PathLike[str],
    chunk_size: int = 100_000,
    key: str | None = None,
    columns: Sequence[str] | None = None,
) -> Iterator[EventSet]:
    """Yield consecutive chunks of at most ``chunk_size`` events; memory stays bounded."""
    path = Path(path)
    if chunk_size < 1:
        raise InputError(f"chunk_size must be >= 1, got {chunk_size}.")
    with _open(path) as f:
        k = _choose_key(f, path, key)
        n = f[k].shape[0] if f[k].shape else 0
        if n == 0:
            raise InputError(f"{path}: dataset {k!r} holds no events.")
        for start in range(0, n, chunk_size):
            yield _read_block(f, path, k, start, min(n, start + chunk_size), columns)


def count_hdf5(path: str | os.PathLike[str], key: str | None = None) -> int:
    """Number of events in the chosen dataset, without reading it."""
    path = Path(path)
    with _open(path) as f:
        return int(f[_choose_key(f, path, key)].shape[0])


def _write_into(f: h5py.File, events: EventSet, compression: str | None) -> None:
    key = OBJECT_KEY if events.is_objects else DEFAULT_FLAT_KEY
    chunks = (min(len(events), 10_000),) + events.data.shape[1:] if len(events) else None
    ds = f.create_dataset(key, data=events.data, compression=compression, chunks=chunks)
    if not events.is_objects:
        ds.attrs["feature_names"] = np.asarray(events.feature_names, dtype=h5py.string_dtype())
    if events.labels is not None:
        f.create_dataset("labels", data=events.labels)
    if events.weights is not None:
        f.create_dataset("weights", data=events.weights)
    if events.process is not None:
        f.create_dataset("process", data=events.process.astype(object), dtype=h5py.string_dtype())
    prov = {k: v for k, v in events.provenance.items() if k not in ("source", "format", "key")}
    f.attrs[PROVENANCE_ATTR] = json.dumps(prov, default=str)


def write_hdf5(
    events: EventSet, path: str | os.PathLike[str], compression: str | None = "gzip"
) -> Path:
    """Write ``events`` atomically: a temporary file in the same folder, renamed when complete."""
    with atomic_path(path, suffix=".h5.tmp") as tmp:
        with h5py.File(tmp, "w") as f:
            _write_into(f, events, compression)
    return Path(path)
