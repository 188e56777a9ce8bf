"""Evaluate one detector, or compare several, on background and signal samples.

::

    import hepad
    from hepad.evaluation import evaluate, compare

    det = hepad.load("model/")
    result = evaluate(det, "sm_test.h5", {"ato4l": "ato4l.h5", "lq": "lq-btau.h5"})
    result.table()                      # one row per signal: AUC, TPR at 1e-3/1e-4/1e-5, SIC, ...
    result.save("eval/", report=True)   # metrics.json, metrics.csv, plots/*.png, report.html

    cmp = compare({"ae": ae, "iforest": forest}, "sm_test.h5", {"ato4l": "ato4l.h5"})
    cmp.save("cmp/", report=True)

The metrics are computed with :mod:`hepad.metrics`; the plots are drawn with
:mod:`hepad.plotting`. :meth:`EvaluationResult.save` and :meth:`ComparisonResult.save` are the
only places that write files, each one atomically.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics as M
from ._atomic import atomic_path
from ._version import __version__
from .errors import ConfigError, InputError
from .events import EventSet

log = logging.getLogger(__name__)

__all__ = [
    "EvaluationResult",
    "ComparisonResult",
    "evaluate",
    "compare",
    "evaluate_files",
    "load_samples",
    "signal_metrics",
    "fpr_key",
    "versions",
]

#: Events per process used for the 2-D latent views (PCA, t-SNE) and the slot contributions.
N_EMBED = 2000
N_CONTRIB = 20000
BACKGROUND_NAME = "SM background"

ProgressFn = Callable[[str, int, int], None]


def fpr_key(fpr: float) -> str:
    """Column name of a working point: ``tpr@1e-4``."""
    mant, exp = f"{fpr:.0e}".split("e")
    return f"tpr@{mant}e{int(exp)}"


def versions() -> dict[str, str]:
    """Versions of hepad, Python and the libraries that shape the results."""
    import importlib.metadata as md

    out = {"hepad": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("numpy", "scipy", "torch", "scikit-learn", "matplotlib", "mplhep", "h5py"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _describe(events: EventSet) -> dict[str, Any]:
    prov = {k: v for k, v in events.provenance.items() if isinstance(v, (str, int, float, bool)) or v is None}
    return {"n_events": len(events), "layout": events.layout, **prov}


def _as_events(obj: Any, what: str, max_events: int | None = None) -> EventSet:
    if isinstance(obj, EventSet):
        return obj if max_events is None else obj[:max_events]
    if isinstance(obj, (str, os.PathLike)):
        from .io import read_events
        from .scoring import expand_files

        files = expand_files([obj])
        rng = None if max_events is None else (0, int(max_events))
        sets = [read_events(f, entry_range=rng) for f in files]
        return sets[0] if len(sets) == 1 else EventSet.concat(
            sets, provenance={"source": ", ".join(str(f) for f in files), "files": len(files)}
        )
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(o, (str, os.PathLike, EventSet)) for o in obj):
        sets = [_as_events(o, what, max_events) for o in obj]
        return sets[0] if len(sets) == 1 else EventSet.concat(
            sets, provenance={"source": ", ".join(s.source for s in sets), "files": len(sets)}
        )
    if isinstance(obj, np.ndarray):
        return EventSet(obj, provenance={"source": f"<{what} array>"})
    raise InputError(f"{what}: expected an EventSet, an array, a file path or a list of them; got {type(obj).__name__}.")


def load_samples(
    background: Any, signals: Any, *, max_events: int | None = None
) -> tuple[EventSet, dict[str, EventSet]]:
    """Background and named signal samples from EventSets, arrays, paths or globs.

    ``signals`` is a mapping name -> sample, or a sequence of paths (the name is the file stem)
    or of ``NAME=PATH`` strings. ``max_events`` reads at most that many events per file.
    """
    bkg = _as_events(background, "background", max_events)
    out: dict[str, EventSet] = {}
    if isinstance(signals, Mapping):
        items = list(signals.items())
    elif isinstance(signals, (str, os.PathLike, EventSet)):
        items = [_split_signal(signals)]
    else:
        items = [_split_signal(s) for s in signals]
    for name, sample in items:
        if name in out:
            raise ConfigError(f"Signal name {name!r} is given twice; name them with NAME=FILE.")
        if name == BACKGROUND_NAME:
            raise ConfigError(f"{BACKGROUND_NAME!r} is reserved for the background; rename that signal.")
        out[name] = _as_events(sample, f"signal {name}", max_events)
    if not out:
        raise ConfigError("Give at least one signal sample (--signal NAME=FILE).")
    return bkg, out


def _split_signal(spec: Any) -> tuple[str, Any]:
    if isinstance(spec, EventSet):
        return str(spec.provenance.get("process") or Path(spec.source).stem), spec
    text = os.fspath(spec)
    if "=" in text and not Path(text).exists():
        name, path = text.split("=", 1)
        if not name:
            raise ConfigError(f"--signal {text!r}: the name before '=' is empty; use NAME=FILE.")
        return name, path
    return Path(text).stem, text


# ---------------------------------------------------------------------- metrics of one signal
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


def _row(detector: str, signal: str, m: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
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


# ---------------------------------------------------------------------- diagnostics
def _model_inputs(detector: Any, events: EventSet) -> np.ndarray:
    """What the detector sees: its latent code, else its preprocessed inputs, else standardised features."""
    if hasattr(detector, "encode"):
        try:
            return np.asarray(detector.encode(events), dtype=np.float32)
        except NotImplementedError:
            pass
    X = events.features
    pre = getattr(detector, "preprocessor_", None)
    if pre is not None and hasattr(pre, "transform"):
        return np.asarray(pre.transform(X), dtype=np.float32)
    sd = X.std(axis=0)
    return ((X - X.mean(axis=0)) / np.where(sd > 0, sd, 1)).astype(np.float32)


def _subsample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, k, replace=False)) if n > k else np.arange(n)


def _embed(
    detector: Any, bkg: EventSet, signals: Mapping[str, EventSet], n_total: int, methods: Sequence[str], seed: int
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    per_sig = max(1, n_total // (2 * max(1, len(signals))))
    parts, labels = [], []
    idx = _subsample(len(bkg), n_total // 2, rng)
    parts.append(_model_inputs(detector, bkg[idx]))
    labels += [BACKGROUND_NAME] * len(idx)
    for name, ev in signals.items():
        idx = _subsample(len(ev), per_sig, rng)
        parts.append(_model_inputs(detector, ev[idx]))
        labels += [name] * len(idx)
    Z = np.concatenate(parts).astype(np.float64)
    space = "latent space" if hasattr(detector, "encode") else "preprocessed inputs"
    out: dict[str, Any] = {"labels": labels, "space": space}
    Zc = Z - Z.mean(axis=0)
    if "pca" in methods:
        # Principal axes from the SVD: no sklearn needed, deterministic up to sign.
        _, _, vt = np.linalg.svd(Zc, full_matrices=False)
        out["pca"] = Zc @ vt[:2].T if vt.shape[0] >= 2 else np.c_[Zc[:, :1], np.zeros(len(Zc))]
    if "tsne" in methods and len(Z) > 10:
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits

        perplexity = float(min(30, max(5, (len(Z) - 1) // 4)))
        # One thread: t-SNE's OpenMP workers spin-wait and run many times slower on a busy machine.
        with threadpool_limits(1):
            out["tsne"] = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed,
                               max_iter=500).fit_transform(Zc.astype(np.float32))
    return out


def _error_names(detector: Any, n_cols: int) -> list[str] | None:
    names = list(getattr(detector, "feature_names_in_", []) or [])
    pre = getattr(detector, "preprocessor_", None)
    keep = getattr(pre, "keep_columns_", None)
    if keep is not None and len(keep) == n_cols and names:
        return [names[int(i)] for i in keep]
    if len(names) == n_cols:
        return names
    return None


def _contributions(
    detector: Any, bkg: EventSet, signals: Mapping[str, EventSet], n_max: int, seed: int
) -> dict[str, Any] | None:
    if not hasattr(detector, "feature_errors"):
        return None
    from .plotting import slot_contributions

    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    slots: list[str] = []
    for name, ev in {BACKGROUND_NAME: bkg, **signals}.items():
        fe = np.asarray(detector.feature_errors(ev[_subsample(len(ev), n_max, rng)]))
        names = _error_names(detector, fe.shape[1])
        if names is None:
            log.info("feature_errors has %d columns that match no input names; no slot plot.", fe.shape[1])
            return None
        slots, contrib = slot_contributions(fe, names)
        out[name] = contrib.tolist()
    return {"slots": slots, "mean_error": out}


# ---------------------------------------------------------------------- result of one detector
@dataclass
class EvaluationResult:
    """Metrics (and what the plots need) of one detector on background and signals.

    Attributes
    ----------
    detector : str
        The detector's label.
    metrics : dict
        Per-signal metric dicts (see :func:`signal_metrics`).
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

    def table(self) -> list[dict[str, Any]]:
        """One flat row per signal (the ``metrics.csv`` rows)."""
        extra = {} if self.time_per_event_s is None else {"time_per_event_us": self.time_per_event_s * 1e6}
        return [_row(self.detector, name, m, extra) for name, m in self.metrics.items()]

    def warnings(self) -> list[str]:
        """Working points that are not resolved by the background sample (deduplicated)."""
        msgs = [wp["warning"] for m in self.metrics.values() for wp in m["working_points"] if wp["warning"]]
        return list(dict.fromkeys(msgs))

    def _labels_scores(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        b, s = self.scores[BACKGROUND_NAME], self.scores[name]
        y = np.r_[np.zeros(len(b), np.int8), np.ones(len(s), np.int8)]
        wb, ws = self.weights.get(BACKGROUND_NAME), self.weights.get(name)
        w = None if wb is None and ws is None else np.r_[
            np.ones(len(b)) if wb is None else wb, np.ones(len(s)) if ws is None else ws
        ]
        return y, np.r_[b, s].astype(np.float64), w

    def curves(self, name: str) -> dict[str, np.ndarray]:
        """ROC, PR and SIC curves of one signal."""
        y, s, w = self._labels_scores(name)
        fpr, tpr, _ = M.roc_curve(y, s, sample_weight=w)
        prec, rec, _ = M.precision_recall_curve(y, s, sample_weight=w)
        sfpr, stpr, sic, _ = M.sic_curve(y, s, sample_weight=w)
        return {"fpr": fpr, "tpr": tpr, "precision": prec, "recall": rec, "sic_tpr": stpr, "sic": sic}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (no per-event arrays)."""
        return {
            "detector": self.detector,
            "threshold": self.threshold,
            "fprs": list(self.fprs),
            "time_per_event_s": self.time_per_event_s,
            "metrics": self.metrics,
            "history": self.history,
            "contributions": self.contributions,
            "info": self.info,
        }

    # ------------------------------------------------------------------ figures
    def figures(self, experiment: str = "CMS", *, data: bool = False, prefix: str = "") -> list[tuple[str, str, str, Any]]:
        """``(file name, title, caption, Figure)`` for every plot of this evaluation."""
        from . import plotting as P

        figs: list[tuple[str, str, str, Any]] = []
        if BACKGROUND_NAME not in self.scores:
            return figs  # histogram-based (distributed) results: the table only
        names = self.signals
        curves = {n: self.curves(n) for n in names}
        det = self.detector
        with P.style(experiment):
            if self.history and (self.history.get("train_loss") or self.history.get("loss")):
                fig, ax = _fig()
                P.plot_history(self.history, ax)
                P.experiment_label(ax, experiment, data=data)
                figs.append((f"{prefix}history.png", f"Training history ({det})",
                             "Loss per epoch on training and validation background.", fig))
            fig, ax = _fig()
            P.plot_score_distributions(self.scores[BACKGROUND_NAME], {n: self.scores[n] for n in names}, ax,
                                       threshold=self.threshold)
            P.experiment_label(ax, experiment, data=data)
            figs.append((f"{prefix}scores.png", f"Score distributions ({det})",
                         "Normalised anomaly scores; the dashed line is the detector's threshold.", fig))
            fig, ax = _fig()
            P.plot_roc({n: (c["fpr"], c["tpr"]) for n, c in curves.items()}, ax,
                       aucs={n: self.metrics[n]["auc"] for n in names}, working_points=self.fprs)
            P.experiment_label(ax, experiment, data=data)
            figs.append((f"{prefix}roc.png", f"ROC curves ({det})",
                         "Signal against background efficiency; dashed lines mark the trigger working points.", fig))
            fig, ax = _fig()
            P.plot_pr({n: (c["precision"], c["recall"]) for n, c in curves.items()}, ax,
                      aps={n: self.metrics[n]["pr_auc"] for n in names})
            P.experiment_label(ax, experiment, data=data)
            figs.append((f"{prefix}pr.png", f"Precision-recall ({det})",
                         "Precision depends on the signal fraction of the evaluation sample.", fig))
            fig, ax = _fig()
            P.plot_sic({n: (c["sic_tpr"], c["sic"]) for n, c in curves.items()}, ax,
                       min_background=M.SIC_MIN_BACKGROUND)
            P.experiment_label(ax, experiment, data=data)
            figs.append((f"{prefix}sic.png", f"Significance improvement ({det})",
                         f"TPR/sqrt(FPR); points resting on fewer than {M.SIC_MIN_BACKGROUND} background events are left out.", fig))
            with_cm = [n for n in names if "at_threshold" in self.metrics[n]]
            if with_cm:
                fig, axes = _fig(ncols=len(with_cm), width=6.5 * len(with_cm), height=5.5, squeeze=False)
                for ax, n in zip(axes[0], with_cm):
                    P.plot_confusion_matrix(self.metrics[n]["at_threshold"]["confusion_matrix"], ax)
                    ax.set_title(n, fontsize="medium")
                figs.append((f"{prefix}confusion.png", f"Confusion matrices at the threshold ({det})",
                             f"Rows normalised to the true class; threshold {self.threshold:.4g}.", fig))
            if self.embedding:
                methods = [m for m in ("pca", "tsne") if m in self.embedding]
                fig, axes = _fig(ncols=len(methods), width=7 * len(methods), height=6.5, squeeze=False)
                for ax, m in zip(axes[0], methods):
                    P.plot_embedding(self.embedding[m], self.embedding["labels"], ax,
                                     method="PCA" if m == "pca" else "t-SNE", background=BACKGROUND_NAME)
                figs.append((f"{prefix}latent.png", f"2-D views of the {self.embedding['space']} ({det})",
                             f"PCA and t-SNE of a subsample of {len(self.embedding['labels'])} events, coloured by process.", fig))
            if self.features:
                bkg = self.features[BACKGROUND_NAME]
                sig = {n: v for n, v in self.features.items() if n != BACKGROUND_NAME}
                ncols = 4
                nrows = math.ceil(len(bkg) / ncols)
                fig, axes = _fig(nrows=nrows, ncols=ncols, width=16, height=3.6 * nrows, squeeze=False)
                P.plot_feature_grid(bkg, sig, axes)
                figs.append((f"{prefix}inputs.png", "Input distributions",
                             "Normalised distributions of the main inputs, SM background against each signal.", fig))
            if self.contributions:
                c = self.contributions
                fig, ax = _fig(width=17, height=3.2 + 0.7 * len(c["mean_error"]))
                P.plot_slot_contributions({k: np.asarray(v) for k, v in c["mean_error"].items()}, c["slots"], ax)
                figs.append((f"{prefix}objects.png", f"Which objects drive the score ({det})",
                             "Share of the mean reconstruction error carried by each object slot, per process.", fig))
        return figs

    # ------------------------------------------------------------------ files
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
            "rows": self.table(),
            "results": {self.detector: self.to_dict()},
            "warnings": self.warnings(),
            "info": self.info,
        }
        figs = self.figures(experiment, data=data) if plots else []
        return _write_outputs(out_dir, summary, figs, report=report, dpi=dpi)


def _fig(nrows: int = 1, ncols: int = 1, width: float = 8.5, height: float = 7.0, squeeze: bool = True):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def _write_outputs(out_dir: str | os.PathLike[str], summary: dict[str, Any],
                   figs: list[tuple[str, str, str, Any]], *, report: bool, dpi: int = 110) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    plot_entries = []
    for fname, title, caption, fig in figs:
        path = out / "plots" / fname
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
            _readable(tmp)
        plot_entries.append({"file": f"plots/{fname}", "title": title, "caption": caption})
        written[fname] = path
    summary = {**summary, "plots": plot_entries,
               "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    summary = _finite(summary)
    with atomic_path(out / "metrics.json") as tmp:
        # Strict JSON: undefined numbers (a max SIC without enough background) are null, not NaN.
        tmp.write_text(json.dumps(summary, indent=1, default=_json_default, allow_nan=False))
        _readable(tmp)
    written["metrics.json"] = out / "metrics.json"
    rows = summary["rows"]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
    with atomic_path(out / "metrics.csv") as tmp:
        tmp.write_text(buf.getvalue())
        _readable(tmp)
    written["metrics.csv"] = out / "metrics.csv"
    if report:
        from .report import write_report

        written["report.html"] = write_report(out)
    return written


def _finite(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _readable(path: Path) -> None:
    """Give a finished output the usual permissions (temporary files are created 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


# ---------------------------------------------------------------------- entry points
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


def _detector_label(detector: Any) -> str:
    return str(getattr(detector, "name", "") or type(detector).__name__)


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
    n_embed: int = N_EMBED,
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
        Log each unresolved working point once (they are always in ``result.warnings()``).

    Returns
    -------
    EvaluationResult
    """
    bkg, sigs = load_samples(background, signals)
    label = name or _detector_label(detector)
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
        fprs=tuple(float(f) for f in fprs), history=_history(detector), time_per_event_s=t_per_event,
        weights=weights,
        info={
            "config": {"detector": label, "params": _params(detector), "fprs": list(fprs),
                       "threshold": threshold, "threshold_rule": getattr(detector, "threshold_rule_", None),
                       **dict(info or {})},
            "data": {"background": _describe(bkg), "signals": {n: _describe(e) for n, e in sigs.items()}},
            "versions": versions(),
        },
    )
    if diagnostics:
        result.features = _summary_features(bkg, sigs, random_state)
        if embed:
            result.embedding = _embed(detector, bkg, sigs, n_embed, [m.lower().replace("-", "") for m in embed],
                                      random_state)
        result.contributions = _contributions(detector, bkg, sigs, N_CONTRIB, random_state)
        step(f"{label}: diagnostics")
    if log_warnings:
        for msg in result.warnings():
            log.warning("%s: %s", label, msg)
    return result


def _summary_features(bkg: EventSet, sigs: Mapping[str, EventSet], seed: int, n_max: int = 200_000):
    from .plotting import physics_features

    rng = np.random.default_rng(seed)
    out = {}
    for n, ev in {BACKGROUND_NAME: bkg, **sigs}.items():
        idx = _subsample(len(ev), n_max, rng)
        out[n] = {k: np.asarray(v) for k, v in physics_features(ev.data[idx], ev.feature_names).items()}
    return out


def _history(detector: Any) -> dict[str, Any] | None:
    h = getattr(detector, "history_", None)
    if not h:
        return None
    try:
        return {str(k): list(v) for k, v in dict(h).items()}
    except (TypeError, ValueError):
        return None


def _params(detector: Any) -> dict[str, Any]:
    try:
        params = detector.get_params()
    except Exception:  # a foreign estimator without get_params: its repr will do
        return {"repr": repr(detector)}
    return json.loads(json.dumps(params, default=str))


# ---------------------------------------------------------------------- comparison
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

    def table(self) -> list[dict[str, Any]]:
        """One row per detector and signal."""
        return [row for r in self.results.values() for row in r.table()]

    def warnings(self) -> list[str]:
        return list(dict.fromkeys(w for r in self.results.values() for w in r.warnings()))

    def figures(self, experiment: str = "CMS", *, data: bool = False) -> list[tuple[str, str, str, Any]]:
        from . import plotting as P

        figs: list[tuple[str, str, str, Any]] = []
        first = next(iter(self.results.values()))
        signals = first.signals
        dets = self.detectors
        with P.style(experiment):
            ncols = min(2, len(signals))
            nrows = math.ceil(len(signals) / ncols)
            fig, axes = _fig(nrows, ncols, width=8 * ncols, height=6.5 * nrows, squeeze=False)
            for ax, sig in zip(axes.ravel(), signals):
                curves, aucs = {}, {}
                for d, r in self.results.items():
                    c = r.curves(sig)
                    curves[d] = (c["fpr"], c["tpr"])
                    aucs[d] = r.metrics[sig]["auc"]
                P.plot_roc(curves, ax, aucs=aucs, working_points=first.fprs, title=sig)
            for ax in axes.ravel()[len(signals):]:
                ax.set_visible(False)
            P.experiment_label(axes.ravel()[0], experiment, data=data)
            figs.append(("compare_roc.png", "ROC curves per signal",
                         "Every detector on the same events; dashed lines mark the trigger working points.", fig))
            timed = {d: r for d, r in self.results.items() if r.time_per_event_s}
            if timed:
                wp_key = 1e-4 if 1e-4 in first.fprs else first.fprs[0]
                fig, axes = _fig(1, 2, width=15, height=6.2)
                mean_auc = {d: (r.time_per_event_s, float(np.mean([m["auc"] for m in r.metrics.values()])))
                            for d, r in timed.items()}
                P.plot_metric_vs_time(mean_auc, axes[0], ylabel="Mean ROC AUC")
                mean_tpr = {}
                for d, r in timed.items():
                    tprs = [wp["tpr"] for m in r.metrics.values() for wp in m["working_points"]
                            if wp["target_fpr"] == wp_key]
                    mean_tpr[d] = (r.time_per_event_s, float(np.mean(tprs)) if tprs else float("nan"))
                P.plot_metric_vs_time(mean_tpr, axes[1], ylabel=f"Mean TPR @ FPR {wp_key:.0e}".replace("e-0", "e-"))
                figs.append(("compare_time.png", "Performance against inference time",
                             "Mean over signals; time per event measured on the background sample, batched, on this CPU.", fig))
            if len(dets) > 1:
                fig, axes = _fig(1, 2, width=16, height=6.8)
                P.plot_matrix(self.agreement, axes[0], xlabels=dets, ylabels=dets, vmin=0, vmax=1,
                              colorbar_label="Decision agreement")
                axes[0].set_title(f"Agreement on signal events, FPR {self.agreement_fpr:.0e}", fontsize="small")
                P.plot_matrix(self.rank_correlation, axes[1], xlabels=dets, ylabels=dets, vmin=-1, vmax=1,
                              cmap="RdBu_r", colorbar_label="Spearman correlation")
                axes[1].set_title("Score rank correlation, all events", fontsize="small")
                figs.append(("compare_agreement.png", "Model agreement",
                             "Left: fraction of signal events on which two detectors, each cut at the same background "
                             "efficiency, take the same decision. Right: rank correlation of their scores.", fig))
            hist = {d: r.history for d, r in self.results.items() if r.history and r.history.get("train_loss")}
            if hist:
                fig, ax = _fig()
                for d, h in hist.items():
                    ep = np.arange(1, len(h["train_loss"]) + 1)
                    line, = ax.plot(ep, h["train_loss"], "-", label=f"{d} (train)")
                    if h.get("val_loss"):
                        ax.plot(ep[: len(h["val_loss"])], h["val_loss"], "--", color=line.get_color(), label=f"{d} (val)")
                ax.set_yscale("log")
                ax.set_xlabel("Epoch")
                ax.set_ylabel("Loss")
                ax.legend(fontsize="small")
                P.experiment_label(ax, experiment, data=data)
                figs.append(("compare_history.png", "Training histories", "Loss per epoch of the deep detectors.", fig))
        figs += first.figures(experiment, data=data, prefix=f"{_safe(first.detector)}_")
        return figs

    def save(self, out_dir: str | os.PathLike[str], *, plots: bool = True, report: bool = False,
             experiment: str = "CMS", data: bool = False, dpi: int = 110) -> dict[str, Path]:
        """Write ``metrics.json``, ``metrics.csv``, ``plots/*.png`` (and ``report.html``)."""
        first = next(iter(self.results.values()))
        summary = {
            "kind": "comparison",
            "detectors": self.detectors,
            "signals": first.signals,
            "fprs": list(first.fprs),
            "rows": self.table(),
            "results": {d: r.to_dict() for d, r in self.results.items()},
            "agreement": {"fpr": self.agreement_fpr, "detectors": self.detectors,
                          "decision_agreement": self.agreement.tolist(),
                          "rank_correlation": self.rank_correlation.tolist()},
            "warnings": self.warnings(),
            "info": self.info,
        }
        figs = self.figures(experiment, data=data) if plots else []
        return _write_outputs(out_dir, summary, figs, report=report, dpi=dpi)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def _rank(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x)


def compare(
    detectors: Mapping[str, Any] | Sequence[Any],
    background: Any,
    signals: Any,
    *,
    fprs: Sequence[float] = M.DEFAULT_FPRS,
    agreement_fpr: float = 1e-3,
    diagnostics: bool = True,
    n_embed: int = N_EMBED,
    embed: Sequence[str] = ("pca", "tsne"),
    random_state: int = 0,
    progress: ProgressFn | None = None,
    info: Mapping[str, Any] | None = None,
) -> ComparisonResult:
    """Evaluate several fitted detectors on the same events.

    Parameters
    ----------
    detectors : mapping label -> detector, or sequence of detectors
        The first one also gets the full diagnostics (latent views, slot contributions).
    agreement_fpr : float
        Background efficiency at which every detector is cut for the agreement matrix. Raised
        to ``10 / n_background`` when the background sample cannot resolve it.
    Other parameters as :func:`evaluate`.

    Returns
    -------
    ComparisonResult
    """
    if not isinstance(detectors, Mapping):
        labels = [_detector_label(d) for d in detectors]
        if len(set(labels)) != len(labels):
            labels = [f"{lab}-{i}" for i, lab in enumerate(labels)]
        detectors = dict(zip(labels, detectors))
    if not detectors:
        raise ConfigError("compare needs at least one detector.")
    bkg, sigs = load_samples(background, signals)
    results: dict[str, EvaluationResult] = {}
    for i, (label, det) in enumerate(detectors.items()):
        results[label] = evaluate(
            det, bkg, sigs, name=label, fprs=fprs, diagnostics=diagnostics and i == 0, embed=embed,
            n_embed=n_embed, random_state=random_state, progress=progress, info=info, log_warnings=False,
        )
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
    """Evaluate files too large for one process with :func:`hepad.distributed.evaluate_files`.

    Scores are never gathered: the metrics come from per-partition histograms (see
    :mod:`hepad.distributed` for what is exact). The result holds the metrics table only (no
    per-event scores, so no curves or diagnostic plots); the AUC error is Hanley-McNeil's on the
    event counts, and the PR AUC is not available (NaN).
    """
    from . import distributed

    if not hasattr(distributed, "evaluate_files"):
        raise ConfigError("This hepad has no distributed evaluation (hepad.distributed.evaluate_files).")
    sig_files = {k: [v] if isinstance(v, (str, os.PathLike)) else list(v) for k, v in signals.items()}
    res = distributed.evaluate_files(model, list(background), sig_files, scheduler=scheduler, n_workers=n_workers,
                                     fprs=list(fprs), progress=progress)
    detector = model
    if isinstance(model, (str, os.PathLike)):
        from .artifact import read_manifest

        try:
            label = name or str(read_manifest(model).get("detector") or Path(model).name)
        except Exception:  # the label is cosmetic; evaluate_files has already validated the model
            label = name or Path(model).name
        detector = None
    else:
        label = name or _detector_label(model)
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


def iter_rows_text(rows: Iterable[Mapping[str, Any]], fprs: Sequence[float]) -> list[list[str]]:
    """Rows formatted for a terminal table: detector, signal, AUC±err, TPRs (* = unresolved), max SIC, µs/event."""
    out = []
    for r in rows:
        cells = [str(r["detector"]), str(r["signal"]), f"{r['auc']:.3f}±{r['auc_err']:.3f}"]
        for f in fprs:
            k = fpr_key(f)
            if k in r:
                mark = "" if r[f"{k}_resolved"] else "*"
                cells.append(f"{r[k]:.3f}{mark}")
            else:
                cells.append("-")
        cells.append("-" if r["max_sic"] != r["max_sic"] else f"{r['max_sic']:.2f}")
        cells.append(f"{r['time_per_event_us']:.3g}" if r.get("time_per_event_us") else "-")
        out.append(cells)
    return out


def table_header(fprs: Sequence[float]) -> list[str]:
    """Column titles matching :func:`iter_rows_text`."""
    return ["Detector", "Signal", "ROC AUC"] + [f"TPR@{f:.0e}".replace("e-0", "e-") for f in fprs] + ["maxSIC", "µs/evt"]
