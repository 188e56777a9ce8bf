"""The default benchmark dataset: SM-mix train/validation/test and the four signals, cached."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from .._atomic import atomic_path
from .._version import __version__
from ..errors import ConfigError, closest
from ._engine import DEFAULT_CHUNK_SIZE, DEFAULT_PILEUP, ProgressCallback, prepare_job, run_jobs
from ._simulation import SIMULATION_VERSION

log = logging.getLogger(__name__)

#: file name -> (process, base seed). Other modules load these names; keep them stable.
DATASET_FILES: dict[str, tuple[str, int]] = {
    "sm_train.h5": ("sm-mix", 1),
    "sm_val.h5": ("sm-mix", 2),
    "sm_test.h5": ("sm-mix", 3),
    "ato4l.h5": ("ato4l", 11),
    "lq-btau.h5": ("lq-btau", 12),
    "h0-tautau.h5": ("h0-tautau", 13),
    "hplus-taunu.h5": ("hplus-taunu", 14),
}
_SIGNALS = ("ato4l.h5", "lq-btau.h5", "h0-tautau.h5", "hplus-taunu.h5")

#: Accepted events per file. ``demo`` is shipped in ``examples/demo-data/`` and used by ``make demo``.
DATASET_SIZES: dict[str, dict[str, int]] = {
    # demo: FPR 1e-3 needs 10,000 *effective* test events (10 above the threshold); the SM mix's
    # QCD weights (1.5-2.5) cost about 0.7 %, so 10,500 accepted events give about 10,430.
    "demo": {"sm_train.h5": 4_000, "sm_val.h5": 1_000, "sm_test.h5": 10_500,
             "ato4l.h5": 400, "lq-btau.h5": 400, "h0-tautau.h5": 400, "hplus-taunu.h5": 400},
    # tiny serves the test suite (and CI, 2 cores): the slow tau signals are kept smallest.
    "tiny": {"sm_train.h5": 400, "sm_val.h5": 200, "sm_test.h5": 200,
             "ato4l.h5": 200, "lq-btau.h5": 150, "h0-tautau.h5": 100, "hplus-taunu.h5": 60},
    "small": {"sm_train.h5": 10_000, "sm_val.h5": 3_000, "sm_test.h5": 5_000,
              "ato4l.h5": 1_000, "lq-btau.h5": 1_000, "h0-tautau.h5": 800, "hplus-taunu.h5": 600},
    "medium": {"sm_train.h5": 100_000, "sm_val.h5": 30_000, "sm_test.h5": 50_000,
               "ato4l.h5": 10_000, "lq-btau.h5": 10_000, "h0-tautau.h5": 10_000, "hplus-taunu.h5": 10_000},
    "large": {"sm_train.h5": 1_000_000, "sm_val.h5": 300_000, "sm_test.h5": 500_000,
              "ato4l.h5": 50_000, "lq-btau.h5": 50_000, "h0-tautau.h5": 50_000, "hplus-taunu.h5": 50_000},
}


def default_dataset_dir(size: str) -> Path:
    """``$HEPAD_DATA_DIR`` if set, else ``~/.cache/hepad/datasets/<size>``."""
    env = os.environ.get("HEPAD_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "hepad" / "datasets" / size


def _valid(path: Path, process: str, n_events: int, seed: int, pileup: float) -> bool:
    """A finished file of this process, seed, size, pileup and simulation version (anything else
    is regenerated)."""
    import h5py

    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            prov = json.loads(f.attrs["hepad_provenance"])
            return (
                f["Particles"].shape == (n_events, 19, 4)
                and prov.get("process") == process
                and prov.get("seed") == seed
                and prov.get("simulation_version") == SIMULATION_VERSION
                and float((prov.get("pileup") or {}).get("mu", 0.0)) == float(pileup)
            )
    except Exception:
        return False


def build_dataset(
    size: str = "small",
    directory: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    *,
    extra: Mapping[str, str | os.PathLike[str] | None] | None = None,
    scheduler: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    sizes: Mapping[str, int] | None = None,
    pileup: float = DEFAULT_PILEUP,
) -> dict[str, Path]:
    """Build (or reuse) the default benchmark dataset.

    Parameters
    ----------
    size : {"tiny", "small", "medium", "large"}
        Number of events per file, see :data:`DATASET_SIZES`.
    directory : path, optional
        Where to write; default :func:`default_dataset_dir`.
    workers : int, optional
        Dask worker processes (``None``: one per core; ``0``/``1``: in this process).
    progress : callable, optional
        ``progress(events_done, events_total)``.
    extra : mapping, optional
        Extra signal files ``{name: card}``: ``card`` None for a catalogue process
        (e.g. ``"zprime-ll"``) or a path to a user Pythia card. Written as ``<name>.h5`` with the
        signal size of ``size``.
    scheduler : str, optional
        Address of an existing Dask scheduler.
    chunk_size : int
        Accepted events per chunk.
    sizes : mapping, optional
        Override the number of events of some files (e.g. for tests).
    pileup : float
        Mean number of pileup interactions (default 20, as ADC2021).

    Returns
    -------
    dict
        File stem (``"sm_train"``, ``"ato4l"``, ...) -> path, for every file of the dataset.
        Existing valid files are kept, so a second call costs nothing. Concurrent callers on
        one folder are serialised by a lock file (``.build.lock``): the second waits, then reuses.
    """
    if size not in DATASET_SIZES:
        raise ConfigError(
            f"unknown dataset size {size!r}.{closest(size, DATASET_SIZES)} Choose one of {', '.join(DATASET_SIZES)}."
        )
    t0 = time.perf_counter()
    directory = Path(directory) if directory is not None else default_dataset_dir(size)
    directory.mkdir(parents=True, exist_ok=True)
    with _folder_lock(directory):
        return _build_locked(size, directory, workers, progress, extra, scheduler, chunk_size, sizes,
                             float(pileup), t0)


@contextmanager
def _folder_lock(directory: Path) -> Iterator[None]:
    """An exclusive fcntl lock on ``directory/.build.lock`` (blocks until free)."""
    import fcntl

    with open(directory / ".build.lock", "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s: another process is building this dataset; waiting for it", directory)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _build_locked(size, directory, workers, progress, extra, scheduler, chunk_size, sizes, pileup, t0):
    counts = dict(DATASET_SIZES[size])
    files = dict(DATASET_FILES)
    for i, (name, card) in enumerate(sorted((extra or {}).items())):
        fname = f"{name}.h5"
        if fname in files:
            raise ConfigError(f"extra signal {name!r} clashes with a dataset file name; pick another name.")
        files[fname] = (name, 100 + i)
        counts[fname] = counts["ato4l.h5"]
    for fname, n in (sizes or {}).items():
        if fname not in files:
            raise ConfigError(f"sizes: unknown dataset file {fname!r}.{closest(fname, files)}")
        counts[fname] = int(n)
    cards = {f"{k}.h5": v for k, v in (extra or {}).items()}

    jobs, reused = [], []
    for fname, (process, seed) in files.items():
        path = directory / fname
        card = cards.get(fname)
        if _valid(path, process, counts[fname], seed, pileup):
            reused.append(fname)
            continue
        jobs.append(prepare_job(process, counts[fname], path, seed=seed, card=card, chunk_size=chunk_size,
                                pileup=pileup))
    if reused:
        log.info("%s: reusing %s", directory, ", ".join(reused))
    run_jobs(jobs, workers=workers, scheduler=scheduler, progress=progress)
    wall = time.perf_counter() - t0
    result = {f.rsplit(".", 1)[0]: directory / f for f in files}
    meta_path = directory / "dataset.json"
    if not jobs and meta_path.is_file():  # nothing built: leave the record (and a shipped folder) as is
        return result

    meta = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            meta = {}
    file_cost = dict(meta.get("core_s_per_file", {}))
    for job in jobs:
        # Summed chunk times (core-seconds): in a parallel build a per-file wall time means little.
        file_cost[job.output.name] = round(sum(st.get("wall_s", 0.0) for st in job.stats), 1)
    meta = {
        "size": size,
        "hepad_version": __version__,
        "simulation_version": SIMULATION_VERSION,
        "pileup": pileup,
        "files": {f: {"process": p, "seed": s, "n_events": counts[f]} for f, (p, s) in files.items()},
        "chunk_size": chunk_size,
        "wall_s": round(wall, 1),
        "wall_s_first_build": meta.get("wall_s_first_build", round(wall, 1)) if reused else round(wall, 1),
        "core_s_per_file": file_cost,
        "workers": workers,
        "reused": reused,
    }
    with atomic_path(meta_path, suffix=".json.tmp") as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    return result
