"""Pure metric functions for anomaly detection at trigger working points.

Every function takes truth labels (1 = signal/anomalous, 0 = background), scores (higher = more
anomalous) and optional per-event weights, and returns numbers or arrays; nothing is plotted,
logged to the terminal or written. Ties are handled as scikit-learn does: events with equal
scores enter the ROC curve together, as one diagonal step.

Conventions
-----------
- An event is *selected* (flagged anomalous) when ``score > threshold``, the rule of
  :meth:`hepad.detectors.base.BaseDetector.predict`. ``roc_curve`` returns scikit-learn's
  thresholds, which select ``score >= threshold``; both describe the same curve points.
- Binomial intervals are Clopper-Pearson ("exact", as ROOT's ``TEfficiency`` default) unless
  ``interval="wilson"`` is asked for; both are central intervals at ``confidence`` (default
  68.27 %, one sigma). With weights, counts are replaced by Kish effective counts
  ``(sum w)^2 / sum w^2``.
- A working point at background efficiency ``fpr`` is *resolved* when at least
  ``MIN_BACKGROUND_PER_FPR / fpr`` (effective) background events were available, so that about
  ``MIN_BACKGROUND_PER_FPR`` of them pass the cut; fewer make the threshold an extreme order
  statistic of a handful of events, and the TPR there is not reproducible.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError, InputError

log = logging.getLogger(__name__)

from .rates import COLLISION_RATE_HZ  # noqa: E402  (public here too: hepad.metrics.COLLISION_RATE_HZ)
#: Standard trigger working points (background efficiencies).
DEFAULT_FPRS = (1e-3, 1e-4, 1e-5)
#: Background events needed per unit of 1/FPR for a working point to count as resolved.
MIN_BACKGROUND_PER_FPR = 10.0
#: Points of the SIC curve whose FPR rests on fewer background events than this are ignored.
SIC_MIN_BACKGROUND = 10

__all__ = [
    "COLLISION_RATE_HZ",
    "DEFAULT_FPRS",
    "MIN_BACKGROUND_PER_FPR",
    "SIC_MIN_BACKGROUND",
    "WorkingPoint",
    "ThresholdMetrics",
    "MaxSIC",
    "roc_curve",
    "roc_auc",
    "roc_auc_uncertainty",
    "hanley_mcneil_se",
    "tpr_at_fpr",
    "threshold_at_fpr",
    "precision_recall_curve",
    "pr_auc",
    "sic_curve",
    "max_sic",
    "background_rejection",
    "trigger_rate_hz",
    "binomial_interval",
    "effective_count",
    "confusion_matrix",
    "threshold_metrics",
]


# ---------------------------------------------------------------------- input checks
def _check(y_true: Any, y_score: Any, sample_weight: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise InputError(
            f"y_true and y_score must be 1-D arrays of the same length, got shapes {y.shape} and {s.shape}."
        )
    if y.size == 0:
        raise InputError("No events to evaluate: y_true is empty.")
    if not np.isfinite(s).all():
        raise InputError(
            f"{int((~np.isfinite(s)).sum())} scores are NaN or infinite; drop those events first."
        )
    vals = np.unique(y)
    if not np.isin(vals, (0, 1)).all():
        raise InputError(f"y_true must hold 0 (background) and 1 (signal) only, got values {vals[:5].tolist()}.")
    y = y.astype(bool)
    if y.all() or not y.any():
        kind = "background" if y.all() else "signal"
        raise InputError(f"Metrics need both classes; there are no {kind} events (label {int(y.all()) ^ 1}).")
    w = None
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape != y.shape:
            raise InputError(f"sample_weight has shape {w.shape}, expected {y.shape}.")
        if not np.isfinite(w).all() or (w < 0).any():
            raise InputError("sample_weight must be finite and non-negative.")
        if w[y].sum() <= 0 or w[~y].sum() <= 0:
            raise InputError("The weights of the signal or of the background events sum to zero.")
    return y, s, w


def _binary_clf_curve(
    y: np.ndarray, s: np.ndarray, w: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (weighted) false and true positives at each distinct score, descending.

    Returns ``fps, tps, thresholds, raw_fps`` where ``raw_fps`` counts background events
    without weights (to judge how many events a point of the curve rests on).
    """
    order = np.argsort(s, kind="mergesort")[::-1]
    s = s[order]
    y = y[order]
    weight = np.ones_like(s) if w is None else w[order]
    # The last index of each run of equal scores: ties enter the curve together.
    distinct = np.flatnonzero(np.diff(s))
    ends = np.r_[distinct, y.size - 1]
    tps = np.cumsum(y * weight)[ends]
    fps = np.cumsum(~y * weight)[ends]
    raw_fps = np.cumsum(~y)[ends]
    return fps, tps, s[ends], raw_fps


