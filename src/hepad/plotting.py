"""Plot functions in the mplhep style. Each takes an ``ax`` (or ``axes``), draws, and returns it.

Nothing here writes files: :mod:`hepad.evaluation` builds the figures and writes them (through
:mod:`hepad._write`). Use :func:`style` to get the CMS or ATLAS look::

    import matplotlib.pyplot as plt
    from hepad import plotting
    with plotting.style("CMS"):
        fig, ax = plt.subplots(layout="constrained")
        plotting.plot_roc({"ato4l": (fpr, tpr)}, ax=ax)
        plotting.experiment_label(ax)

Conventions kept by every function: legends sit outside the axes (never over the data), axes
stop where the data stop (a ROC curve of 200 background events ends at FPR = 1/200, not at
1e-5), every axis names its quantity and unit, histograms carry their statistical errors and
show under- and overflow bins, and efficiency bands are 68 % Clopper-Pearson intervals.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from . import _layout as L
from .errors import ConfigError

__all__ = [
    "style",
    "experiment_label",
    "legend_outside",
    "format_rate",
    "clopper_pearson_band",
    "plot_history",
    "plot_score_distributions",
    "plot_roc",
    "plot_efficiency_vs_rate",
    "plot_pr",
    "plot_sic",
    "plot_confusion_matrix",
    "plot_embedding",
    "plot_feature_grid",
    "plot_slot_contributions",
    "plot_metric_vs_time",
    "plot_matrix",
    "physics_features",
    "slot_contributions",
    "L1_ACCEPT_RATE_HZ",
]

EXPERIMENTS = ("CMS", "ATLAS", "LHCb", "ALICE")
#: Working points marked on ROC curves.
WORKING_POINTS = (1e-5, 1e-4, 1e-3)
#: Level-1 accept rate of CMS and ATLAS in Run 2/3 (~100 kHz): the whole L1 output bandwidth,
#: shared by every trigger seed. A cut passing more background than this cannot be a trigger.
L1_ACCEPT_RATE_HZ = 100e3
#: One text scale for every figure (the mplhep styles use 26 pt on a 10-inch figure).
FONT_SIZE = 16
#: Where the label's texts are tagged, so tests (and users) can find them.
LABEL_GID = "hepad-experiment-label"
_BKG_COLOR = "0.35"
_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*")


@contextlib.contextmanager
def style(experiment: str = "CMS") -> Iterator[None]:
    """Context manager applying the mplhep style of ``experiment`` (CMS, ATLAS, LHCb, ALICE).

    On top of the mplhep style: one font size for every figure (:data:`FONT_SIZE`), frameless
    legends, and a math font that exists everywhere (mplhep's "custom" math set falls back to a
    ``cursive`` family that most Linux machines lack, and matplotlib then logs a "findfont"
    warning per figure). Matplotlib's global style is restored on exit.
    """
    import matplotlib.pyplot as plt
    import mplhep

    key = experiment.upper() if experiment.upper() in ("CMS", "ATLAS", "ALICE") else experiment
    if key not in EXPERIMENTS:
        raise ConfigError(f"Unknown plot style {experiment!r}; choose one of {', '.join(EXPERIMENTS)}.")
    overrides = {
        "font.size": FONT_SIZE,
        "legend.frameon": False,
        "legend.fontsize": "small",
        "legend.title_fontsize": "small",
        "mathtext.fontset": "dejavusans",
        "font.cursive": ["DejaVu Sans"],
        "font.fantasy": ["DejaVu Sans"],
        "xtick.major.size": 8, "ytick.major.size": 8, "xtick.minor.size": 4, "ytick.minor.size": 4,
    }
    with plt.style.context([getattr(mplhep.style, key), overrides]):
        yield


def experiment_label(ax: Any, experiment: str = "CMS", *, data: bool = False, com: float | None = 13) -> Any:
    """Add the plot label above the axes: "**hepad** *Simulation*" (or *Open Data*) and "(13 TeV)".

    ``experiment`` picks the mplhep style only. The label names the tool, not a collaboration:
    plots made with hepad are not CMS or ATLAS results, and an experiment's name on them would
    claim otherwise.

    The layout is mplhep's (bold tool name, italic status, 1.3x size, energy at the right), but
    the italic text is anchored to the bold one's bounding box at draw time instead of at an axes
    fraction computed once: ``mplhep.label.exp_label`` measures the text before a layout engine
    resizes the axes, so in constrained-layout figures the two overlapped.
    """
    import matplotlib as mpl

    base = mpl.rcParams["font.size"]
    bold = ax.text(0.0, 1.0, "hepad", transform=ax.transAxes, ha="left", va="bottom", fontsize=1.3 * base,
                   fontweight="bold", gid=LABEL_GID)
    bold.set_in_layout(True)
    status = ax.annotate("Open Data" if data else "Simulation", xy=(1.0, 0.0), xycoords=bold,
                         xytext=(0.35 * base, 0.0), textcoords="offset points", ha="left", va="bottom",
                         fontsize=base, fontstyle="italic", gid=LABEL_GID)
    status.set_in_layout(True)
    if com:
        ax.text(1.0, 1.0, f"({com:g} TeV)", transform=ax.transAxes, ha="right", va="bottom", fontsize=base,
                gid=LABEL_GID).set_in_layout(True)
    return ax


def legend_outside(ax: Any, **kwargs: Any) -> Any:
    """A legend to the right of the axes, where it cannot cover data; returns the legend (or None)."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    kwargs.setdefault("loc", "upper left")
    kwargs.setdefault("bbox_to_anchor", (1.02, 1.0))
    kwargs.setdefault("borderaxespad", 0.0)
    return ax.legend(handles, labels, **kwargs)


