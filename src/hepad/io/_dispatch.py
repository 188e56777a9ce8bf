"""Format detection and the public read/iterate/write entry points."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import FormatError, InputError, closest
from ..events import EventSet

#: suffix -> format name
_SUFFIXES = {
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
}
FORMATS = ("hdf5",)


def detect_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """The format name for ``path``: ``format`` if given (checked), else from the suffix."""
    if format is not None:
        if format not in FORMATS:
            raise FormatError(f"{path}: unknown format {format!r}; choose one of {', '.join(FORMATS)}.{closest(format, FORMATS)}")
        return format
    suffix = Path(path).suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    raise FormatError(
        f"{path}: cannot tell the format from the suffix {suffix or '(none)'!r}; "
        f"known suffixes are {', '.join(sorted(_SUFFIXES))}. Pass --format ({', '.join(FORMATS)})."
    )


def _check_exists(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file.")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a file.")
    return p


def read_events(
    path: str | os.PathLike[str],
    format: str | None = None,
    key: str | None = None,
    columns: Sequence[str] | None = None,
    entry_range: tuple[int, int] | None = None,
    drop_invalid: bool = False,
) -> EventSet:
    """Read events from one file into an :class:`EventSet`."""
    p = _check_exists(path)
    fmt = detect_format(p, format)
    if fmt == "hdf5":
        from . import hdf5

        events = hdf5.read_hdf5(p, key=key, columns=columns, entry_range=entry_range)
    else:  # pragma: no cover - FORMATS and this switch are kept in step
        raise FormatError(f"{p}: no reader for format {fmt!r}.")
    return events.check_finite(drop_invalid=drop_invalid)


def iter_events(
    path: str | os.PathLike[str],
    chunk_size: int = 100_000,
    format: str | None = None,
    key: str | None = None,
    columns: Sequence[str] | None = None,
    drop_invalid: bool = False,
) -> Iterator[EventSet]:
    """Stream a file in chunks of at most ``chunk_size`` events, with bounded memory."""
    p = _check_exists(path)
    fmt = detect_format(p, format)
    if fmt == "hdf5":
        from . import hdf5

        chunks = hdf5.iter_hdf5(p, chunk_size=chunk_size, key=key, columns=columns)
    else:  # pragma: no cover
        raise FormatError(f"{p}: no reader for format {fmt!r}.")
    for chunk in chunks:
        yield chunk.check_finite(drop_invalid=drop_invalid)


def write_events(events: EventSet, path: str | os.PathLike[str], format: str | None = None) -> Path:
    """Write events atomically (temporary file, then rename). Returns the path written."""
    fmt = detect_format(path, format)
    if fmt == "hdf5":
        from . import hdf5

        hdf5.write_hdf5(events, path)
    else:  # pragma: no cover
        raise FormatError(f"{path}: no writer for format {fmt!r}.")
    return Path(path)
