"""The study's detectors (fusion, flow, the two defaults) and the bad inputs they must refuse.

On the generator's tiny dataset (realistic Pythia events); the contract suite covers the
registry-wide behaviour (fit/score/save/load/threshold) of ``fusion``, ``ae-fusion``,
``flow`` and ``ae-trigger``.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import hepad
from hepad.detectors.base import DEFAULT_DETECTOR, TRIGGER_DETECTOR, make_detector
from hepad.detectors.fusion import TailCalibration
from hepad.errors import ConfigError, InputError

FAST_AE = {"epochs": 3, "batch_size": 256, "n_threads": 1}


@pytest.fixture(scope="module")
def tiny(tiny_dataset):
    return {k: hepad.read_events(p) for k, p in tiny_dataset.items()}


def _fast_fusion(**kw):
    members = [{"detector": "ae", "params": FAST_AE},
               {"detector": "ae", "params": {**FAST_AE, "preprocessing": {"scaling": "none"}}}]
    return make_detector("fusion", members=members, **kw)


# ---------------------------------------------------------------------- tail calibration
def test_tail_calibration_matches_background_rates():
    """On held-out background, the fraction above surprisal -log p is p: in the bulk (the table) and in
    the tail (the fit), up to a decade beyond the calibration's own reach (1/20,000)."""
    rng = np.random.default_rng(0)
    cal = TailCalibration.fit(rng.lognormal(size=20_000), tail_events=50, tail="auto")
    test = rng.lognormal(size=2_000_000)
    t = cal.surprisal(test)
    for p, (lo, hi) in {0.1: (0.9, 1.1), 1e-2: (0.8, 1.25), 1e-3: (0.6, 1.6), 1e-4: (0.4, 2.5), 1e-5: (0.3, 3.0)}.items():
        ratio = np.mean(t > -np.log(p)) / p
        assert lo < ratio < hi, (p, ratio)
    assert np.all(np.diff(cal.surprisal(np.sort(test[:10_000]))) >= 0)  # monotone: the order of events is kept


def test_tail_calibration_keeps_order_beyond_the_largest_calibration_score():
    cal = TailCalibration.fit(np.arange(1.0, 101.0), tail_events=10, tail="exponential")
    t = cal.surprisal(np.array([100.0, 150.0, 1e4]))
    assert t[0] < t[1] < t[2] and np.isfinite(t).all()


# ---------------------------------------------------------------------- fusion
def test_fusion_is_the_or_of_its_members(tiny):
    """combine='max': an event passes the fused cut at p exactly when some member's p-value is below it."""
    det = _fast_fusion().fit(tiny["sm_train"])
    t = det.member_surprisals(tiny["sm_test"])
    np.testing.assert_allclose(det.score_samples(tiny["sm_test"]), t.max(axis=0), rtol=1e-6)
    # the raw-input member sees the hard objects: its surprisal rises with the leading lepton pT
    ev = tiny["sm_test"].data.copy()
    ev[:, 1, 0] = np.where(ev[:, 1, 0] > 0, ev[:, 1, 0] * 20.0, ev[:, 1, 0])
    hard = det.member_surprisals(ev)
    filled = tiny["sm_test"].data[:, 1, 0] > 0  # events with a leading electron
    assert filled.sum() > 20 and np.median(hard[1][filled] - t[1][filled]) > 1.0


