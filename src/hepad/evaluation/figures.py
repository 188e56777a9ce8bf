"""The figure sets of an evaluation and of a comparison (drawn with :mod:`hepad.plotting`, never saved here).

Every figure is a :class:`matplotlib.figure.Figure` (not pyplot's: nothing leaks into a notebook),
uses one font scale (:data:`hepad.plotting.FONT_SIZE`), one width per panel, and carries one
experiment label. ``section`` says where the report puts it: ``"Comparison"``, ``"Inputs"`` or a
detector's name.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .. import metrics as M
from .samples import BACKGROUND_NAME

if TYPE_CHECKING:
    from .results import ComparisonResult, EvaluationResult

__all__ = ["FigureSpec", "evaluation_figures", "comparison_figures"]

#: Size of one panel with its legend at the right, in inches.
PANEL_W, PANEL_H = 10.0, 6.0
DPI = 110


class FigureSpec(NamedTuple):
    """One plot: its file name, title, caption, the figure, and the report section it belongs to."""

    name: str
    title: str
    caption: str
    figure: Any
    section: str


def _fig(nrows: int = 1, ncols: int = 1, width: float = PANEL_W, height: float = PANEL_H, squeeze: bool = True):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained", dpi=DPI)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def _grid(n: int, ncols: int = 2, width: float = PANEL_W, height: float = PANEL_H):
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = _fig(nrows, ncols, width=width * ncols, height=height * nrows, squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _panel_title(ax: Any, text: str, fontsize: str = "medium") -> None:
    """A panel title above the experiment label's line, so the two never collide."""
    from ..plotting import FONT_SIZE

    ax.set_title(text, fontsize=fontsize, pad=2.0 * FONT_SIZE)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def _wp_text(fprs: Any) -> str:
    return ", ".join(f"{f:.0e}".replace("e-0", "e-") + f" = {f * M.COLLISION_RATE_HZ / 1e3:g} kHz" for f in fprs)


