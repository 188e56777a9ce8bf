"""Event I/O: one reader module per format, all returning :class:`hepad.EventSet`.

The format is chosen from the file suffix, or explicitly with ``format=``.
"""

from __future__ import annotations

from ._dispatch import FORMATS, detect_format, iter_events, read_events, write_events

__all__ = ["FORMATS", "detect_format", "iter_events", "read_events", "write_events"]