def clopper_pearson_band(k: Any, n: Any, confidence: float = 0.6827) -> tuple[np.ndarray, np.ndarray]:
    """Central Clopper-Pearson interval on efficiencies ``k / n``, element-wise over arrays.

    The quantiles of the beta distribution (``scipy.stats.beta.ppf``), computed with the same
    ``scipy.special.betaincinv`` as :func:`hepad.metrics.binomial_interval` (importing
    ``scipy.stats`` costs seconds and adds nothing here). ``k`` and ``n`` may be effective
    (non-integer) counts from weighted events.
    """
    from scipy.special import betaincinv

    k = np.asarray(k, dtype=np.float64)
    n = np.broadcast_to(np.asarray(n, dtype=np.float64), k.shape)
    k = np.clip(k, 0.0, n)
    a = (1.0 - confidence) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, betaincinv(np.maximum(k, 1e-12), n - k + 1, a), 0.0)
        hi = np.where(k < n, betaincinv(k + 1, np.maximum(n - k, 1e-12), 1 - a), 1.0)
    return np.nan_to_num(lo, nan=0.0), np.nan_to_num(hi, nan=1.0)


def _colors(n: int) -> list[Any]:
    """``n`` colours of the active style's cycle, without its greys (grey is the background's)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb

    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    vivid = [c for c in cycle if np.ptp(to_rgb(c)) > 0.15] or list(cycle)
    return [vivid[i % len(vivid)] for i in range(n)]


def format_rate(hz: float) -> str:
    """A rate with its unit: ``4 kHz``, ``2.37 MHz``, ``400 Hz`` (three significant digits)."""
    if not isinstance(hz, (int, float)) or hz != hz:
        return "–"
    for unit, f in (("MHz", 1e6), ("kHz", 1e3)):
        if hz >= f:
            return f"{hz / f:.3g} {unit}"
    return f"{hz:.3g} Hz"


def _fmt_fpr(f: float) -> str:
    return f"{f:.0e}".replace("e-0", "e-")


def _curve_parts(curve: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(fpr, tpr, tpr_low, tpr_high) from a ``(fpr, tpr)`` / 4-tuple or a curves dict."""
    if isinstance(curve, Mapping):
        lo, hi = curve.get("tpr_low"), curve.get("tpr_high")
        return (np.asarray(curve["fpr"], float), np.asarray(curve["tpr"], float),
                None if lo is None else np.asarray(lo, float), None if hi is None else np.asarray(hi, float))
    parts = list(curve)
    if len(parts) == 2:
        return np.asarray(parts[0], float), np.asarray(parts[1], float), None, None
    if len(parts) == 4:
        return tuple(np.asarray(p, float) for p in parts)  # type: ignore[return-value]
    raise ConfigError(f"A ROC curve is (fpr, tpr) or (fpr, tpr, tpr_low, tpr_high); got {len(parts)} arrays.")


