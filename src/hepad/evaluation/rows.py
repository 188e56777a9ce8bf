"""The metrics of one signal against background, and their flat table rows."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import metrics as M

__all__ = ["fpr_key", "signal_metrics", "metric_row", "describe_rule"]


def fpr_key(fpr: float) -> str:
    """Column name of a working point: ``tpr@1e-4``."""
    mant, exp = f"{fpr:.0e}".split("e")
    return f"tpr@{mant}e{int(exp)}"


def signal_metrics(
    background_scores: np.ndarray,
    signal_scores: np.ndarray,
    *,
    threshold: float | None = None,
    fprs: Sequence[float] = M.DEFAULT_FPRS,
    background_weights: np.ndarray | None = None,
    signal_weights: np.ndarray | None = None,
    auc_uncertainty: str = "hanley-mcneil",
    sic_min_background: int = M.SIC_MIN_BACKGROUND,
) -> dict[str, Any]:
    """All metrics of one signal against background, as a JSON-serialisable dict.

    Keys: ``auc``, ``auc_err``, ``pr_auc``, ``working_points`` (list of
    :meth:`hepad.metrics.WorkingPoint.to_dict`), ``max_sic``, ``at_threshold`` (when a
    threshold is given), ``n_signal``, ``n_background``.
    """
    y = np.r_[np.zeros(len(background_scores), np.int8), np.ones(len(signal_scores), np.int8)]
    s = np.r_[np.asarray(background_scores, np.float64), np.asarray(signal_scores, np.float64)]
    w = None
    if background_weights is not None or signal_weights is not None:
        bw = np.ones(len(background_scores)) if background_weights is None else background_weights
        sw = np.ones(len(signal_scores)) if signal_weights is None else signal_weights
        w = np.r_[bw, sw].astype(np.float64)
    out: dict[str, Any] = {
        "n_background": int(len(background_scores)),
        "n_signal": int(len(signal_scores)),
        "auc": M.roc_auc(y, s, sample_weight=w),
        "auc_err": M.roc_auc_uncertainty(y, s, sample_weight=w, method=auc_uncertainty),
        "auc_err_method": auc_uncertainty,
        "pr_auc": M.pr_auc(y, s, sample_weight=w),
        "working_points": [wp.to_dict() for wp in M.tpr_at_fpr(y, s, list(fprs), sample_weight=w, warn=False)],  # type: ignore[union-attr]
        "max_sic": M.max_sic(y, s, sample_weight=w, min_background=sic_min_background).to_dict(),
    }
    if threshold is not None and math.isfinite(threshold):
        out["at_threshold"] = M.threshold_metrics(y, s, threshold, sample_weight=w).to_dict()
    return out


def metric_row(detector: str, signal: str, m: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One flat row (the ``metrics.csv`` columns) of a :func:`signal_metrics` dict."""
    row: dict[str, Any] = {
        "detector": detector,
        "signal": signal,
        "n_signal": m["n_signal"],
        "n_background": m["n_background"],
        "auc": m["auc"],
        "auc_err": m["auc_err"],
        "pr_auc": m["pr_auc"],
    }
    for wp in m["working_points"]:
        k = fpr_key(wp["target_fpr"])
        row[k] = wp["tpr"]
        row[f"{k}_low"] = wp["tpr_low"]
        row[f"{k}_high"] = wp["tpr_high"]
        row[f"{k}_resolved"] = wp["resolved"]
    row["max_sic"] = m["max_sic"]["sic"]
    row["max_sic_tpr"] = m["max_sic"]["tpr"]
    if "at_threshold" in m:
        t = m["at_threshold"]
        row.update(
            threshold=t["threshold"], tpr_at_threshold=t["recall"], fpr_at_threshold=t["fpr"],
            trigger_rate_hz=t["trigger_rate_hz"], precision=t["precision"], f1=t["f1"], mcc=t["mcc"],
            accuracy=t["accuracy"], specificity=t["specificity"],
        )
    if extra:
        row.update(extra)
    return row


def describe_rule(rule: Mapping[str, Any] | None) -> str:
    """A threshold rule in words: "the 95th percentile of the background scores", "a 1 kHz rate"..."""
    from ..plotting import format_rate

    if not rule:
        return "a fixed cut"
    if "percentile" in rule:
        return f"the {rule['percentile']:g}th percentile of the background scores"
    if "sigma" in rule:
        return f"mean + {rule['sigma']:g} σ of the background scores"
    if "rate_hz" in rule:
        return f"a {format_rate(rule['rate_hz'])} background rate"
    if "fpr" in rule:
        return f"a background efficiency of {rule['fpr']:g}"
    return ", ".join(f"{k} = {v}" for k, v in rule.items())
