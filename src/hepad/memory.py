"""One working-memory budget from which every chunk size follows (as scikit-learn's).

Chunked work (scoring blocks, distance and kernel matrices, file chunks read for scoring, the
rows handed to an ONNX Runtime session) takes the number of rows that fits the budget with
:func:`chunk_rows`, as scikit-learn's ``get_chunk_n_rows(row_bytes, max_n_rows,
working_memory)``, rather than a constant per layer.

The budget is :data:`DEFAULT_WORKING_MEMORY_MIB` (256 MiB), set process-wide with the
``HEPAD_WORKING_MEMORY_MIB`` environment variable or per call with ``working_memory=``.
"""

from __future__ import annotations

import os

from .errors import ConfigError

__all__ = ["DEFAULT_WORKING_MEMORY_MIB", "working_memory_mib", "chunk_rows", "EVENT_BYTES"]

#: The default budget of one chunked computation, in MiB.
DEFAULT_WORKING_MEMORY_MIB = 256
#: Bytes of one ADC2021 event as read: (19, 4) float32 objects.
EVENT_BYTES = 19 * 4 * 4


def working_memory_mib(working_memory: float | None = None) -> float:
    """The budget in MiB: ``working_memory`` when given, else ``$HEPAD_WORKING_MEMORY_MIB``, else 256."""
    if working_memory is None:
        env = os.environ.get("HEPAD_WORKING_MEMORY_MIB")
        if env is None:
            return float(DEFAULT_WORKING_MEMORY_MIB)
        try:
            working_memory = float(env)
        except ValueError:
            raise ConfigError(f"HEPAD_WORKING_MEMORY_MIB={env!r}: expected a number of MiB (e.g. 256).") from None
        what = "HEPAD_WORKING_MEMORY_MIB"
    else:
        what = "working_memory"
    if not working_memory > 0:
        raise ConfigError(f"{what}={working_memory!r}: the working-memory budget must be a positive number of MiB.")
    return float(working_memory)


def chunk_rows(
    row_bytes: int,
    *,
    max_rows: int | None = None,
    min_rows: int = 1,
    working_memory: float | None = None,
) -> int:
    """Rows per chunk so that ``rows * row_bytes`` stays within the working-memory budget.

    Parameters
    ----------
    row_bytes : int
        Memory one row needs during the computation (inputs plus temporaries).
    max_rows : int, optional
        No more than this (e.g. the number of rows there are).
    min_rows : int
        At least this, even past the budget (a chunk of zero rows does no work).
    working_memory : float, optional
        The budget in MiB (default :func:`working_memory_mib`).
    """
    if row_bytes <= 0:
        raise ConfigError(f"chunk_rows: row_bytes must be positive, got {row_bytes}.")
    rows = int(working_memory_mib(working_memory) * 2**20 // row_bytes)
    if max_rows is not None:
        rows = min(rows, int(max_rows))
    return max(int(min_rows), rows, 1)