# ---------------------------------------------------------------------- training
def plot_history(history: Mapping[str, Sequence[float]], ax: Any, *, legend: bool = True, title: str | None = None) -> Any:
    """Training and validation loss per epoch (log y when the loss spans a decade or more).

    ``history`` is a detector's ``history_``: ``{"epoch": [...], "train_loss": [...],
    "val_loss": [...]}`` (``loss``/``val_loss`` keys are accepted too). The best validation
    epoch is marked; when it is the last one, the line says "not converged".
    """
    train = list(history.get("train_loss") or history.get("loss") or [])
    val = list(history.get("val_loss") or [])
    epochs = list(history.get("epoch") or range(1, len(train) + 1))
    if not train:
        ax.text(0.5, 0.5, "no training history", ha="center", va="center", transform=ax.transAxes)
        return ax
    x = np.asarray(epochs[: len(train)], dtype=float)
    if x.size and x[0] == 0:
        x = x + 1  # epochs are counted from 1 on the axis
    ax.plot(x, train, "o-", ms=3, label="Training")
    if val and any(v is not None for v in val):
        vv = np.asarray([np.nan if v is None else v for v in val], dtype=float)
        ax.plot(x[: len(val)], vv, "s--", ms=3, label="Validation")
        best = int(np.nanargmin(vv))
        note = " – not converged" if best == len(vv) - 1 and len(vv) > 1 else ""
        ax.axvline(x[best], color="0.6", ls=":", label=f"Best epoch ({x[best]:.0f}){note}")
    vals = np.asarray([v for v in train + val if v is not None and v > 0], dtype=float)
    if vals.size and vals.max() / vals.min() > 10:
        ax.set_yscale("log")
    ax.set_xlim(x.min() - 0.5, x.max() + 0.5)
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss [a.u.]")
    if legend:
        legend_outside(ax, title=title)
    return ax


# ---------------------------------------------------------------------- histograms
def _hist(values: np.ndarray, edges: np.ndarray, weights: np.ndarray | None = None) -> Any:
    """A ``hist.Hist`` of ``values`` normalised to unit sum (flow bins included), with sum-w² errors."""
    import hist

    v = np.asarray(values, dtype=float)
    w = np.ones(v.size) if weights is None else np.asarray(weights, dtype=float)
    ok = np.isfinite(v)
    v, w = v[ok], w[ok]
    h = hist.Hist(hist.axis.Variable(edges), storage=hist.storage.Weight())
    total = w.sum()
    if total > 0:
        h.fill(v, weight=w / total)
    return h


def _histplot(ax: Any, h: Any, *, fill: bool = False, color: Any = None, label: str = "", lw: float = 1.8,
              flow: str = "show") -> None:
    """``mplhep.histplot`` of a normalised hist: grey fill for background, steps with errors otherwise.

    ``flow="show"`` draws the under- and overflow as extra bins beyond the axis break;
    ``"sum"`` (for log x axes, where mplhep cannot place the extra bins) adds them to the edge bins.
    """
    import mplhep

    if h.values(flow=True).sum() <= 0:
        return
    if fill:
        mplhep.histplot(h, ax=ax, histtype="fill", flow=flow, color=_BKG_COLOR, alpha=0.35, label=label)
    else:
        mplhep.histplot(h, ax=ax, histtype="step", flow=flow, yerr=True, color=color, lw=lw, label=label)


def _log_floor(ax: Any, hs: Sequence[Any]) -> None:
    """A log y axis from just below the smallest filled bin (empty bins would send it to 0)."""
    vals = np.concatenate([h.values(flow=True) for h in hs]) if hs else np.array([])
    pos = vals[vals > 0]
    if pos.size:
        ax.set_yscale("log")
        ax.set_ylim(pos.min() / 3, pos.max() * 3)


def plot_score_distributions(
    background: np.ndarray,
    signals: Mapping[str, np.ndarray],
    ax: Any,
    *,
    threshold: float | None = None,
    bins: int | None = None,
    background_label: str = "SM background",
    log_x: bool | None = None,
    weights: Mapping[str, np.ndarray | None] | None = None,
) -> Any:
    """Anomaly-score histograms (fraction of events per bin, log y) with errors and flow bins.

    The bins span the background's and signals' bulk (0.1 to 99.9 % quantiles); the rest lands
    in the under- and overflow bins drawn at either end (added to the edge bins on a log x axis).
    ``bins`` defaults to about 2 sqrt(N) of the smallest sample, between 10 and 60. ``log_x`` (default: automatic, when all
    scores are positive and span > 2 decades) bins in log(score). ``weights`` maps
    ``background_label`` and signal names to per-event weights. The dashed line is ``threshold``.
    """
    weights = dict(weights or {})
    allv = np.concatenate([np.asarray(background, float)] + [np.asarray(v, float) for v in signals.values()])
    allv = allv[np.isfinite(allv)]
    lo, hi = (float(np.quantile(allv, 0.001)), float(np.quantile(allv, 0.999))) if allv.size else (0.0, 1.0)
    if bins is None:
        n_min = min([len(background)] + [len(v) for v in signals.values()])
        bins = int(np.clip(2 * np.sqrt(n_min), 10, 60))
    if log_x is None:
        log_x = lo > 0 and hi / lo > 100
    if log_x and lo > 0:
        edges = np.geomspace(lo, hi, bins + 1)
    else:
        log_x = False
        pad = 1e-9 if hi == lo else 0.0
        edges = np.linspace(lo - pad, hi + pad, bins + 1)
    flow = "sum" if log_x else "show"
    hs = [_hist(background, edges, weights.get(background_label))]
    _histplot(ax, hs[0], fill=True, label=background_label, flow=flow)
    for (name, s), c in zip(signals.items(), _colors(len(signals))):
        hs.append(_hist(s, edges, weights.get(name)))
        _histplot(ax, hs[-1], color=c, label=name, flow=flow)
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="k", ls="--", lw=1.2, label="Threshold")
    if log_x:
        ax.set_xscale("log")
    _log_floor(ax, hs)
    ax.set_xlabel("Anomaly score [a.u.]")
    ax.set_ylabel("Fraction of events / bin")
    legend_outside(ax)
    return ax


