"""The result containers: one detector (:class:`EvaluationResult`) or several (:class:`ComparisonResult`).

Both hold plain numbers and per-event scores; they turn into a table (``table()``,
``to_pandas()``), plots on a given axis (``plot_roc(ax=...)``, ``plot_scores(ax=...)``), the full
figure set (``figures()``) and files (``save()``, the only method that writes).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import metrics as M
from .._write import write_figure, write_json, write_text
from ..errors import ConfigError
from .diagnostics import convergence
from .rows import describe_rule, metric_row
from .samples import BACKGROUND_NAME

__all__ = ["EvaluationResult", "ComparisonResult"]


def _rule_dict(rule: Any) -> dict[str, Any]:
    if rule is None:
        return {}
    if isinstance(rule, dict):
        return dict(rule)
    for attr in ("to_dict", "model_dump", "_asdict"):
        if hasattr(rule, attr):
            return dict(getattr(rule, attr)())
    return {"rule": str(rule)}


@dataclass
class EvaluationResult:
    """Metrics (and what the plots need) of one detector on background and signals.

    Attributes
    ----------
    detector : str
        The detector's label.
    metrics : dict
        Per-signal metric dicts (see :func:`hepad.evaluation.signal_metrics`).
    scores : dict
        ``BACKGROUND_NAME`` and each signal name -> float32 scores.
    threshold : float or None
        The detector's ``threshold_`` (events with ``score > threshold`` are flagged).
    fprs : tuple of float
        The working points.
    history : dict or None
        The detector's training history (deep models).
    embedding, contributions, features : dict or None
        Latent-space views, per-slot reconstruction error, summary input features.
    time_per_event_s : float or None
        Measured batched inference time per event.
    info : dict
        Configuration, data provenance and versions.
    """

    detector: str
    metrics: dict[str, dict[str, Any]]
    scores: dict[str, np.ndarray]
    threshold: float | None = None
    fprs: tuple[float, ...] = M.DEFAULT_FPRS
    history: dict[str, Any] | None = None
    embedding: dict[str, Any] | None = None
    contributions: dict[str, Any] | None = None
    features: dict[str, dict[str, np.ndarray]] | None = None
    time_per_event_s: float | None = None
    weights: dict[str, np.ndarray | None] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def signals(self) -> list[str]:
        return list(self.metrics)

    @property
    def threshold_rule(self) -> dict[str, Any]:
        """The rule that set :attr:`threshold` (``{"percentile": 95.0}``, ``{"rate_hz": 1000}``...)."""
        return _rule_dict(self.info.get("config", {}).get("threshold_rule"))

    # ------------------------------------------------------------------ tables
    def table(self) -> list[dict[str, Any]]:
        """One flat row per signal (the ``metrics.csv`` rows)."""
        extra = {} if self.time_per_event_s is None else {"time_per_event_us": self.time_per_event_s * 1e6}
        return [metric_row(self.detector, name, m, extra) for name, m in self.metrics.items()]

    def to_pandas(self) -> Any:
        """:meth:`table` as a ``pandas.DataFrame`` (one row per signal)."""
        import pandas as pd

        return pd.DataFrame(self.table())

    def convergence(self) -> dict[str, Any] | None:
        """Best epoch of the training history and whether it came before the last one."""
        return convergence(self.history)

    def threshold_rate_hz(self) -> float | None:
        """Background rate passing :attr:`threshold` (FPR x 40 MHz), from the first signal's metrics."""
        for m in self.metrics.values():
            if "at_threshold" in m:
                return float(m["at_threshold"]["trigger_rate_hz"])
        return None

    def warnings(self) -> list[str]:
        """What a reader must know before quoting the numbers (deduplicated).

        Unresolved working points (too few background events), training that was still improving
        at its last epoch, and a threshold passing more background than a Level-1 trigger can
        accept (the default 95th percentile passes 5 % = 2 MHz: a reference cut, not a trigger).
        """
        from ..plotting import L1_ACCEPT_RATE_HZ

        msgs = [wp["warning"] for m in self.metrics.values() for wp in m["working_points"] if wp["warning"]]
        conv = self.convergence()
        if conv and not conv["converged"]:
            msgs.append(
                f"{self.detector}: the best {conv['monitored'].replace('_', ' ')} is at the last epoch "
                f"({conv['best_epoch']} of {conv['epochs']}): training had not converged; train longer "
                "(more epochs) before quoting these numbers."
            )
        rate = self.threshold_rate_hz()
        if self.threshold is not None and rate is not None and rate > L1_ACCEPT_RATE_HZ:
            msgs.append(
                f"{self.detector}: the threshold ({describe_rule(self.threshold_rule)}) passes "
                f"{rate / M.COLLISION_RATE_HZ:.3g} of the background, a {rate / 1e6:.3g} MHz rate, above the "
                f"{L1_ACCEPT_RATE_HZ / 1e3:g} kHz Level-1 accept rate: it is a reference cut, not a trigger "
                "setting. Quote the working points (TPR at a fixed rate), or set the threshold with rate_hz."
            )
        return list(dict.fromkeys(msgs))

    # ------------------------------------------------------------------ curves
    def _labels_scores(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        b, s = self.scores[BACKGROUND_NAME], self.scores[name]
        y = np.r_[np.zeros(len(b), np.int8), np.ones(len(s), np.int8)]
        wb, ws = self.weights.get(BACKGROUND_NAME), self.weights.get(name)
        w = None if wb is None and ws is None else np.r_[
            np.ones(len(b)) if wb is None else wb, np.ones(len(s)) if ws is None else ws
        ]
        return y, np.r_[b, s].astype(np.float64), w

    def _require_scores(self, what: str) -> None:
        if BACKGROUND_NAME not in self.scores:
            raise ConfigError(
                f"{what} needs per-event scores; this result comes from per-partition histograms "
                "(distributed evaluation), which keep the metrics table only."
            )

    def curves(self, name: str) -> dict[str, np.ndarray]:
        """ROC (with its 68 % Clopper-Pearson TPR band), PR and SIC curves of one signal."""
        from ..plotting import clopper_pearson_band

        self._require_scores("curves()")
        if name not in self.metrics:
            raise ConfigError(f"No signal {name!r} in this result; choose one of {', '.join(self.signals)}.")
        y, s, w = self._labels_scores(name)
        fpr, tpr, _ = M.roc_curve(y, s, sample_weight=w)
        n_sig = float(np.sum(y == 1)) if w is None else M.effective_count(w[y == 1])
        lo, hi = clopper_pearson_band(tpr * n_sig, n_sig)
        prec, rec, _ = M.precision_recall_curve(y, s, sample_weight=w)
        _, stpr, sic, _ = M.sic_curve(y, s, sample_weight=w)
        return {"fpr": fpr, "tpr": tpr, "tpr_low": lo, "tpr_high": hi, "precision": prec, "recall": rec,
                "sic_tpr": stpr, "sic": sic}

    def resolved_fpr(self) -> float:
        """Smallest background efficiency resting on at least 10 background events."""
        n = len(self.scores.get(BACKGROUND_NAME, ())) or max(
            (m["n_background"] for m in self.metrics.values()), default=1)
        wb = self.weights.get(BACKGROUND_NAME)
        if wb is not None:
            n = M.effective_count(wb)
        return min(1.0, M.MIN_BACKGROUND_PER_FPR / max(float(n), 1.0))

    # ------------------------------------------------------------------ plots on a given axis
    def plot_roc(self, ax: Any = None, *, signals: Any = None, variant: str = "fpr") -> Any:
        """ROC curves of the signals (default all) on ``ax`` (a new figure when None); returns ``ax``.

        ``variant="rejection"`` draws 1/FPR on a log y axis against the signal efficiency.
        """
        from .. import plotting as P

        self._require_scores("plot_roc()")
        names = self.signals if signals is None else ([signals] if isinstance(signals, str) else list(signals))
        ax = _new_ax() if ax is None else ax
        P.plot_roc({n: self.curves(n) for n in names}, ax, aucs={n: self.metrics[n]["auc"] for n in names},
                   working_points=self.fprs, resolved_fpr=self.resolved_fpr(), variant=variant,
                   collision_rate_hz=M.COLLISION_RATE_HZ, title=self.detector)
        return ax

    def plot_scores(self, ax: Any = None, *, signals: Any = None) -> Any:
        """Score histograms of background and signals (default all) on ``ax``; returns ``ax``."""
        from .. import plotting as P

        self._require_scores("plot_scores()")
        names = self.signals if signals is None else ([signals] if isinstance(signals, str) else list(signals))
        ax = _new_ax() if ax is None else ax
        P.plot_score_distributions(self.scores[BACKGROUND_NAME], {n: self.scores[n] for n in names}, ax,
                                   threshold=self.threshold, weights=self.weights, background_label=BACKGROUND_NAME)
        return ax

    def plot_efficiency_vs_rate(self, ax: Any = None, *, signals: Any = None) -> Any:
        """Signal efficiency against the background accept rate in Hz, on ``ax``; returns ``ax``."""
        from .. import plotting as P

        self._require_scores("plot_efficiency_vs_rate()")
        names = self.signals if signals is None else ([signals] if isinstance(signals, str) else list(signals))
        ax = _new_ax() if ax is None else ax
        P.plot_efficiency_vs_rate({n: self.curves(n) for n in names}, ax, working_points=self.fprs,
                                  resolved_fpr=self.resolved_fpr(), title=self.detector)
        return ax

    # ------------------------------------------------------------------ summaries and files
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (no per-event arrays)."""
        return {
            "detector": self.detector,
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "threshold_rate_hz": self.threshold_rate_hz(),
            "fprs": list(self.fprs),
            "time_per_event_s": self.time_per_event_s,
            "metrics": self.metrics,
            "history": self.history,
            "convergence": self.convergence(),
            "contributions": self.contributions,
            "info": self.info,
        }

    def figures(self, experiment: str = "CMS", *, data: bool = False, prefix: str = "") -> list[Any]:
        """Every plot of this evaluation as :class:`hepad.evaluation.figures.FigureSpec` (name, title, caption, figure, section)."""
        from .figures import evaluation_figures

        return evaluation_figures(self, experiment, data=data, prefix=prefix)

    def save(self, out_dir: str | os.PathLike[str], *, plots: bool = True, report: bool = False,
             experiment: str = "CMS", data: bool = False, dpi: int = 110) -> dict[str, Path]:
        """Write ``metrics.json``, ``metrics.csv``, ``plots/*.png`` (and ``report.html``).

        ``experiment`` picks the mplhep style (CMS, ATLAS), ``data`` labels the plots "Open Data"
        instead of "Simulation", ``dpi`` sets the PNG resolution. Returns the written paths by name.
        """
        summary = {
            "kind": "evaluation",
            "detectors": [self.detector],
            "signals": self.signals,
            "fprs": list(self.fprs),
            "collision_rate_hz": M.COLLISION_RATE_HZ,
            "rows": self.table(),
            "results": {self.detector: self.to_dict()},
            "warnings": self.warnings(),
            "info": self.info,
        }
        figs = self.figures(experiment, data=data) if plots else []
        return write_outputs(out_dir, summary, figs, report=report, dpi=dpi)


@dataclass
class ComparisonResult:
    """Several detectors evaluated on the same events.

    Attributes
    ----------
    results : dict
        Detector label -> :class:`EvaluationResult`.
    agreement : ndarray (D, D)
        Fraction of signal events (all signals pooled) on which two detectors take the same
        decision, each cut at the same background efficiency ``agreement_fpr``.
    rank_correlation : ndarray (D, D)
        Spearman rank correlation of the scores on all events (background and signals).
    agreement_fpr : float
        The common background efficiency of the agreement cuts.
    """

    results: dict[str, EvaluationResult]
    agreement: np.ndarray
    rank_correlation: np.ndarray
    agreement_fpr: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def detectors(self) -> list[str]:
        return list(self.results)

    @property
    def signals(self) -> list[str]:
        return next(iter(self.results.values())).signals

    def table(self) -> list[dict[str, Any]]:
        """One row per detector and signal."""
        return [row for r in self.results.values() for row in r.table()]

    def to_pandas(self) -> Any:
        """:meth:`table` as a ``pandas.DataFrame`` (one row per detector and signal)."""
        import pandas as pd

        return pd.DataFrame(self.table())

    def warnings(self) -> list[str]:
        return list(dict.fromkeys(w for r in self.results.values() for w in r.warnings()))

    def _signal(self, signal: str | None) -> str:
        sigs = self.signals
        if signal is None:
            if len(sigs) == 1:
                return sigs[0]
            raise ConfigError(f"Several signals: pass signal= one of {', '.join(sigs)}.")
        if signal not in sigs:
            raise ConfigError(f"No signal {signal!r}; choose one of {', '.join(sigs)}.")
        return signal

    def plot_roc(self, ax: Any = None, *, signal: str | None = None, variant: str = "fpr") -> Any:
        """Every detector's ROC curve for one ``signal`` on ``ax``; returns ``ax``."""
        from .. import plotting as P

        sig = self._signal(signal)
        first = next(iter(self.results.values()))
        ax = _new_ax() if ax is None else ax
        P.plot_roc({d: r.curves(sig) for d, r in self.results.items()}, ax,
                   aucs={d: r.metrics[sig]["auc"] for d, r in self.results.items()}, working_points=first.fprs,
                   resolved_fpr=first.resolved_fpr(), variant=variant, collision_rate_hz=M.COLLISION_RATE_HZ,
                   title=sig)
        return ax

    def plot_scores(self, ax: Any = None, *, detector: str | None = None, signals: Any = None) -> Any:
        """One detector's score histograms on ``ax`` (``detector`` required when there are several)."""
        dets = self.detectors
        if detector is None:
            if len(dets) != 1:
                raise ConfigError(f"Several detectors: pass detector= one of {', '.join(dets)}.")
            detector = dets[0]
        if detector not in self.results:
            raise ConfigError(f"No detector {detector!r}; choose one of {', '.join(dets)}.")
        return self.results[detector].plot_scores(ax, signals=signals)

    def plot_efficiency_vs_rate(self, ax: Any = None, *, signal: str | None = None) -> Any:
        """Every detector's signal efficiency against the accept rate [Hz] for one ``signal``."""
        from .. import plotting as P

        sig = self._signal(signal)
        first = next(iter(self.results.values()))
        ax = _new_ax() if ax is None else ax
        P.plot_efficiency_vs_rate({d: r.curves(sig) for d, r in self.results.items()}, ax,
                                  working_points=first.fprs, resolved_fpr=first.resolved_fpr(), title=sig)
        return ax

    def figures(self, experiment: str = "CMS", *, data: bool = False) -> list[Any]:
        """The comparison plots, then every detector's own full set (see :meth:`EvaluationResult.figures`)."""
        from .figures import comparison_figures

        return comparison_figures(self, experiment, data=data)

    def save(self, out_dir: str | os.PathLike[str], *, plots: bool = True, report: bool = False,
             experiment: str = "CMS", data: bool = False, dpi: int = 110) -> dict[str, Path]:
        """Write ``metrics.json``, ``metrics.csv``, ``plots/*.png`` (and ``report.html``)."""
        first = next(iter(self.results.values()))
        summary = {
            "kind": "comparison",
            "detectors": self.detectors,
            "signals": first.signals,
            "fprs": list(first.fprs),
            "collision_rate_hz": M.COLLISION_RATE_HZ,
            "rows": self.table(),
            "results": {d: r.to_dict() for d, r in self.results.items()},
            "agreement": {"fpr": self.agreement_fpr, "detectors": self.detectors,
                          "decision_agreement": self.agreement.tolist(),
                          "rank_correlation": self.rank_correlation.tolist()},
            "warnings": self.warnings(),
            "info": self.info,
        }
        figs = self.figures(experiment, data=data) if plots else []
        return write_outputs(out_dir, summary, figs, report=report, dpi=dpi)


def _new_ax() -> Any:
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(layout="constrained")
    return ax


def write_outputs(out_dir: str | os.PathLike[str], summary: dict[str, Any], figs: list[Any], *, report: bool,
                  dpi: int = 110) -> dict[str, Path]:
    """Write the PNGs of ``figs``, ``metrics.json``, ``metrics.csv`` (and ``report.html``) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    plot_entries = []
    for spec in figs:
        written[spec.name] = write_figure(out / "plots" / spec.name, spec.figure, dpi=dpi)
        w, h = spec.figure.get_size_inches()
        plot_entries.append({"file": f"plots/{spec.name}", "title": spec.title, "caption": spec.caption,
                             "section": spec.section, "width_in": round(float(w), 2), "height_in": round(float(h), 2)})
    summary = {**summary, "plots": plot_entries,
               "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    written["metrics.json"] = write_json(out / "metrics.json", summary)
    rows = summary["rows"]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
    written["metrics.csv"] = write_text(out / "metrics.csv", buf.getvalue())
    if report:
        from ..report import write_report

        written["report.html"] = write_report(out)
    return written
