"""Format detection and the public read / iterate / count / write entry points.

Every reader is called through :func:`_guarded`, the reader boundary: whatever a third-party
library (h5py, pyarrow, uproot, awkward) raises on a damaged file comes out as a
:class:`~hepad.errors.FormatError` that names the file, never as a library exception.
"""

from __future__ import annotations

import logging
import numbers
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..errors import FormatError, HepadError, InputError, closest
from ..events import EventSet

log = logging.getLogger(__name__)

#: suffix -> format name
_SUFFIXES = {
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".he5": "hdf5",
    ".csv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".root": "root",
}
#: format names accepted by ``format=`` / ``--format``
FORMATS = ("hdf5", "csv", "parquet", "root")
#: formats :func:`write_events` can write
WRITE_FORMATS = ("hdf5", "parquet")

DEFAULT_CHUNK_SIZE = 100_000

T = TypeVar("T")


def detect_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """The format name for ``path``: ``format`` if given (checked), else from the suffix.

    Parameters
    ----------
    path : path-like
        The file; only its suffix is looked at.
    format : str, optional
        One of :data:`FORMATS`; overrides the suffix.

    Raises
    ------
    FormatError
        For an unknown ``format`` or a suffix hepad does not know.
    """
    if format is not None:
        fmt = str(format).lower()
        aliases = {"h5": "hdf5", "hdf": "hdf5", "pq": "parquet", "txt": "csv"}
        fmt = aliases.get(fmt, fmt)
        if fmt not in FORMATS:
            raise FormatError(
                f"{path}: unknown format {format!r}; choose one of {', '.join(FORMATS)}."
                f"{closest(str(format), FORMATS)}"
            )
        return fmt
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    # data.csv.gz style names are not supported; say so rather than mis-detecting.
    suffix = suffixes[-1] if suffixes else ""
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    raise FormatError(
        f"{path}: cannot tell the format from the suffix {suffix or '(none)'!r}; known suffixes "
        f"are {', '.join(sorted(_SUFFIXES))}. Pass format= / --format ({', '.join(FORMATS)})."
    )


def _check_exists(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        hint = ""
        if p.parent.is_dir():
            hint = closest(p.name, [c.name for c in p.parent.iterdir()])
        raise InputError(f"{p}: no such file.{hint}")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a file.")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: the file is empty (0 bytes).")
    return p


def _check_range(path: Path, entry_range: tuple[int, int] | None) -> tuple[int, int | None] | None:
    if entry_range is None:
        return None
    try:
        start, stop = (int(entry_range[0]), None if entry_range[1] is None else int(entry_range[1]))
    except (TypeError, ValueError, IndexError):
        raise InputError(
            f"{path}: entry_range must be (start, stop) integers, got {entry_range!r}."
        ) from None
    if start < 0 or (stop is not None and stop < start):
        raise InputError(
            f"{path}: entry_range {entry_range!r} is invalid; need 0 <= start <= stop."
        )
    return start, stop


def _wrap(path: Path, fmt: str, exc: BaseException) -> InputError:
    if isinstance(exc, MemoryError):
        # Corrupt length fields make readers ask for absurd allocations; a genuinely huge
        # read lands here too, hence both hints.
        return InputError(
            f"{path}: out of memory reading it as {fmt} ({exc}). The file may be corrupt; "
            "if it is just large, stream it with iter_events / a smaller --chunk-size."
        )
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > 200:
        first = first[:200] + "..."
    return FormatError(
        f"{path}: cannot read as {fmt} ({exc.__class__.__name__}: {first}). "
        "The file may be truncated or corrupt, or not a valid file of this format."
    )