# ---------------------------------------------------------------------- ROC
def roc_curve(
    y_true: Any, y_score: Any, *, sample_weight: Any = None, drop_intermediate: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic: false and true positive rates at every threshold.

    Parameters
    ----------
    y_true : array of {0, 1}, shape (n,)
        1 for signal (anomalous), 0 for background.
    y_score : array of float, shape (n,)
        Anomaly scores, higher = more anomalous.
    sample_weight : array of float, optional
        Per-event weights.
    drop_intermediate : bool
        Drop points on straight segments (as scikit-learn does); the curve is unchanged.

    Returns
    -------
    fpr, tpr, thresholds : ndarray
        As :func:`sklearn.metrics.roc_curve`: point ``i`` selects ``score >= thresholds[i]``;
        the first point is (0, 0) with threshold ``inf``.
    """
    y, s, w = _check(y_true, y_score, sample_weight)
    fps, tps, thr, _ = _binary_clf_curve(y, s, w)
    if drop_intermediate and fps.size > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    fps = np.r_[0.0, fps]
    tps = np.r_[0.0, tps]
    thr = np.r_[np.inf, thr]
    return fps / fps[-1], tps / tps[-1], thr


def roc_auc(y_true: Any, y_score: Any, *, sample_weight: Any = None) -> float:
    """Area under the ROC curve (trapezoids; a tie counts one half).

    Equal to the probability that a random signal event scores above a random background
    event, and to :func:`sklearn.metrics.roc_auc_score`.
    """
    fpr, tpr, _ = roc_curve(y_true, y_score, sample_weight=sample_weight, drop_intermediate=False)
    return float(np.trapezoid(tpr, fpr))


def effective_count(weights: Any) -> float:
    """Kish effective number of events, ``(sum w)^2 / sum w^2`` (the count itself without weights)."""
    w = np.asarray(weights, dtype=np.float64)
    sw2 = float((w * w).sum())
    return float(w.sum() ** 2 / sw2) if sw2 > 0 else 0.0


def hanley_mcneil_se(auc: float, n_signal: float, n_background: float) -> float:
    """Hanley-McNeil standard error of an AUC measured on ``n_signal`` and ``n_background`` events."""
    n1, n0 = float(n_signal), float(n_background)
    if n1 <= 0 or n0 <= 0:
        return float("nan")
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc * auc / (1.0 + auc)
    var = (auc * (1 - auc) + (n1 - 1) * (q1 - auc * auc) + (n0 - 1) * (q2 - auc * auc)) / (n1 * n0)
    return float(np.sqrt(max(var, 0.0)))


def roc_auc_uncertainty(
    y_true: Any,
    y_score: Any,
    *,
    sample_weight: Any = None,
    method: str = "hanley-mcneil",
    n_bootstrap: int = 200,
    random_state: int | None = 0,
) -> float:
    """Standard error of the ROC AUC.

    Parameters
    ----------
    method : {"hanley-mcneil", "bootstrap"}
        ``"hanley-mcneil"``: the closed form of Hanley & McNeil (Radiology 143, 1982), which
        assumes exponential-like score distributions; fast and usually within 10 % of the
        bootstrap. With weights the class sizes are Kish effective counts.
        ``"bootstrap"``: the standard deviation of the AUC over ``n_bootstrap`` resamplings
        drawn separately from signal and background (class sizes fixed), weights carried along.
    random_state : int or None
        Seed of the bootstrap resampling.

    Returns
    -------
    float
        One standard error.
    """
    y, s, w = _check(y_true, y_score, sample_weight)
    if method in ("hanley-mcneil", "hanley_mcneil", "hanley"):
        auc = roc_auc(y, s, sample_weight=w)
        n1 = float(y.sum()) if w is None else effective_count(w[y])
        n0 = float((~y).sum()) if w is None else effective_count(w[~y])
        return hanley_mcneil_se(auc, n1, n0)
    if method == "bootstrap":
        if n_bootstrap < 2:
            raise ConfigError(f"n_bootstrap must be at least 2, got {n_bootstrap}.")
        rng = np.random.default_rng(random_state)
        sig = np.flatnonzero(y)
        bkg = np.flatnonzero(~y)
        aucs = np.empty(n_bootstrap)
        for i in range(n_bootstrap):
            idx = np.concatenate([rng.choice(sig, sig.size), rng.choice(bkg, bkg.size)])
            ww = None if w is None else w[idx]
            if ww is not None and (ww[: sig.size].sum() <= 0 or ww[sig.size :].sum() <= 0):
                aucs[i] = np.nan
                continue
            aucs[i] = roc_auc(y[idx], s[idx], sample_weight=ww)
        return float(np.nanstd(aucs, ddof=1))
    raise ConfigError(f"Unknown AUC uncertainty method {method!r}; choose 'hanley-mcneil' or 'bootstrap'.")


# ---------------------------------------------------------------------- binomial intervals
def binomial_interval(
    k: float, n: float, *, confidence: float = 0.6827, method: str = "clopper-pearson"
) -> tuple[float, float]:
    """Central interval on an efficiency ``k / n``.

    Parameters
    ----------
    k, n : float
        Passing and total counts (may be non-integer effective counts from weights).
    confidence : float
        Coverage of the interval (0.6827 = one sigma).
    method : {"clopper-pearson", "wilson"}
        Clopper-Pearson is exact (never under-covers); Wilson is shorter and closed-form.
    """
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}.")
    if n <= 0:
        return (0.0, 1.0)
    k = min(max(float(k), 0.0), float(n))
    alpha = 1.0 - confidence
    if method in ("clopper-pearson", "clopper_pearson", "exact"):
        from scipy.special import betaincinv

        lo = 0.0 if k <= 0 else float(betaincinv(k, n - k + 1, alpha / 2))
        hi = 1.0 if k >= n else float(betaincinv(k + 1, n - k, 1 - alpha / 2))
        return (lo, hi)
    if method == "wilson":
        from statistics import NormalDist

        z = NormalDist().inv_cdf(1 - alpha / 2)
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))
    raise ConfigError(f"Unknown interval method {method!r}; choose 'clopper-pearson' or 'wilson'.")


# ---------------------------------------------------------------------- working points
@dataclass(frozen=True)
class WorkingPoint:
    """The signal efficiency of the cut that keeps a fraction ``target_fpr`` of background.

    Attributes
    ----------
    target_fpr : float
        The background efficiency asked for.
    threshold : float
        The cut; events with ``score > threshold`` are selected.
    tpr, tpr_low, tpr_high : float
        Signal efficiency and its binomial interval (see ``interval``).
    fpr : float
        Background efficiency actually reached (<= target; discrete with few events).
    n_background, n_signal : float
        (Effective) numbers of background and signal events.
    n_background_pass, n_signal_pass : int
        Unweighted numbers of events passing the cut.
    resolved : bool
        False when fewer than ``MIN_BACKGROUND_PER_FPR / target_fpr`` background events were
        available: the cut then rests on a handful of events (see ``warning``).
    """

    target_fpr: float
    threshold: float
    tpr: float
    tpr_low: float
    tpr_high: float
    fpr: float
    n_background: float
    n_signal: float
    n_background_pass: int
    n_signal_pass: int
    resolved: bool
    interval: str = "clopper-pearson"
    confidence: float = 0.6827
    warning: str = ""

    @property
    def trigger_rate_hz(self) -> float:
        """Rate of background passing the cut in a 40 MHz collision stream."""
        return trigger_rate_hz(self.fpr)

    @property
    def background_rejection(self) -> float:
        return float(background_rejection(self.fpr))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["trigger_rate_hz"] = self.trigger_rate_hz
        return out


def threshold_at_fpr(
    background_scores: Any, fpr: float, *, sample_weight: Any = None
) -> tuple[float, float]:
    """The lowest cut that selects at most a fraction ``fpr`` of background.

    Returns ``(threshold, achieved_fpr)``; ``score > threshold`` selects. The threshold is
    always one of the background scores (the maximum when even one event is too many).
    """
    if not 0 < fpr < 1:
        raise ConfigError(f"The background efficiency must be in (0, 1), got {fpr}.")
    b = np.asarray(background_scores, dtype=np.float64)
    if b.ndim != 1 or b.size == 0:
        raise InputError("threshold_at_fpr needs a non-empty 1-D array of background scores.")
    w = np.ones_like(b) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    order = np.argsort(b, kind="mergesort")[::-1]
    b, w = b[order], w[order]
    ends = np.r_[np.flatnonzero(np.diff(b)), b.size - 1]
    values = b[ends]  # distinct, descending
    cum = np.cumsum(w)[ends]  # weight with score >= values[j]
    total = cum[-1]
    # Cutting at values[j] (score > values[j]) passes cum[j-1]; take the largest j allowed.
    j = int(np.searchsorted(cum, fpr * total * (1 + 1e-12), side="right"))
    j = min(j, values.size - 1)
    passed = cum[j - 1] if j > 0 else 0.0
    return float(values[j]), float(passed / total)


def tpr_at_fpr(
    y_true: Any,
    y_score: Any,
    fpr: float | Any = DEFAULT_FPRS,
    *,
    sample_weight: Any = None,
    confidence: float = 0.6827,
    interval: str = "clopper-pearson",
    min_background_per_fpr: float = MIN_BACKGROUND_PER_FPR,
    warn: bool = True,
) -> WorkingPoint | list[WorkingPoint]:
    """Signal efficiency at a fixed background efficiency (a trigger working point).

    The cut is set on the background scores (:func:`threshold_at_fpr`): the lowest threshold
    that keeps at most ``fpr`` of background, so the trigger-rate budget is never exceeded. The
    TPR is the (weighted) fraction of signal scoring above it, with a binomial interval.

    Parameters
    ----------
    fpr : float or sequence of float
        Target background efficiencies; a sequence gives a list of results in the same order.
    confidence, interval
        See :func:`binomial_interval`.
    min_background_per_fpr : float
        A working point is flagged unresolved (``resolved=False``, and a warning is logged)
        when there are fewer than ``min_background_per_fpr / fpr`` (effective) background events.
    warn : bool
        Log the warning of an unresolved working point (it is always in the result).

    Returns
    -------
    WorkingPoint or list of WorkingPoint
    """
    y, s, w = _check(y_true, y_score, sample_weight)
    if np.ndim(fpr) > 0:
        return [
            tpr_at_fpr(y, s, float(f), sample_weight=w, confidence=confidence, interval=interval,
                       min_background_per_fpr=min_background_per_fpr, warn=warn)  # type: ignore[misc]
            for f in fpr
        ]
    fpr = float(fpr)
    b, sg = s[~y], s[y]
    wb = None if w is None else w[~y]
    ws = np.ones_like(sg) if w is None else w[y]
    thr, achieved = threshold_at_fpr(b, fpr, sample_weight=wb)
    sel = sg > thr
    tpr = float(ws[sel].sum() / ws.sum())
    n_sig = float(sg.size) if w is None else effective_count(ws)
    n_bkg = float(b.size) if w is None else effective_count(wb)
    lo, hi = binomial_interval(tpr * n_sig, n_sig, confidence=confidence, method=interval)
    needed = min_background_per_fpr / fpr
    resolved = n_bkg >= needed
    warning = ""
    if not resolved:
        warning = (
            f"FPR {fpr:.0e} is not resolved: {n_bkg:.0f} background events, need >= {needed:.0f} "
            f"for about {min_background_per_fpr:.0f} to pass the cut. Use more background events."
        )
        if warn:
            log.warning(warning)
    return WorkingPoint(
        target_fpr=fpr, threshold=thr, tpr=tpr, tpr_low=lo, tpr_high=hi, fpr=achieved,
        n_background=n_bkg, n_signal=n_sig, n_background_pass=int((b > thr).sum()),
        n_signal_pass=int(sel.sum()), resolved=resolved, interval=interval,
        confidence=confidence, warning=warning,
    )


# ---------------------------------------------------------------------- precision-recall
def precision_recall_curve(
    y_true: Any, y_score: Any, *, sample_weight: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at every distinct threshold, as :func:`sklearn.metrics.precision_recall_curve`.

    Returns ``precision, recall, thresholds`` with thresholds increasing (point ``i`` selects
    ``score >= thresholds[i]``) and a final point (precision 1, recall 0) without a threshold.
    """
    y, s, w = _check(y_true, y_score, sample_weight)
    fps, tps, thr, _ = _binary_clf_curve(y, s, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tps + fps > 0, tps / (tps + fps), 1.0)
    recall = tps / tps[-1]
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thr[::-1]


def pr_auc(y_true: Any, y_score: Any, *, sample_weight: Any = None) -> float:
    """Area under the precision-recall curve as average precision, ``sum (R_n - R_{n-1}) P_n``.

    Equal to :func:`sklearn.metrics.average_precision_score` (no interpolation). Depends on
    the signal fraction of the sample, unlike the ROC AUC.
    """
    precision, recall, _ = precision_recall_curve(y_true, y_score, sample_weight=sample_weight)
    return float(-np.sum(np.diff(recall) * precision[:-1]))


# ---------------------------------------------------------------------- SIC and rates
def background_rejection(fpr: Any) -> Any:
    """``1 / FPR``; infinite where FPR is 0."""
    f = np.asarray(fpr, dtype=np.float64)
    with np.errstate(divide="ignore"):
        out = np.where(f > 0, 1.0 / np.where(f > 0, f, 1.0), np.inf)
    return float(out) if out.ndim == 0 else out


def trigger_rate_hz(fpr: Any, collision_rate_hz: float = COLLISION_RATE_HZ) -> Any:
    """Background trigger rate of a cut that keeps a fraction ``fpr``: ``fpr x 40 MHz``."""
    out = np.asarray(fpr, dtype=np.float64) * collision_rate_hz
    return float(out) if out.ndim == 0 else out


def sic_curve(
    y_true: Any,
    y_score: Any,
    *,
    sample_weight: Any = None,
    min_background: int = SIC_MIN_BACKGROUND,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Significance improvement characteristic, ``SIC = TPR / sqrt(FPR)``.

    The SIC is the factor by which a cut improves ``S / sqrt(B)``. At tight cuts it is driven
    by the last few background events, where it fluctuates wildly, so only points whose FPR
    rests on at least ``min_background`` (unweighted) background events are returned.

    Returns
    -------
    fpr, tpr, sic, thresholds : ndarray
        Points with ``score >= thresholds[i]`` selected, FPR increasing.
    """
    y, s, w = _check(y_true, y_score, sample_weight)
    fps, tps, thr, raw_fps = _binary_clf_curve(y, s, w)
    keep = raw_fps >= max(int(min_background), 1)
    fpr = fps[keep] / fps[-1]
    tpr = tps[keep] / tps[-1]
    return fpr, tpr, tpr / np.sqrt(fpr), thr[keep]


@dataclass(frozen=True)
class MaxSIC:
    """The maximum of the SIC curve, and where it is."""

    sic: float
    tpr: float
    fpr: float
    threshold: float
    min_background: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def max_sic(
    y_true: Any, y_score: Any, *, sample_weight: Any = None, min_background: int = SIC_MIN_BACKGROUND
) -> MaxSIC:
    """The maximum SIC over points resting on at least ``min_background`` background events.

    See :func:`sic_curve`. Returns NaN fields when no point has that many background events.
    """
    fpr, tpr, sic, thr = sic_curve(y_true, y_score, sample_weight=sample_weight, min_background=min_background)
    if sic.size == 0:
        return MaxSIC(float("nan"), float("nan"), float("nan"), float("nan"), int(min_background))
    i = int(np.argmax(sic))
    return MaxSIC(float(sic[i]), float(tpr[i]), float(fpr[i]), float(thr[i]), int(min_background))


# ---------------------------------------------------------------------- at one threshold
def confusion_matrix(y_true: Any, y_pred: Any, *, sample_weight: Any = None) -> np.ndarray:
    """2x2 (weighted) counts ``[[TN, FP], [FN, TP]]``, rows true class, as scikit-learn."""
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    if y.shape != p.shape or y.ndim != 1:
        raise InputError(f"y_true and y_pred must be 1-D of the same length, got {y.shape} and {p.shape}.")
    w = np.ones(y.shape) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    cm = np.array(
        [[w[~y & ~p].sum(), w[~y & p].sum()], [w[y & ~p].sum(), w[y & p].sum()]]
    )
    return cm.astype(np.int64) if sample_weight is None else cm


@dataclass(frozen=True)
class ThresholdMetrics:
    """Classification metrics of the cut ``score > threshold``.

    ``confusion_matrix`` is ``[[TN, FP], [FN, TP]]`` (weighted when weights were given).
    Undefined ratios (e.g. precision with nothing selected) are 0, as scikit-learn's
    ``zero_division=0``.
    """

    threshold: float
    accuracy: float
    precision: float
    recall: float
    specificity: float
    f1: float
    mcc: float
    fpr: float
    confusion_matrix: list[list[float]] = field(default_factory=list)

    @property
    def sensitivity(self) -> float:
        return self.recall

    @property
    def trigger_rate_hz(self) -> float:
        return trigger_rate_hz(self.fpr)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["trigger_rate_hz"] = self.trigger_rate_hz
        return out


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else 0.0


def threshold_metrics(
    y_true: Any, y_score: Any, threshold: float, *, sample_weight: Any = None
) -> ThresholdMetrics:
    """Accuracy, precision, recall (sensitivity), specificity, F1, MCC and the confusion matrix.

    Events with ``score > threshold`` are predicted anomalous, as ``BaseDetector.predict``.
    """
    y, s, w = _check(y_true, y_score, sample_weight)
    cm = confusion_matrix(y, s > threshold, sample_weight=w).astype(np.float64)
    (tn, fp), (fn, tp) = cm
    total = cm.sum()
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = float((tp * tn - fp * fn) / denom) if denom > 0 else 0.0
    return ThresholdMetrics(
        threshold=float(threshold),
        accuracy=_ratio(tp + tn, total),
        precision=precision,
        recall=recall,
        specificity=_ratio(tn, tn + fp),
        f1=_ratio(2 * precision * recall, precision + recall),
        mcc=mcc,
        fpr=_ratio(fp, fp + tn),
        confusion_matrix=cm.tolist() if sample_weight is not None else cm.astype(np.int64).tolist(),
    )
