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
    # The axis stops where the data stop (FPR 1e-4 here), so the 1e-5 line is not drawn.
    vlines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert sorted(ln.get_xdata()[0] for ln in vlines) == [1e-4, 1e-3]
    assert 1e-5 < ax.get_xlim()[0] < 1e-4


def test_score_distributions_normalised_with_flow_and_errors():
    ax = _ax()
    rng = np.random.default_rng(0)
    bkg = rng.normal(0, 1, 1000)
    sig = np.r_[rng.normal(3, 1, 297), 50.0, 60.0, 70.0]  # three far outliers: the overflow bin
    P.plot_score_distributions(bkg, {"s": sig}, ax, threshold=2.0, log_x=False)
    assert ax.get_yscale() == "log"
    steps = list(ax.patches)
    assert len(steps) == 2  # background (filled) + one signal
    for st in steps:
        # Fractions of events per bin: everything, overflow included, sums to one.
        assert np.sum(st.get_data().values) == pytest.approx(1.0)
    sig_vals, edges = steps[1].get_data().values, steps[1].get_data().edges
    # The outliers are drawn, in the overflow bin beyond the last regular edge.
    beyond = np.mean(sig >= edges[-2])
    assert 0 < beyond <= 3 / 300 and sig_vals[-1] == pytest.approx(beyond)
    assert ax.containers, "signal histogram has no error bars"
    assert any(len(ln.get_xdata()) and ln.get_xdata()[0] == 2.0 for ln in ax.get_lines())  # the threshold
    assert ax.get_xlabel() and ax.get_ylabel() == "Fraction of events / bin"


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
    np.testing.assert_array_equal(feats["Number of jets"], mult["jets"])
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


# ---------------------------------------------------------------------- conventions on the real figure set
import logging  # noqa: E402

from _eval_helpers import comparison_of  # noqa: E402


@pytest.fixture(scope="module")
def tiny_figures(tiny_dataset):
    """Every figure of a three-detector comparison on the tiny Pythia dataset."""
    import matplotlib.pyplot as plt

    cmp = comparison_of(tiny_dataset)
    before = plt.get_fignums()
    figs = cmp.figures()
    assert plt.get_fignums() == before, "building the figures leaked a pyplot figure"
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    for spec in figs:
        spec.figure.set_dpi(50)  # geometry is in inches; a coarse raster draws faster
        FigureCanvasAgg(spec.figure).draw()  # the layout as saved: constrained layout runs at draw time
    return cmp, figs


def _label_texts(fig):
    return [t for ax in fig.axes for t in ax.texts if t.get_gid() == P.LABEL_GID]


def test_every_figure_has_one_correct_label(tiny_figures):
    _, figs = tiny_figures
    assert len(figs) >= 25
    for spec in figs:
        texts = _label_texts(spec.figure)
        words = [t.get_text() for t in texts]
        assert words == ["hepad", "Simulation", "(13 TeV)"], (spec.name, words)
        everything = " ".join(t.get_text() for ax in spec.figure.axes for t in ax.texts)
        assert "Simulation Simulation" not in everything and everything.count("Simulation") == 1, spec.name
        r = spec.figure.canvas.get_renderer()
        bold, status, energy = (t.get_window_extent(r) for t in texts)
        assert texts[0].get_fontweight() == "bold" and texts[1].get_fontstyle() == "italic"
        # Bold name, then the italic word to its right, on one line, not overlapping.
        assert status.x0 >= bold.x1 and not bold.overlaps(status), spec.name
        assert abs(status.y0 - bold.y0) < 0.5 * bold.height
        assert not energy.overlaps(status)
        # The whole label is inside the figure (not cut off at the top or the right).
        fb = spec.figure.bbox
        for bb in (bold, status, energy):
            assert fb.x0 - 1 <= bb.x0 and bb.x1 <= fb.x1 + 1 and bb.y1 <= fb.y1 + 1, spec.name


def test_open_data_label():
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    P.experiment_label(ax, data=True)
    assert [t.get_text() for t in ax.texts if t.get_gid() == P.LABEL_GID] == ["hepad", "Open Data", "(13 TeV)"]


def _data_bbox(ax, renderer):
    """Union of the drawn data (lines, patches, collections) clipped to the axes, in pixels."""
    from matplotlib.transforms import Bbox

    boxes = []
    axbox = ax.get_window_extent(renderer)
    for art in list(ax.lines) + list(ax.patches) + list(ax.collections):
        if not art.get_visible() or art.get_label() in ("Random",):
            continue
        try:
            bb = art.get_window_extent(renderer)
        except Exception:  # noqa: BLE001 - an artist without an extent draws nothing to overlap
            continue
        if not (np.isfinite(bb.bounds).all() and bb.width > 0 or bb.height > 0):
            continue
        inter = Bbox.intersection(bb, axbox)
        if inter is not None and inter.width > 0 and inter.height > 0:
            boxes.append(inter)
    return Bbox.union(boxes) if boxes else None