def _guarded(path: Path, fmt: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except HepadError:
        raise
    except Exception as exc:  # the reader boundary: library errors on bad bytes
        raise _wrap(path, fmt, exc) from exc


def _guarded_iter(path: Path, fmt: str, it: Iterator[T]) -> Iterator[T]:
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except HepadError:
            raise
        except Exception as exc:
            raise _wrap(path, fmt, exc) from exc
        yield item


def _reader(fmt: str) -> Any:
    if fmt == "hdf5":
        from . import hdf5 as mod
    elif fmt == "csv":
        from . import csv as mod
    elif fmt == "parquet":
        from . import parquet as mod
    elif fmt == "root":
        from . import root as mod
    else:  # pragma: no cover - FORMATS and this switch are kept in step
        raise FormatError(f"no reader for format {fmt!r}.")
    return mod


def read_events(
    path: str | os.PathLike[str],
    format: str | None = None,
    key: str | None = None,
    columns: Sequence[str] | None = None,
    entry_range: tuple[int, int] | None = None,
    drop_invalid: bool = False,
    mapping: Any = None,
) -> EventSet:
    """Read events from one file into an :class:`~hepad.EventSet`.

    Parameters
    ----------
    path : path-like
        HDF5 (``.h5``), CSV (``.csv``), Parquet (``.parquet``) or ROOT (``.root``) file.
    format : str, optional
        Force a format (``hdf5``, ``csv``, ``parquet``, ``root``) instead of the suffix.
    key : str, optional
        HDF5 dataset (default ``Particles``, then ``data``) or ROOT tree (default: the only
        tree, else ``Events``/``mini``/``events``). Ignored for CSV/Parquet.
    columns : sequence of str, optional
        Read only these flat columns / datasets columns / ROOT branches, in this order.
        For ROOT this forces a flat read of scalar branches.
    entry_range : (int, int), optional
        Read events ``start <= i < stop`` only (clamped to the file).
    drop_invalid : bool
        Drop events that break :data:`hepad.events.VALIDATION_POLICY` (NaN/inf, object type
        outside 0-4, negative or super-physical pT, |eta| or phi out of range) and log one line
        with the counts per problem class, instead of raising
        :class:`~hepad.errors.InvalidValuesError`.
    mapping : path, dict or MappingFile, optional
        ROOT only: a YAML mapping file naming the object collections (see
        :mod:`hepad.io.mapping`), for what detection cannot decide.

    Returns
    -------
    EventSet
        Object layout (N, 19, 4) for ADC2021 HDF5, NanoAOD and ATLAS ROOT trees; flat (N, F)
        otherwise. ``provenance`` names the source file, format and key.

    Raises
    ------
    HepadError
        Subclasses of it for every bad input: missing file, unknown format, missing key or
        column, wrong shape, NaN/inf values, corrupt or empty file.
    """
    p = _check_exists(path)
    fmt = detect_format(p, format)
    rng = _check_range(p, entry_range)
    mod = _reader(fmt)
    cols = _norm_columns(columns)
    extra = _mapping_kw(p, fmt, mapping)
    events = _guarded(p, fmt, lambda: mod.read(p, key=key, columns=cols, entry_range=rng, **extra))
    return events.validate(drop_invalid=drop_invalid)


def iter_events(
    path: str | os.PathLike[str],
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    format: str | None = None,
    key: str | None = None,
    columns: Sequence[str] | None = None,
    drop_invalid: bool = False,
    entry_range: tuple[int, int] | None = None,
    mapping: Any = None,
) -> Iterator[EventSet]:
    """Stream a file in chunks of at most ``chunk_size`` events, with bounded memory.

    Parameters are those of :func:`read_events`. Every format streams: HDF5 by dataset
    slices, CSV and Parquet by record batches, ROOT by entry ranges. Chunks are
    consecutive and, concatenated, equal :func:`read_events` of the same file.

    Yields
    ------
    EventSet
        One chunk; with ``drop_invalid`` a chunk may be shorter than ``chunk_size`` (or empty).
    """
    p = _check_exists(path)
    fmt = detect_format(p, format)
    rng = _check_range(p, entry_range)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise InputError(f"{p}: chunk_size must be a positive integer, got {chunk_size!r}.")
    chunk_size = int(chunk_size)
    mod = _reader(fmt)
    cols = _norm_columns(columns)
    extra = _mapping_kw(p, fmt, mapping)
    chunks = _guarded(
        p, fmt, lambda: mod.iterate(p, chunk_size=chunk_size, key=key, columns=cols, entry_range=rng, **extra)
    )
    for chunk in _guarded_iter(p, fmt, iter(chunks)):
        yield chunk.validate(drop_invalid=drop_invalid)


def count_events(
    path: str | os.PathLike[str],
    format: str | None = None,
    key: str | None = None,
    mapping: Any = None,
) -> int:
    """Number of events in a file, read from metadata where the format has it.

    HDF5 (dataset shape), Parquet (footer) and ROOT (``num_entries``) do not read the
    data; CSV streams one column. Use it to split a file into ``entry_range`` partitions.
    """
    p = _check_exists(path)
    fmt = detect_format(p, format)
    mod = _reader(fmt)
    extra = _mapping_kw(p, fmt, mapping)
    return int(_guarded(p, fmt, lambda: mod.count(p, key=key, **extra)))


def list_keys(path: str | os.PathLike[str], format: str | None = None) -> dict[str, tuple]:
    """What a file holds: HDF5 datasets or ROOT trees (name -> shape), CSV/Parquet columns.

    For HDF5 the values are dataset shapes, for ROOT ``(num_entries,)``, for CSV/Parquet the
    single key ``""`` maps to the tuple of column names.
    """
    p = _check_exists(path)
    fmt = detect_format(p, format)
    mod = _reader(fmt)
    return _guarded(p, fmt, lambda: mod.list_keys(p))


def write_events(
    events: EventSet | Iterable[EventSet],
    path: str | os.PathLike[str],
    format: str | None = None,
    **options: Any,
) -> Path:
    """Write events atomically (temporary file beside ``path``, renamed when complete).

    Parameters
    ----------
    events : EventSet or iterable of EventSet
        One set, or chunks (e.g. from :func:`iter_events`) streamed to disk with bounded
        memory. Chunks must share layout and feature names.
    path : path-like
        Output; ``.h5``/``.hdf5`` writes the ADC2021 HDF5 layout (``Particles`` or ``data``
        plus ``labels``/``weights``/``process``), ``.parquet`` a Parquet table.
    format : str, optional
        ``hdf5`` or ``parquet``, overriding the suffix.
    **options
        Passed to the writer: ``compression`` (HDF5: ``"gzip"`` (default), ``"lzf"`` or None;
        Parquet: ``"zstd"`` (default), ``"snappy"``, None), ``compression_opts`` (HDF5 level).

    Returns
    -------
    Path
        The path written. On any error nothing appears at ``path``.
    """
    fmt = detect_format(path, format)
    if fmt not in WRITE_FORMATS:
        raise FormatError(
            f"{path}: hepad writes {', '.join(WRITE_FORMATS)}, not {fmt}. "
            "Use a .h5 or .parquet output name."
        )
    mod = _reader(fmt)
    chunks: Iterable[EventSet] = [events] if isinstance(events, EventSet) else events
    return mod.write(chunks, Path(path), **options)


def _mapping_kw(path: Path, fmt: str, mapping: Any) -> dict[str, Any]:
    """``{"mapping": ...}`` for the ROOT reader; a mapping file means nothing to other formats."""
    if mapping is None:
        return {}
    if fmt != "root":
        raise InputError(f"{path}: a mapping file applies to ROOT trees only, not to {fmt} files.")
    return {"mapping": mapping}


def _norm_columns(columns: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if columns is None:
        return None
    if isinstance(columns, str):
        columns = [c for c in columns.split(",")]
    cols = tuple(str(c).strip() for c in columns if str(c).strip())
    if not cols:
        return None
    dupes = sorted({c for c in cols if cols.count(c) > 1})
    if dupes:
        raise InputError(f"columns lists {', '.join(dupes)} more than once.")
    return cols