# ---------------------------------------------------------------------- curves
def _fpr_range(curves: Mapping[str, Any], min_fpr: float | None) -> float:
    """The smallest FPR any curve reaches (> 0): where the axis stops."""
    fmin = min_fpr
    for curve in curves.values():
        fpr = _curve_parts(curve)[0]
        pos = fpr[fpr > 0]
        if pos.size:
            fmin = float(pos.min()) if fmin is None else min(fmin, float(pos.min()))
    return fmin if fmin is not None else 1e-3


def plot_roc(
    curves: Mapping[str, Any],
    ax: Any,
    *,
    aucs: Mapping[str, float] | None = None,
    working_points: Sequence[float] = WORKING_POINTS,
    min_fpr: float | None = None,
    resolved_fpr: float | None = None,
    title: str | None = None,
    variant: str = "fpr",
    collision_rate_hz: float | None = None,
) -> Any:
    """ROC curves with the trigger working points marked and Clopper-Pearson bands on the TPR.

    Parameters
    ----------
    curves : mapping label -> (fpr, tpr) or (fpr, tpr, tpr_low, tpr_high) or a curves dict
        ``EvaluationResult.curves(signal)`` gives the dict (with its 68 % band).
    aucs : mapping, optional
        Adds the AUC to each legend entry.
    working_points : sequence of float
        Background efficiencies marked by lines (only those inside the data range).
    min_fpr : float, optional
        Lower end of the FPR axis (default: the smallest non-zero FPR of the curves, 1/N).
    resolved_fpr : float, optional
        FPR below which a point rests on fewer than 10 background events; that part is shaded.
    variant : {"fpr", "rejection"}
        ``"fpr"``: TPR against FPR on a log x axis. ``"rejection"``: background rejection
        1/FPR on a log y axis against the signal efficiency (the usual HEP view).
    collision_rate_hz : float, optional
        Adds each working point's trigger rate (FPR x rate) to its label.
    """
    if variant not in ("fpr", "rejection"):
        raise ConfigError(f"ROC variant {variant!r}: choose 'fpr' or 'rejection'.")
    fmin = _fpr_range(curves, min_fpr) / 1.5
    colors = _colors(len(curves))
    for (name, curve), c in zip(curves.items(), colors):
        fpr, tpr, lo, hi = _curve_parts(curve)
        ok = fpr > 0
        label = name if not aucs or name not in aucs else f"{name} (AUC = {aucs[name]:.3f})"
        if variant == "fpr":
            ax.plot(fpr[ok], tpr[ok], color=c, lw=1.8, label=label, drawstyle="steps-post")
            if lo is not None and hi is not None:
                ax.fill_between(fpr[ok], lo[ok], hi[ok], color=c, alpha=0.22, lw=0, step="post")
        else:
            ax.plot(tpr[ok], 1 / fpr[ok], color=c, lw=1.8, label=label, drawstyle="steps-pre")
            if lo is not None and hi is not None:
                ax.fill_betweenx(1 / fpr[ok], lo[ok], hi[ok], color=c, alpha=0.22, lw=0, step="pre")
    grid = np.geomspace(fmin, 1, 200)
    shown_wp = [wp for wp in working_points if fmin <= wp <= 1]
    if variant == "fpr":
        ax.plot(grid, grid, ls=":", color="0.6", label="Random")
        if resolved_fpr is not None and resolved_fpr > fmin:
            ax.axvspan(fmin, min(resolved_fpr, 1), color="0.93", zorder=0, lw=0, label="< 10 bkg. events")
        for wp in shown_wp:
            ax.axvline(wp, color="0.5", ls="--", lw=0.8)
            txt = _fmt_fpr(wp) + (f" ({format_rate(wp * collision_rate_hz)})" if collision_rate_hz else "")
            ax.text(wp * 1.12, 0.03, txt, ha="left", va="bottom", rotation=90, fontsize="x-small",
                    transform=ax.get_xaxis_transform(), color="0.3")
        ax.set_xscale("log")
        ax.set_xlim(fmin, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("Background efficiency (FPR)")
        ax.set_ylabel("Signal efficiency (TPR)")
    else:
        ax.plot(grid, 1 / grid, ls=":", color="0.6", label="Random")
        if resolved_fpr is not None and resolved_fpr > fmin:
            ax.axhspan(1 / min(resolved_fpr, 1), 1 / fmin, color="0.93", zorder=0, lw=0, label="< 10 bkg. events")
        for wp in shown_wp:
            ax.axhline(1 / wp, color="0.5", ls="--", lw=0.8)
            txt = _fmt_fpr(wp) + (f" ({format_rate(wp * collision_rate_hz)})" if collision_rate_hz else "")
            ax.text(0.02, 1 / wp * 1.08, txt, ha="left", va="bottom", fontsize="x-small",
                    transform=ax.get_yaxis_transform(), color="0.3")
        ax.set_yscale("log")
        ax.set_ylim(1, 1 / fmin)
        ax.set_xlim(0, 1.0)
        ax.set_xlabel("Signal efficiency (TPR)")
        ax.set_ylabel("Background rejection (1 / FPR)")
    legend_outside(ax, title=title)
    return ax


def plot_efficiency_vs_rate(
    curves: Mapping[str, Any],
    ax: Any,
    *,
    collision_rate_hz: float | None = None,
    l1_accept_hz: float = L1_ACCEPT_RATE_HZ,
    working_points: Sequence[float] = WORKING_POINTS,
    resolved_fpr: float | None = None,
    title: str | None = None,
) -> Any:
    """Signal efficiency against the background accept rate in Hz (FPR x collision rate).

    The rate is what a trigger menu budgets: the region above the Level-1 accept rate
    (``l1_accept_hz``, 100 kHz) is hatched, since a cut passing that much background would take
    the whole L1 output. ``curves`` as :func:`plot_roc` (with bands when given).
    """
    if collision_rate_hz is None:
        from .rates import COLLISION_RATE_HZ

        collision_rate_hz = COLLISION_RATE_HZ
    fmin = _fpr_range(curves, None) / 1.5
    for (name, curve), c in zip(curves.items(), _colors(len(curves))):
        fpr, tpr, lo, hi = _curve_parts(curve)
        ok = fpr > 0
        rate = fpr[ok] * collision_rate_hz
        ax.plot(rate, tpr[ok], color=c, lw=1.8, label=name, drawstyle="steps-post")
        if lo is not None and hi is not None:
            ax.fill_between(rate, lo[ok], hi[ok], color=c, alpha=0.22, lw=0, step="post")
    xmin, xmax = fmin * collision_rate_hz, collision_rate_hz
    if l1_accept_hz < xmax:
        ax.axvspan(max(l1_accept_hz, xmin), xmax, facecolor="none", edgecolor="0.7", hatch="//", lw=0, zorder=0,
                   label=f"Above the L1 accept rate ({format_rate(l1_accept_hz)})")
    if resolved_fpr is not None and resolved_fpr > fmin:
        ax.axvspan(xmin, resolved_fpr * collision_rate_hz, color="0.93", zorder=0, lw=0, label="< 10 bkg. events")
    for wp in working_points:
        r = wp * collision_rate_hz
        if xmin <= r <= xmax:
            ax.axvline(r, color="0.5", ls="--", lw=0.8)
            ax.text(r * 1.12, 0.97, format_rate(r), ha="left", va="top", rotation=90, fontsize="x-small",
                    transform=ax.get_xaxis_transform(), color="0.3")
    ax.set_xscale("log")
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"Background accept rate [Hz] (FPR × {format_rate(collision_rate_hz)})")
    ax.set_ylabel("Signal efficiency (TPR)")
    legend_outside(ax, title=title)
    return ax


