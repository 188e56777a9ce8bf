"""HDF5 reader and writer: the ADC2021 layout (``Particles``, (N, 19, 4)) and flat (N, F) datasets.

Files written by hepad hold ``Particles`` (or ``data`` for flat features), optional ``labels``,
``weights`` and ``process`` datasets of length N, and the provenance as a JSON string in the
root attribute ``hepad_provenance``.

Reading picks the dataset ``key``; without one: ``Particles``, then ``data``, then ``Data``,
then the only 2-D/3-D dataset. Files holding only train/validation/test splits (``X_train``,
``X_val``, ``X_test``, as written by the ADC2021 tutorials) need ``key=``; the error lists them
with their shapes. A flat dataset of 57 columns without stored names gets the ADC2021 flat
names (``MET_pt``, ``MET_eta``, ...).

The ADC2021 Zenodo files (background, signals, black boxes) hold ``Particles`` as float64 next
to ``Particles_Names`` (Pt, Eta, Phi, Class) and ``Particles_Classes`` (MET_class_1, ...); both
are checked against the layout and kept in the provenance, as is the presence of a black box's
``EvtId``. Tutorial splits of shape (N, 19, 3) (``X_train``/``X_val``/``X_test``/``Data`` of the
convolutional example, type column dropped) read as the object layout with the type restored
from the slot; (N, 57) splits read as the 57 flat inputs.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import _layout as L
from .._atomic import atomic_path
from ..errors import FormatError, InputError, MissingKeyError, closest
from ._range import clamp_range
from ..events import EventSet

OBJECT_KEY = "Particles"
DEFAULT_FLAT_KEY = "data"
DEFAULT_KEYS = (OBJECT_KEY, DEFAULT_FLAT_KEY, "Data")
SPLIT_KEYS = ("X_train", "X_val", "X_test")
_SIDE_KEYS = ("labels", "weights", "process")
PROVENANCE_ATTR = "hepad_provenance"
_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: events per HDF5 chunk when writing: ~3 MB for the object layout
WRITE_CHUNK = 10_000


def _check_signature(path: Path) -> None:
    """Refuse files that are not HDF5 before handing them to the C library.

    The superblock signature sits at byte 0 or, after a user block, at 512, 1024, 2048...
    Checking it first turns random bytes into a clear error, and keeps libhdf5 away from
    input it was never meant to parse.
    """
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes).")
    with open(path, "rb") as fh:
        offset = 0
        while offset + len(_SIGNATURE) <= size:
            fh.seek(offset)
            if fh.read(len(_SIGNATURE)) == _SIGNATURE:
                return
            offset = 512 if offset == 0 else offset * 2
    raise FormatError(
        f"{path}: not an HDF5 file (no HDF5 signature). Check the file, or pass --format "
        "if it is CSV, Parquet or ROOT."
    )


def _open(path: Path) -> h5py.File:
    _check_signature(path)
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise FormatError(
            f"{path}: not a readable HDF5 file ({exc.__class__.__name__}: {str(exc)[:200]}). "
            "It may be truncated or corrupt; regenerate or re-download it."
        ) from None


def _datasets(f: h5py.File) -> dict[str, tuple]:
    out = {}
    for k in f.keys():
        try:
            obj = f[k]
        except (KeyError, OSError, ValueError, RuntimeError):
            continue  # a damaged link: leave it out of the listing
        if isinstance(obj, h5py.Dataset):
            out[k] = tuple(obj.shape or ())
    return out


def _describe(datasets: dict[str, tuple]) -> str:
    return ", ".join(f"{k} {v}" for k, v in datasets.items()) or "no datasets"


def _choose_key(f: h5py.File, path: Path, key: str | None) -> str:
    datasets = _datasets(f)
    if key is not None:
        if key not in datasets:
            raise MissingKeyError(
                f"{path}: no dataset {key!r}; the file holds {_describe(datasets)}."
                f"{closest(key, datasets)} Pass --key with one of them."
            )
        return key
    for candidate in DEFAULT_KEYS:
        if candidate in datasets:
            return candidate
    if not datasets:
        raise FormatError(f"{path}: the HDF5 file holds no datasets.")
    events_like = [k for k, s in datasets.items() if len(s) in (2, 3) and k not in _SIDE_KEYS]
    if len(events_like) == 1:
        return events_like[0]
    splits = [k for k in SPLIT_KEYS if k in datasets]
    what = "train/validation/test splits" if splits else "several datasets"
    raise MissingKeyError(
        f"{path}: the file holds {what} ({_describe(datasets)}) and none of "
        f"{', '.join(DEFAULT_KEYS)}; choose one with key= / --key"
        + (f" (e.g. --key {splits[-1]})." if splits else ".")
    )


def default_key(path: str | os.PathLike[str]) -> str | None:
    """The dataset :func:`read` would use without ``key``, or None when it needs one."""
    path = Path(path)
    with _open(path) as f:
        try:
            return _choose_key(f, path, None)
        except MissingKeyError:
            return None


def _provenance(f: h5py.File, path: Path, key: str) -> dict:
    prov: dict = {}
    raw = f.attrs.get(PROVENANCE_ATTR)
    if raw is not None:
        try:
            loaded = json.loads(raw.tobytes() if isinstance(raw, np.ndarray) else raw)
            prov = loaded if isinstance(loaded, dict) else {}
        except (TypeError, ValueError):
            prov = {}
    prov.update({"source": str(path), "format": "hdf5", "key": key})
    return prov


def _side(f: h5py.File, name: str, sel: slice, n_total: int) -> np.ndarray | None:
    if name in f and isinstance(f[name], h5py.Dataset) and f[name].shape == (n_total,):
        ds = f[name]
        arr = ds[sel]
        if name == "process":
            cats = ds.attrs.get("categories")
            if cats is not None and np.issubdtype(arr.dtype, np.integer):
                names = np.asarray([_text(c) for c in np.ravel(cats)] + [""])
                return names[np.clip(arr, -1, len(names) - 2)]
            return np.asarray([_text(a) for a in arr])
        if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
            return None
        return arr
    return None


def _text(v: object) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, np.bytes_)) else str(v)


def _fixed(strings: Sequence[str]) -> np.ndarray:
    """Fixed-length byte strings: stored inline, never in the HDF5 global heap.

    Variable-length strings live in the global heap, and libhdf5 can loop forever on a damaged
    heap collection; hepad's own files avoid them so a corrupt file fails instead of hanging.
    """
    enc = [s.encode("utf-8") for s in strings]
    return np.asarray(enc, dtype=f"S{max([1] + [len(e) for e in enc])}")


def _typeless(ds: h5py.Dataset, key: str) -> bool:
    """A tutorial split (X_train, ..., Data) of shape (N, 19, 3): the layout without its type
    column (the ADC2021 example code drops it with ``[:, :, :-1]``); the slot implies the type."""
    return key in SPLIT_KEYS + ("Data",) and ds.ndim == 3 and ds.shape[1:] == (L.N_SLOTS, 3)


def _with_types(data: np.ndarray) -> np.ndarray:
    out = np.zeros(data.shape[:2] + (L.N_COLUMNS,), dtype=np.float32)
    out[:, :, :3] = data
    filled = data[:, :, 0] > 0
    filled[:, L.MET_SLOT] = True
    out[:, :, 3] = np.where(filled, np.asarray(L.SLOT_TYPES, dtype=np.float32), 0.0)
    return out


def _text_list(f: h5py.File, name: str) -> list[str] | None:
    if name not in f or not isinstance(f[name], h5py.Dataset) or f[name].ndim != 1 or f[name].shape[0] > 64:
        return None
    try:
        return [_text(v) for v in f[name][()]]
    except (OSError, ValueError, RuntimeError, TypeError):
        return None


#: What the ADC2021 Zenodo files store beside ``Particles``.
ADC_PARTICLE_NAMES = ("pt", "eta", "phi", "class")
#: Particles_Classes, in slot order: MET_class_1, Four_Ele_class_2, Four_Mu_class_3, Ten_Jet_class_4
_CLASS_WORDS = (("met",), ("ele",), ("mu",), ("jet",))


def _classes_match(classes: list[str]) -> bool:
    """The object kind and type code of each class, in slot order (spelling may vary)."""
    if len(classes) != len(_CLASS_WORDS):
        return False
    for i, (c, words) in enumerate(zip(classes, _CLASS_WORDS)):
        c = c.strip().lower()
        if not c.endswith(f"_{i + 1}") or not any(w in c for w in words):
            return False
    return True


def _adc_metadata(f: h5py.File, path: Path, key: str) -> dict:
    """``Particles_Names`` / ``Particles_Classes`` (checked) and black-box ``EvtId``, when present."""
    if key != OBJECT_KEY:
        return {}
    out: dict = {}
    names = _text_list(f, "Particles_Names")
    if names is not None:
        if tuple(n.strip().lower() for n in names) != ADC_PARTICLE_NAMES:
            raise FormatError(
                f"{path}: Particles_Names is {names}; hepad reads the ADC2021 column order "
                "(Pt, Eta, Phi, Class). Reorder the columns of Particles to that order."
            )
        out["particles_names"] = names
    classes = _text_list(f, "Particles_Classes")
    if classes is not None:
        if not _classes_match(classes):
            raise FormatError(
                f"{path}: Particles_Classes is {classes}; the ADC2021 layout is "
                "MET_class_1, Four_Ele_class_2, Four_Mu_class_3, Ten_Jet_class_4 (slots 0, 1-4, 5-8, 9-18)."
            )
        out["particles_classes"] = classes
    if "EvtId" in f and isinstance(f["EvtId"], h5py.Dataset):
        out["event_ids"] = "EvtId"  # black-box files: one id per event, kept in the file
    return out


def _check_dataset(ds: h5py.Dataset, path: Path, key: str) -> None:
    shape = ds.shape
    if shape is None or len(shape) not in (2, 3):
        raise FormatError(
            f"{path}: dataset {key!r} has shape {shape}; expected (N, 19, 4) objects or "
            "(N, F) features."
        )
    if len(shape) == 3 and shape[1:] != (L.N_SLOTS, L.N_COLUMNS) and not _typeless(ds, key):
        hint = ""
        if shape[1:] == (L.N_SLOTS, 3):
            hint = " (19 x 3 without the type column: reshape it to (N, 57) flat features)"
        raise FormatError(
            f"{path}: dataset {key!r} has shape {shape}; the ADC2021 layout is "
            f"(N, {L.N_SLOTS}, {L.N_COLUMNS}){hint}."
        )
    if ds.dtype == bool or not (np.issubdtype(ds.dtype, np.integer) or np.issubdtype(ds.dtype, np.floating)):
        raise FormatError(
            f"{path}: dataset {key!r} is not numeric as hepad reads it (dtype {ds.dtype}): events must be "
            "real numbers (float or integer), not bool, complex or text."
        )
    if shape[0] == 0:
        raise InputError(f"{path}: dataset {key!r} holds no events.")


def _names(ds: h5py.Dataset, n_cols: int) -> tuple[str, ...]:
    stored = ds.attrs.get("feature_names")
    if stored is not None:
        names = tuple(_text(s) for s in np.ravel(stored))
        if len(names) == n_cols:
            return names
    if n_cols == L.N_FLAT:
        return L.FLAT57_NAMES
    return tuple(f"f{i}" for i in range(n_cols))


def _read_block(
    f: h5py.File, path: Path, key: str, start: int, stop: int, columns: Sequence[str] | None
) -> EventSet:
    ds = f[key]
    sel = slice(start, stop)
    idx = None
    names: tuple[str, ...] = ()
    if ds.ndim == 2:
        names = _names(ds, ds.shape[1])
        if columns:
            missing = [c for c in columns if c not in names]
            if missing:
                raise MissingKeyError(
                    f"{path}: dataset {key!r} has no column {missing[0]!r}."
                    f"{closest(missing[0], names)} Columns: {', '.join(names[:10])}"
                    + (", ..." if len(names) > 10 else ".")
                )
            idx = [names.index(c) for c in columns]
            names = tuple(columns)
    elif columns:
        raise InputError(
            f"{path}: dataset {key!r} holds the (N, 19, 4) object layout; columns= selects "
            "flat columns only. Read it whole and use .flat57 / .features."
        )
    try:
        data = ds[sel]
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise FormatError(
            f"{path}: cannot read events {start}-{stop} of dataset {key!r} "
            f"({exc.__class__.__name__}: {str(exc)[:200]}); the file may be truncated or corrupt."
        ) from None
    if idx is not None:
        data = data[:, idx]
    prov = {**_provenance(f, path, key), **_adc_metadata(f, path, key)}
    if _typeless(ds, key):
        data = _with_types(data)
        prov["type_column"] = "added from the slot (the file holds (N, 19, 3))"
    n_total = ds.shape[0]
    try:
        side = {name: _side(f, name, sel, n_total) for name in _SIDE_KEYS}
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise FormatError(
            f"{path}: cannot read labels/weights/process ({exc}); the file may be corrupt."
        ) from None
    return EventSet(data=data, feature_names=names, provenance=prov, **side)


def read(
    path: str | os.PathLike[str],
    key: str | None = None,
    columns: Sequence[str] | None = None,
    entry_range: tuple[int, int | None] | None = None,
) -> EventSet:
    """Read one dataset (``Particles``, ``data`` or ``key``) of an HDF5 file."""
    path = Path(path)
    with _open(path) as f:
        k = _choose_key(f, path, key)
        _check_dataset(f[k], path, k)
        n = f[k].shape[0]
        start, stop = clamp_range(entry_range, n)
        return _read_block(f, path, k, start, stop, columns)


def iterate(
    path: str | os.PathLike[str],
    chunk_size: int = 100_000,
    key: str | None = None,
    columns: Sequence[str] | None = None,
    entry_range: tuple[int, int | None] | None = None,
) -> Iterator[EventSet]:
    """Yield consecutive chunks of at most ``chunk_size`` events; memory stays bounded.

    Only one chunk is in memory at a time: each is a hyperslab read of the dataset.
    """
    path = Path(path)
    if chunk_size < 1:
        raise InputError(f"chunk_size must be >= 1, got {chunk_size}.")
    with _open(path) as f:
        k = _choose_key(f, path, key)
        _check_dataset(f[k], path, k)
        start, stop = clamp_range(entry_range, f[k].shape[0])
        if start == stop:
            yield _read_block(f, path, k, start, stop, columns)
            return
        for lo in range(start, stop, chunk_size):
            yield _read_block(f, path, k, lo, min(stop, lo + chunk_size), columns)


def count(path: str | os.PathLike[str], key: str | None = None) -> int:
    """Number of events in the chosen dataset, without reading it."""
    path = Path(path)
    with _open(path) as f:
        k = _choose_key(f, path, key)
        _check_dataset(f[k], path, k)
        return int(f[k].shape[0])


def list_keys(path: str | os.PathLike[str]) -> dict[str, tuple]:
    """Datasets at the root of the file and their shapes."""
    path = Path(path)
    with _open(path) as f:
        return _datasets(f)


def _inflater() -> tuple[Any, type[Exception]]:
    """(decompressobj(), its error type): ISA-L's zlib (python-isal, about twice as fast as zlib
    on x86, releases the GIL too) when installed, else the standard library's."""
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal is a pinned dependency; a build without it still reads
        return zlib.decompressobj, zlib.error
    return isal_zlib.decompressobj, isal_zlib.error


