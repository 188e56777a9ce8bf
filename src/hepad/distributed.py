"""Distributed evaluation: the metrics of a model over many files, from per-partition histograms.

The partitions run on :mod:`hepad.partitions` (in-process, or on the Dask client of
:func:`hepad.partitions.dask_client`, re-exported here).

:func:`evaluate_files_by_histogram` computes the metrics of :mod:`hepad.metrics` (ROC AUC, TPR at FPR
1e-3/1e-4/1e-5, max SIC) for background and signal files too large for one node, without ever
gathering the scores: every partition returns a histogram of its scores, and the client adds
them up. The histogram is built so that the trigger working points are exact:

1. *Sketch.* A sample of every input (``sketch_size`` events in all) is scored on the client;
   the bin edges of the bulk are ``bins`` quantiles of the pooled sample (equal-population
   bins, so resolution follows the data whatever the score scale).
2. *Background pass.* Each background partition returns its histogram on those edges and its
   ``K`` highest scores, ``K = tail_fraction x N_background + 1`` (1 % by default). The
   client keeps the ``K`` highest overall: every background score in the top 1 % is known
   exactly, so the cuts at FPR <= 1 % are the exact ones of :func:`hepad.metrics.threshold_at_fpr`.
3. *Signal pass.* Each signal partition returns its histogram on the bulk edges plus every
   top-``K`` background score. Signal counts above each exact cut are therefore exact.

Accuracy, by construction: TPR at FPR <= ``tail_fraction`` and the SIC curve in that range are
exact. The ROC AUC is exact up to the ordering of signal and background events that share a
bulk bin, which are counted as ties (one half); the returned ``auc_error_bound`` =
``sum_i s_i b_i / (2 S B)`` bounds the difference from the exact AUC (with 2,048 bins it is of
order 1e-4, and the actual error far smaller: 3e-7 for a toy autoencoder on 200k background and
20k signal events; the test suite checks it against the exact AUC). The max SIC above FPR
``tail_fraction`` is evaluated at bin edges only, a lower bound on the exact one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, InputError
from .partitions import DistributedError, dask_client

log = logging.getLogger(__name__)

__all__ = [
    "DistributedError",
    "dask_client",
    "evaluate_files_by_histogram",
    "metrics_from_histograms",
    "histogram_edges",
]

#: Bulk bins of :func:`evaluate_files_by_histogram` by default.
DEFAULT_BINS = 2048
#: Events scored on the client to place the bulk bin edges.
DEFAULT_SKETCH_SIZE = 50_000
#: Background fraction whose highest scores are kept exactly (covers FPR <= 1 %).
DEFAULT_TAIL_FRACTION = 0.01
#: Largest number of exact tail scores kept (memory on the client: 8 bytes each).
MAX_TAIL = 5_000_000


# ---------------------------------------------------------------------- histogram metrics
def histogram_edges(sample: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Equal-population bin edges from a sample of scores, with -inf and +inf at the ends.

    Bins are ``(e[i-1], e[i]]`` (right-closed, matching the ``score > threshold`` selection).
    """
    s = np.asarray(sample, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise InputError("No finite scores to place histogram bins on.")
    if not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ConfigError(f"bins must be an integer >= 2, got {bins!r}.")
    inner = np.unique(np.quantile(s, np.linspace(0.0, 1.0, int(bins) + 1)))
    return np.concatenate([[-np.inf], inner, [np.inf]])


def _bin_counts(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(edges, np.asarray(scores, dtype=np.float64), side="left") - 1
    return np.bincount(idx, minlength=edges.size - 1).astype(np.int64)


def _reduce_background(scores: np.ndarray, edges: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Partition task: histogram on the bulk edges and the ``k`` highest scores."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size > k:
        top = np.partition(s, s.size - k)[s.size - k :]
    else:
        top = s.copy()
    return _bin_counts(s, edges), np.sort(top)[::-1], int(s.size)


def _reduce_signal(scores: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, int]:
    return _bin_counts(scores, edges), int(np.asarray(scores).size)


def _merge_top(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    both = np.concatenate([a, b])
    if both.size > k:
        both = np.partition(both, both.size - k)[both.size - k :]
    return np.sort(both)[::-1]


def _refine_background(
    bulk_edges: np.ndarray, bulk_counts: np.ndarray, top: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Edges = bulk edges + every exact tail score; background counts on them, exact in the tail.

    Background events outside the kept top scores are all <= the smallest kept one, so each
    bulk bin's remaining events go into its last sub-bin at or below that value.
    """
    edges = np.unique(np.concatenate([bulk_edges, top]))
    counts = _bin_counts(top, edges)
    if top.size == 0:
        return bulk_edges, bulk_counts.copy()
    t_min = top[-1]
    top_in_bulk = _bin_counts(top, bulk_edges)
    rest = bulk_counts - top_in_bulk
    if (rest < 0).any():  # pragma: no cover - the histograms come from the same scores
        raise HepadError("Inconsistent background histogram and tail; re-run the evaluation.")
    upper = np.minimum(bulk_edges[1:], t_min)
    target = np.searchsorted(edges, upper, side="left") - 1
    np.add.at(counts, target[rest > 0], rest[rest > 0])
    return edges, counts


def metrics_from_histograms(
    background_counts: np.ndarray,
    signal_counts: np.ndarray,
    edges: np.ndarray,
    *,
    fprs: Sequence[float] | None = None,
    exact_above: float = -np.inf,
    min_background_sic: int | None = None,
) -> dict[str, Any]:
    """ROC AUC, working points and max SIC from background and signal counts on the same bins.

    Bins are ``(edges[i], edges[i+1]]``; a cut at an edge selects the bins above it, as
    ``score > edge``. Pure function of its inputs.

    Parameters
    ----------
    background_counts, signal_counts : array of int, shape (len(edges) - 1,)
    edges : array of float
        Increasing; ``-inf`` first and ``+inf`` last.
    fprs : sequence of float
        Target background efficiencies (default :data:`hepad.metrics.DEFAULT_FPRS`).
    exact_above : float
        Edges at or above this score resolve every distinct background score (the exact
        tail of :func:`evaluate_files_by_histogram`); working points whose cut falls below it are flagged
        ``exact=False`` (their cut is only known to a bin edge).
    min_background_sic : int
        SIC points resting on fewer background events are ignored
        (default :data:`hepad.metrics.SIC_MIN_BACKGROUND`).

    Returns
    -------
    dict
        ``auc``, ``auc_error_bound``, ``working_points`` (dicts as
        :class:`hepad.metrics.WorkingPoint` plus ``exact``), ``tpr_at_fpr`` ({fpr: tpr}),
        ``max_sic`` (as :class:`hepad.metrics.MaxSIC`), ``n_background``, ``n_signal``.
    """
    from . import metrics as M

    fprs = tuple(M.DEFAULT_FPRS if fprs is None else fprs)
    min_bkg = M.SIC_MIN_BACKGROUND if min_background_sic is None else int(min_background_sic)
    b = np.asarray(background_counts, dtype=np.int64)
    s = np.asarray(signal_counts, dtype=np.int64)
    e = np.asarray(edges, dtype=np.float64)
    if b.shape != s.shape or b.ndim != 1 or e.shape != (b.size + 1,):
        raise InputError(
            f"Histogram shapes disagree: background {b.shape}, signal {s.shape}, edges {e.shape}."
        )
    B, S = int(b.sum()), int(s.sum())
    if B == 0 or S == 0:
        raise InputError(f"Metrics need both classes; got {B} background and {S} signal events.")
    # Events above each edge e[j] (j = 0..M): the ROC point of the cut score > e[j].
    b_above = np.concatenate([np.cumsum(b[::-1])[::-1], [0]])
    s_above = np.concatenate([np.cumsum(s[::-1])[::-1], [0]])
    b_below = B - b_above[:-1]  # background strictly below each bin
    auc = float((s * (b_below + 0.5 * b)).sum() / (S * B))
    auc_err = float((s * b).sum() / (2.0 * S * B))

    wps = []
    tpr_at = {}
    for f in fprs:
        if not 0 < f < 1:
            raise ConfigError(f"The background efficiency must be in (0, 1), got {f}.")
        # The lowest edge whose cut keeps at most f of background (cf. metrics.threshold_at_fpr).
        ok = np.flatnonzero(b_above <= f * B * (1 + 1e-12))
        j = int(ok[0])
        thr = float(e[j])  # j >= 1: the -inf edge keeps all background
        tpr = float(s_above[j] / S)
        lo, hi = M.binomial_interval(s_above[j], S)
        needed = M.MIN_BACKGROUND_PER_FPR / f
        resolved = B >= needed
        warning = "" if resolved else (
            f"FPR {f:.0e} is not resolved: {B} background events, need >= {needed:.0f} "
            f"for about {M.MIN_BACKGROUND_PER_FPR:.0f} to pass the cut. Use more background events."
        )
        if warning:
            log.warning(warning)
        wp = M.WorkingPoint(
            target_fpr=float(f), threshold=thr, tpr=tpr, tpr_low=lo, tpr_high=hi,
            fpr=float(b_above[j] / B), n_background=float(B), n_signal=float(S),
            n_background_pass=int(b_above[j]), n_signal_pass=int(s_above[j]),
            resolved=resolved, warning=warning,
        ).to_dict()
        wp["exact"] = bool(thr >= exact_above)
        wps.append(wp)
        tpr_at[float(f)] = tpr

    keep = b_above >= max(min_bkg, 1)
    if keep.any():
        fpr_c = b_above[keep] / B
        tpr_c = s_above[keep] / S
        sic = tpr_c / np.sqrt(fpr_c)
        i = int(np.argmax(sic))
        msic = M.MaxSIC(float(sic[i]), float(tpr_c[i]), float(fpr_c[i]), float(e[keep][i]), min_bkg).to_dict()
    else:
        nan = float("nan")
        msic = M.MaxSIC(nan, nan, nan, nan, min_bkg).to_dict()
    return {
        "auc": auc,
        "auc_error_bound": auc_err,
        "working_points": wps,
        "tpr_at_fpr": tpr_at,
        "max_sic": msic,
        "n_background": B,
        "n_signal": S,
    }


# ---------------------------------------------------------------------- evaluate
def _sketch_sample(parts: Sequence[Any], scorer: Callable, sketch_size: int) -> np.ndarray:
    """Score the first rows of every partition: about ``sketch_size`` events in all."""
    from .io import read_events
    from .partitions import align_features

    per = max(1, math.ceil(sketch_size / max(1, len(parts))))
    names = getattr(scorer, "feature_names", None)
    out = []
    for p in parts:
        ev = read_events(p.path, format=p.format, key=p.key, entry_range=(p.start, min(p.stop, p.start + per)))
        out.append(np.asarray(scorer(align_features(ev, names)), dtype=np.float64))
    return np.concatenate(out)


def _warn_if_weighted(paths: Sequence[Any]) -> None:
    """The histogram method counts events; say so when the inputs carry event weights."""
    import h5py

    for p in paths:
        if str(p).endswith((".h5", ".hdf5", ".hdf")):
            try:
                with h5py.File(p, "r") as f:
                    w = f["weights"][:100_000] if "weights" in f else None
            except OSError:
                continue
            if w is not None and not np.all(w == 1):
                log.warning(
                    "%s holds event weights; the distributed (histogram) evaluation counts events "
                    "unweighted, unlike the in-process evaluation. Evaluate in-process (no scheduler) "
                    "for weighted metrics.", p,
                )
                return


def evaluate_files_by_histogram(
    model: Any,
    background: Sequence[str | os.PathLike[str]],
    signals: Mapping[str, Sequence[str | os.PathLike[str]]],
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    client: Any = None,
    chunk_size: int | None = None,
    partition_size: int | None = None,
    bins: int = DEFAULT_BINS,
    sketch_size: int = DEFAULT_SKETCH_SIZE,
    tail_fraction: float = DEFAULT_TAIL_FRACTION,
    fprs: Sequence[float] | None = None,
    engine: str = "auto",
    threads: int | None = None,
    format: str | None = None,
    key: str | None = None,
    progress: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` on background and signal files, from per-partition histograms.

    Scores are never gathered: each partition (a row range of a file, see
    :func:`hepad.scoring.plan_partitions`) is scored where it runs and returns a histogram
    (plus, for background, its highest scores). See the module docstring for the binning and
    what is exact.

    Parameters
    ----------
    model : path-like or BaseDetector
        Saved model directory, exported ``.onnx`` file, or fitted detector.
    background : sequence of path-like
        Background (SM) files or globs.
    signals : mapping of str to sequence of path-like
        Signal name -> its files or globs.
    scheduler, n_workers, client
        Where to run, as :func:`hepad.scoring.score_files` (``n_workers=0``: in-process).
    chunk_size, partition_size : int, optional
        Streaming chunk and partition size (defaults of :mod:`hepad.partitions`).
    bins : int
        Equal-population bins in the bulk of the score distribution.
    sketch_size : int
        Events scored on the client to place the bins.
    tail_fraction : float
        Fraction of the background whose highest scores are kept exactly (>= the loosest
        FPR asked for, so every working point is exact).
    fprs : sequence of float
        Working points (default 1e-3, 1e-4, 1e-5).
    engine, threads, format, key
        As :func:`hepad.scoring.score_files`.
    progress : callable, optional
        ``progress(ScoreProgress)`` after every partition of either pass.

    Returns
    -------
    dict
        ``{"method": "histogram", "n_background", "n_bins", "background_files",
        "signals": {name: metrics_from_histograms(...) + {"files": [...]}}}``.
    """
    from . import metrics as M
    from . import partitions as P
    from .engine import make_scorer

    fprs = tuple(M.DEFAULT_FPRS if fprs is None else fprs)
    if not 0 < tail_fraction < 1:
        raise ConfigError(f"tail_fraction must be in (0, 1), got {tail_fraction}.")
    if fprs and max(fprs) > tail_fraction:
        tail_fraction = max(fprs)
    if not signals:
        raise ConfigError("evaluate_files_by_histogram needs at least one signal: signals={'name': [files]}.")
    partition_size = int(partition_size or P.DEFAULT_PARTITION_SIZE)

    bkg_paths = P.expand_files(background)
    _warn_if_weighted(bkg_paths)
    bkg_parts = P.plan_partitions(bkg_paths, partition_size=partition_size, format=format, key=key)
    sig_parts: list[Any] = []
    sig_of: dict[int, str] = {}
    sig_files: dict[str, list[str]] = {}
    for name, files in signals.items():
        paths = P.expand_files([files] if isinstance(files, (str, os.PathLike)) else files)
        sig_files[name] = [str(p) for p in paths]
        for p in P.plan_partitions(paths, partition_size=partition_size, format=format, key=key):
            p = dataclasses.replace(p, index=len(sig_parts))
            sig_of[p.index] = name
            sig_parts.append(p)
    n_bkg = sum(p.n_events for p in bkg_parts)
    if n_bkg == 0:
        raise InputError("The background files hold no events.")
    k = min(MAX_TAIL, int(tail_fraction * n_bkg) + 1)

    local_scorer = make_scorer(model, engine=engine, threads=threads)
    sample = _sketch_sample(bkg_parts + sig_parts, local_scorer, sketch_size)
    bulk = histogram_edges(sample, bins)

    total_parts = len(bkg_parts) + len(sig_parts)
    total_events = n_bkg + sum(p.n_events for p in sig_parts)
    state = {"parts": 0, "events": 0}
    bkg_hist = np.zeros(bulk.size - 1, dtype=np.int64)
    top = np.empty(0)

    def tick(part: Any) -> None:
        state["parts"] += 1
        state["events"] += part.n_events
        if progress is not None:
            progress(_progress(state["parts"], total_parts, state["events"], total_events, part))

    def on_bkg(part: Any, result: Any) -> None:
        nonlocal bkg_hist, top
        hist, t, _ = result
        bkg_hist += hist
        top = _merge_top(top, t, k)
        tick(part)

    sig_hists: dict[str, np.ndarray] = {}

    def on_sig(part: Any, result: Any) -> None:
        hist, _ = result
        name = sig_of[part.index]
        sig_hists[name] = sig_hists.get(name, 0) + hist
        tick(part)

    in_process = client is None and scheduler is None and n_workers == 0
    if in_process:
        P.run_partitions(bkg_parts, on_bkg, scorer=local_scorer, chunk_size=chunk_size,
                         reduce=_reduce_background, reduce_args=(bulk, k))
        edges, bkg_counts = _refine_background(bulk, bkg_hist, top)
        P.run_partitions(sig_parts, on_sig, scorer=local_scorer, chunk_size=chunk_size,
                         reduce=_reduce_signal, reduce_args=(edges,))
    else:
        payload = P.pack_model(model)
        run = dict(payload=payload, engine=engine, threads=1 if threads is None else threads, chunk_size=chunk_size)
        with dask_client(client=client, scheduler=scheduler, n_workers=n_workers or None,
                         max_workers=total_parts) as c:
            P.run_partitions(bkg_parts, on_bkg, client=c, reduce=_reduce_background, reduce_args=(bulk, k),
                             tag="eval-bkg", **run)
            edges, bkg_counts = _refine_background(bulk, bkg_hist, top)
            P.run_partitions(sig_parts, on_sig, client=c, reduce=_reduce_signal, reduce_args=(edges,),
                             tag="eval-sig", **run)

    # Below the smallest kept score, bins hold background the tail does not resolve.
    exact_above = float(top[-1]) if top.size and top.size < n_bkg else -np.inf
    results: dict[str, Any] = {}
    for name in signals:
        if name not in sig_hists:
            raise InputError(f"signal {name!r}: its files hold no events.")
        res = metrics_from_histograms(bkg_counts, sig_hists[name], edges, fprs=fprs, exact_above=exact_above)
        res["files"] = sig_files[name]
        results[name] = res
    return {
        "method": "histogram",
        "n_background": n_bkg,
        "n_bins": int(edges.size - 1),
        "n_bulk_bins": int(bulk.size - 1),
        "tail_events": int(top.size),
        "background_files": [str(p) for p in bkg_paths],
        "signals": results,
    }


def _progress(parts_done: int, parts_total: int, events_done: int, events_total: int, part: Any) -> Any:
    from .partitions import ScoreProgress

    return ScoreProgress(parts_done, parts_total, events_done, events_total, 0, part)
