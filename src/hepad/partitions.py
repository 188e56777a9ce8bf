"""Partition execution: plan partitions, ship the model, run them in-process or on Dask, reduce.

The one execution layer under :func:`hepad.scoring.score_files` (which writes every score) and
:func:`hepad.distributed.evaluate_files_by_histogram` (which keeps per-partition histograms):

1. *Plan.* :func:`plan_partitions` splits input files into :class:`Partition` row ranges
   (HDF5 dataset rows, ROOT entries, Parquet rows; a whole file for CSV).
2. *Ship.* :func:`pack_model` reads a model (a saved directory, a fitted detector, or an
   exported ``.onnx`` file) into a :class:`ModelPayload` of bytes, sent to every Dask worker
   once; :func:`load_payload` rebuilds it there (checking its SHA-256) into a scorer, cached
   per process.
3. *Run.* :func:`run_partitions` scores every partition in this process (one read-ahead
   pipeline over the blocks of consecutive partitions: the next blocks read, validated and laid
   out in a background thread while the current one is scored; blocks of
   :data:`SCORE_BLOCK_ROWS` within the working-memory budget) or on a Dask client
   (:func:`score_partition` per task, the same pipeline within it), and hands each result to
   ``on_result`` in the client.
4. *Reduce.* ``reduce(scores, *reduce_args)`` runs where the partition was scored, so only
   what the caller needs (all scores, or a histogram) comes back.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, HepadError, InputError, ModelFileError, closest

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PARTITION_SIZE",
    "Partition",
    "ModelPayload",
    "PartitionError",
    "DistributedError",
    "ScoreProgress",
    "dask_client",
    "expand_files",
    "plan_partitions",
    "model_sha256",
    "pack_model",
    "load_payload",
    "read_chunk_rows",
    "align_features",
    "score_partition",
    "run_partitions",
]

#: Events per partition, the unit of scheduling, retry and resume. Fixed (not derived from the
#: cluster size) so that a re-run on another cluster still finds its finished parts.
DEFAULT_PARTITION_SIZE = 250_000
#: Formats whose readers can seek to a row range cheaply; others get one partition per file.
RANGE_FORMATS = ("hdf5", "root", "parquet")


class PartitionError(HepadError):
    """A partition failed on a worker, or the cluster went away."""


@dataclass(frozen=True)
class ScoreProgress:
    """Passed to a ``progress`` callback after every finished (or skipped) partition."""

    parts_done: int
    parts_total: int
    events_done: int
    events_total: int
    parts_skipped: int
    partition: Partition | None = None


# ---------------------------------------------------------------------- inputs
def expand_files(patterns: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand globs (``bkg_*.h5``) into existing files, keeping the order given.

    A pattern's matches are sorted; a plain path must exist. A file named twice is kept once
    (its first place).

    Raises
    ------
    InputError
        A plain path that does not exist, or a glob that matches nothing.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for pat in patterns:
        text = os.fspath(pat)
        if glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            matches = [m for m in matches if m.is_file()]
            if not matches:
                raise InputError(f"{text}: the pattern matches no file.")
        else:
            p = Path(os.path.expanduser(text))
            if not p.is_file():
                hint = ""
                if p.parent.is_dir():
                    hint = closest(p.name, [c.name for c in p.parent.iterdir()])
                raise InputError(f"{p}: no such file.{hint}")
            matches = [p]
        for m in matches:
            key = m.resolve()
            if key not in seen:
                seen.add(key)
                out.append(m)
    if not out:
        raise InputError("No input files given.")
    return out


@dataclass(frozen=True)
class Partition:
    """Rows ``start <= i < stop`` of input file number ``file_index``.

    ``size`` and ``mtime_ns`` identify the version of the file the partition was planned on
    (what resume compares).
    """

    index: int
    file_index: int
    path: str
    start: int
    stop: int
    format: str
    key: str | None
    size: int
    mtime_ns: int

    @property
    def n_events(self) -> int:
        return self.stop - self.start

    @property
    def part_name(self) -> str:
        return f"part-{self.file_index:06d}-{self.start:012d}.h5"


def plan_partitions(
    files: Sequence[str | os.PathLike[str]],
    *,
    partition_size: int = DEFAULT_PARTITION_SIZE,
    format: str | None = None,
    key: str | None = None,
    first_index: int = 0,
) -> list[Partition]:
    """Split input files into row-range partitions, in input order.

    Event counts come from file metadata (:func:`hepad.io.count_events`): HDF5 dataset
    shapes, ROOT ``num_entries``, Parquet footers. CSV files cannot seek to a row, so each
    is one partition. Partitions are numbered from ``first_index``.
    """
    from .io import count_events, detect_format

    if not isinstance(partition_size, (int, np.integer)) or partition_size < 1:
        raise ConfigError(f"partition_size must be a positive integer, got {partition_size!r}.")
    parts: list[Partition] = []
    for fi, f in enumerate(files):
        p = Path(f)
        fmt = detect_format(p, format)
        n = count_events(p, format=fmt, key=key)
        st = p.stat()
        step = int(partition_size) if fmt in RANGE_FORMATS else max(n, 1)
        for start in range(0, n, step):
            parts.append(
                Partition(
                    index=first_index + len(parts), file_index=fi, path=str(p.resolve()), start=start,
                    stop=min(n, start + step), format=fmt, key=key, size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                )
            )
    return parts


# ---------------------------------------------------------------------- the model
def _read_model_files(root: Path) -> dict[str, bytes]:
    if root.is_file() and root.suffix == ".onnx":
        return {root.name: root.read_bytes()}
    if not root.is_dir():
        raise ModelFileError(
            f"{root}: not a model directory or an exported .onnx file (save one with detector.save(path))."
        )
    files = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }
    if not files:
        raise ModelFileError(f"{root}: the model directory is empty.")
    return files


def _payload_hash(files: Mapping[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        raw = name.encode()
        h.update(len(raw).to_bytes(8, "little") + raw)
        h.update(len(files[name]).to_bytes(8, "little"))
        h.update(files[name])
    return h.hexdigest()


def model_sha256(model_dir: str | os.PathLike[str]) -> str:
    """SHA-256 over every file of a model directory (relative names and bytes, sorted).

    Two directories with the same files give the same hash wherever they live.
    """
    return _payload_hash(_read_model_files(Path(model_dir)))


@dataclass(frozen=True)
class ModelPayload:
    """A model as bytes: what is shipped to workers (no path, no pickle of objects).

    A model directory (``kind="model"``, rebuilt and loaded with :func:`hepad.load`, which
    checks the model's own manifest) or an exported ONNX file (``kind="onnx"``, checked against
    its embedded hash when opened); :attr:`sha256` is checked first.
    """

    sha256: str
    files: dict[str, bytes] = field(repr=False)
    name: str = "model"
    kind: str = "model"

    @property
    def n_bytes(self) -> int:
        return sum(len(b) for b in self.files.values())


def pack_model(model: Any) -> ModelPayload:
    """A model directory, an ``.onnx`` file, or a fitted detector (saved to a temporary
    directory) as a payload."""
    if isinstance(model, (str, os.PathLike)):
        root = Path(model)
        files = _read_model_files(root)
        kind = "onnx" if root.is_file() else "model"
        return ModelPayload(sha256=_payload_hash(files), files=files, name=root.name, kind=kind)
    save = getattr(model, "save", None)
    if not callable(save):
        raise ConfigError(
            f"Expected a model directory, an .onnx file or a fitted detector, got {type(model).__name__}."
        )
    with tempfile.TemporaryDirectory(prefix="hepad-model-") as tmp:
        target = Path(tmp) / "model"
        save(target)
        files = _read_model_files(target)
    return ModelPayload(sha256=_payload_hash(files), files=files, name=getattr(model, "name", "model"))


#: Per-process cache: (model sha256, engine, threads) -> (scorer, the folder it was rebuilt in).
#: A Dask worker rebuilds a model once, however many partitions it scores. The folders are
#: TemporaryDirectory objects: removed when the process exits, with no handler registered at
#: import time.
_MODELS: dict[tuple[str, str, int | None], tuple[Any, Any]] = {}


def load_payload(payload: ModelPayload, engine: str = "auto", threads: int | None = None) -> Any:
    """The :class:`hepad.engine.Scorer` of a shipped model, rebuilt once per process."""
    from .engine import make_scorer

    cache_key = (payload.sha256, engine, threads)
    hit = _MODELS.get(cache_key)
    if hit is not None:
        return hit[0]
    if _payload_hash(payload.files) != payload.sha256:
        raise ModelFileError(
            f"model {payload.name!r}: the shipped bytes do not match their SHA-256; "
            "the transfer was corrupted. Run the job again."
        )
    tmp = tempfile.TemporaryDirectory(prefix="hepad-model-")
    root = Path(tmp.name) / (payload.name or "model")
    if payload.kind == "onnx":
        root = Path(tmp.name)
    for name, data in payload.files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    source = root / next(iter(payload.files)) if payload.kind == "onnx" else root
    scorer = make_scorer(source, engine=engine, threads=threads)
    _MODELS[cache_key] = (scorer, tmp)
    log.info("rebuilt model %s (%s) in %s", payload.name, payload.sha256[:12], root)
    return scorer


def warm(payload: ModelPayload, engine: str, threads: int | None) -> str:
    """Rebuild the model in this process ahead of the first task (``client.run(warm, ...)``)."""
    load_payload(payload, engine, threads)
    return payload.sha256


# ---------------------------------------------------------------------- one partition
def read_chunk_rows(in_flight: int = 2, working_memory: float | None = None) -> int:
    """Events per read chunk: ``in_flight`` chunks (read ahead, and the one scored) with their
    model inputs fit the working-memory budget (:func:`hepad.memory.chunk_rows`)."""
    from .memory import EVENT_BYTES, chunk_rows

    # per event in flight: the (19, 4) objects read, the model inputs (57 float32), scores
    return chunk_rows(max(1, in_flight) * (EVENT_BYTES + 57 * 4 + 8), working_memory=working_memory)


def align_features(events: Any, names: Sequence[str] | None) -> np.ndarray:
    """The model's inputs from a chunk: flat files may hold more (or reordered) columns."""
    X = events.features
    if events.is_objects or not names or list(events.feature_names) == list(names):
        return X
    have = {n: i for i, n in enumerate(events.feature_names)}
    missing = [n for n in names if n not in have]
    if missing:
        if X.shape[1] == len(names):
            return X  # unnamed columns (f0, f1, ...) of the right width: trust the order
        raise InputError(
            f"{events.source}: no column {missing[0]!r}, which the model was trained on."
            f"{closest(missing[0], list(have))} The model needs: {', '.join(names)}."
        )
    return np.ascontiguousarray(X[:, [have[n] for n in names]])


