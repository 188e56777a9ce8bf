"""Score many event files with a saved model, in-process or on a Dask cluster, with resume.

The unit of work is a :class:`Partition`: a row range of one input file (HDF5 dataset rows,
ROOT entries, Parquet rows; a whole file for CSV). Every partition is scored by the batched
engine (:func:`hepad.engine.make_scorer`) while streaming its rows in chunks, so a worker's
memory is bounded by ``chunk_size`` whatever the partition size. Its scores come back to the
client, which writes them into one small HDF5 *part file* per partition (atomically) in the
folder ``.SCORES.h5.parts/`` beside the output, then assembles the output in input order::

    import hepad.scoring as hs

    report = hs.score_files("model/", ["bkg_*.h5", "sig.h5"], "scores.h5", n_workers=4)
    report.n_events, report.events_per_s

The output holds, one row per input event in input order:

- ``score`` (float32): the anomaly score, higher = more anomalous;
- ``accept`` (uint8): 1 when ``score > threshold`` (the model's ``threshold_``);
- ``source_file`` (int32): index into the ``files`` attribute (the input paths);
- ``source_row`` (int64): the event's row in its input file;

and the attributes ``files``, ``model``, ``model_sha256``, ``threshold``, ``engine``,
``hepad_version``.

Why the client writes the parts and not the workers: the scores are 4 bytes per event (1.3 %
of an ADC2021 event's 304 input bytes), so sending them back is cheap, and workers then need
no write access to the client's filesystem. Workers do need to read the input files (a shared
filesystem or XRootD paths); they never need the model directory: its files are read into
bytes once, shipped to every worker once, and rebuilt there in a temporary folder.

Resume: a part file records the input path, size and modification time, the row range, and the
SHA-256 of the model directory. On a re-run, a part whose record matches its partition is
skipped; any other part (a different model, an edited input, another partition size) is
scored again. Parts are deleted once the output is assembled.
"""

from __future__ import annotations

import atexit
import glob
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path
from .errors import ConfigError, HepadError, InputError, ModelFileError, closest

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_PARTITION_SIZE",
    "Partition",
    "ModelPayload",
    "ScoreProgress",
    "ScoreReport",
    "ScoringError",
    "expand_files",
    "plan_partitions",
    "model_sha256",
    "pack_model",
    "score_files",
    "read_scores",
]

#: Events read and scored at once inside a partition (bounds a worker's memory).
DEFAULT_CHUNK_SIZE = 100_000
#: Events per partition, the unit of scheduling, retry and resume. Fixed (not derived from the
#: cluster size) so that a re-run on another cluster still finds its finished parts.
DEFAULT_PARTITION_SIZE = 250_000
#: Formats whose readers can seek to a row range cheaply; others get one partition per file.
_RANGE_FORMATS = ("hdf5", "root", "parquet")
_PART_FORMAT = "hepad-score-part/1"
_OUTPUT_FORMAT = "hepad-scores/1"


class ScoringError(HepadError):
    """A scoring job failed (a partition raised on a worker, or the cluster went away)."""


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
) -> list[Partition]:
    """Split input files into row-range partitions, in input order.

    Event counts come from file metadata (:func:`hepad.io.count_events`): HDF5 dataset
    shapes, ROOT ``num_entries``, Parquet footers. CSV files cannot seek to a row, so each
    is one partition.
    """
    from .io._dispatch import count_events, detect_format

    if not isinstance(partition_size, (int, np.integer)) or partition_size < 1:
        raise ConfigError(f"partition_size must be a positive integer, got {partition_size!r}.")
    parts: list[Partition] = []
    for fi, f in enumerate(files):
        p = Path(f)
        fmt = detect_format(p, format)
        n = count_events(p, format=fmt, key=key)
        st = p.stat()
        step = int(partition_size) if fmt in _RANGE_FORMATS else max(n, 1)
        for start in range(0, n, step):
            parts.append(
                Partition(
                    index=len(parts), file_index=fi, path=str(p.resolve()), start=start,
                    stop=min(n, start + step), format=fmt, key=key, size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                )
            )
    return parts


# ---------------------------------------------------------------------- the model
def model_sha256(model_dir: str | os.PathLike[str]) -> str:
    """SHA-256 over every file of a model directory (relative names and bytes, sorted).

    Two directories with the same files give the same hash wherever they live.
    """
    return _payload_hash(_read_model_files(Path(model_dir)))


