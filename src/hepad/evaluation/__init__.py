"""Evaluate one detector, or compare several, on background and signal samples.

::

    import hepad
    from hepad.evaluation import evaluate, compare

    det = hepad.load("model/")
    result = evaluate(det, "sm_test.h5", {"ato4l": "ato4l.h5", "lq": "lq-btau.h5"})
    result.to_pandas()                  # one row per signal: AUC, TPR at 1e-3/1e-4/1e-5, SIC, ...
    result.plot_roc(ax=ax)              # or plot_scores, plot_efficiency_vs_rate
    result.save("eval/", report=True)   # metrics.json, metrics.csv, plots/*.png, report.html

    cmp = compare({"ae": ae, "iforest": forest}, "sm_test.h5", {"ato4l": "ato4l.h5"})
    cmp.save("cmp/", report=True)

The package is split by concern: :mod:`.samples` (reading the samples), :mod:`.rows` (metrics of
one signal and their table rows, from :mod:`hepad.metrics`), :mod:`.diagnostics` (latent views,
per-object errors, inputs, training convergence), :mod:`.results` (the result containers and
their files), :mod:`.figures` (the figure sets, drawn with :mod:`hepad.plotting`) and :mod:`.run`
(the entry points). ``save`` is the only method that writes, through :mod:`hepad._write`.
"""

from __future__ import annotations

from .._write import versions
from .diagnostics import N_CONTRIB, N_EMBED
from .figures import FigureSpec
from .results import ComparisonResult, EvaluationResult
from .rows import fpr_key, metric_row, signal_metrics
from .run import compare, detector_label, evaluate, evaluate_files
from .samples import BACKGROUND_NAME, load_samples, split_signal_spec

__all__ = [
    "EvaluationResult",
    "ComparisonResult",
    "FigureSpec",
    "evaluate",
    "compare",
    "evaluate_files",
    "load_samples",
    "split_signal_spec",
    "signal_metrics",
    "metric_row",
    "fpr_key",
    "detector_label",
    "versions",
    "BACKGROUND_NAME",
    "N_EMBED",
    "N_CONTRIB",
]