def plot_pr(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], ax: Any, *, aps: Mapping[str, float] | None = None
) -> Any:
    """Precision against recall; ``curves`` maps a label to ``(precision, recall)``."""
    for (name, (precision, recall)), c in zip(curves.items(), _colors(len(curves))):
        label = name if not aps or name not in aps else f"{name} (AP = {aps[name]:.3f})"
        ax.step(recall, precision, where="post", color=c, lw=1.8, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("Recall (signal efficiency)")
    ax.set_ylabel("Precision (signal purity)")
    legend_outside(ax)
    return ax


def plot_sic(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], ax: Any, *, min_background: int | None = None
) -> Any:
    """Significance improvement (TPR/sqrt(FPR)) against signal efficiency.

    ``curves`` maps a label to ``(tpr, sic)``; points resting on too few background events
    should already be removed (see :func:`hepad.metrics.sic_curve`).
    """
    for (name, (tpr, sic)), c in zip(curves.items(), _colors(len(curves))):
        sic = np.asarray(sic)
        if sic.size == 0:
            continue
        i = int(np.argmax(sic))
        ax.plot(tpr, sic, color=c, lw=1.8, label=f"{name} (max {sic[i]:.1f})")
        ax.plot([tpr[i]], [sic[i]], "o", color=c, ms=5)
    ax.axhline(1.0, color="0.6", ls=":")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("Signal efficiency (TPR)")
    ax.set_ylabel("SIC = TPR / √FPR")
    title = f"≥ {min_background} bkg. events per point" if min_background else None
    legend_outside(ax, title=title)
    return ax