def _read_model_files(root: Path) -> dict[str, bytes]:
    if not root.is_dir():
        raise ModelFileError(f"{root}: not a model directory (save one with detector.save(path)).")
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


@dataclass(frozen=True)
class ModelPayload:
    """A model directory as bytes: what is shipped to workers (no path, no pickle of objects).

    Workers rebuild the directory in a temporary folder and load it with :func:`hepad.load`,
    which checks the model's own manifest; :attr:`sha256` is checked first.
    """

    sha256: str
    files: dict[str, bytes] = field(repr=False)
    name: str = "model"

    @property
    def n_bytes(self) -> int:
        return sum(len(b) for b in self.files.values())


def pack_model(model: Any) -> ModelPayload:
    """Read a model directory (or save a fitted detector to a temporary one) into a payload."""
    if isinstance(model, (str, os.PathLike)):
        root = Path(model)
        files = _read_model_files(root)
        return ModelPayload(sha256=_payload_hash(files), files=files, name=root.name)
    save = getattr(model, "save", None)
    if not callable(save):
        raise ConfigError(
            f"Expected a model directory or a fitted detector, got {type(model).__name__}."
        )
    with tempfile.TemporaryDirectory(prefix="hepad-model-") as tmp:
        target = Path(tmp) / "model"
        save(target)
        files = _read_model_files(target)
    return ModelPayload(sha256=_payload_hash(files), files=files, name=getattr(model, "name", "model"))


#: Per-process cache: (model sha256, engine, threads) -> (detector, scorer). A Dask worker
#: rebuilds a model once, however many partitions it scores.
_MODELS: dict[tuple[str, str, int | None], tuple[Any, Callable[[np.ndarray], np.ndarray]]] = {}
_MODEL_DIRS: list[str] = []


def _cleanup_model_dirs() -> None:
    for d in _MODEL_DIRS:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup_model_dirs)


def _make_scorer(detector: Any, engine: str, threads: int | None) -> Callable[[np.ndarray], np.ndarray]:
    try:
        from .engine import make_scorer
    except ImportError:  # the engine module is optional in a partial install
        if engine not in ("auto", "native"):
            raise ConfigError(
                f"engine {engine!r} needs hepad.engine, which is not available; use engine='native'."
            ) from None
        return detector.score_samples
    return make_scorer(detector, engine=engine, threads=threads)


def _rebuild(payload: ModelPayload, engine: str, threads: int | None) -> tuple[Any, Callable]:
    cache_key = (payload.sha256, engine, threads)
    hit = _MODELS.get(cache_key)
    if hit is not None:
        return hit
    if _payload_hash(payload.files) != payload.sha256:
        raise ModelFileError(
            f"model {payload.name!r}: the shipped bytes do not match their SHA-256; "
            "the transfer was corrupted. Run the job again."
        )
    import hepad

    tmp = tempfile.mkdtemp(prefix="hepad-model-")
    _MODEL_DIRS.append(tmp)
    root = Path(tmp) / (payload.name or "model")
    for name, data in payload.files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    detector = hepad.load(root)
    scorer = _make_scorer(detector, engine, threads)
    _MODELS[cache_key] = (detector, scorer)
    log.info("rebuilt model %s (%s) in %s", payload.name, payload.sha256[:12], root)
    return detector, scorer


def _warm(payload: ModelPayload, engine: str, threads: int | None) -> str:
    """Rebuild the model in this process ahead of the first task (``client.run(_warm, ...)``)."""
    _rebuild(payload, engine, threads)
    return payload.sha256


# ---------------------------------------------------------------------- one partition
def _align(events: Any, names: Sequence[str] | None) -> np.ndarray:
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


def _score_rows(
    part: Partition, detector: Any, scorer: Callable[[np.ndarray], np.ndarray], chunk_size: int
) -> np.ndarray:
    from .io import iter_events

    names = getattr(detector, "feature_names_in_", None)
    out = np.empty(part.n_events, dtype=np.float32)
    pos = 0
    for chunk in iter_events(
        part.path, chunk_size=int(chunk_size), format=part.format, key=part.key,
        entry_range=(part.start, part.stop),
    ):
        n = len(chunk)
        if n == 0:
            continue
        if pos + n > out.size:
            raise InputError(
                f"{part.path}: rows {part.start}-{part.stop} returned more events than planned; "
                "the file changed while it was being scored."
            )
        out[pos : pos + n] = scorer(_align(chunk, names))
        pos += n
    if pos != out.size:
        raise InputError(
            f"{part.path}: rows {part.start}-{part.stop} gave {pos} events, expected {out.size}; "
            "the file changed while it was being scored."
        )
    return out


