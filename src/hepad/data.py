"""Training on more events than memory holds: a shuffled-buffer loader over event files.

:class:`StreamingLoader` reads blocks of consecutive rows (HDF5 slices, ROOT entry ranges,
Parquet rows) in a random block order, mixes them in a bounded buffer and yields shuffled
mini-batches. Every event comes out exactly once per epoch; the order depends only on
``(seed, epoch)``, which is what :func:`hepad.training.fit_network` needs for an exact resume.
It is a ``train_batches(epoch)`` callable::

    from hepad.data import StreamingLoader
    from hepad.training import fit_network

    loader = StreamingLoader(["bkg_0.h5", "bkg_1.h5"], batch_size=1024, buffer_size=200_000,
                             seed=0, preprocess=my_transform)
    fit_network(net, loss_fn, train_batches=loader, epochs=20)

:func:`fit_streaming` is the recipe for hepad's deep detectors (``ae``, ``vae``, ``deep-svdd``):
fit the preprocessing on the first ``n_fit`` events, then train the network from the loader.

How well is it shuffled? Within an epoch, an event is emitted at a uniformly random time
among the events in the buffer with it, and blocks are visited in a random order; with
``buffer_size`` >= a few blocks, batches mix events from different files and different parts
of each file. Memory holds at most ``buffer_size + batch_size + block_size`` events.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, InputError

log = logging.getLogger(__name__)

__all__ = ["StreamingLoader", "fit_streaming"]

Preprocess = Callable[[np.ndarray], Any]


class StreamingLoader:
    """Shuffled mini-batches over event files with bounded memory; ``loader(epoch)`` iterates.

    Parameters
    ----------
    files : sequence of path-like
        Event files (or globs), any format :func:`hepad.read_events` reads.
    batch_size : int
        Events per batch.
    buffer_size : int
        Events held in the shuffle buffer. Larger mixes better and uses more memory.
    seed : int
        With the epoch number, fixes the block order and the shuffling.
    preprocess : callable, optional
        ``preprocess(X) -> array or tuple of arrays`` applied to each block of model inputs
        (float32 (n, F)), e.g. a fitted :class:`hepad.preprocessing.Preprocessor`'s
        ``transform``. Each output keeps n rows; a tuple gives tuple batches.
    block_size : int, optional
        Consecutive rows read at once (default: ``buffer_size // 4``, at most what the
        working-memory budget allows, :func:`hepad.memory.chunk_rows`).
    shuffle : bool
        False reads in file order, without a buffer (for validation).
    drop_last : bool
        Drop the last, short batch of an epoch (then a few events are skipped per epoch).
    as_tensor : bool
        Yield ``torch.Tensor`` (default) rather than numpy arrays.
    format, key : str, optional
        As :func:`hepad.read_events`.

    Attributes
    ----------
    n_events : int
        Events per epoch (from file metadata).
    max_buffered_ : int
        Most events held at once during the last epoch (buffer plus the block being read).
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike[str]],
        batch_size: int = 1024,
        buffer_size: int = 200_000,
        seed: int = 0,
        preprocess: Preprocess | None = None,
        *,
        block_size: int | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        as_tensor: bool = True,
        format: str | None = None,
        key: str | None = None,
    ) -> None:
        from .io import count_events, detect_format
        from .partitions import expand_files

        for name, v in (("batch_size", batch_size), ("buffer_size", buffer_size)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"StreamingLoader: {name} must be a positive integer, got {v!r}.")
        if block_size is None:
            block_size = max(1, min(_read_rows(), int(buffer_size) // 4))
        if not isinstance(block_size, (int, np.integer)) or block_size < 1:
            raise ConfigError(f"StreamingLoader: block_size must be a positive integer, got {block_size!r}.")
        if preprocess is not None and not callable(preprocess):
            raise ConfigError("StreamingLoader: preprocess must be a callable X -> array (or tuple of arrays).")
        self.files = expand_files(files)
        self.batch_size = int(batch_size)
        self.buffer_size = int(buffer_size)
        self.block_size = int(block_size)
        self.seed = int(seed)
        self.preprocess = preprocess
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.as_tensor = bool(as_tensor)
        self.format = format
        self.key = key
        self._formats = [detect_format(f, format) for f in self.files]
        self._counts = [count_events(f, format=fmt, key=key) for f, fmt in zip(self.files, self._formats)]
        self.n_events = int(sum(self._counts))
        if self.n_events == 0:
            raise InputError(f"{', '.join(map(str, self.files))}: no events to train on.")
        self.max_buffered_ = 0

    def __len__(self) -> int:
        """Batches per epoch."""
        if self.drop_last:
            return self.n_events // self.batch_size
        return math.ceil(self.n_events / self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        return self(0)

    def _blocks(self) -> list[tuple[int, int, int]]:
        out = []
        for fi, n in enumerate(self._counts):
            # CSV cannot seek: read such a file as one block.
            step = self.block_size if self._formats[fi] != "csv" else max(n, 1)
            out.extend((fi, s, min(n, s + step)) for s in range(0, n, step))
        return out

    def _read(self, fi: int, start: int, stop: int) -> tuple[np.ndarray, ...]:
        from .io import read_events

        ev = read_events(self.files[fi], format=self._formats[fi], key=self.key, entry_range=(start, stop))
        X = ev.features
        out = X if self.preprocess is None else self.preprocess(X)
        parts = tuple(np.asarray(o) if not _is_tensor(o) else o.numpy() for o in (out if isinstance(out, tuple) else (out,)))
        if any(p.shape[0] != X.shape[0] for p in parts):
            raise ConfigError(
                f"StreamingLoader: preprocess returned {[p.shape for p in parts]} for {X.shape[0]} events; "
                "it must keep one row per event."
            )
        return parts

    def _emit(self, parts: tuple[np.ndarray, ...]) -> Any:
        if self.as_tensor:
            import torch

            parts = tuple(torch.from_numpy(np.ascontiguousarray(p)) for p in parts)
        return parts[0] if len(parts) == 1 else parts

    def __call__(self, epoch: int = 0) -> Iterator[Any]:
        """Iterate one epoch: shuffled batches, every event once (see ``drop_last``)."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        blocks = self._blocks()
        order = rng.permutation(len(blocks)) if self.shuffle else np.arange(len(blocks))
        bs = self.batch_size
        self.max_buffered_ = 0
        buf: tuple[np.ndarray, ...] | None = None
        for b in order:
            block = self._read(*blocks[b])
            buf = block if buf is None else tuple(np.concatenate([x, y]) for x, y in zip(buf, block))
            n = buf[0].shape[0]
            self.max_buffered_ = max(self.max_buffered_, n)
            if self.shuffle:
                if n <= self.buffer_size:
                    continue
                perm = rng.permutation(n)
                buf = tuple(x[perm] for x in buf)
                n_out = ((n - self.buffer_size) // bs) * bs
            else:
                n_out = (n // bs) * bs
            for s in range(0, n_out, bs):
                yield self._emit(tuple(x[s : s + bs] for x in buf))
            buf = tuple(x[n_out:] for x in buf)
        if buf is None:
            return
        n = buf[0].shape[0]
        if self.shuffle and n:
            perm = rng.permutation(n)
            buf = tuple(x[perm] for x in buf)
        stop = (n // bs) * bs if self.drop_last else n
        for s in range(0, stop, bs):
            yield self._emit(tuple(x[s : s + bs] for x in buf))

    def __repr__(self) -> str:
        return (
            f"StreamingLoader({len(self.files)} files, {self.n_events} events, batch_size={self.batch_size}, "
            f"buffer_size={self.buffer_size}, seed={self.seed})"
        )


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "numpy")


def _head(files: Sequence[Path], n: int, format: str | None, key: str | None) -> Any:
    """The first ``n`` events of the files, in order (the preprocessing's fitting sample)."""
    from .events import EventSet
    from .io import iter_events

    sets, got = [], 0
    for f in files:
        for chunk in iter_events(f, chunk_size=min(n, _read_rows()), format=format, key=key):
            sets.append(chunk[: n - got])
            got += len(sets[-1])
            if got >= n:
                return EventSet.concat(sets)
    return EventSet.concat(sets)


def _read_rows() -> int:
    from .memory import EVENT_BYTES, chunk_rows

    return chunk_rows(4 * EVENT_BYTES)


class FileSource:
    """Event files as a batch source for the deep detectors' one training path.

    The streaming counterpart of :class:`hepad.training.ArraySource`: ``sample()`` is the first
    ``n_sample`` events (the preprocessing's fitting sample), ``batches`` a
    :class:`StreamingLoader` over every event, ``chunks()`` the events read chunk by chunk.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike[str]],
        *,
        n_sample: int = 100_000,
        buffer_size: int = 200_000,
        format: str | None = None,
        key: str | None = None,
    ) -> None:
        from .partitions import expand_files

        if not isinstance(n_sample, (int, np.integer)) or n_sample < 2:
            raise ConfigError(f"n_fit must be an integer >= 2, got {n_sample!r}.")
        self.files = expand_files(files)
        self.n_sample, self.buffer_size, self.format, self.key = int(n_sample), int(buffer_size), format, key
        self._head = _head(self.files, self.n_sample, format, key)
        self.feature_names = list(self._head.feature_names)
        self._loader: StreamingLoader | None = None

    @property
    def n_events(self) -> int:
        from .io import count_events

        return int(sum(count_events(f, format=self.format, key=self.key) for f in self.files))

    def sample(self) -> np.ndarray:
        return self._head.features

    def batches(self, prepare: Callable[[np.ndarray], Any], *, batch_size: int, shuffle: bool, seed: int = 0) -> StreamingLoader:
        def numpy_prepare(X: np.ndarray) -> tuple[np.ndarray, ...]:
            return tuple(t.numpy() for t in prepare(X))

        loader = StreamingLoader(self.files, batch_size=int(batch_size), buffer_size=self.buffer_size, seed=seed,
                                 preprocess=numpy_prepare, shuffle=shuffle, format=self.format, key=self.key)
        if shuffle:
            log.info("fit_streaming: %d training events in %d files, %d batches per epoch",
                     loader.n_events, len(self.files), len(loader))
        return loader

    def chunks(self) -> Iterator[np.ndarray]:
        from .io import iter_events

        for f in self.files:
            for chunk in iter_events(f, chunk_size=_read_rows(), format=self.format, key=self.key):
                yield chunk.features

    def signature(self) -> dict[str, Any]:
        return {"streaming": [str(p) for p in self.files]}


def fit_streaming(
    detector: Any,
    files: Sequence[str | os.PathLike[str]],
    *,
    val_files: Sequence[str | os.PathLike[str]] | None = None,
    n_fit: int = 100_000,
    buffer_size: int = 200_000,
    format: str | None = None,
    key: str | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> Any:
    """Train a deep detector (``ae``, ``vae``, ``deep-svdd``) on files larger than memory.

    The preprocessing (scaling constants) is fitted on the first ``n_fit`` events; the
    network is then trained by the detector's one training path on a :class:`FileSource`
    (a :class:`StreamingLoader` over all events of ``files``), with batch size, epochs,
    learning rate, early stopping and seed from the detector's parameters. Early stopping
    monitors ``val_files`` when given, else the training loss. The threshold follows the
    detector's ``threshold_rule`` on the background scores of ``val_files`` (else of the
    first ``n_fit`` training events).

    Parameters
    ----------
    detector : BaseDetector
        An unfitted torch detector from :func:`hepad.make_detector`.
    files : sequence of path-like
        Background training files or globs.
    val_files : sequence of path-like, optional
        Held-out background files (scored in full for the threshold: keep them modest).
    n_fit : int
        Events used to fit the preprocessing.
    buffer_size : int
        Shuffle buffer of the loader (events).

    Returns
    -------
    BaseDetector
        The fitted ``detector``, ready to ``save``.
    """
    if not callable(getattr(detector, "fit_source", None)):
        raise ConfigError(
            f"fit_streaming trains hepad's deep detectors (ae, vae, deep-svdd), not "
            f"{getattr(detector, 'name', type(detector).__name__)!r}; fit classical detectors on a "
            "sample instead: detector.fit(hepad.read_events(path, entry_range=(0, N)))."
        )
    detector._validate_params()  # before any file is read
    source = FileSource(files, n_sample=n_fit, buffer_size=buffer_size, format=format, key=key)
    val = None
    if val_files is not None:
        val = FileSource(val_files, n_sample=2, buffer_size=buffer_size, format=format, key=key)
    return detector.fit_source(source, val_source=val, checkpoint_dir=checkpoint_dir, resume=resume, progress=progress)
