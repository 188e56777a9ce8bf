"""Score many event files with a saved model, in-process or on a Dask cluster, with resume.

The unit of work is a :class:`hepad.partitions.Partition`: a row range of one input file (HDF5
dataset rows, ROOT entries, Parquet rows; a whole file for CSV), run by the partition-execution
layer :mod:`hepad.partitions` (in this process, or on Dask when a scheduler is given or the input
is large enough for a local cluster to pay off). Every partition is scored by the batched
engine (:func:`hepad.engine.make_scorer`) while streaming its rows in chunks (the next one read
while the current one is scored), so a worker's memory is bounded by the working-memory budget
whatever the partition size. The model may be a saved directory, a fitted detector, or an
exported ``.onnx`` file. Its scores come back to the
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

import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path
from .errors import ConfigError, InputError
from .partitions import (
    DEFAULT_PARTITION_SIZE,
    ModelPayload,
    Partition,
    PartitionError,
    ScoreProgress,
    expand_files,
    model_sha256,
    pack_model,
    plan_partitions,
    run_partitions,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PARTITION_SIZE",
    "LOCAL_CLUSTER_MIN_EVENTS_PER_CORE",
    "Partition",
    "ModelPayload",
    "ScoreProgress",
    "ScoreReport",
    "ScoringError",
    "expand_files",
    "plan_partitions",
    "model_sha256",
    "pack_model",
    "parts_dir",
    "score_files",
    "read_scores",
]

#: Without a scheduler, ``score_files`` starts a local Dask cluster only for inputs of at least
#: this many events per available core (and on at least four cores): below it, starting the
#: cluster (5-40 s) and shipping the model cost more than the extra processes win over one
#: multi-threaded engine with reader threads in this process. ``benchmarks/inference.py --e2e``
#: measures the crossover ("local-cluster crossover"); on the 2-core development machine it
#: was not reached up to 2 M events (a 2-worker cluster took 25-29 s to start under load,
#: in-process scoring of 2 M events took 2.3-2.8 s), so the value is the estimate for a quiet
#: many-core node.
LOCAL_CLUSTER_MIN_EVENTS_PER_CORE = 2_000_000
_PART_FORMAT = "hepad-score-part/1"
_OUTPUT_FORMAT = "hepad-scores/1"


class ScoringError(PartitionError):
    """A scoring job failed (a partition raised on a worker, or the cluster went away)."""


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


def parts_dir(output: str | os.PathLike[str]) -> Path:
    """The folder of per-partition part files of the job writing ``output`` (kept for resume)."""
    output = Path(output)
    return output.parent / f".{output.name}.parts"


# ---------------------------------------------------------------------- progress and report
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
def _local_scorer(model: Any, engine: str, threads: int | None) -> Any:
    from .engine import make_scorer

    if not isinstance(model, (str, os.PathLike)) and not hasattr(model, "score_samples"):
        raise ConfigError(
            f"Expected a model directory, an .onnx file or a fitted detector, got {type(model).__name__}."
        )
    return make_scorer(model, engine=engine, threads=threads)


def use_local_cluster(n_events: int, n_partitions: int, n_workers: int | None, cores: int | None = None) -> bool:
    """Whether :func:`score_files` without a scheduler starts a local Dask cluster.

    ``n_workers=0``: never; ``K > 0``: always. Default: only for at least two partitions and
    :data:`LOCAL_CLUSTER_MIN_EVENTS_PER_CORE` events per core.
    """
    if n_workers is not None:
        return n_workers > 0
    if cores is None:
        from .engine import available_cpus

        cores = available_cpus()
    # On fewer than four cores the in-process engine and its reader threads already use them all.
    return n_partitions > 1 and cores >= 4 and n_events >= LOCAL_CLUSTER_MIN_EVENTS_PER_CORE * cores


def score_files(
    model: Any,
    files: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    format: str | None = None,
    key: str | None = None,
    chunk_size: int | None = None,
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
        A saved model directory (what :func:`hepad.load` reads), an ``.onnx`` file written by
        :func:`hepad.export_onnx`, or a fitted detector.
    files : sequence of path-like
        Input files or glob patterns, in the order the output rows follow.
    output : path-like
        The HDF5 file to write (``score``, ``accept``, ``source_file``, ``source_row``; see
        the module docstring). Written atomically once every partition is done.
    format, key : str, optional
        Input format and HDF5 dataset / ROOT tree, as for :func:`hepad.read_events`.
    chunk_size : int, optional
        Events read and scored at once inside a partition (default: one cache-sized block,
        :data:`hepad.partitions.SCORE_BLOCK_ROWS`, within the working-memory budget,
        :func:`hepad.partitions.read_chunk_rows`).
    partition_size : int
        Events per partition: the unit of scheduling, retry and resume.
    engine : {"auto", "onnx", "torch", "native"}
        Scoring engine (:func:`hepad.engine.make_scorer`).
    threads : int, optional
        Engine threads per task. Default: in-process, the cores the read-ahead threads leave
        (:func:`hepad.partitions.reader_threads`); 1 per worker thread on Dask
        (a cluster already runs one task per core).
    scheduler : str, optional
        Address (``tcp://host:8786``) or scheduler JSON file of a running Dask cluster.
    n_workers : int, optional
        ``0``: score in this process. ``K``: a local Dask cluster of K worker processes.
        Default: in this process, unless the input is large enough for a local cluster to pay
        off (:func:`use_local_cluster`).
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
    if chunk_size is not None and (not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
        raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    if n_workers is not None and (not isinstance(n_workers, (int, np.integer)) or n_workers < 0):
        raise ConfigError(f"n_workers must be 0 (in-process) or a positive integer, got {n_workers!r}.")
    paths = expand_files(files)
    payload = pack_model(model)
    parts = plan_partitions(paths, partition_size=partition_size, format=format, key=key)
    total_events = sum(p.n_events for p in parts)
    if total_events == 0:
        raise InputError(f"{', '.join(map(str, paths))}: no events to score.")

    pdir = parts_dir(out)
    todo: list[Partition] = []
    done_events = 0
    skipped = 0
    for part in parts:
        if resume and _part_is_done(pdir / part.part_name, part, payload.sha256):
            skipped += 1
            done_events += part.n_events
        else:
            todo.append(part)
    todo_events = sum(p.n_events for p in todo)
    in_process = client is None and scheduler is None and not use_local_cluster(todo_events, len(todo), n_workers)
    engine_threads = threads
    if threads is None and in_process:
        # The read-ahead threads need cores too: the engine takes the rest (two ONNX Runtime
        # threads beside a busy reader on 2 cores ran the engine at half speed).
        from .engine import available_cpus
        from .partitions import reader_threads

        engine_threads = max(1, available_cpus() - reader_threads())
    scorer = _local_scorer(model, engine, engine_threads)
    threshold = np.nan if scorer.threshold is None else float(scorer.threshold)
    pdir.mkdir(parents=True, exist_ok=True)
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
    if in_process:
        run_partitions(todo, on_result, scorer=scorer, chunk_size=chunk_size)
    elif todo:
        from .partitions import dask_client

        with dask_client(client=client, scheduler=scheduler, n_workers=n_workers or None,
                         max_workers=len(todo)) as c:
            mode = "dask"
            n_used = len(c.scheduler_info(n_workers=-1).get("workers", {})) or 1
            t_score = time.perf_counter()
            try:
                run_partitions(todo, on_result, client=c, payload=payload, engine=engine,
                               threads=1 if threads is None else threads, chunk_size=chunk_size)
            except PartitionError as exc:
                raise ScoringError(str(exc)) from exc.__cause__
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
    # Byte shuffle before gzip (a standard HDF5 filter, read everywhere): half the CPU of plain
    # gzip on these integer columns, and smaller files.
    with atomic_path(out, suffix=".h5.tmp") as tmp:
        with h5py.File(tmp, "w") as f:
            ds_score = f.create_dataset("score", shape=(n,), dtype=np.float32, chunks=chunk)
            ds_acc = f.create_dataset("accept", shape=(n,), dtype=np.uint8, chunks=chunk, compression="gzip", compression_opts=1, shuffle=True)
            ds_file = f.create_dataset("source_file", shape=(n,), dtype=np.int32, chunks=chunk, compression="gzip", compression_opts=1, shuffle=True)
            ds_row = f.create_dataset("source_row", shape=(n,), dtype=np.int64, chunks=chunk, compression="gzip", compression_opts=1, shuffle=True)
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