def evaluation_figures(res: EvaluationResult, experiment: str = "CMS", *, data: bool = False, prefix: str = "",
                       inputs: bool = True) -> list[FigureSpec]:
    """Every plot of one detector's evaluation (empty for histogram-based distributed results).

    ``inputs`` adds the input-distribution grid (a comparison draws it once, for all detectors).
    """
    from .. import plotting as P

    figs: list[FigureSpec] = []
    if BACKGROUND_NAME not in res.scores:
        return figs
    names = res.signals
    curves = {n: res.curves(n) for n in names}
    det, sec = res.detector, res.detector
    aucs = {n: res.metrics[n]["auc"] for n in names}
    resolved = res.resolved_fpr()

    def label(ax: Any) -> None:
        P.experiment_label(ax, experiment, data=data)

    with P.style(experiment):
        if res.history and (res.history.get("train_loss") or res.history.get("loss")):
            fig, ax = _fig()
            P.plot_history(res.history, ax)
            label(ax)
            conv = res.convergence()
            note = "" if not conv or conv["converged"] else " The best epoch is the last one: not converged."
            figs.append(FigureSpec(f"{prefix}history.png", f"Training history ({det})",
                                   "Loss per epoch on training and validation background." + note, fig, sec))
        fig, ax = _fig()
        res.plot_scores(ax)
        label(ax)
        thr = "" if res.threshold is None else f" The dashed line is the detector's threshold ({res.threshold:.4g})."
        figs.append(FigureSpec(f"{prefix}scores.png", f"Score distributions ({det})",
                               "Fraction of events per bin, with statistical errors; under- and overflow are "
                               "shown (past the axis break, or on a log axis added to the first and last bins)." + thr, fig, sec))
        fig, ax = _fig()
        P.plot_roc(curves, ax, aucs=aucs, working_points=res.fprs, resolved_fpr=resolved,
                   collision_rate_hz=M.COLLISION_RATE_HZ)
        label(ax)
        figs.append(FigureSpec(f"{prefix}roc.png", f"ROC curves ({det})",
                               "Signal against background efficiency (log x); bands are 68 % Clopper-Pearson "
                               "intervals; dashed lines mark the working points inside the range the background "
                               "sample reaches; the shaded part rests on fewer than 10 background events.", fig, sec))
        fig, ax = _fig()
        P.plot_roc(curves, ax, aucs=aucs, working_points=res.fprs, resolved_fpr=resolved, variant="rejection",
                   collision_rate_hz=M.COLLISION_RATE_HZ)
        label(ax)
        figs.append(FigureSpec(f"{prefix}rejection.png", f"Background rejection ({det})",
                               "Background rejection 1/FPR (log y) against signal efficiency, with 68 % "
                               "Clopper-Pearson bands on the efficiency.", fig, sec))
        fig, ax = _fig()
        P.plot_efficiency_vs_rate(curves, ax, working_points=res.fprs, resolved_fpr=resolved)
        label(ax)
        figs.append(FigureSpec(f"{prefix}rate.png", f"Signal efficiency against trigger rate ({det})",
                               f"Background accept rate = FPR × {M.COLLISION_RATE_HZ / 1e6:g} MHz; hatched: above the "
                               f"{P.L1_ACCEPT_RATE_HZ / 1e3:g} kHz Level-1 accept rate. Working points: "
                               f"{_wp_text(res.fprs)}.", fig, sec))
        fig, ax = _fig()
        P.plot_pr({n: (c["precision"], c["recall"]) for n, c in curves.items()}, ax,
                  aps={n: res.metrics[n]["pr_auc"] for n in names})
        label(ax)
        figs.append(FigureSpec(f"{prefix}pr.png", f"Precision-recall ({det})",
                               "Precision depends on the signal fraction of the evaluation sample.", fig, sec))
        fig, ax = _fig()
        P.plot_sic({n: (c["sic_tpr"], c["sic"]) for n, c in curves.items()}, ax, min_background=M.SIC_MIN_BACKGROUND)
        label(ax)
        figs.append(FigureSpec(f"{prefix}sic.png", f"Significance improvement ({det})",
                               f"TPR/sqrt(FPR); points resting on fewer than {M.SIC_MIN_BACKGROUND} background "
                               "events are left out.", fig, sec))
        with_cm = [n for n in names if "at_threshold" in res.metrics[n]]
        if with_cm:
            fig, axes = _grid(len(with_cm), ncols=2, width=7.0, height=5.2)
            for ax, n in zip(axes, with_cm):
                P.plot_confusion_matrix(res.metrics[n]["at_threshold"]["confusion_matrix"], ax)
                _panel_title(ax, n)
            label(axes[0])
            rate = res.threshold_rate_hz()
            rate_txt = "" if rate is None else f" (a {rate / 1e3:.4g} kHz background rate)"
            figs.append(FigureSpec(f"{prefix}confusion.png", f"Confusion matrices at the threshold ({det})",
                                   f"Rows normalised to the true class; threshold {res.threshold:.4g}{rate_txt}.", fig, sec))
        if res.embedding:
            methods = [m for m in ("pca", "tsne") if m in res.embedding]
            fig, axes = _fig(ncols=len(methods), width=8.0 * len(methods) + 2.5, height=6.5, squeeze=False)
            for i, (ax, m) in enumerate(zip(axes[0], methods)):
                P.plot_embedding(res.embedding[m], res.embedding["labels"], ax,
                                 method="PCA" if m == "pca" else "t-SNE", background=BACKGROUND_NAME)
                if i < len(methods) - 1 and ax.get_legend() is not None:
                    ax.get_legend().remove()  # one legend, at the right of the last panel
            label(axes[0][0])
            figs.append(FigureSpec(f"{prefix}latent.png", f"2-D views of the {res.embedding['space']} ({det})",
                                   f"PCA and t-SNE of a subsample of {len(res.embedding['labels'])} events, coloured "
                                   "by process.", fig, sec))
        if res.contributions:
            c = res.contributions
            fig, ax = _fig(width=15.0, height=2.6 + 0.65 * len(c["mean_error"]))
            P.plot_slot_contributions({k: np.asarray(v) for k, v in c["mean_error"].items()}, c["slots"], ax)
            label(ax)
            figs.append(FigureSpec(f"{prefix}objects.png", f"Which objects drive the score ({det})",
                                   "Share of the mean reconstruction error carried by each object slot, per process.",
                                   fig, sec))
        if inputs and res.features:
            figs.append(_inputs_figure(res.features, experiment, data, prefix))
    return figs


def _inputs_figure(features: dict[str, dict[str, np.ndarray]], experiment: str, data: bool, prefix: str = "") -> FigureSpec:
    from .. import plotting as P

    bkg = features[BACKGROUND_NAME]
    sig = {n: v for n, v in features.items() if n != BACKGROUND_NAME}
    ncols = 3
    nrows = math.ceil(len(bkg) / ncols)
    fig, axes = _fig(nrows=nrows, ncols=ncols, width=19.0, height=4.6 * nrows, squeeze=False)
    P.plot_feature_grid(bkg, sig, axes, background_label=BACKGROUND_NAME)
    P.experiment_label(axes[0][0], experiment, data=data)
    return FigureSpec(f"{prefix}inputs.png", "Input distributions",
                      "Each process normalised to unit sum (overflow bin included, at the right end); errors are "
                      "statistical. Leading-object pT only for events that have one.", fig, "Inputs")


