"""Entry ranges shared by the readers that know their length up front (HDF5, ROOT)."""

from __future__ import annotations


def clamp_range(entry_range: tuple[int, int | None] | None, n: int) -> tuple[int, int]:
    """``(start, stop)`` of ``entry_range`` clipped to ``[0, n]``; the whole file when None."""
    if entry_range is None:
        return 0, n
    start, stop = entry_range
    stop = n if stop is None else min(n, stop)
    return min(start, stop), stop