def _partition_task(
    part: Partition,
    payload: ModelPayload,
    engine: str,
    threads: int | None,
    chunk_size: int,
    reduce: Callable[..., Any] | None = None,
    reduce_args: tuple = (),
) -> Any:
    """Run on a worker: score one partition, return its scores (or ``reduce(scores, *args)``)."""
    detector, scorer = _rebuild(payload, engine, threads)
    scores = _score_rows(part, detector, scorer, chunk_size)
    return scores if reduce is None else reduce(scores, *reduce_args)


# ---------------------------------------------------------------------- parts on disk
def _write_part(path: Path, part: Partition, model_hash: str, scores: np.ndarray) -> None:
    import h5py

    with atomic_path(path, suffix=".h5.tmp") as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("score", data=scores.astype(np.float32, copy=False))
            f.attrs.update(_part_record(part, model_hash))


def _part_record(part: Partition, model_hash: str) -> dict[str, Any]:
    return {
        "format": _PART_FORMAT,
        "source": part.path,
        "source_size": part.size,
        "source_mtime_ns": part.mtime_ns,
        "start": part.start,
        "stop": part.stop,
        "key": part.key or "",
        "model_sha256": model_hash,
    }


def _part_is_done(path: Path, part: Partition, model_hash: str) -> bool:
    """True when ``path`` holds the scores of exactly this partition with this model."""
    import h5py

    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            n = f["score"].shape[0] if "score" in f else -1
    except Exception:  # a damaged part is simply scored again
        log.warning("%s: unreadable part file, scoring it again", path)
        return False
    want = _part_record(part, model_hash)
    for k, v in want.items():
        got = attrs.get(k)
        if isinstance(got, bytes):
            got = got.decode()
        if isinstance(got, np.generic):
            got = got.item()
        if got != v:
            log.info("%s: recorded %s=%r differs from %r, scoring it again", path.name, k, got, v)
            return False
    return n == part.n_events


def _parts_dir(output: Path) -> Path:
    return output.parent / f".{output.name}.parts"


# ---------------------------------------------------------------------- progress and report
@dataclass(frozen=True)
class ScoreProgress:
    """Passed to the ``progress`` callback after every finished (or skipped) partition."""

    parts_done: int
    parts_total: int
    events_done: int
    events_total: int
    parts_skipped: int
    partition: Partition | None = None


@dataclass(frozen=True)
class ScoreReport:
    """What :func:`score_files` did."""

    output: Path
    files: list[str]
    n_events: int
    n_accepted: int
    threshold: float
    n_partitions: int
    n_skipped: int
    mode: str
    n_workers: int
    elapsed_s: float
    scoring_s: float
    model_sha256: str
    n_scored: int

    @property
    def events_per_s(self) -> float:
        """Events scored per second of the scoring phase (skipped partitions excluded)."""
        return self.n_scored / self.scoring_s if self.scoring_s > 0 else float("nan")


# ---------------------------------------------------------------------- execution
def _run_inprocess(
    parts: Sequence[Partition],
    detector: Any,
    scorer: Callable,
    chunk_size: int,
    on_result: Callable[[Partition, Any], None],
    reduce: Callable[..., Any] | None = None,
    reduce_args: tuple = (),
) -> None:
    for part in parts:
        scores = _score_rows(part, detector, scorer, chunk_size)
        on_result(part, scores if reduce is None else reduce(scores, *reduce_args))