def test_fusion_weights_share_the_accept_rate(tiny, tmp_path):
    """weights=[3, 1]: at a fused cut, the first member takes about three times the background
    rate of the second; equal weights reproduce the unweighted score; the weights survive a save."""
    det = _fast_fusion(weights=[3.0, 1.0]).fit(tiny["sm_train"])
    X = tiny["sm_test"]
    t = det.member_surprisals(X)
    s = det.score_samples(X)
    np.testing.assert_allclose(s, np.maximum(t[0] + np.log(1.5), t[1] + np.log(0.5)), rtol=1e-6)
    # who fires at the cut that keeps 20 % of the calibrated background: member 0 below p 0.3,
    # member 1 below p 0.1 (calibrated on other events, so loose bounds on 200 events)
    cut = -np.log(0.2)
    first, second = np.mean(t[0] + np.log(1.5) > cut), np.mean(t[1] + np.log(0.5) > cut)
    assert 0.18 < first < 0.45 and 0.03 < second < 0.2 and first > 1.5 * second
    det.save(tmp_path / "w")
    np.testing.assert_allclose(hepad.load(tmp_path / "w").score_samples(X), s, rtol=1e-6)
    fisher = _fast_fusion(weights=[3.0, 1.0], combine="fisher").fit(tiny["sm_train"])
    tf = fisher.member_surprisals(X)
    np.testing.assert_allclose(fisher.score_samples(X), 1.5 * tf[0] + 0.5 * tf[1], rtol=1e-6)
    equal = _fast_fusion(weights=[2.0, 2.0]).fit(tiny["sm_train"])
    plain = _fast_fusion().fit(tiny["sm_train"])
    np.testing.assert_allclose(equal.score_samples(X), plain.score_samples(X), rtol=1e-6)


@pytest.mark.parametrize("weights, match", [
    ([1.0], "1 entries for 2 members"),
    ([1.0, 0.0], "positive"),
    ([1.0, float("nan")], "positive"),
    (["a", 1.0], "numbers"),
])
def test_fusion_refuses_bad_weights(weights, match):
    with pytest.raises(ConfigError, match=match):
        _fast_fusion(weights=weights)._validate_params()


def test_fusion_calibrates_on_events_its_members_never_saw(tiny):
    det = _fast_fusion(calibration_fraction=0.25).fit(tiny["sm_train"])
    assert det.n_calibration_ == round(0.25 * len(tiny["sm_train"]))
    # a held-out background rate near the calibrated one (tiny: 200 test events, loose bound)
    rate = np.mean(det.member_surprisals(tiny["sm_test"])[0] > -np.log(0.1))
    assert 0.03 < rate < 0.2


def test_fusion_refuses_too_few_events_for_calibration(tiny):
    with pytest.raises(InputError, match="too few"):
        _fast_fusion().fit(tiny["sm_train"][:4])


def test_fusion_streams_from_files(tiny_dataset, tmp_path):
    from hepad.data import fit_streaming

    det = fit_streaming(_fast_fusion(), [tiny_dataset["sm_train"]], val_files=[tiny_dataset["sm_val"]], n_fit=300)
    s = det.score_samples(hepad.read_events(tiny_dataset["sm_test"]))
    assert np.isfinite(s).all() and det.n_calibration_ == len(hepad.read_events(tiny_dataset["sm_val"]))
    det.save(tmp_path / "m")
    np.testing.assert_allclose(hepad.load(tmp_path / "m").score_samples(hepad.read_events(tiny_dataset["sm_test"])), s,
                               rtol=1e-6)


# ---------------------------------------------------------------------- flow
def test_flow_finds_the_four_lepton_signal(tiny):
    det = make_detector("flow", epochs=30, n_threads=1).fit(tiny["sm_train"])
    bkg, sig = det.score_samples(tiny["sm_test"]), det.score_samples(tiny["ato4l"])
    from hepad.metrics import roc_auc

    # 400 training events: far from converged, but well above chance (0.5)
    assert roc_auc(np.r_[np.zeros(len(bkg)), np.ones(len(sig))], np.r_[bkg, sig]) > 0.75


def test_flow_has_no_hardware_export(tiny):
    from hepad.errors import ConfigError

    det = make_detector("flow", epochs=1, n_threads=1).fit(tiny["sm_train"])
    with pytest.raises(ConfigError, match="no ONNX"):
        det.export_module()