def comparison_figures(cmp: ComparisonResult, experiment: str = "CMS", *, data: bool = False) -> list[FigureSpec]:
    """The comparison plots, the shared input distributions, then every detector's full set."""
    from .. import plotting as P

    figs: list[FigureSpec] = []
    first = next(iter(cmp.results.values()))
    dets = cmp.detectors
    signals = first.signals
    scored = BACKGROUND_NAME in first.scores
    with P.style(experiment):
        if scored:
            fig, axes = _grid(len(signals))
            for ax, sig in zip(axes, signals):
                cmp.plot_roc(ax, signal=sig)
            P.experiment_label(axes[0], experiment, data=data)
            figs.append(FigureSpec("compare_roc.png", "ROC curves per signal",
                                   "Every detector on the same events; bands are 68 % Clopper-Pearson intervals; "
                                   "dashed lines mark the working points the background sample reaches.", fig,
                                   "Comparison"))
            fig, axes = _grid(len(signals))
            for ax, sig in zip(axes, signals):
                cmp.plot_efficiency_vs_rate(ax, signal=sig)
            P.experiment_label(axes[0], experiment, data=data)
            figs.append(FigureSpec("compare_rate.png", "Signal efficiency against trigger rate, per signal",
                                   f"Background accept rate = FPR × {M.COLLISION_RATE_HZ / 1e6:g} MHz; hatched: above "
                                   f"the {P.L1_ACCEPT_RATE_HZ / 1e3:g} kHz Level-1 accept rate.", fig, "Comparison"))
        timed = {d: r for d, r in cmp.results.items() if r.time_per_event_s}
        if timed:
            wp_key = 1e-4 if 1e-4 in first.fprs else first.fprs[0]
            fig, axes = _fig(1, 2, width=2 * PANEL_W - 2.5, height=PANEL_H)
            mean_auc = {d: (r.time_per_event_s, float(np.mean([m["auc"] for m in r.metrics.values()])))
                        for d, r in timed.items()}
            P.plot_metric_vs_time(mean_auc, axes[0], ylabel="Mean ROC AUC", legend=False)
            mean_tpr = {}
            for d, r in timed.items():
                tprs = [wp["tpr"] for m in r.metrics.values() for wp in m["working_points"] if wp["target_fpr"] == wp_key]
                mean_tpr[d] = (r.time_per_event_s, float(np.mean(tprs)) if tprs else float("nan"))
            rate = f"{wp_key * M.COLLISION_RATE_HZ / 1e3:g} kHz"
            P.plot_metric_vs_time(mean_tpr, axes[1], ylabel=f"Mean TPR at {rate} (FPR {wp_key:.0e})".replace("e-0", "e-"))
            P.experiment_label(axes[0], experiment, data=data)
            figs.append(FigureSpec("compare_time.png", "Performance against inference time",
                                   "Mean over signals; time per event measured on the background sample, batched, "
                                   "on this CPU.", fig, "Comparison"))
        if len(dets) > 1:
            side = 1.0 + 0.9 * len(dets)
            fig, axes = _fig(1, 2, width=2 * side + 8.0, height=side + 2.5)
            P.plot_matrix(cmp.agreement, axes[0], xlabels=dets, ylabels=dets, vmin=0, vmax=1,
                          colorbar_label="Decision agreement")
            _panel_title(axes[0], f"Agreement on signal events, FPR {cmp.agreement_fpr:.2g}", "small")
            P.plot_matrix(cmp.rank_correlation, axes[1], xlabels=dets, ylabels=dets, vmin=-1, vmax=1,
                          cmap="RdBu_r", colorbar_label="Spearman correlation")
            _panel_title(axes[1], "Score rank correlation, all events", "small")
            for ax in axes:
                ax.set_xlabel("Detector")
                ax.set_ylabel("Detector")
            P.experiment_label(axes[0], experiment, data=data)
            figs.append(FigureSpec("compare_agreement.png", "Model agreement",
                                   "Left: fraction of signal events on which two detectors, each cut at the same "
                                   "background efficiency, take the same decision. Right: rank correlation of their "
                                   "scores.", fig, "Comparison"))
        hist = {d: r.history for d, r in cmp.results.items() if r.history and (r.history.get("train_loss") or r.history.get("loss"))}
        if hist:
            # One panel per detector: losses of different models have unrelated scales (AE ~ 0.5, VAE ~ 30).
            fig, axes = _grid(len(hist), ncols=2, width=PANEL_W, height=PANEL_H - 0.5)
            for ax, (d, h) in zip(axes, hist.items()):
                P.plot_history(h, ax, title=d)
            P.experiment_label(axes[0], experiment, data=data)
            figs.append(FigureSpec("compare_history.png", "Training histories",
                                   "Loss per epoch of each deep detector, each on its own axis (the losses are not "
                                   "comparable between models).", fig, "Comparison"))
        features = next((r.features for r in cmp.results.values() if r.features), None)
        if features:
            figs.append(_inputs_figure(features, experiment, data))
    for d, r in cmp.results.items():
        figs += evaluation_figures(r, experiment, data=data, prefix=f"{_safe(d)}_", inputs=False)
    return figs
