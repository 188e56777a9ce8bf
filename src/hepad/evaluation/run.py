"""The entry points: :func:`evaluate` one detector, :func:`compare` several, :func:`evaluate_files` on a cluster."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import metrics as M
from .._write import versions
from ..errors import ConfigError, InputError
from ..events import EventSet
from . import diagnostics as D
from .results import ComparisonResult, EvaluationResult
from .rows import signal_metrics
from .samples import BACKGROUND_NAME, describe, load_samples

log = logging.getLogger("hepad.evaluation")

__all__ = ["evaluate", "compare", "evaluate_files"]

ProgressFn = Callable[[str, int, int], None]


def _timed_scores(detector: Any, events: EventSet, warmup: bool = True) -> tuple[np.ndarray, float]:
    if warmup and len(events) > 256:
        detector.score_samples(events[:256])  # first call pays thread-pool / allocation set-up
    # Best of two runs on samples that score quickly: less noise from a busy machine.
    repeats = 2 if warmup and len(events) <= 100_000 else 1
    dt = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        s = np.asarray(detector.score_samples(events), dtype=np.float32)
        dt = min(dt, time.perf_counter() - t0)
    if s.shape != (len(events),):
        raise InputError(f"score_samples returned shape {s.shape} for {len(events)} events.")
    return s, dt / max(len(events), 1)


def detector_label(detector: Any) -> str:
    """A detector's name in tables and plots: its registry name, else its class name."""
    return str(getattr(detector, "name", "") or type(detector).__name__)


def _rule(detector: Any) -> Any:
    rule = getattr(detector, "threshold_rule_", None)
    if rule is None or isinstance(rule, dict):
        return rule
    for attr in ("to_dict", "model_dump", "_asdict"):
        if hasattr(rule, attr):
            return dict(getattr(rule, attr)())
    return str(rule)


def evaluate(
    detector: Any,
    background: Any,
    signals: Any,
    *,
    name: str | None = None,
    fprs: Sequence[float] = M.DEFAULT_FPRS,
    threshold: float | None = None,
    diagnostics: bool = True,
    embed: Sequence[str] = ("pca", "tsne"),
    n_embed: int = D.N_EMBED,
    random_state: int = 0,
    progress: ProgressFn | None = None,
    info: Mapping[str, Any] | None = None,
    log_warnings: bool = True,
) -> EvaluationResult:
    """Score background and signal samples with a fitted detector and compute every metric.

    Parameters
    ----------
    detector : BaseDetector
        A fitted detector (``hepad.load(dir)`` or ``hepad.train(...)``).
    background : EventSet, path, glob or list of them
        Standard Model events (several files are concatenated).
    signals : mapping name -> sample, or list of paths / ``NAME=PATH`` strings
        Signal samples; a bare path is named by its file stem.
    name : str, optional
        Label of the detector in tables and plots (default: its registry name).
    fprs : sequence of float
        Background efficiencies of the working points (default 1e-3, 1e-4, 1e-5).
    threshold : float, optional
        Cut for the threshold metrics (default: the detector's ``threshold_``).
    diagnostics : bool
        Also compute the latent-space views, per-slot reconstruction errors and input
        summaries used by the plots (costs a few seconds, mostly t-SNE).
    embed : sequence of {"pca", "tsne"}
        Which 2-D views to compute.
    n_embed : int
        Events in the 2-D views (half background, half shared among the signals).
    progress : callable, optional
        ``progress(step, done, total)`` after each step, for progress bars.
    info : mapping, optional
        Extra configuration stored with the result (shown in the report).
    log_warnings : bool
        Log each warning once (they are always in ``result.warnings()``).

    Returns
    -------
    EvaluationResult
    """
    bkg, sigs = load_samples(background, signals)
    label = name or detector_label(detector)
    total = 1 + len(sigs) + (1 if diagnostics else 0)
    done = 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(what, done, total)

    if threshold is None:
        threshold = getattr(detector, "threshold_", None)
    scores: dict[str, np.ndarray] = {}
    scores[BACKGROUND_NAME], t_per_event = _timed_scores(detector, bkg)
    step(f"{label}: scored background")
    metrics: dict[str, dict[str, Any]] = {}
    weights = {BACKGROUND_NAME: bkg.weights}
    for sname, ev in sigs.items():
        scores[sname] = _timed_scores(detector, ev, warmup=False)[0]
        weights[sname] = ev.weights
        metrics[sname] = signal_metrics(
            scores[BACKGROUND_NAME], scores[sname], threshold=threshold, fprs=fprs,
            background_weights=bkg.weights, signal_weights=ev.weights,
        )
        step(f"{label}: {sname}")
    result = EvaluationResult(
        detector=label, metrics=metrics, scores=scores, threshold=None if threshold is None else float(threshold),
        fprs=tuple(float(f) for f in fprs), history=D.training_history(detector), time_per_event_s=t_per_event,
        weights=weights,
        info={
            "config": {"detector": label, "params": D.detector_params(detector), "fprs": list(fprs),
                       "threshold": threshold, "threshold_rule": _rule(detector), **dict(info or {})},
            "data": {"background": describe(bkg), "signals": {n: describe(e) for n, e in sigs.items()}},
            "versions": versions(),
        },
    )
    if diagnostics:
        result.features = D.summary_features(bkg, sigs, random_state)
        if embed:
            result.embedding = D.embedding(detector, bkg, sigs, n_embed, [m.lower().replace("-", "") for m in embed],
                                           random_state)
        result.contributions = D.slot_errors(detector, bkg, sigs, D.N_CONTRIB, random_state)
        step(f"{label}: diagnostics")
    if log_warnings:
        for msg in result.warnings():
            log.warning("%s: %s", label, msg)
    return result


