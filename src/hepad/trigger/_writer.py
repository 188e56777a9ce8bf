"""Accepted events to HDF5, in rotated files that each appear atomically."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path

log = logging.getLogger(__name__)

#: Name pattern of the rotated files; readers take every ``accepted_*.h5`` in order.
FILE_PATTERN = "accepted_{:06d}.h5"


class AcceptedWriter:
    """Buffer accepted events; write ``accepted_NNNNNN.h5`` every ``rotate_events`` events or ``rotate_seconds``.

    Each file holds ``Particles`` (N, 19, 4) (or ``data`` (N, F) for flat inputs), ``event_id``
    (int64), ``score`` and ``threshold`` (float32, the cut each event passed), and the run
    metadata as the JSON root attribute ``hepad_provenance``; hepad's readers open it directly.
    A file is written under a temporary name and renamed when complete, so a reader (or a
    crash) never sees half a file.
    """

    def __init__(self, directory: str | Path, *, rotate_events: int = 10_000, rotate_seconds: float = 60.0,
                 metadata: dict[str, Any] | None = None, feature_names: tuple[str, ...] = ()) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.rotate_events = max(1, int(rotate_events))
        self.rotate_seconds = float(rotate_seconds)
        self.metadata = dict(metadata or {})
        self.feature_names = tuple(feature_names)
        self.files: list[str] = []
        self.n_written = 0
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._n_buffered = 0
        self._since = time.monotonic()
        # Continue the numbering of an earlier run in the same directory instead of overwriting.
        existing = sorted(self.directory.glob("accepted_*.h5"))
        self._index = 0
        for f in existing:
            try:
                self._index = max(self._index, int(f.stem.split("_")[-1]) + 1)
            except ValueError:
                continue

    def add(self, data: np.ndarray, ids: np.ndarray, scores: np.ndarray, threshold: float) -> None:
        if len(ids) == 0:
            return
        self._parts.append((np.asarray(data, dtype=np.float32), np.asarray(ids, dtype=np.int64),
                            np.asarray(scores, dtype=np.float32),
                            np.full(len(ids), threshold, dtype=np.float32)))
        self._n_buffered += len(ids)
        while self._n_buffered >= self.rotate_events:
            self._write(self.rotate_events)

    def maybe_rotate(self, now: float | None = None) -> None:
        """Write the buffer if it is older than ``rotate_seconds``."""
        now = time.monotonic() if now is None else now
        if now - self._since >= self.rotate_seconds:
            if self._n_buffered:
                self._write(self._n_buffered)
            self._since = now

    def close(self) -> None:
        """Write whatever is buffered (the shutdown flush)."""
        if self._n_buffered:
            self._write(self._n_buffered)

    def _write(self, n: int) -> None:
        import h5py

        data = np.concatenate([p[0] for p in self._parts])
        ids = np.concatenate([p[1] for p in self._parts])
        scores = np.concatenate([p[2] for p in self._parts])
        cuts = np.concatenate([p[3] for p in self._parts])
        rest = (data[n:], ids[n:], scores[n:], cuts[n:])
        self._parts = [rest] if len(rest[1]) else []
        self._n_buffered = len(rest[1])
        path = self.directory / FILE_PATTERN.format(self._index)
        with atomic_path(path, suffix=".h5.tmp") as tmp:
            with h5py.File(tmp, "w") as f:
                if data.ndim == 3:
                    f.create_dataset("Particles", data=data[:n])
                else:
                    ds = f.create_dataset("data", data=data[:n])
                    if self.feature_names:
                        ds.attrs["feature_names"] = np.asarray(self.feature_names, dtype=h5py.string_dtype())
                f.create_dataset("event_id", data=ids[:n])
                f.create_dataset("score", data=scores[:n])
                f.create_dataset("threshold", data=cuts[:n])
                f.attrs["hepad_provenance"] = json.dumps(self.metadata, default=str)
        self._index += 1
        self.n_written += n
        self.files.append(path.name)
        self._since = time.monotonic()
        log.info("wrote %s (%d accepted events)", path, n)


def read_accepted_ids(directory: str | Path) -> np.ndarray:
    """Event ids of every accepted event in a trigger output directory (sorted)."""
    import h5py

    ids = []
    for f in sorted(Path(directory).glob("accepted_*.h5")):
        with h5py.File(f, "r") as h:
            ids.append(h["event_id"][:])
    return np.sort(np.concatenate(ids)) if ids else np.zeros(0, dtype=np.int64)