def _in_order(jobs: Iterable[Callable[[], Any]], workers: int) -> Iterator[Any]:
    """The results of ``jobs``, in order, with up to ``workers`` of them running ahead in threads.

    Inflating HDF5 chunks (:class:`hepad.io.hdf5.BlockReader`), uproot and pyarrow reads, the
    numpy work of validation and feature layout, and ONNX Runtime release the GIL for their
    heavy parts, so the next blocks are read while the current one is scored.
    """
    from collections import deque

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hepad-read") as pool:
        pending: deque = deque()
        for job in jobs:
            pending.append(pool.submit(job))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def reader_threads() -> int:
    """Chunks read ahead while one is scored: half the cores (at least one, at most four)."""
    from .engine import available_cpus

    return max(1, min(4, available_cpus() // 2))


#: Events scored at once by default: a cache tile, not a memory bound (the budget caps it).
#: A block of one stored HDF5 chunk (10,000 events as hepad writes them) is inflated straight
#: into the array that validation and the feature layout read, with no copy, and stays in the
#: caches between those steps and the engine; reading overlaps scoring from the first block
#: on. 248,000-event blocks (the budget's) ran 1.2-1.5x slower per event on the 2-core machine.
SCORE_BLOCK_ROWS = 16_384


def _block_rows(chunk_size: int | None, stored_rows: int, budget_rows: int) -> int:
    """Events per block: ``chunk_size`` when given, else :data:`SCORE_BLOCK_ROWS` within the
    budget, rounded down to whole stored HDF5 chunks (each then inflated once)."""
    if chunk_size:
        return int(chunk_size)
    rows = min(SCORE_BLOCK_ROWS, budget_rows)
    if stored_rows and rows >= stored_rows:
        rows -= rows % stored_rows
    return max(1, rows)


def _stream_scores(
    parts: Sequence[Partition], scorer: Any, chunk_size: int | None, readers: int
) -> Iterator[tuple[Partition, np.ndarray]]:
    """``(partition, scores)`` for consecutive range-format partitions, in order.

    One ordered pipeline over the blocks of every partition: ``readers`` threads read,
    validate (every event, :meth:`hepad.EventSet.validate`) and lay out the next blocks as
    model inputs while this thread scores the current one, across partition boundaries. HDF5
    files are opened once (:class:`hepad.io.hdf5.BlockReader`); ROOT and Parquet blocks are
    read with :func:`hepad.io.read_events`.
    """
    from .io import read_events
    from .io.hdf5 import BlockReader

    names = list(getattr(scorer, "feature_names", None) or [])
    budget = read_chunk_rows(in_flight=readers + 1)
    opened: dict[tuple[str, str | None], BlockReader] = {}

    def loader(part: Partition) -> tuple[Callable[[int, int], np.ndarray], int]:
        if part.format != "hdf5":
            def load(lo: int, hi: int) -> np.ndarray:
                return align_features(
                    read_events(part.path, format=part.format, key=part.key, entry_range=(lo, hi)), names
                )
            return load, 0
        reader = opened.get((part.path, part.key))
        if reader is None:
            reader = opened[(part.path, part.key)] = BlockReader(part.path, key=part.key)
        return (lambda lo, hi: align_features(reader.events(lo, hi).validate(), names)), reader.chunk_rows

    def jobs() -> Iterator[Callable[[], tuple[int, np.ndarray]]]:
        for i, part in enumerate(parts):
            load, stored = loader(part)
            rows = _block_rows(chunk_size, stored, budget)
            for lo in range(part.start, part.stop, rows):
                yield lambda i=i, lo=lo, hi=min(part.stop, lo + rows), load=load: (i, load(lo, hi))

    def short(part: Partition, got: int) -> InputError:
        return InputError(
            f"{part.path}: rows {part.start}-{part.stop} gave {got} events, expected {part.n_events}; "
            "the file changed while it was being scored."
        )

    blocks = _in_order(jobs(), readers) if readers else (job() for job in jobs())
    current, out, pos = -1, np.empty(0, dtype=np.float32), 0
    try:
        for i, X in blocks:
            if i != current:
                if pos != out.size:
                    raise short(parts[current], pos)
                current, out, pos = i, np.empty(parts[i].n_events, dtype=np.float32), 0
            n = X.shape[0]
            if pos + n > out.size:
                raise short(parts[i], pos + n)
            out[pos : pos + n] = scorer(X)
            pos += n
            if pos == out.size:
                yield parts[i], out
        if pos != out.size:
            raise short(parts[current], pos)
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            close()  # stops the read-ahead threads before their files close
        for reader in opened.values():
            reader.close()


def score_partition(
    part: Partition,
    scorer: Any,
    chunk_size: int | None = None,
    *,
    readers: int | None = None,
) -> np.ndarray:
    """The scores of every event of ``part`` (float32), read in blocks of ``chunk_size`` events.

    ``readers`` threads read (and validate, and lay out as model inputs) the next blocks while
    this thread scores the current one (default :func:`reader_threads`; 0 reads in this thread).
    Formats that cannot seek (CSV) are streamed by one reader.
    """
    readers = reader_threads() if readers is None else int(readers)
    if part.format in RANGE_FORMATS:
        [(_, scores)] = list(_stream_scores([part], scorer, chunk_size, readers))
        return scores
    from .io import iter_events

    names = list(getattr(scorer, "feature_names", None) or [])
    rows = int(chunk_size or read_chunk_rows(in_flight=readers + 1))
    out = np.empty(part.n_events, dtype=np.float32)
    chunks: Iterable[np.ndarray] = (
        align_features(chunk, names)
        for chunk in iter_events(part.path, chunk_size=rows, format=part.format, key=part.key,
                                 entry_range=(part.start, part.stop))
        if len(chunk)
    )
    if readers:
        chunks = _prefetched(iter(chunks))
    pos = 0
    for X in chunks:
        n = X.shape[0]
        if pos + n > out.size:
            raise InputError(
                f"{part.path}: rows {part.start}-{part.stop} returned more events than planned; "
                "the file changed while it was being scored."
            )
        out[pos : pos + n] = scorer(X)
        pos += n
    if pos != out.size:
        raise InputError(
            f"{part.path}: rows {part.start}-{part.stop} gave {pos} events, expected {out.size}; "
            "the file changed while it was being scored."
        )
    return out


_END = object()


def _prefetched(items: Iterator[Any]) -> Iterator[Any]:
    """The items of a sequential reader, the next one produced in a background thread meanwhile."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hepad-read") as pool:
        pending = pool.submit(next, items, _END)
        while True:
            item = pending.result()
            if item is _END:
                return
            pending = pool.submit(next, items, _END)
            yield item


def _partition_task(
    part: Partition,
    payload: ModelPayload,
    engine: str,
    threads: int | None,
    chunk_size: int | None,
    reduce: Callable[..., Any] | None = None,
    reduce_args: tuple = (),
) -> Any:
    """Run on a worker: score one partition, return its scores (or ``reduce(scores, *args)``)."""
    scores = score_partition(part, load_payload(payload, engine, threads), chunk_size)
    return scores if reduce is None else reduce(scores, *reduce_args)


# ---------------------------------------------------------------------- many partitions
def run_partitions(
    parts: Sequence[Partition],
    on_result: Callable[[Partition, Any], None],
    *,
    scorer: Any = None,
    client: Any = None,
    payload: ModelPayload | None = None,
    engine: str = "auto",
    threads: int | None = None,
    chunk_size: int | None = None,
    reduce: Callable[..., Any] | None = None,
    reduce_args: tuple = (),
    tag: str = "score",
) -> None:
    """Score ``parts`` and pass each result to ``on_result(part, result)`` in this process.

    In-process (``client`` None) with ``scorer``; on Dask with ``client`` and ``payload`` (the
    model is scattered to every worker once, tasks are prioritised in input order so results
    arrive roughly in order). ``reduce(scores, *reduce_args)`` runs where a partition is scored.

    Raises
    ------
    PartitionError
        A partition failed on the cluster (finished ones were already handed to ``on_result``).
    """
    if client is None:
        if scorer is None:
            raise ConfigError("run_partitions: give a scorer to run in this process, or a client and a payload.")
        readers = reader_threads()
        i = 0
        while i < len(parts):
            j = i
            while j < len(parts) and parts[j].format in RANGE_FORMATS:
                j += 1
            if j > i:  # a run of seekable partitions: one read-ahead pipeline across them
                for part, scores in _stream_scores(parts[i:j], scorer, chunk_size, readers):
                    on_result(part, scores if reduce is None else reduce(scores, *reduce_args))
            else:
                scores = score_partition(parts[i], scorer, chunk_size, readers=readers)
                on_result(parts[i], scores if reduce is None else reduce(scores, *reduce_args))
                j = i + 1
            i = j
        return
    if payload is None:
        raise ConfigError("run_partitions: running on Dask needs the model payload (pack_model).")
    if not parts:
        return
    from . import extras

    as_completed = extras.dask_distributed("Running on Dask").as_completed
    # One copy per worker, sent once; every partition task refers to it.
    [model_future] = client.scatter([payload], broadcast=True, hash=False)
    futures = {}
    for part in parts:
        fut = client.submit(
            _partition_task, part, model_future, engine, threads, chunk_size, reduce, reduce_args,
            key=f"hepad-{tag}-{payload.sha256[:8]}-{part.file_index}-{part.start}-{time.monotonic_ns()}",
            pure=False,
            # Earlier partitions first, so results (and the progress bar) arrive in input order.
            priority=-part.index,
        )
        futures[fut] = part
    try:
        for fut in as_completed(list(futures)):
            part = futures.pop(fut)
            try:
                result = fut.result()
            except HepadError:
                raise
            except Exception as exc:
                raise PartitionError(
                    f"{part.path}: scoring rows {part.start}-{part.stop} failed on the cluster "
                    f"({exc.__class__.__name__}: {exc}). Finished partitions are kept; re-run "
                    "the same command to resume."
                ) from exc
            fut.release()
            on_result(part, result)
    finally:
        if futures:
            client.cancel(list(futures))
        client.cancel([model_future])


# ---------------------------------------------------------------------- Dask clients
class DistributedError(HepadError):
    """The Dask cluster could not be reached or started."""


# ---------------------------------------------------------------------- clients
def _looks_like_address(text: str) -> bool:
    return "://" in text or (":" in text and not os.path.exists(text) and text.rsplit(":", 1)[-1].isdigit())


@contextlib.contextmanager
def dask_client(
    *,
    client: Any = None,
    scheduler: str | os.PathLike[str] | None = None,
    n_workers: int | None = None,
    max_workers: int | None = None,
    threads_per_worker: int = 1,
    processes: bool = True,
    dashboard_address: str | None = ":0",
) -> Iterator[Any]:
    """A ``distributed.Client``: the one given, one connected to ``scheduler``, or a local cluster.

    Parameters
    ----------
    client : distributed.Client, optional
        Used as is and left open.
    scheduler : str or path, optional
        ``tcp://host:port`` of a running scheduler, or the JSON file written by
        ``dask scheduler --scheduler-file`` (what dask-jobqueue and batch scripts share).
    n_workers : int, optional
        Worker processes of the local cluster (default: the cores this process may use,
        at most ``max_workers``).
    threads_per_worker : int
        Threads per local worker. One: scoring engines run their own threads per task.
    processes : bool
        Local workers as processes (default; the GIL-free choice for numpy/sklearn code).
    dashboard_address : str or None
        Dashboard of a local cluster (``":0"``: a free port, logged at INFO; None: off).

    Raises
    ------
    DistributedError
        The scheduler cannot be reached.
    """
    from . import extras

    distributed = extras.dask_distributed("Running on Dask")

    if client is not None:
        yield client
        return
    if scheduler is not None:
        text = os.fspath(scheduler)
        try:
            if not _looks_like_address(text):
                if not Path(text).is_file():
                    raise DistributedError(
                        f"{text}: neither a scheduler address (tcp://HOST:PORT) nor an existing "
                        "scheduler file (written by `dask scheduler --scheduler-file FILE`)."
                    )
                c = distributed.Client(scheduler_file=text, timeout="20s")
            else:
                c = distributed.Client(text, timeout="20s")
        except DistributedError:
            raise
        except (OSError, TimeoutError) as exc:
            raise DistributedError(
                f"Cannot reach the Dask scheduler at {text} ({exc.__class__.__name__}: {exc}). "
                "Check the address and that `dask scheduler` is running, or give no scheduler "
                "to use a local cluster."
            ) from None
        log.info("connected to Dask scheduler %s (dashboard %s)", c.scheduler.address, c.dashboard_link)
        try:
            yield c
        finally:
            c.close()
        return

    from .engine import available_cpus

    n = n_workers if n_workers else available_cpus()
    if max_workers:
        n = max(1, min(n, int(max_workers)))
    # Dask logs every start and stop at INFO; a local cluster is an implementation detail of the
    # job, so its chatter is shown only when hepad itself logs at DEBUG.
    dlog = logging.getLogger("distributed")
    old_level = dlog.level
    if not log.isEnabledFor(logging.DEBUG):
        dlog.setLevel(logging.ERROR)
    import dask

    try:
        # Dask's nannies set MALLOC_TRIM_THRESHOLD_=65536 in their workers. Any explicit glibc
        # malloc setting freezes the mmap threshold at 128 KiB, so every chunk-sized numpy
        # temporary is mmap'd and unmapped again: scoring ran 4-5x slower per task. Unset it.
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            cluster = distributed.LocalCluster(
                n_workers=n,
                threads_per_worker=threads_per_worker,
                processes=processes,
                dashboard_address=dashboard_address,
                silence_logs=logging.ERROR if not log.isEnabledFor(logging.DEBUG) else False,
            )
        c = distributed.Client(cluster)
        log.info("started a local Dask cluster: %d workers (dashboard %s)", n, c.dashboard_link)
        try:
            yield c
        finally:
            c.close()
            cluster.close()
    finally:
        dlog.setLevel(old_level)