def compare(
    detectors: Mapping[str, Any] | Sequence[Any],
    background: Any,
    signals: Any,
    *,
    fprs: Sequence[float] = M.DEFAULT_FPRS,
    agreement_fpr: float = 1e-3,
    diagnostics: bool = True,
    n_embed: int = D.N_EMBED,
    embed: Sequence[str] = ("pca", "tsne"),
    random_state: int = 0,
    progress: ProgressFn | None = None,
    info: Mapping[str, Any] | None = None,
) -> ComparisonResult:
    """Evaluate several fitted detectors on the same events.

    Parameters
    ----------
    detectors : mapping label -> detector, or sequence of detectors
        Every detector gets its full diagnostics (latent views, slot contributions) when
        ``diagnostics`` is true; the input distributions are computed once.
    agreement_fpr : float
        Background efficiency at which every detector is cut for the agreement matrix. Raised
        to ``10 / n_background`` when the background sample cannot resolve it.
    Other parameters as :func:`evaluate`.

    Returns
    -------
    ComparisonResult
    """
    if not isinstance(detectors, Mapping):
        labels = [detector_label(d) for d in detectors]
        if len(set(labels)) != len(labels):
            labels = [f"{lab}-{i}" for i, lab in enumerate(labels)]
        detectors = dict(zip(labels, detectors))
    if not detectors:
        raise ConfigError("compare needs at least one detector.")
    bkg, sigs = load_samples(background, signals)
    results: dict[str, EvaluationResult] = {}
    for i, (label, det) in enumerate(detectors.items()):
        results[label] = evaluate(
            det, bkg, sigs, name=label, fprs=fprs, diagnostics=diagnostics, embed=embed,
            n_embed=n_embed, random_state=random_state, progress=progress, info=info, log_warnings=False,
        )
        if i > 0:
            results[label].features = None  # the inputs are the same for every detector: kept once
    # The background decides what is resolved, so the warnings are the same for every detector.
    for msg in dict.fromkeys(w for r in results.values() for w in r.warnings()):
        log.warning("%s", msg)
    used_fpr = max(agreement_fpr, M.MIN_BACKGROUND_PER_FPR / len(bkg))
    if used_fpr > agreement_fpr:
        log.info("agreement FPR raised from %.0e to %.2g: only %d background events", agreement_fpr, used_fpr, len(bkg))
    dets = list(results)
    decisions, ranks = [], []
    for d in dets:
        r = results[d]
        b = r.scores[BACKGROUND_NAME]
        thr, _ = M.threshold_at_fpr(b, used_fpr)
        sig = np.concatenate([r.scores[n] for n in r.signals])
        decisions.append(sig > thr)
        ranks.append(_rank(np.r_[b, sig]))
    n = len(dets)
    agree = np.ones((n, n))
    corr = np.ones((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            agree[i, j] = agree[j, i] = float(np.mean(decisions[i] == decisions[j]))
            c = np.corrcoef(ranks[i], ranks[j])[0, 1]
            corr[i, j] = corr[j, i] = float(c) if np.isfinite(c) else 0.0
    first = results[dets[0]]
    return ComparisonResult(results=results, agreement=agree, rank_correlation=corr, agreement_fpr=used_fpr,
                            info={**first.info, "config": {"detectors": {d: results[d].info["config"] for d in dets},
                                                           "fprs": list(fprs), "agreement_fpr": used_fpr,
                                                           **dict(info or {})}})


def _rank(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x)


def evaluate_files(
    model: Any,
    background: Sequence[str | os.PathLike[str]],
    signals: Mapping[str, Any],
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    fprs: Sequence[float] = M.DEFAULT_FPRS,
    name: str | None = None,
    progress: Callable[[Any], None] | None = None,
    info: Mapping[str, Any] | None = None,
) -> EvaluationResult:
    """Evaluate files too large for one process with :func:`hepad.distributed.evaluate_files_by_histogram`.

    Scores are never gathered: the metrics come from per-partition histograms (see
    :mod:`hepad.distributed` for what is exact). The result holds the metrics table only (no
    per-event scores, so no curves or diagnostic plots); the AUC error is Hanley-McNeil's on the
    event counts, and the PR AUC is not available (NaN).
    """
    from .. import distributed

    if not hasattr(distributed, "evaluate_files_by_histogram"):
        raise ConfigError("This hepad has no distributed evaluation (hepad.distributed.evaluate_files_by_histogram).")
    sig_files = {k: [v] if isinstance(v, (str, os.PathLike)) else list(v) for k, v in signals.items()}
    res = distributed.evaluate_files_by_histogram(model, list(background), sig_files, scheduler=scheduler, n_workers=n_workers,
                                     fprs=list(fprs), progress=progress)
    detector = model
    if isinstance(model, (str, os.PathLike)):
        from ..artifact import read_manifest

        try:
            label = name or str(read_manifest(model).get("detector") or Path(model).name)
        except Exception:  # the label is cosmetic; evaluate_files has already validated the model
            label = name or Path(model).name
        detector = None
    else:
        label = name or detector_label(model)
    metrics: dict[str, dict[str, Any]] = {}
    for sname, m in res["signals"].items():
        metrics[sname] = {
            "n_background": int(m["n_background"]), "n_signal": int(m["n_signal"]), "auc": float(m["auc"]),
            "auc_err": M.hanley_mcneil_se(m["auc"], m["n_signal"], m["n_background"]),
            "auc_err_method": "hanley-mcneil", "auc_binning_error_bound": m.get("auc_error_bound"),
            "pr_auc": float("nan"), "working_points": list(m["working_points"]), "max_sic": dict(m["max_sic"]),
            "files": m.get("files", []),
        }
    return EvaluationResult(
        detector=label, metrics=metrics, scores={}, threshold=getattr(detector, "threshold_", None),
        fprs=tuple(float(f) for f in fprs),
        info={"config": {"detector": label, "fprs": list(fprs), "method": res.get("method", "histogram"),
                         "scheduler": scheduler, "n_bins": res.get("n_bins"), **dict(info or {})},
              "data": {"background": {"files": res.get("background_files"), "n_events": res.get("n_background")},
                       "signals": {n: {"files": m.get("files"), "n_events": m["n_signal"]} for n, m in res["signals"].items()}},
              "versions": versions()},
    )