# ---------------------------------------------------------------------- matrices
def plot_matrix(
    matrix: np.ndarray,
    ax: Any,
    *,
    xlabels: Sequence[str],
    ylabels: Sequence[str],
    fmt: str = "{:.2f}",
    cmap: str = "Blues",
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar_label: str = "",
    annotate_size: Any = "small",
) -> Any:
    """A heatmap with every cell annotated (confusion matrices, agreement, slot contributions)."""
    m = np.asarray(matrix, dtype=float)
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="equal" if m.shape[0] == m.shape[1] else "auto")
    rotate = m.shape[1] > 4 or sum(len(str(x)) for x in xlabels) > 24
    ax.set_xticks(range(m.shape[1]), list(xlabels), rotation=45 if rotate else 0,
                  ha="right" if rotate else "center", rotation_mode="anchor")
    ax.set_yticks(range(m.shape[0]), list(ylabels))
    ax.minorticks_off()
    ax.tick_params(top=False, right=False)
    finite = m[np.isfinite(m)]
    lo = vmin if vmin is not None else (finite.min() if finite.size else 0)
    hi = vmax if vmax is not None else (finite.max() if finite.size else 1)
    mid = (lo + hi) / 2
    if m.size <= 400:
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, fmt.format(m[i, j]), ha="center", va="center", fontsize=annotate_size,
                        color="white" if (m[i, j] > mid if cmap != "viridis" else m[i, j] < mid) else "black")
    cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    if colorbar_label:
        cb.set_label(colorbar_label)
    return ax


