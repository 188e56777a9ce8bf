"""Precision scans of the hls4ml export: bit budget against ROC AUC, TPR and resources, float as reference."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .hls import _parse_precision, export_hls

__all__ = ["precision_scan", "plot_precision_scan", "SCAN_PRECISIONS", "SCAN_TOTAL_BITS"]

#: Uniform precisions for :func:`precision_scan` (``precisions=``): integer bits 6, total bits varied.
SCAN_PRECISIONS = tuple(f"ap_fixed<{w},6>" for w in (8, 10, 12, 14, 16, 18, 20, 24))
#: Default bit budgets of :func:`precision_scan` (per-layer types sized on the data).
SCAN_TOTAL_BITS = (8, 10, 12, 14, 16, 18, 20)


def precision_scan(
    detector: Any,
    background: Any,
    signals: Mapping[str, Any],
    work_dir: str | os.PathLike[str],
    *,
    total_bits: Sequence[int] = SCAN_TOTAL_BITS,
    precisions: Sequence[str] | None = None,
    data: Any = None,
    reuse_factor: int = 1,
    fold_preprocessing: bool = True,
    fpr: float = 1e-4,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """Score background and signals at several bit budgets and compare with float.

    By default each design has per-layer types sized on ``data`` (default: ``background``) at
    ``total_bits`` W = 8 ... 20 (``precision="auto"``); with ``precisions`` each design has one
    type for every layer instead. For each design and signal: ROC AUC and TPR at ``fpr`` (each
    model cut on its own background scores), their loss relative to float, the score
    correlation on background and the resource estimate.

    Parameters
    ----------
    detector : BaseDetector
        A fitted torch detector.
    background, signals : events
        Background events and ``{name: events}`` signals (EventSet or arrays).
    work_dir : path-like
        Where the hls4ml projects are written (one sub-directory per design).
    total_bits : sequence of int
        Bit budgets of the automatic types.
    precisions : sequence of str, optional
        Uniform fixed-point types to scan instead (e.g. ``ap_fixed<W,6>``).
    data : events, optional
        Background that sizes the automatic types (default: ``background``).
    fpr : float
        Background efficiency of the TPR working point (the trigger's target accept fraction).
    progress : callable, optional
        ``progress(i, n, label)`` after each design.

    Returns
    -------
    list of dict
        One row per (design, signal): ``precision``, ``total_bits``, ``signal``, ``auc``,
        ``auc_float``, ``auc_loss``, ``tpr``, ``tpr_float``, ``tpr_loss``, ``fpr``, ``corr``,
        ``dsp``, ``lut``, ``latency_cycles``.
    """
    from ..detectors.base import as_features

    Xb = as_features(background, "background")
    Xs = {name: as_features(x, name) for name, x in signals.items()}
    sizing = Xb if data is None else as_features(data, "data")
    float_b = detector.score_samples(Xb).astype(np.float64)
    float_s = {n: detector.score_samples(x).astype(np.float64) for n, x in Xs.items()}
    designs: list[tuple[str, int, dict]] = []
    if precisions:
        for prec in precisions:
            designs.append((prec, _parse_precision(prec)[0], dict(precision=prec)))
    else:
        for w in total_bits:
            designs.append((f"auto<{int(w)}>", int(w), dict(precision="auto", total_bits=int(w), data=sizing,
                                                            signals=Xs)))
    rows: list[dict[str, Any]] = []
    work = Path(work_dir)
    for i, (label, width, kwargs) in enumerate(designs):
        tag = re.sub(r"[^0-9a-z]+", "_", label.lower()).strip("_")
        model = export_hls(detector, work / tag, reuse_factor=reuse_factor, fold_preprocessing=fold_preprocessing,
                           target_fraction=fpr if "data" in kwargs else None, **kwargs)
        hb = model.predict(Xb).astype(np.float64)
        corr = float(np.corrcoef(hb, float_b)[0, 1]) if np.std(hb) > 0 else float("nan")
        est = model.estimate
        for name, xs in Xs.items():
            hs = model.predict(xs).astype(np.float64)
            auc_f, tpr_f = _auc_tpr(float_b, float_s[name], fpr)
            auc_h, tpr_h = _auc_tpr(hb, hs, fpr)
            rows.append(dict(precision=label, total_bits=width, signal=name, auc=auc_h, auc_float=auc_f,
                             auc_loss=auc_f - auc_h, tpr=tpr_h, tpr_float=tpr_f, tpr_loss=tpr_f - tpr_h,
                             fpr=fpr, corr=corr, dsp=est.dsp, lut=est.lut, latency_cycles=est.latency_cycles))
        if progress is not None:
            progress(i + 1, len(designs), label)
    return rows


def _auc_tpr(bkg: np.ndarray, sig: np.ndarray, fpr: float) -> tuple[float, float]:
    from ..metrics import roc_auc, threshold_at_fpr

    y = np.r_[np.zeros(len(bkg)), np.ones(len(sig))]
    auc = roc_auc(y, np.r_[bkg, sig])
    cut = threshold_at_fpr(bkg, fpr)[0]
    return float(auc), float((sig > cut).mean())


def plot_precision_scan(rows: Sequence[Mapping[str, Any]], ax: Any = None, metric: str = "auc_loss") -> Any:
    """Plot ``metric`` (``auc_loss`` or ``tpr_loss``) against total bits, one line per signal."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots()
    for name in sorted({r["signal"] for r in rows}):
        pts = sorted((r["total_bits"], r[metric]) for r in rows if r["signal"] == name)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("total bits per type W [bits]")
    ax.set_ylabel({"auc_loss": "AUC loss vs float [AUC units]", "tpr_loss": "TPR loss vs float [efficiency]"}.get(metric, metric))
    ax.legend()
    return ax
