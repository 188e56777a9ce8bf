"""Event I/O: one reader module per format, all returning :class:`hepad.EventSet`.

The format is chosen from the file suffix, or explicitly with ``format=``:
``hdf5`` (:mod:`.hdf5`), ``csv`` (:mod:`.csv`), ``parquet`` (:mod:`.parquet`), ``root`` (:mod:`.root`).
See ``docs/formats.md`` for keys, branches and the mapping rules.
"""

from __future__ import annotations

from ._dispatch import (
    FORMATS,
    WRITE_FORMATS,
    count_events,
    detect_format,
    iter_events,
    list_keys,
    read_events,
    write_events,
)
from ._summary import hdf5_keys_to_inspect, summarize

__all__ = [
    "FORMATS",
    "WRITE_FORMATS",
    "count_events",
    "detect_format",
    "hdf5_keys_to_inspect",
    "iter_events",
    "list_keys",
    "read_events",
    "summarize",
    "write_events",
]