def plot_confusion_matrix(cm: Any, ax: Any, *, normalize: bool = True) -> Any:
    """The 2x2 confusion matrix ``[[TN, FP], [FN, TP]]``; ``normalize`` divides each row (true class)."""
    cm = np.asarray(cm, dtype=float)
    shown = cm / np.where(cm.sum(axis=1, keepdims=True) > 0, cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    plot_matrix(
        shown, ax, xlabels=["SM-like", "Anomalous"], ylabels=["Background", "Signal"],
        fmt="{:.3f}" if normalize else "{:.0f}", vmin=0, vmax=1 if normalize else None,
        colorbar_label="Fraction of true class" if normalize else "Events", annotate_size="medium",
    )
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    return ax


# ---------------------------------------------------------------------- latent space
def plot_embedding(
    xy: np.ndarray, labels: Sequence[str], ax: Any, *, method: str = "PCA", background: str | None = None
) -> Any:
    """A 2-D embedding (PCA, t-SNE) of events coloured by process; background drawn first, in grey."""
    xy = np.asarray(xy)
    labels = np.asarray(labels).astype(str)
    names = list(dict.fromkeys(labels.tolist()))
    if background in names:
        names.remove(background)
        names.insert(0, background)
    colors = iter(_colors(len(names)))
    for name in names:
        sel = labels == name
        is_bkg = name == background
        ax.scatter(xy[sel, 0], xy[sel, 1], s=10 if is_bkg else 14, alpha=0.4 if is_bkg else 0.7,
                   color=_BKG_COLOR if is_bkg else next(colors), label=name, rasterized=True, linewidths=0)
    ax.set_xlabel(f"{method} component 1 [a.u.]")
    ax.set_ylabel(f"{method} component 2 [a.u.]")
    legend_outside(ax, markerscale=2.5)
    return ax


# ---------------------------------------------------------------------- inputs
def _present(pt: np.ndarray) -> np.ndarray:
    return np.where(pt > 0, pt, np.nan).astype(np.float64)


def physics_features(data: np.ndarray, feature_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Per-event summary features for input plots, keyed by their axis label (with units).

    For the ADC2021 object layout (N, 19, 4): MET, leading electron / muon / jet pT (NaN when
    absent), H_T (scalar sum of jet pT) and the electron, muon and jet multiplicities. For flat
    features (N, F): the first eight columns by name.
    """
    data = np.asarray(data)
    if data.ndim == 3:
        pt = data[:, :, 0]
        return {
            r"$p_T^{miss}$ [GeV]": pt[:, L.MET_SLOT],
            # NaN where the object is absent: the 0 of the padding is not a pT.
            r"Leading electron $p_T$ [GeV]": _present(pt[:, L.ELECTRON_SLOTS.start]),
            r"Leading muon $p_T$ [GeV]": _present(pt[:, L.MUON_SLOTS.start]),
            r"Leading jet $p_T$ [GeV]": _present(pt[:, L.JET_SLOTS.start]),
            r"$H_T$ [GeV]": pt[:, L.JET_SLOTS].sum(axis=1),
            "Number of electrons": (pt[:, L.ELECTRON_SLOTS] > 0).sum(axis=1),
            "Number of muons": (pt[:, L.MUON_SLOTS] > 0).sum(axis=1),
            "Number of jets": (pt[:, L.JET_SLOTS] > 0).sum(axis=1),
        }
    names = list(feature_names or [f"f{i}" for i in range(data.shape[1])])
    return {names[i]: data[:, i] for i in range(min(8, data.shape[1]))}


def plot_feature_grid(
    background: Mapping[str, np.ndarray],
    signals: Mapping[str, Mapping[str, np.ndarray]],
    axes: Any,
    *,
    bins: int | None = None,
    background_label: str = "SM background",
) -> Any:
    """Distributions of each feature, SM against each signal, one feature per axis.

    ``background`` maps feature name (the x label) to values (see :func:`physics_features`);
    ``signals`` maps a signal name to the same. Each histogram is normalised to unit sum over
    its bins plus the overflow bin (drawn at the right end); signals carry statistical errors;
    multiplicities get integer bins; energies a log y axis. One legend for the grid, outside.
    ``bins`` defaults to about 1.5 sqrt(N) of the smallest sample, between 8 and 40.
    """
    from matplotlib.ticker import MaxNLocator

    flat = np.ravel(axes)
    colors = _colors(len(signals))
    if bins is None:
        first = next(iter(background.values()), np.array([]))
        n_min = min([len(first)] + [len(next(iter(s.values()), [])) for s in signals.values()])
        bins = int(np.clip(1.5 * np.sqrt(max(n_min, 1)), 8, 40))

    def finite(v: Any) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        return v[np.isfinite(v)]

    for ax, (feat, bvals) in zip(flat, background.items()):
        bvals = finite(bvals)
        allv = np.concatenate([bvals] + [finite(s[feat]) for s in signals.values()])
        if allv.size == 0:
            ax.set_visible(False)
            continue
        integer = bool(np.all(np.mod(allv, 1) == 0)) and allv.max(initial=0) <= 30
        if integer:
            edges = np.arange(-0.5, allv.max(initial=0) + 1.5)
        else:
            hi = _nice_ceil(float(np.percentile(allv, 99)))
            edges = np.linspace(min(0.0, float(allv.min(initial=0))), hi if hi > 0 else 1.0, bins + 1)
        # Multiplicity bins hold every value (no flow); continuous ones show the overflow bin, whose
        # ticks and ">x" label mplhep sets itself.
        flow = "none" if integer else "show"
        hs = [_hist(bvals, edges)]
        _histplot(ax, hs[0], fill=True, label=background_label, flow=flow)
        for (name, s), c in zip(signals.items(), colors):
            hs.append(_hist(finite(s[feat]), edges))
            _histplot(ax, hs[-1], color=c, label=name, lw=1.4, flow=flow)
        if integer:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        else:
            _log_floor(ax, hs)
            _flow_ticks(ax, edges)
        ax.set_xlabel(feat)
        ax.set_ylabel("Fraction of events / bin")
        ax.minorticks_off()  # minor ticks on eight small log panels cost more to lay out than the rest
    for ax in flat[len(background):]:
        ax.set_visible(False)
    handles, labels = flat[0].get_legend_handles_labels()
    if handles:
        flat[0].figure.legend(handles, labels, loc="outside right upper")
    return axes


def _nice_ceil(x: float) -> float:
    """``x`` rounded up to two significant digits (149.2 -> 150, 72.9 -> 73), for bin edges."""
    if not np.isfinite(x) or x <= 0:
        return x
    step = 10 ** (np.floor(np.log10(x)) - 1)
    return float(np.ceil(x / step - 1e-9) * step)


def _flow_ticks(ax: Any, edges: np.ndarray) -> None:
    """Round ticks inside the range and one ">hi" tick on the overflow bin, never on top of each other.

    mplhep labels every n-th bin edge plus the flow bins, and a ">72.9" label then collides with a
    nearby "70"; here the regular ticks stop short of the overflow bin.
    """
    from matplotlib.ticker import FixedFormatter, FixedLocator, MaxNLocator

    lo, hi = float(edges[0]), float(edges[-1])
    w = float(edges[-1] - edges[-2])
    ticks = [t for t in MaxNLocator(nbins=4).tick_values(lo, hi) if lo <= t <= hi - 0.15 * (hi - lo)]
    pos = ticks + [hi + w / 2]
    ax.xaxis.set_major_locator(FixedLocator(pos))
    ax.xaxis.set_major_formatter(FixedFormatter([f"{t:g}" for t in ticks] + [f">{hi:g}"]))


def slot_contributions(
    feature_errors: np.ndarray, input_names: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """Aggregate per-feature reconstruction errors into per-slot (MET, e1-4, mu1-4, j1-10) means.

    ``input_names`` names each column of ``feature_errors`` (e.g. ``MET_pt``, ``e1_eta``); the
    slot is the part before the last underscore. Returns ``(slot_names, (N_slots,) mean error)``
    summed over the slot's features and averaged over events.
    """
    fe = np.asarray(feature_errors, dtype=np.float64)
    stems = [n.rsplit("_", 1)[0] if "_" in n else n for n in input_names]
    order = [s for s in L.SLOT_NAMES if s in stems] + [s for s in dict.fromkeys(stems) if s not in L.SLOT_NAMES]
    per_event = np.stack([fe[:, [i for i, s in enumerate(stems) if s == slot]].sum(axis=1) for slot in order], axis=1)
    return order, per_event.mean(axis=0)


def plot_slot_contributions(
    contributions: Mapping[str, np.ndarray], slots: Sequence[str], ax: Any, *, normalize: bool = True
) -> Any:
    """Heatmap of which objects drive the score: rows are processes, columns slots.

    ``normalize`` shows each process's share of its total reconstruction error per slot, so
    processes with very different error scales can be compared.
    """
    names = list(contributions)
    m = np.stack([np.asarray(contributions[n], dtype=float) for n in names])
    if normalize:
        m = m / np.where(m.sum(axis=1, keepdims=True) > 0, m.sum(axis=1, keepdims=True), 1)
    plot_matrix(m, ax, xlabels=list(slots), ylabels=names, fmt="{:.2f}", cmap="viridis",
                colorbar_label="Share of the error" if normalize else "Mean error [a.u.]", annotate_size="x-small")
    ax.set_xlabel("Object slot")
    ax.set_ylabel("Process")
    return ax


# ---------------------------------------------------------------------- comparison
def plot_metric_vs_time(
    points: Mapping[str, tuple[float, float]], ax: Any, *, ylabel: str = "ROC AUC",
    yerr: Mapping[str, float] | None = None, legend: bool = True,
) -> Any:
    """A metric against inference time per event (log x), one marker per detector.

    Names go in a legend outside the axes (never clipped at the edge); the log axis labels
    1-2-5 ticks, so even a range under one decade has several readable labels.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ts = []
    for i, ((name, (t, v)), c) in enumerate(zip(points.items(), _colors(len(points)))):
        err = None if not yerr else yerr.get(name)
        ax.errorbar([t * 1e6], [v], yerr=None if err is None else [err], fmt=_MARKERS[i % len(_MARKERS)], ms=9,
                    color=c, label=name, capsize=3)
        ts.append(t * 1e6)
    ax.set_xscale("log")
    if ts:
        lo, hi = min(ts), max(ts)
        ax.set_xlim(lo / 2, hi * 2)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(y=0.2)
    ax.set_xlabel("Inference time per event [µs]")
    ax.set_ylabel(ylabel)
    if legend:
        legend_outside(ax)
    return ax