def test_no_legend_overlaps_the_data(tiny_figures):
    _, figs = tiny_figures
    n_legends = 0
    for spec in figs:
        fig = spec.figure
        r = fig.canvas.get_renderer()
        legends = [(ax, ax.get_legend()) for ax in fig.axes if ax.get_legend() is not None]
        legends += [(None, leg) for leg in fig.legends]
        for owner, leg in legends:
            n_legends += 1
            lb = leg.get_window_extent(r)
            for ax in fig.axes if owner is None else [owner]:
                db = _data_bbox(ax, r)
                assert db is None or not lb.overlaps(db), f"{spec.name}: legend over the data of {ax.get_xlabel()!r}"
            # Nor does it leave the figure.
            assert lb.x1 <= fig.bbox.x1 + 1 and lb.x0 >= -1, spec.name
    assert n_legends >= 20


def test_axes_labelled_and_roc_axis_stops_at_the_data(tiny_figures):
    cmp, figs = tiny_figures
    for spec in figs:
        for ax in spec.figure.axes:
            if not ax.get_visible() or ax.get_label() == "<colorbar>":
                continue
            assert ax.get_xlabel() and ax.get_ylabel(), f"{spec.name}: unlabelled axis"
    n_bkg = cmp.results["ae"].metrics["ato4l"]["n_background"]
    roc = next(s for s in figs if s.name == "ae_roc.png").figure.axes[0]
    lo = roc.get_xlim()[0]
    assert 1 / n_bkg / 2 <= lo < 1 / n_bkg  # stops just below the smallest FPR the sample has
    rate = next(s for s in figs if s.name == "ae_rate.png").figure.axes[0]
    assert rate.get_xlim()[0] == pytest.approx(lo * 40e6) and "[Hz]" in rate.get_xlabel()
    rej = next(s for s in figs if s.name == "ae_rejection.png").figure.axes[0]
    assert rej.get_yscale() == "log" and rej.get_ylim()[1] == pytest.approx(1 / lo)


def test_every_detector_gets_its_plots_and_histories_have_own_axes(tiny_figures):
    cmp, figs = tiny_figures
    names = {s.name for s in figs}
    for d in cmp.detectors:
        for kind in ("scores", "roc", "rejection", "rate", "pr", "sic", "confusion", "latent"):
            assert f"{d}_{kind}.png" in names, (d, kind)
    assert "ae_objects.png" in names and "ae_history.png" in names
    hist = next(s for s in figs if s.name == "compare_history.png").figure
    drawn = [ax for ax in hist.axes if ax.get_visible() and ax.lines]
    assert len(drawn) == sum(1 for r in cmp.results.values() if r.history)  # one axis per trained network
    # Ticks of the AUC-vs-time plot: several labels even within one decade.
    t = next(s for s in figs if s.name == "compare_time.png").figure.axes[0]
    lo, hi = t.get_xlim()
    labels = [tk for tk in t.get_xticklabels() if tk.get_text() and lo <= tk.get_position()[0] <= hi]
    assert len(labels) >= 2


def test_saving_logs_no_font_warnings_and_leaks_no_figure(tiny_dataset, tmp_path, caplog):
    import matplotlib.pyplot as plt

    cmp = comparison_of(tiny_dataset)
    res = cmp.results["iforest"]
    before = plt.get_fignums()
    with caplog.at_level(logging.WARNING, logger="matplotlib"):
        res.save(tmp_path / "e", report=False, dpi=40)
    assert plt.get_fignums() == before
    assert not [r for r in caplog.records if "findfont" in r.getMessage()]


def test_clopper_pearson_band_matches_metrics():
    from hepad.metrics import binomial_interval

    k = np.array([0, 3, 10, 50])
    lo, hi = P.clopper_pearson_band(k, 50)
    for i, kk in enumerate(k):
        elo, ehi = binomial_interval(kk, 50)
        assert lo[i] == pytest.approx(elo) and hi[i] == pytest.approx(ehi)


def test_efficiency_vs_rate_in_hz_with_l1_band():
    ax = _ax()
    fpr = np.array([0.0, 1e-5, 1e-3, 1e-2, 1.0])
    tpr = np.array([0.0, 0.1, 0.4, 0.7, 1.0])
    P.plot_efficiency_vs_rate({"s": (fpr, tpr)}, ax)
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), fpr[1:] * 40e6)
    band = [p for p in ax.patches if "L1 accept" in p.get_label()]
    assert len(band) == 1
    assert band[0].get_x() == pytest.approx(1e5)  # hatched from the 100 kHz L1 accept rate up
    assert ax.get_xlim() == pytest.approx((1e-5 / 1.5 * 40e6, 40e6))