# ---------------------------------------------------------------------- the defaults
def test_trigger_default_fits_the_budget_and_exports_to_onnx(tiny, tmp_path):
    import onnxruntime as ort

    from hepad.export import export_onnx

    det = make_detector(TRIGGER_DETECTOR, **FAST_AE).fit(tiny["sm_train"])
    mod = det.export_module()
    import torch

    lin = [m for m in mod.modules() if isinstance(m, torch.nn.Linear)]
    assert sum(2 * m.in_features * m.out_features + m.out_features for m in lin) <= 20_000
    path = export_onnx(det, tmp_path / "t.onnx")
    sess = ort.InferenceSession(str(path))
    X = tiny["sm_test"].features
    out = sess.run(None, {sess.get_inputs()[0].name: X})[0].ravel()
    np.testing.assert_allclose(out, det.score_samples(X), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_trigger_default_exports_to_hls4ml(tiny, tmp_path):
    from hepad.export import export_hls

    det = make_detector(TRIGGER_DETECTOR, **FAST_AE).fit(tiny["sm_train"])
    hls = export_hls(det, tmp_path / "hls")
    X = tiny["sm_test"].features
    from scipy.stats import spearmanr

    assert spearmanr(hls.predict(X), det.score_samples(X)).statistic > 0.95


def test_detectors_command_marks_both_defaults():
    out = subprocess.run([sys.executable, "-m", "hepad", "detectors"], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "COLUMNS": "200"}).stdout
    lines = {ln.split()[1]: ln for ln in out.splitlines() if len(ln.split()) > 1 and ln.split()[1] in
             (DEFAULT_DETECTOR, TRIGGER_DETECTOR)}
    assert "offline default" in lines[DEFAULT_DETECTOR]
    assert "trigger default" in lines[TRIGGER_DETECTOR]


# ---------------------------------------------------------------------- bad input (done-when 4)
def test_scoring_another_feature_set_is_refused(tiny):
    bkg = tiny["sm_train"]
    named = hepad.EventSet(bkg.features[:, :10].copy(), feature_names=[f"col{i}" for i in range(10)],
                           provenance={"source": "a.csv"})
    det = make_detector("mahalanobis").fit(named)
    other = hepad.EventSet(bkg.features[:, 10:20].copy(), feature_names=[f"other{i}" for i in range(10)],
                           provenance={"source": "b.csv"})
    with pytest.raises(InputError, match=r"b\.csv: its features differ .*other0.*col0"):
        det.score_samples(other)
    np.testing.assert_array_equal(det.score_samples(named.features), det.score_samples(named))  # same names: fine


@pytest.mark.parametrize("name", ["ae", "iforest", "ae-fusion"])
def test_single_event_training_set_is_refused(tiny, name):
    with pytest.raises(InputError, match=r"sm_train\.h5: the training set holds 1 event"):
        make_detector(name).fit(tiny["sm_train"][:1])


def test_all_zero_training_events_are_refused_but_constant_columns_are_fine(tiny):
    ev = tiny["sm_train"]
    zeros = hepad.EventSet(np.zeros_like(ev.data), provenance={"source": "zeros.h5"})
    with pytest.raises(InputError, match=r"zeros\.h5: every feature .* is zero"):
        make_detector("ae", **FAST_AE).fit(zeros)
    # MET eta is zero in every event and the 10th jet slot is nearly always empty: still trains
    det = make_detector("ae", **FAST_AE).fit(ev)
    assert np.isfinite(det.score_samples(tiny["sm_test"])).all()


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "hepad", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_errors_on_bad_inputs(tiny, tiny_dataset, tmp_path):
    from hepad.io import write_events

    write_events(tiny["sm_train"][:1], tmp_path / "one.h5")
    write_events(tiny["ato4l"][:0], tmp_path / "empty.h5")
    r = _cli("train", "--data", "one.h5", "-o", "m1", "--epochs", "1", cwd=tmp_path)
    assert r.returncode != 0 and "one.h5: the training set holds 1 event" in r.stderr
    assert not (tmp_path / "m1").exists()
    r = _cli("train", "--detector", "mahalanobis", "--data", str(tiny_dataset["sm_train"]), "-o", "m", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _cli("evaluate", "m", "-b", str(tiny_dataset["sm_test"]), "-s", "empty.h5", "-o", "ev", cwd=tmp_path)
    assert r.returncode != 0 and "empty.h5" in r.stderr and "no events" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
