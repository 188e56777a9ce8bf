"""Plot functions in the mplhep style. Each takes an ``ax`` (or ``axes``), draws, and returns it.

Nothing here writes files: :mod:`hepad.evaluation` builds the figures and writes them (with
:func:`hepad._atomic.atomic_path`). Use :func:`style` to get the CMS or ATLAS look::

    import matplotlib.pyplot as plt
    from hepad import plotting
    with plotting.style("CMS"):
        fig, ax = plt.subplots()
        plotting.plot_roc({"ato4l": (fpr, tpr)}, ax=ax)
        plotting.experiment_label(ax, "CMS")
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
    "plot_history",
    "plot_score_distributions",
    "plot_roc",
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
]

EXPERIMENTS = ("CMS", "ATLAS", "LHCb", "ALICE")
#: Working points marked on ROC curves.
WORKING_POINTS = (1e-5, 1e-4, 1e-3)
_BKG_COLOR = "0.35"


@contextlib.contextmanager
def style(experiment: str = "CMS") -> Iterator[None]:
    """Context manager applying the mplhep style of ``experiment`` (CMS, ATLAS, LHCb, ALICE).

    Matplotlib's global style is restored on exit, so a library user's own style is untouched.
    """
    import matplotlib.pyplot as plt
    import mplhep

    key = experiment.upper() if experiment.upper() in ("CMS", "ATLAS", "ALICE") else experiment
    if key not in EXPERIMENTS:
        raise ConfigError(f"Unknown plot style {experiment!r}; choose one of {', '.join(EXPERIMENTS)}.")
    with plt.style.context(getattr(mplhep.style, key)):
        yield


def experiment_label(ax: Any, experiment: str = "CMS", *, data: bool = False, com: float | None = 13) -> Any:
    """Add the plot label: "hepad Simulation", or "hepad Open Data" for data.

    ``experiment`` picks the mplhep style only. The label names the tool, not a collaboration:
    plots made with hepad are not CMS or ATLAS results, and an experiment's name on them would
    claim otherwise.
    """
    import mplhep

    mplhep.label.exp_label(
        exp="hepad", text="Open Data" if data else "Simulation", data=data, com=com,
        loc=0, ax=ax, rlabel=f"({com:g} TeV)" if com else "",
    )
    return ax


def _stairs(ax: Any, values: Any, edges: np.ndarray, *, fill: bool = False, color: Any = None,
            label: str = "", lw: float = 1.8) -> None:
    """A density-normalised histogram as steps (filled grey for background)."""
    h, _ = np.histogram(np.asarray(values, dtype=float), edges)
    if h.sum() == 0:
        return
    dens = h / (h.sum() * np.diff(edges))
    if fill:
        ax.stairs(dens, edges, fill=True, alpha=0.35, color=_BKG_COLOR, label=label)
    else:
        ax.stairs(dens, edges, color=color, lw=lw, label=label)


def _colors(n: int) -> list[Any]:
    """``n`` colours of the active style's cycle, without its greys (grey is the background's)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb

    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    vivid = [c for c in cycle if np.ptp(to_rgb(c)) > 0.15] or list(cycle)
    return [vivid[i % len(vivid)] for i in range(n)]


