"""hepad.plotting: each function draws on the given axes and returns them; helpers compute the right numbers."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from hepad import _layout as L
from hepad import plotting as P
from hepad._toy import toy_events
from hepad.errors import ConfigError


def _ax(ncols: int = 1):
    fig = Figure(figsize=(4 * ncols, 4))
    return fig.subplots(1, ncols)


def test_roc_plot_log_axis_and_working_points():
    ax = _ax()
    fpr = np.array([0.0, 1e-4, 1e-2, 1.0])
    tpr = np.array([0.0, 0.2, 0.6, 1.0])
    out = P.plot_roc({"sig": (fpr, tpr)}, ax, aucs={"sig": 0.81234})
    assert out is ax
    assert ax.get_xscale() == "log"
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), fpr[1:])  # FPR = 0 cannot be drawn on a log axis
    assert "AUC = 0.812" in ax.get_legend().get_texts()[0].get_text()
    vlines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert sorted(ln.get_xdata()[0] for ln in vlines) == [1e-5, 1e-4, 1e-3]
    assert ax.get_xlim()[0] < 1e-5


def test_score_distributions_normalised_with_threshold():
    ax = _ax()
    rng = np.random.default_rng(0)
    P.plot_score_distributions(rng.exponential(1, 1000) + 0.01, {"s": rng.exponential(5, 300) + 0.01}, ax, threshold=2.0)
    assert ax.get_yscale() == "log"
    steps = [p for p in ax.patches]
    assert len(steps) == 2  # background (filled) + one signal
    for st in steps:
        vals, edges = st.get_data().values, st.get_data().edges
        assert np.sum(vals * np.diff(edges)) == pytest.approx(1.0)
    assert any(ln.get_xdata()[0] == 2.0 for ln in ax.get_lines())


def test_confusion_matrix_rows_normalised():
    ax = _ax()
    P.plot_confusion_matrix([[90, 10], [30, 70]], ax)
    img = ax.get_images()[0].get_array()
    np.testing.assert_allclose(img, [[0.9, 0.1], [0.3, 0.7]])
    assert [t.get_text() for t in ax.texts] == ["0.900", "0.100", "0.300", "0.700"]


def test_physics_features_and_slot_contributions():
    ev = toy_events(200, "signal", seed=4)
    feats = P.physics_features(ev.data)
    mult = ev.multiplicities
    np.testing.assert_array_equal(feats["Jets"], mult["jets"])
    lead_e = feats[r"Leading electron $p_T$ [GeV]"]
    has_e = ev.data[:, 1, 0] > 0
    assert np.isnan(lead_e[~has_e]).all() and (lead_e[has_e] > 0).all()
    np.testing.assert_allclose(feats[r"$H_T$ [GeV]"], ev.data[:, L.JET_SLOTS, 0].sum(axis=1), rtol=1e-6)
    # Per-slot sums: columns named <slot>_<var>, here pt and eta only (phi dropped).
    names = [f"{s}_{v}" for s in L.SLOT_NAMES for v in ("pt", "eta")]
    fe = np.zeros((3, len(names)))
    fe[:, names.index("mu2_pt")] = 2.0
    fe[:, names.index("mu2_eta")] = 1.0
    fe[0, names.index("MET_pt")] = 3.0
    slots, contrib = P.slot_contributions(fe, names)
    assert slots == list(L.SLOT_NAMES)
    assert contrib[slots.index("mu2")] == pytest.approx(3.0)
    assert contrib[0] == pytest.approx(1.0)
    assert contrib.sum() == pytest.approx(4.0)


def test_feature_grid_hides_unused_axes_and_skips_nan():
    fig = Figure(figsize=(12, 6))
    axes = fig.subplots(3, 3)
    b = P.physics_features(toy_events(300, seed=5).data)
    s = {"x": P.physics_features(toy_events(100, "signal", seed=6).data)}
    P.plot_feature_grid(b, s, axes)
    flat = axes.ravel()
    assert all(ax.get_visible() for ax in flat[:8]) and not flat[8].get_visible()
    for ax in flat[:8]:
        for st in ax.patches:
            assert np.isfinite(st.get_data().values).all()


def test_other_plots_return_their_axes():
    axes = _ax(5)
    rng = np.random.default_rng(1)
    assert P.plot_history({"epoch": [0, 1, 2], "train_loss": [100.0, 2.0, 1.0], "val_loss": [90.0, 3.0, 2.0]}, axes[0]) is axes[0]
    assert axes[0].get_yscale() == "log" and axes[0].get_lines()[0].get_xdata()[0] == 1
    assert P.plot_pr({"s": (np.array([0.5, 1.0]), np.array([1.0, 0.0]))}, axes[1]) is axes[1]
    assert P.plot_sic({"s": (np.linspace(0.1, 1, 5), np.array([1.0, 3.0, 2.0, 1.5, 1.0]))}, axes[2]) is axes[2]
    assert "max 3.0" in axes[2].get_legend().get_texts()[0].get_text()
    xy = rng.normal(size=(50, 2))
    labels = ["SM"] * 30 + ["sig"] * 20
    assert P.plot_embedding(xy, labels, axes[3], background="SM") is axes[3]
    assert [t.get_text() for t in axes[3].get_legend().get_texts()] == ["SM", "sig"]
    assert P.plot_metric_vs_time({"ae": (2e-6, 0.9), "if": (5e-5, 0.8)}, axes[4]) is axes[4]
    assert axes[4].get_xscale() == "log"


def test_style_and_label():
    import matplotlib as mpl

    before = mpl.rcParams["font.size"]
    with P.style("ATLAS"):
        fig = Figure()
        ax = fig.subplots()
        P.experiment_label(ax, "ATLAS", data=True)
        texts = " ".join(t.get_text() for t in ax.texts)
        assert "hepad" in texts and "Open Data" in texts and "ATLAS" not in texts
    assert mpl.rcParams["font.size"] == before  # the global style is restored
    with pytest.raises(ConfigError, match="CMS"):
        with P.style("DELPHI"):
            pass