#: Bytes inflated per call into the destination array. One bytes object per 3 MB chunk is a
#: fresh allocation that the kernel zero-fills page by page (750 page faults per chunk, a
#: quarter of the inflate's CPU in system time); 256 KiB pieces reuse the same heap memory
#: (2 M events: 160,000 -> 11,000 page faults, 0.55 -> 0.1 s system time; 64 KiB pieces cost
#: more Python calls than they save).
_PIECE = 1 << 18


class BlockReader:
    """Row blocks of one HDF5 dataset, the file opened once: what scoring streams.

    :func:`iterate` reads through h5py, whose gzip filter decompresses while holding the GIL,
    so a reader thread stalls the thread that scores. For the layout hepad writes (float32,
    chunked along the events only, gzip or no filter), :meth:`read` fetches the stored chunks
    as bytes (``read_direct_chunk``) and inflates them with :mod:`zlib`, which releases the
    GIL (ISA-L's inflate, :func:`_inflater`, in pieces straight into the result: about half the
    CPU of the HDF5 filter); any other layout (float64
    ADC2021 files, shuffle, other filters, chunks across columns, unallocated chunks) is read
    through h5py. Blocks aligned to :attr:`chunk_rows` inflate every stored chunk once.

    The data are not validated here: :meth:`events` returns an unvalidated :class:`EventSet`
    (``.validate()`` it, as :func:`hepad.io.read_events` does). Safe to share between threads
    (h5py serialises its calls; inflating runs in the calling thread).
    """

    def __init__(self, path: str | os.PathLike[str], key: str | None = None) -> None:
        self.path = Path(path)
        self._f = _open(self.path)
        try:
            k = _choose_key(self._f, self.path, key)
            ds = self._f[k]
            _check_dataset(ds, self.path, k)
            self.key, self._ds, self.n_events = k, ds, int(ds.shape[0])
            self._typeless = _typeless(ds, k)
            self.feature_names = _names(ds, ds.shape[1]) if ds.ndim == 2 else ()
            prov = {**_provenance(self._f, self.path, k), **_adc_metadata(self._f, self.path, k)}
            if self._typeless:
                prov["type_column"] = "added from the slot (the file holds (N, 19, 3))"
            self.provenance = prov
            self._inflate, self.chunk_rows = self._fast_layout(ds)
            self._decompressobj, self._zerror = _inflater()
        except BaseException:
            self._f.close()
            raise

    def _fast_layout(self, ds: h5py.Dataset) -> tuple[bool, int]:
        """(True: inflate gzip chunks here / False: read through h5py, rows per stored chunk).

        Unfiltered chunks go through h5py too: that is one copy, as cheap as fetching the bytes."""
        chunks = ds.chunks
        rows = int(chunks[0]) if chunks else 0
        if (
            not chunks or tuple(chunks[1:]) != tuple(ds.shape[1:]) or self._typeless
            or ds.dtype != np.dtype("<f4") or sys.byteorder != "little"
            or ds.shuffle or ds.fletcher32 or ds.scaleoffset is not None
            or ds.compression != "gzip"
        ):
            return False, rows
        return ds.compression == "gzip" and ds.id.get_create_plist().get_nfilters() == 1, rows

    def _chunk_into(self, start: int, dest: np.ndarray) -> bool:
        """Inflate the stored chunk that begins at row ``start`` into ``dest`` (its full rows,
        float32 C-contiguous); False when the chunk was never written (h5py gives the fill value)."""
        ds = self._ds
        offset = (start,) + (0,) * (ds.ndim - 1)
        if ds.id.get_chunk_info_by_coord(offset).byte_offset is None:
            return False
        mask, raw = ds.id.read_direct_chunk(offset)
        out = dest.reshape(-1).view(np.uint8)
        if mask & 1:  # bit 0 set: the gzip filter was skipped for this chunk, stored as is
            pos = len(raw)
            if pos == out.size:
                out[:] = np.frombuffer(raw, dtype=np.uint8)
        else:
            def put(piece: bytes, pos: int) -> int:
                if pos + len(piece) <= out.size:
                    out[pos : pos + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
                return pos + len(piece)  # past the end: too long, reported below

            d = self._decompressobj()
            pos, data = 0, raw
            while data and pos <= out.size:
                pos = put(d.decompress(data, _PIECE), pos)
                data = d.unconsumed_tail
            if pos <= out.size:
                pos = put(d.flush(), pos)
            if pos == out.size and not d.eof:
                pos = -1  # the stream stops short of its end marker
        if pos != out.size:
            raise FormatError(
                f"{self.path}: the stored chunk at event {start} of dataset {self.key!r} holds "
                f"{'a truncated stream' if pos < 0 else f'{pos} bytes'}, expected {out.size}; the file "
                "is corrupt. Regenerate or re-download it."
            )
        return True

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start <= i < stop`` (clipped to the dataset) as float32, unvalidated."""
        start, stop = clamp_range((start, stop), self.n_events)
        tail = tuple(self._ds.shape[1:])
        try:
            if self._inflate and stop > start:
                out = np.empty((stop - start,) + tail, dtype=np.float32)
                c = self.chunk_rows
                scratch = None
                for lo in range(start - start % c, stop, c):
                    a, b = max(start, lo), min(stop, lo + c)
                    if a == lo and b == lo + c:  # a whole stored chunk: straight into place
                        if not self._chunk_into(lo, out[a - start : b - start]):
                            out[a - start : b - start] = self._ds[a:b]
                        continue
                    if scratch is None:
                        scratch = np.empty((c,) + tail, dtype=np.float32)
                    if self._chunk_into(lo, scratch):
                        out[a - start : b - start] = scratch[a - lo : b - lo]
                    else:
                        out[a - start : b - start] = self._ds[a:b]
                return out
            data = self._ds[start:stop]
        except FormatError:
            raise
        except (OSError, ValueError, RuntimeError, KeyError, zlib.error, self._zerror) as exc:
            raise FormatError(
                f"{self.path}: cannot read events {start}-{stop} of dataset {self.key!r} "
                f"({exc.__class__.__name__}: {str(exc)[:200]}); the file may be truncated or corrupt."
            ) from None
        data = data.astype(np.float32, copy=False)  # as EventSet would convert it
        return _with_types(data) if self._typeless else data

    def events(self, start: int, stop: int) -> EventSet:
        """Rows ``start <= i < stop`` as an unvalidated :class:`EventSet` (no labels/weights)."""
        return EventSet(data=self.read(start, stop), feature_names=self.feature_names, provenance=self.provenance)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> BlockReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Kept for code written against the first skeleton.
read_hdf5 = read
iter_hdf5 = iterate
count_hdf5 = count


class _Appender:
    """Appends EventSet chunks to resizable datasets of an open HDF5 file."""

    def __init__(self, f: h5py.File, path: Path, compression: str | None, compression_opts) -> None:
        self.f, self.path = f, path
        self.compression, self.compression_opts = compression, compression_opts
        self.n = 0
        self.first: EventSet | None = None

    def _create(self, events: EventSet) -> None:
        key = OBJECT_KEY if events.is_objects else DEFAULT_FLAT_KEY
        tail = events.data.shape[1:]
        opts = {"compression": self.compression}
        if self.compression is not None and self.compression_opts is not None:
            opts["compression_opts"] = self.compression_opts
        ds = self.f.create_dataset(
            key, shape=(0,) + tail, maxshape=(None,) + tail, dtype=np.float32,
            chunks=(WRITE_CHUNK,) + tail, track_times=False, **opts,
        )
        if not events.is_objects:
            ds.attrs["feature_names"] = _fixed(events.feature_names)
        for name, dtype in (("labels", np.int8), ("weights", np.float32), ("process", np.int32)):
            if getattr(events, name) is not None:
                self.f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype,
                                      chunks=(WRITE_CHUNK * 4,), track_times=False, **opts)
        self.key = key
        self.first = events
        prov = {k: v for k, v in events.provenance.items() if k not in ("source", "format", "key")}
        prov.setdefault("written_from", events.source)
        self.f.attrs[PROVENANCE_ATTR] = np.bytes_(json.dumps(prov, default=str).encode("utf-8"))
        self.categories: dict[str, int] = {}

    def append(self, events: EventSet) -> None:
        if self.first is None:
            self._create(events)
        first = self.first
        assert first is not None
        if events.data.shape[1:] != first.data.shape[1:] or events.feature_names != first.feature_names:
            raise InputError(
                f"{self.path}: chunk from {events.source} has a different layout or features than "
                f"the first chunk ({first.source}); all chunks must match."
            )
        for name in _SIDE_KEYS:
            if (getattr(events, name) is None) != (getattr(first, name) is None):
                raise InputError(
                    f"{self.path}: chunk from {events.source} {'lacks' if getattr(events, name) is None else 'adds'} "
                    f"{name}; all chunks must carry the same labels/weights/process."
                )
        n_new = self.n + len(events)
        ds = self.f[self.key]
        ds.resize(n_new, axis=0)
        ds[self.n:n_new] = events.data
        for name in _SIDE_KEYS:
            arr = getattr(events, name)
            if arr is not None:
                side = self.f[name]
                side.resize(n_new, axis=0)
                side[self.n:n_new] = self._codes(arr) if name == "process" else arr
        self.n = n_new

    def _codes(self, process: np.ndarray) -> np.ndarray:
        uniq, inverse = np.unique(process.astype(str), return_inverse=True)
        lookup = np.asarray([self.categories.setdefault(u, len(self.categories)) for u in uniq],
                            dtype=np.int32)
        return lookup[inverse]

    def finish(self) -> None:
        if self.first is not None and self.first.process is not None:
            self.f["process"].attrs["categories"] = _fixed(list(self.categories))


def write(
    chunks: Iterable[EventSet],
    path: str | os.PathLike[str],
    compression: str | None = "gzip",
    compression_opts: int | None = None,
) -> Path:
    """Write EventSet chunks to one HDF5 file atomically, appending chunk by chunk.

    Parameters
    ----------
    chunks : iterable of EventSet
        Same layout and features; streamed, so memory holds one chunk at a time.
    path : path-like
        Output file; it appears only when complete.
    compression : {"gzip", "lzf", None}
        HDF5 filter (default gzip).
    compression_opts : int, optional
        gzip level 0-9 (h5py default 4).
    """
    path = Path(path)
    if compression not in (None, "gzip", "lzf"):
        raise InputError(f"{path}: compression must be 'gzip', 'lzf' or None, not {compression!r}.")
    with atomic_path(path, suffix=".h5.tmp") as tmp:
        with h5py.File(tmp, "w") as f:
            app = _Appender(f, path, compression, compression_opts)
            for events in chunks:
                app.append(events)
            if app.first is None:
                raise InputError(f"{path}: no events to write.")
            app.finish()
    return path


def write_hdf5(
    events: EventSet, path: str | os.PathLike[str], compression: str | None = "gzip"
) -> Path:
    """Write one EventSet atomically (see :func:`write`)."""
    return write([events], path, compression=compression)
