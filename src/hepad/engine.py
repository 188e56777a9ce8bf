"""The batched scoring engine: one callable that turns float32 events into anomaly scores, fast.

:func:`make_scorer` picks how a detector is run:

- ``"onnx"``: the detector's ``export_module()`` (raw inputs -> score, preprocessing folded in)
  is exported to ONNX in memory and run by ONNX Runtime with an explicit number of intra-op
  threads. The fastest path on CPU for the torch detectors.
- ``"torch"``: the same ``export_module()`` run by PyTorch eager in ``inference_mode``.
- ``"native"``: the detector's own ``score_samples`` (any detector, e.g. scikit-learn ones).
- ``"auto"``: ``"onnx"`` for detectors with ``export_module()``, else ``"native"``.

The returned :class:`Scorer` splits its input into batches of ``batch_size`` events and writes
the scores into one preallocated float32 array, so memory stays bounded whatever N is::

    import hepad
    from hepad.engine import make_scorer

    det = hepad.load("model/")
    score = make_scorer(det, threads=2)
    s = score(events.features)          # float32 (N,), higher = more anomalous
    accept = s > score.threshold

A scorer also runs a standalone ``.onnx`` file written by :func:`hepad.export.export_onnx`
(``make_scorer("model.onnx")``); its threshold and feature names come from the file's metadata.

Inputs are expected finite (hepad's readers check this); a NaN input gives a NaN score, which
is never above a threshold.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, DependencyError, InputError, ModelFileError, closest

log = logging.getLogger(__name__)

__all__ = ["ENGINES", "Scorer", "make_scorer", "available_cpus"]

#: Valid values of the ``engine`` argument.
ENGINES = ("auto", "onnx", "torch", "native")

#: Events per batch by default: None, from the working-memory budget (inputs and activations,
#: :func:`batch_rows`), large enough to amortise per-call overhead.
DEFAULT_BATCH_SIZE = None


def batch_rows(n_features: int) -> int:
    """Events per engine call: their inputs and activations (about 16 floats per input) fit the
    working-memory budget (:func:`hepad.memory.chunk_rows`)."""
    from .memory import chunk_rows

    return chunk_rows(4 * 16 * max(1, int(n_features)))


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


class Scorer:
    """A batched scoring function ``float32 (N, F) -> float32 (N,)``; build it with :func:`make_scorer`.

    Attributes
    ----------
    engine : str
        The engine in use: ``"onnx"``, ``"torch"`` or ``"native"`` (never ``"auto"``).
    n_features : int
        Inputs per event the model expects (57 for the ADC2021 layout).
    feature_names : list of str
        Their names, in order.
    threshold : float or None
        The model's ``threshold_`` (events with ``score > threshold`` are anomalous).
    threads : int
        Intra-op threads of the ONNX Runtime / torch engines (``native`` leaves the library's own).
    batch_size : int
        Events per call into the engine.
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        *,
        engine: str,
        n_features: int,
        feature_names: list[str],
        threshold: float | None,
        threads: int,
        batch_size: int | None,
        name: str = "",
    ) -> None:
        self._fn = fn
        self.engine = engine
        self.n_features = int(n_features)
        self.feature_names = list(feature_names)
        self.threshold = None if threshold is None else float(threshold)
        self.threads = int(threads)
        self.batch_size = int(batch_size) if batch_size else batch_rows(self.n_features)
        self.name = name

    def _as_input(self, X: Any) -> np.ndarray:
        from .events import EventSet

        arr = X.features if isinstance(X, EventSet) else np.asarray(X)
        if arr.ndim == 3 and arr.shape[1:] == (19, 4):
            arr = arr[:, :, :3].reshape(len(arr), 57)
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            raise InputError(
                f"{self.name or 'scorer'}: got inputs of shape {arr.shape}; the model takes "
                f"(N, {self.n_features}) float32 features"
                + (" or (N, 19, 4) ADC2021 objects." if self.n_features == 57 else ".")
            )
        # One copy at most: float32 C-contiguous arrays pass through untouched.
        return np.ascontiguousarray(arr, dtype=np.float32)

    def iter_batches(self, X: Any) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, scores)`` per batch, for callers that stream results onward."""
        arr = self._as_input(X)
        for start in range(0, arr.shape[0], self.batch_size):
            yield start, self._fn(arr[start : start + self.batch_size])

    def __call__(self, X: Any) -> np.ndarray:
        """Score every event of ``X`` (float32 (N, F), (N, 19, 4) objects or an EventSet)."""
        arr = self._as_input(X)
        n = arr.shape[0]
        if n <= self.batch_size:
            return np.asarray(self._fn(arr), dtype=np.float32).reshape(n)
        out = np.empty(n, dtype=np.float32)
        for start in range(0, n, self.batch_size):
            stop = min(n, start + self.batch_size)
            out[start:stop] = self._fn(arr[start:stop])
        return out

    # The read-only surface of a fitted detector, so evaluation and scoring take a Scorer
    # (an exported .onnx model) wherever they take a detector.
    def score_samples(self, X: Any) -> np.ndarray:
        """The anomaly scores (as a detector's ``score_samples``)."""
        return self(X)

    decision_function = score_samples

    @property
    def threshold_(self) -> float | None:
        return self.threshold

    @property
    def feature_names_in_(self) -> list[str]:
        return self.feature_names

    @property
    def n_features_in_(self) -> int:
        return self.n_features

    def predict(self, X: Any) -> np.ndarray:
        """1 where ``score > threshold`` else 0 (int8)."""
        if self.threshold is None:
            raise ConfigError(f"{self.name or 'scorer'}: the model has no threshold; set one before predict.")
        return (self(X) > self.threshold).astype(np.int8)

    def __repr__(self) -> str:
        return (
            f"Scorer(engine={self.engine!r}, n_features={self.n_features}, threads={self.threads}, "
            f"batch_size={self.batch_size}, model={self.name!r})"
        )


# ---------------------------------------------------------------------- engines
def _ort_session(model_bytes: bytes, threads: int) -> Any:
    from . import extras

    ort = extras.onnxruntime("The onnx engine")
    so = ort.SessionOptions()
    # Explicit threads: ORT's default (all cores, spinning workers) fights other processes
    # (Dask workers, other engineers' jobs) for the same cores.
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle worker threads sleep instead of spinning: on a shared node (Dask workers, other
    # users) spinning burns the cores the other threads need; measured 1.5-5x faster there
    # (benchmarks/inference.py, ONNX Runtime scan), and equal when the machine is quiet.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


#: Events per ONNX Runtime call. Activations of a few thousand events stay in the per-core
#: L2 cache (2 MiB here); 65536-event calls spill them to memory and run 1.5-3x slower
#: (benchmarks/inference.py), and 2048 ran the default AE 15 % faster than 4096 on one thread.
#: A cache tile, not a memory bound, so it does not follow the working-memory budget.
ORT_CHUNK = 2048


def _onnx_fn(session: Any) -> Callable[[np.ndarray], np.ndarray]:
    in_name = session.get_inputs()[0].name
    out_name = session.get_outputs()[0].name
    run = session.run

    def fn(x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        if n <= ORT_CHUNK:
            return run([out_name], {in_name: x})[0]
        out = np.empty(n, dtype=np.float32)
        for start in range(0, n, ORT_CHUNK):
            out[start : start + ORT_CHUNK] = run([out_name], {in_name: x[start : start + ORT_CHUNK]})[0]
        return out

    return fn


def _torch_fn(module: Any, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    module = module.eval()
    # torch's intra-op thread count is process-wide: it is set once here, when the scorer is
    # made, never per call (the trigger scores from several threads; a per-call set/restore
    # would race between them).
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)

    def fn(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return fn


def _native_fn(detector: Any) -> Callable[[np.ndarray], np.ndarray]:
    def fn(x: np.ndarray) -> np.ndarray:
        return detector.score_samples(x)

    return fn


def make_scorer(
    detector: Any,
    engine: str = "auto",
    threads: int | None = None,
    batch_size: int | None = DEFAULT_BATCH_SIZE,
) -> Scorer:
    """A batched scorer for a fitted detector, a saved model directory or an exported ``.onnx`` file.

    Parameters
    ----------
    detector : BaseDetector, path-like
        A fitted detector, a model directory (loaded with :func:`hepad.load`), or a ``.onnx``
        file written by :func:`hepad.export.export_onnx`.
    engine : {"auto", "onnx", "torch", "native"}
        How to run it (see the module docstring). ``"auto"`` is ONNX Runtime for torch
        detectors (those with ``export_module()``) and the detector's ``score_samples`` otherwise.
    threads : int, optional
        Intra-op threads for ONNX Runtime / torch. Default: the cores this process may use.
    batch_size : int
        Events per engine call (default: from the working-memory budget, :func:`batch_rows`).

    Returns
    -------
    Scorer
        ``scorer(X) -> float32 (N,)`` scores; ``scorer.threshold`` is the model's cut.

    Raises
    ------
    ConfigError
        Unknown engine, or an engine the detector cannot run on (``onnx``/``torch`` need a
        torch detector).
    """
    if engine not in ENGINES:
        raise ConfigError(f"Unknown engine {engine!r}.{closest(str(engine), ENGINES)} Valid: {', '.join(ENGINES)}.")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if threads is None:
        threads = available_cpus()
    if not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ConfigError(f"threads must be a positive integer, got {threads!r}.")
    threads = int(threads)

    if isinstance(detector, (str, os.PathLike)):
        path = Path(detector)
        if path.suffix == ".onnx" and path.is_file():
            return _scorer_from_onnx_file(path, engine, threads, batch_size)
        import hepad

        detector = hepad.load(path)

    from .detectors.base import BaseDetector

    if not isinstance(detector, BaseDetector):
        raise ConfigError(
            f"make_scorer needs a fitted detector, a model directory or a .onnx file, got {type(detector).__name__}."
        )
    detector._check_fitted()
    exportable = callable(getattr(detector, "export_module", None))
    if engine == "auto":
        engine = "onnx" if exportable else "native"
    if engine in ("onnx", "torch") and not exportable:
        raise ConfigError(
            f"{detector.name}: engine {engine!r} needs a torch detector (with export_module()); "
            "use engine='native' (or 'auto') for this one."
        )
    common = dict(
        n_features=detector.n_features_in_,
        feature_names=list(getattr(detector, "feature_names_in_", [])),
        threshold=getattr(detector, "threshold_", None),
        threads=threads,
        batch_size=batch_size,
        name=detector.name,
    )
    if engine == "onnx":
        from .export.onnx import onnx_model_bytes

        session = _ort_session(onnx_model_bytes(detector), threads)
        fn = _onnx_fn(session)
    elif engine == "torch":
        fn = _torch_fn(detector.export_module(), threads)
    else:
        fn = _native_fn(detector)
    log.info("scorer for %s: engine %s, %d threads, batch %s", detector.name, engine, threads, batch_size or "from the budget")
    return Scorer(fn, engine=engine, **common)


def _scorer_from_onnx_file(path: Path, engine: str, threads: int, batch_size: int | None) -> Scorer:
    if engine not in ("auto", "onnx"):
        raise ConfigError(f"{path}: an .onnx file runs on the onnx engine only, not {engine!r}.")
    from .export.onnx import read_onnx_file

    data, meta = read_onnx_file(path)  # verified against its sha256; the same bytes run
    try:
        # ONNX Runtime prints its provider fallback for a graph it cannot load; the error below says it once.
        with contextlib.redirect_stdout(io.StringIO()):
            session = _ort_session(data, threads)
    except DependencyError:
        raise
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own Fail/InvalidGraph types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: ONNX Runtime cannot load it ({first[:200]}); export the model again.") from None
    ins, outs = session.get_inputs(), session.get_outputs()
    shape = ins[0].shape if len(ins) == 1 else []
    n_names = len(meta["feature_names"])
    if len(ins) != 1 or len(outs) != 1 or ins[0].type != "tensor(float)" or len(shape) != 2 \
            or (isinstance(shape[1], int) and shape[1] != n_names):
        raise ModelFileError(
            f"{path}: the graph does not map one float input (batch, {n_names}) to one score; "
            "it is not a hepad export. Export the model again."
        )
    n_features = n_names
    # Self-test on two empty events: a graph that loads but cannot score fails here, not mid-run.
    try:
        probe = session.run([outs[0].name], {ins[0].name: np.zeros((2, n_features), np.float32)})[0]
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own error types
        first = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ModelFileError(f"{path}: ONNX Runtime cannot run it ({first}); export the model again.") from None
    probe = np.asarray(probe)
    if probe.dtype != np.float32 or probe.reshape(-1).shape != (2,) or not np.isfinite(probe).all():
        raise ModelFileError(
            f"{path}: the graph gives {probe.dtype} {probe.shape} scores {probe.reshape(-1)[:2].tolist()} for two "
            "empty events, not two finite float32 scores; the file is damaged. Export the model again."
        )
    return Scorer(
        _onnx_fn(session),
        engine="onnx",
        n_features=n_features,
        feature_names=meta["feature_names"],
        threshold=meta["threshold"],
        threads=threads,
        batch_size=batch_size,
        name=meta.get("detector") or path.name,
    )