# ---------------------------------------------------------------------- training
def plot_history(history: Mapping[str, Sequence[float]], ax: Any) -> Any:
    """Training and validation loss per epoch (log y when the loss spans a decade or more).

    ``history`` is a detector's ``history_``: ``{"epoch": [...], "train_loss": [...],
    "val_loss": [...]}`` (``loss``/``val_loss`` keys are accepted too).
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
        ax.plot(x[: len(val)], [np.nan if v is None else v for v in val], "s--", ms=3, label="Validation")
        best = int(np.nanargmin(np.asarray([np.nan if v is None else v for v in val], dtype=float)))
        ax.axvline(x[best], color="0.6", ls=":", label=f"Best epoch ({x[best]:.0f})")
    vals = np.asarray([v for v in train + val if v is not None and v > 0], dtype=float)
    if vals.size and vals.max() / vals.min() > 10:
        ax.set_yscale("log")
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss")
    ax.legend()
    return ax


# ---------------------------------------------------------------------- scores
def plot_score_distributions(
    background: np.ndarray,
    signals: Mapping[str, np.ndarray],
    ax: Any,
    *,
    threshold: float | None = None,
    bins: int = 60,
    background_label: str = "SM background",
    log_x: bool | None = None,
) -> Any:
    """Normalised anomaly-score histograms (log y) for background and each signal, with the cut.

    ``log_x`` (default: automatic, when all scores are positive and span > 2 decades) bins in
    log(score), where reconstruction errors are easier to read.
    """
    allv = np.concatenate([np.asarray(background, float)] + [np.asarray(v, float) for v in signals.values()])
    lo, hi = float(np.min(allv)), float(np.max(allv))
    if log_x is None:
        log_x = lo > 0 and hi / lo > 100
    if log_x:
        edges = np.geomspace(lo, hi, bins + 1)
    else:
        pad = 1e-9 if hi == lo else 0.0
        edges = np.linspace(lo - pad, hi + pad, bins + 1)
    _stairs(ax, background, edges, fill=True, label=background_label)
    for (name, s), c in zip(signals.items(), _colors(len(signals))):
        _stairs(ax, s, edges, color=c, label=name)
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="k", ls="--", lw=1.2, label="Threshold")
    if log_x:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Anomaly score")
    ax.set_ylabel("Fraction of events / bin width")
    ax.legend(fontsize="small", ncol=1)
    return ax


# ---------------------------------------------------------------------- curves
def plot_roc(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ax: Any,
    *,
    aucs: Mapping[str, float] | None = None,
    working_points: Sequence[float] = WORKING_POINTS,
    min_fpr: float | None = None,
    title: str | None = None,
) -> Any:
    """ROC curves (TPR against FPR on a log axis) with the trigger working points marked.

    ``curves`` maps a label to ``(fpr, tpr)``; ``aucs`` adds the AUC to the legend, ``title``
    heads the legend (e.g. the signal name).
    """
    fmin = min_fpr
    for (name, (fpr, tpr)), c in zip(curves.items(), _colors(len(curves))):
        fpr, tpr = np.asarray(fpr), np.asarray(tpr)
        ok = fpr > 0
        label = name if not aucs or name not in aucs else f"{name} (AUC = {aucs[name]:.3f})"
        ax.plot(fpr[ok], tpr[ok], color=c, lw=1.8, label=label)
        if ok.any():
            smallest = float(fpr[ok].min())
            fmin = smallest if fmin is None else min(fmin, smallest)
    fmin = min(fmin or 1e-3, min(working_points, default=1.0)) / 2
    grid = np.geomspace(fmin, 1, 200)
    ax.plot(grid, grid, ls=":", color="0.6", label="Random")
    for wp in working_points:
        ax.axvline(wp, color="0.5", ls="--", lw=0.8)
        ax.text(wp * 1.15, 0.97, f"FPR {wp:.0e}".replace("e-0", "e-"), ha="left", va="top", rotation=90,
                fontsize="xx-small", transform=ax.get_xaxis_transform(), color="0.3")
    ax.set_xscale("log")
    ax.set_xlim(fmin, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("Background efficiency (FPR)")
    ax.set_ylabel("Signal efficiency (TPR)")
    ax.legend(fontsize="small", loc="lower right", title=title, title_fontsize="small")
    return ax


def plot_pr(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], ax: Any, *, aps: Mapping[str, float] | None = None
) -> Any:
    """Precision against recall; ``curves`` maps a label to ``(precision, recall)``."""
    for (name, (precision, recall)), c in zip(curves.items(), _colors(len(curves))):
        label = name if not aps or name not in aps else f"{name} (AP = {aps[name]:.3f})"
        ax.step(recall, precision, where="post", color=c, lw=1.8, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("Recall (signal efficiency)")
    ax.set_ylabel("Precision")
    ax.legend(fontsize="small")
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
    ax.set_xlabel("Signal efficiency (TPR)")
    ax.set_ylabel("SIC = TPR / √FPR")
    title = f"≥ {min_background} bkg. events per point" if min_background else None
    ax.legend(fontsize="small", title=title, title_fontsize="x-small")
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
    annotate_size: Any = "x-small",
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
    mid = (np.nanmax(finite) + np.nanmin(finite)) / 2 if finite.size else 0
    if m.size <= 400:
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, fmt.format(m[i, j]), ha="center", va="center", fontsize=annotate_size,
                        color="white" if m[i, j] > mid else "black")
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
        colorbar_label="Fraction of true class" if normalize else "Events",
    )
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
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
    ax.set_xlabel(f"{method} 1")
    ax.set_ylabel(f"{method} 2")
    ax.legend(fontsize="small", markerscale=3)
    return ax


# ---------------------------------------------------------------------- inputs
def _present(pt: np.ndarray) -> np.ndarray:
    return np.where(pt > 0, pt, np.nan).astype(np.float64)


def physics_features(data: np.ndarray, feature_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Per-event summary features for input plots.

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
            "Electrons": (pt[:, L.ELECTRON_SLOTS] > 0).sum(axis=1),
            "Muons": (pt[:, L.MUON_SLOTS] > 0).sum(axis=1),
            "Jets": (pt[:, L.JET_SLOTS] > 0).sum(axis=1),
        }
    names = list(feature_names or [f"f{i}" for i in range(data.shape[1])])
    return {names[i]: data[:, i] for i in range(min(8, data.shape[1]))}


def plot_feature_grid(
    background: Mapping[str, np.ndarray],
    signals: Mapping[str, Mapping[str, np.ndarray]],
    axes: Any,
    *,
    bins: int = 40,
) -> Any:
    """Normalised distributions of each feature, SM against each signal, one feature per axis.

    ``background`` maps feature name to values (see :func:`physics_features`); ``signals`` maps
    a signal name to the same. Multiplicities get integer bins; energies get a log y axis.
    """
    flat = np.ravel(axes)
    colors = _colors(len(signals))
    from matplotlib.ticker import MaxNLocator

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
            hi = np.percentile(allv, 99.5) if allv.size else 1.0
            edges = np.linspace(min(0.0, allv.min(initial=0)), hi if hi > 0 else 1.0, bins + 1)
        # Overflow goes into the last bin, so every event is shown.
        _stairs(ax, np.clip(bvals, edges[0], edges[-1]), edges, fill=True, label="SM")
        for (name, s), c in zip(signals.items(), colors):
            _stairs(ax, np.clip(finite(s[feat]), edges[0], edges[-1]), edges, color=c, label=name, lw=1.4)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=integer))
        if not integer:
            ax.set_yscale("log")
        ax.set_xlabel(feat, fontsize="small")
        ax.tick_params(labelsize="x-small")
        # Minor ticks on eight small log panels cost more to lay out than everything else drawn.
        ax.minorticks_off()
    for ax in flat[len(background):]:
        ax.set_visible(False)
    flat[0].legend(fontsize="x-small")
    return axes


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
                colorbar_label="Error share" if normalize else "Mean error", annotate_size=9)
    ax.set_xlabel("Object slot")
    return ax


# ---------------------------------------------------------------------- comparison
def plot_metric_vs_time(
    points: Mapping[str, tuple[float, float]], ax: Any, *, ylabel: str = "ROC AUC", yerr: Mapping[str, float] | None = None
) -> Any:
    """A metric against inference time per event (log x), one marker per detector."""
    from matplotlib.ticker import NullFormatter

    for (name, (t, v)), c in zip(points.items(), _colors(len(points))):
        err = None if not yerr else yerr.get(name)
        ax.errorbar([t * 1e6], [v], yerr=None if err is None else [err], fmt="o", ms=7, color=c, label=name,
                    capsize=3)
        ax.annotate(name, (t * 1e6, v), textcoords="offset points", xytext=(6, 4), fontsize="x-small")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor log labels collide on a narrow range
    ax.margins(x=0.25, y=0.15)
    ax.set_xlabel("Time per event [µs]")
    ax.set_ylabel(ylabel)
    return ax