def _run_dask(
    client: Any,
    parts: Sequence[Partition],
    payload: ModelPayload,
    engine: str,
    threads: int | None,
    chunk_size: int,
    on_result: Callable[[Partition, Any], None],
    reduce: Callable[..., Any] | None = None,
    reduce_args: tuple = (),
    tag: str = "score",
) -> None:
    from distributed import as_completed

    if not parts:
        return
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
                raise ScoringError(
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


def _load_local(model: Any) -> Any:
    if isinstance(model, (str, os.PathLike)):
        import hepad

        return hepad.load(model)
    if not hasattr(model, "score_samples"):
        raise ConfigError(f"Expected a model directory or a fitted detector, got {type(model).__name__}.")
    return model


def score_files(
    model: Any,
    files: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    format: str | None = None,
    key: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    partition_size: int = DEFAULT_PARTITION_SIZE,
    engine: str = "auto",
    threads: int | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    client: Any = None,
    resume: bool = True,
    keep_parts: bool = False,
    progress: Callable[[ScoreProgress], None] | None = None,
) -> ScoreReport:
    """Score every event of ``files`` with ``model`` and write ``output`` (HDF5), in input order.

    Parameters
    ----------
    model : path-like or BaseDetector
        A saved model directory (what :func:`hepad.load` reads), or a fitted detector.
    files : sequence of path-like
        Input files or glob patterns, in the order the output rows follow.
    output : path-like
        The HDF5 file to write (``score``, ``accept``, ``source_file``, ``source_row``; see
        the module docstring). Written atomically once every partition is done.
    format, key : str, optional
        Input format and HDF5 dataset / ROOT tree, as for :func:`hepad.read_events`.
    chunk_size : int
        Events read and scored at once inside a partition (bounds memory per worker).
    partition_size : int
        Events per partition: the unit of scheduling, retry and resume.
    engine : {"auto", "onnx", "torch", "native"}
        Scoring engine (:func:`hepad.engine.make_scorer`).
    threads : int, optional
        Engine threads per task. Default: all cores in-process, 1 per worker thread on Dask
        (a cluster already runs one task per core).
    scheduler : str, optional
        Address (``tcp://host:8786``) or scheduler JSON file of a running Dask cluster.
    n_workers : int, optional
        ``0``: score in this process. ``K``: a local Dask cluster of K worker processes.
        Default: in-process when there is at most one partition to score, else a local
        cluster with one worker per core.
    client : distributed.Client, optional
        Use this client (takes precedence over ``scheduler`` and ``n_workers``).
    resume : bool
        Skip partitions whose part file is complete and matches (default). False scores all.
    keep_parts : bool
        Keep the part files after assembling the output (default: delete them).
    progress : callable, optional
        ``progress(ScoreProgress)`` after each finished or skipped partition. An exception
        raised there stops the job; finished parts stay on disk for a resume.

    Returns
    -------
    ScoreReport

    Raises
    ------
    HepadError
        Bad inputs, a bad model, or a partition that failed (:class:`ScoringError`).
    """
    t0 = time.perf_counter()
    out = Path(output)
    if out.exists() and out.is_dir():
        raise ConfigError(f"{out}: is a directory; give an output file name such as scores.h5.")
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    if n_workers is not None and (not isinstance(n_workers, (int, np.integer)) or n_workers < 0):
        raise ConfigError(f"n_workers must be 0 (in-process) or a positive integer, got {n_workers!r}.")
    paths = expand_files(files)
    detector = _load_local(model)
    threshold = float(getattr(detector, "threshold_", np.nan))
    payload = pack_model(model)
    parts = plan_partitions(paths, partition_size=partition_size, format=format, key=key)
    total_events = sum(p.n_events for p in parts)
    if total_events == 0:
        raise InputError(f"{', '.join(map(str, paths))}: no events to score.")

    pdir = _parts_dir(out)
    pdir.mkdir(parents=True, exist_ok=True)
    todo: list[Partition] = []
    done_events = 0
    skipped = 0
    for part in parts:
        if resume and _part_is_done(pdir / part.part_name, part, payload.sha256):
            skipped += 1
            done_events += part.n_events
        else:
            todo.append(part)
    if skipped:
        log.info("resuming: %d of %d partitions already scored", skipped, len(parts))
    state = {"parts": skipped, "events": done_events}

    def report_progress(part: Partition | None) -> None:
        if progress is not None:
            progress(ScoreProgress(state["parts"], len(parts), state["events"], total_events, skipped, part))

    report_progress(None)

    def on_result(part: Partition, scores: np.ndarray) -> None:
        scores = np.asarray(scores, dtype=np.float32)
        if scores.shape != (part.n_events,):
            raise ScoringError(f"{part.path}: rows {part.start}-{part.stop} gave {scores.shape[0]} scores.")
        _write_part(pdir / part.part_name, part, payload.sha256, scores)
        state["parts"] += 1
        state["events"] += part.n_events
        report_progress(part)

    # The scoring phase is timed from a ready cluster: starting one is a fixed cost.
    t_score = time.perf_counter()
    mode, n_used = "in-process", 1
    if client is None and scheduler is None and (n_workers == 0 or (n_workers is None and len(todo) <= 1)):
        scorer = _make_scorer(detector, engine, threads)
        _run_inprocess(todo, detector, scorer, chunk_size, on_result)
    elif todo:
        from .distributed import dask_client

        with dask_client(client=client, scheduler=scheduler, n_workers=n_workers or None,
                         max_workers=len(todo)) as c:
            mode = "dask"
            n_used = len(c.scheduler_info(n_workers=-1).get("workers", {})) or 1
            t_score = time.perf_counter()
            _run_dask(c, todo, payload, engine, 1 if threads is None else threads, chunk_size, on_result)
    scoring_s = time.perf_counter() - t_score

    n_accepted = _assemble(out, parts, pdir, paths, payload, threshold, engine, model)
    if not keep_parts:
        shutil.rmtree(pdir, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    report = ScoreReport(
        output=out, files=[str(p) for p in paths], n_events=total_events, n_accepted=n_accepted,
        threshold=threshold, n_partitions=len(parts), n_skipped=skipped, mode=mode,
        n_workers=n_used, elapsed_s=elapsed, scoring_s=scoring_s, model_sha256=payload.sha256,
        n_scored=total_events - done_events,
    )
    log.info(
        "scored %d events (%d partitions, %d skipped) in %.1f s: %d accepted",
        total_events, len(parts), skipped, elapsed, n_accepted,
    )
    return report


def _assemble(
    out: Path,
    parts: Sequence[Partition],
    pdir: Path,
    paths: Sequence[Path],
    payload: ModelPayload,
    threshold: float,
    engine: str,
    model: Any,
) -> int:
    """Concatenate the part files into ``out`` in input order, streaming (bounded memory)."""
    import h5py

    from ._version import __version__

    n = sum(p.n_events for p in parts)
    n_accepted = 0
    chunk = (min(n, 1 << 18),)
    with atomic_path(out, suffix=".h5.tmp") as tmp:
        with h5py.File(tmp, "w") as f:
            ds_score = f.create_dataset("score", shape=(n,), dtype=np.float32, chunks=chunk)
            ds_acc = f.create_dataset("accept", shape=(n,), dtype=np.uint8, chunks=chunk, compression="gzip", compression_opts=1)
            ds_file = f.create_dataset("source_file", shape=(n,), dtype=np.int32, chunks=chunk, compression="gzip", compression_opts=1)
            ds_row = f.create_dataset("source_row", shape=(n,), dtype=np.int64, chunks=chunk, compression="gzip", compression_opts=1)
            pos = 0
            for part in parts:
                with h5py.File(pdir / part.part_name, "r") as pf:
                    s = pf["score"][:]
                k = s.size
                acc = (s > threshold).astype(np.uint8)
                n_accepted += int(acc.sum())
                ds_score[pos : pos + k] = s
                ds_acc[pos : pos + k] = acc
                ds_file[pos : pos + k] = part.file_index
                ds_row[pos : pos + k] = np.arange(part.start, part.stop, dtype=np.int64)
                pos += k
            f.attrs["format"] = _OUTPUT_FORMAT
            f.attrs["files"] = np.asarray([str(p) for p in paths], dtype=h5py.string_dtype())
            f.attrs["model"] = os.fspath(model) if isinstance(model, (str, os.PathLike)) else payload.name
            f.attrs["model_sha256"] = payload.sha256
            f.attrs["threshold"] = threshold
            f.attrs["engine"] = engine
            f.attrs["hepad_version"] = __version__
            ds_score.attrs["description"] = "anomaly score, higher = more anomalous"
            ds_acc.attrs["description"] = "1 when score > threshold"
    return n_accepted


def read_scores(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a scores file written by :func:`score_files` into a dict of arrays and attributes."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file.")
    with h5py.File(p, "r") as f:
        if "score" not in f:
            raise InputError(f"{p}: not a hepad scores file (no 'score' dataset).")
        out: dict[str, Any] = {k: f[k][:] for k in ("score", "accept", "source_file", "source_row") if k in f}
        for k, v in f.attrs.items():
            if isinstance(v, np.ndarray) and v.dtype.kind in "OS":
                v = [x.decode() if isinstance(x, bytes) else str(x) for x in v]
            elif isinstance(v, bytes):
                v = v.decode()
            elif isinstance(v, np.generic):
                v = v.item()
            out[k] = v
    return out
