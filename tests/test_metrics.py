"""hepad.metrics against scikit-learn and hand-computed cases (ties, weights, small samples)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn import metrics as skm

from hepad import metrics as M
from hepad.errors import ConfigError, InputError


def _sample(seed: int, n_bkg: int = 3000, n_sig: int = 400, ties: bool = False, weights: bool = False):
    rng = np.random.default_rng(seed)
    s = np.r_[rng.normal(0, 1, n_bkg), rng.normal(1.2, 1, n_sig)]
    if ties:
        s = np.round(s, 1)  # many exact ties across classes
    y = np.r_[np.zeros(n_bkg, int), np.ones(n_sig, int)]
    w = rng.uniform(0.1, 3.0, y.size) if weights else None
    return y, s, w


CASES = [
    dict(seed=0),
    dict(seed=1, ties=True),
    dict(seed=2, weights=True),
    dict(seed=3, ties=True, weights=True),
]


@pytest.mark.parametrize("case", CASES, ids=["plain", "ties", "weights", "ties+weights"])
def test_roc_auc_pr_auc_match_sklearn(case):
    y, s, w = _sample(**case)
    assert M.roc_auc(y, s, sample_weight=w) == pytest.approx(skm.roc_auc_score(y, s, sample_weight=w), abs=1e-12)
    assert M.pr_auc(y, s, sample_weight=w) == pytest.approx(
        skm.average_precision_score(y, s, sample_weight=w), abs=1e-12
    )


@pytest.mark.parametrize("case", CASES, ids=["plain", "ties", "weights", "ties+weights"])
@pytest.mark.parametrize("drop", [True, False])
def test_roc_curve_matches_sklearn(case, drop):
    y, s, w = _sample(**case)
    fpr, tpr, thr = M.roc_curve(y, s, sample_weight=w, drop_intermediate=drop)
    efpr, etpr, ethr = skm.roc_curve(y, s, sample_weight=w, drop_intermediate=drop)
    np.testing.assert_allclose(fpr, efpr, atol=1e-12)
    np.testing.assert_allclose(tpr, etpr, atol=1e-12)
    np.testing.assert_array_equal(thr, ethr)


@pytest.mark.parametrize("case", CASES[:3], ids=["plain", "ties", "weights"])
def test_precision_recall_curve_matches_sklearn(case):
    y, s, w = _sample(**case, n_bkg=300, n_sig=60)
    p, r, t = M.precision_recall_curve(y, s, sample_weight=w)
    ep, er, et = skm.precision_recall_curve(y, s, sample_weight=w)
    np.testing.assert_allclose(p, ep, atol=1e-12)
    np.testing.assert_allclose(r, er, atol=1e-12)
    np.testing.assert_array_equal(t, et)


def test_auc_hand_computed_with_ties():
    # Pairs (sig, bkg): sig 3 beats 1 and 2; sig 2 ties 2 (1/2) and beats 1 -> (2 + 1.5) / 4.
    y = [0, 0, 1, 1]
    s = [1.0, 2.0, 2.0, 3.0]
    assert M.roc_auc(y, s) == pytest.approx(3.5 / 4)
    # All tied: no discrimination at all.
    assert M.roc_auc([0, 1, 0, 1], [5, 5, 5, 5]) == pytest.approx(0.5)
    # Reversed scores: AUC 0.
    assert M.roc_auc([0, 0, 1], [2, 3, 1]) == pytest.approx(0.0)


def test_weighted_auc_equals_repeated_events():
    # An event of weight 2 counts as two copies of it.
    y = np.array([0, 0, 1, 1, 0])
    s = np.array([0.1, 0.7, 0.5, 0.9, 0.3])
    w = np.array([1, 2, 1, 3, 1])
    rep = np.repeat(np.arange(5), w)
    assert M.roc_auc(y, s, sample_weight=w) == pytest.approx(M.roc_auc(y[rep], s[rep]))
    assert M.pr_auc(y, s, sample_weight=w) == pytest.approx(M.pr_auc(y[rep], s[rep]))
    assert M.roc_auc(y, s, sample_weight=w) != pytest.approx(M.roc_auc(y, s))


@pytest.mark.parametrize("seed", [0, 1])
def test_threshold_metrics_match_sklearn(seed):
    y, s, w = _sample(seed, n_bkg=500, n_sig=200, weights=bool(seed))
    thr = 0.8
    m = M.threshold_metrics(y, s, thr, sample_weight=w)
    pred = (s > thr).astype(int)
    assert m.accuracy == pytest.approx(skm.accuracy_score(y, pred, sample_weight=w))
    assert m.precision == pytest.approx(skm.precision_score(y, pred, sample_weight=w))
    assert m.recall == pytest.approx(skm.recall_score(y, pred, sample_weight=w))
    assert m.sensitivity == m.recall
    assert m.f1 == pytest.approx(skm.f1_score(y, pred, sample_weight=w))
    assert m.mcc == pytest.approx(skm.matthews_corrcoef(y, pred, sample_weight=w))
    cm = skm.confusion_matrix(y, pred, sample_weight=w)
    np.testing.assert_allclose(m.confusion_matrix, cm)
    tn, fp = cm[0]
    assert m.specificity == pytest.approx(tn / (tn + fp))
    assert m.fpr == pytest.approx(fp / (tn + fp))
    assert m.trigger_rate_hz == pytest.approx(m.fpr * 40e6)


def test_threshold_metrics_uses_strict_cut_and_zero_division():
    # Score equal to the threshold is not selected (as BaseDetector.predict).
    m = M.threshold_metrics([0, 1, 1], [1.0, 1.0, 2.0], 1.0)
    assert m.confusion_matrix == [[1, 0], [1, 1]]
    # Nothing selected: precision and F1 are 0, not NaN.
    m = M.threshold_metrics([0, 1], [0.0, 1.0], 5.0)
    assert m.precision == 0.0 and m.f1 == 0.0 and m.mcc == 0.0


def test_tpr_at_fpr_constructed():
    # 1000 background scores 0..999, signal scores 990.5..999.5 and 0.5..9.5 (10 each).
    bkg = np.arange(1000, dtype=float)
    sig = np.r_[np.arange(990, 1000) + 0.5, np.arange(10) + 0.5]
    y = np.r_[np.zeros(1000), np.ones(20)]
    s = np.r_[bkg, sig]
    wp = M.tpr_at_fpr(y, s, 5e-3, min_background_per_fpr=1)
    # 5 background events (995..999) may pass: cut at 994, passing signal 994.5..999.5 = 6 of 20.
    assert wp.threshold == 994.0
    assert wp.fpr == pytest.approx(5e-3)
    assert wp.n_background_pass == 5
    assert wp.tpr == pytest.approx(6 / 20)
    assert wp.n_signal_pass == 6
    assert wp.tpr_low < wp.tpr < wp.tpr_high
    assert wp.resolved
    assert wp.trigger_rate_hz == pytest.approx(5e-3 * 40e6)
    assert wp.background_rejection == pytest.approx(200)
    # A target between achievable points rounds down (never exceeds the rate budget).
    wp = M.tpr_at_fpr(y, s, 5.9e-3, min_background_per_fpr=1)
    assert wp.fpr == pytest.approx(5e-3) and wp.threshold == 994.0
    # Below one background event: the cut is the maximum background score.
    wp = M.tpr_at_fpr(y, s, 1e-4, min_background_per_fpr=1)
    assert wp.threshold == 999.0 and wp.fpr == 0.0 and wp.tpr == pytest.approx(1 / 20)


def test_tpr_at_fpr_ties_in_background_never_exceed_budget():
    # 10 background events tied at the top: a cut inside the tie is impossible.
    bkg = np.r_[np.zeros(990), np.full(10, 5.0)]
    y = np.r_[np.zeros(1000), np.ones(4)]
    s = np.r_[bkg, [6.0, 6.0, 5.0, 1.0]]
    wp = M.tpr_at_fpr(y, s, 5e-3, min_background_per_fpr=1)
    assert wp.threshold == 5.0 and wp.fpr == 0.0 and wp.tpr == pytest.approx(0.5)
    wp = M.tpr_at_fpr(y, s, 1e-2, min_background_per_fpr=1)
    assert wp.threshold == 0.0 and wp.fpr == pytest.approx(1e-2) and wp.tpr == pytest.approx(1.0)


def test_tpr_at_fpr_weighted_equals_repeated():
    rng = np.random.default_rng(4)
    y, s, _ = _sample(4, n_bkg=400, n_sig=100)
    w = rng.integers(1, 4, size=y.size)
    rep = np.repeat(np.arange(y.size), w)
    a = M.tpr_at_fpr(y, s, 2e-2, sample_weight=w, min_background_per_fpr=1)
    b = M.tpr_at_fpr(y[rep], s[rep], 2e-2, min_background_per_fpr=1)
    assert a.threshold == b.threshold
    assert a.tpr == pytest.approx(b.tpr)
    assert a.fpr == pytest.approx(b.fpr)
    assert a.n_background == pytest.approx(M.effective_count(w[y == 0]))


def test_tpr_at_fpr_small_background_warns_and_flags(caplog):
    y, s, _ = _sample(5, n_bkg=20000, n_sig=100)
    with caplog.at_level(logging.WARNING, logger="hepad.metrics"):
        wps = M.tpr_at_fpr(y, s, [1e-3, 1e-4])
    assert [wp.target_fpr for wp in wps] == [1e-3, 1e-4]
    assert wps[0].resolved and wps[0].warning == ""  # 20000 >= 10 / 1e-3
    assert not wps[1].resolved  # 20000 < 10 / 1e-4
    assert "1e-04" in wps[1].warning and "100000" in wps[1].warning
    assert any("not resolved" in r.message for r in caplog.records)
    assert wps[1].to_dict()["resolved"] is False


def test_binomial_intervals_against_scipy():
    from scipy.stats import binomtest

    for k, n in [(0, 10), (3, 10), (10, 10), (37, 200)]:
        ref = binomtest(k, n).proportion_ci(confidence_level=0.6827, method="exact")
        lo, hi = M.binomial_interval(k, n, method="clopper-pearson")
        assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=1e-9)
        ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        lo, hi = M.binomial_interval(k, n, confidence=0.95, method="wilson")
        assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=1e-9)
    with pytest.raises(ConfigError, match="wilson"):
        M.binomial_interval(1, 2, method="agresti")


def test_auc_uncertainty_hanley_mcneil_and_bootstrap_agree():
    y, s, _ = _sample(6, n_bkg=1500, n_sig=300)
    auc = M.roc_auc(y, s)
    hm = M.roc_auc_uncertainty(y, s)
    # Hand formula (Hanley & McNeil 1982).
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    ref = np.sqrt((auc * (1 - auc) + 299 * (q1 - auc**2) + 1499 * (q2 - auc**2)) / (300 * 1500))
    assert hm == pytest.approx(ref)
    bs = M.roc_auc_uncertainty(y, s, method="bootstrap", n_bootstrap=60, random_state=1)
    assert 0.6 * hm < bs < 1.6 * hm
    # More events, smaller error.
    y2, s2, _ = _sample(6, n_bkg=6000, n_sig=1200)
    assert M.roc_auc_uncertainty(y2, s2) < hm
    with pytest.raises(ConfigError, match="hanley-mcneil"):
        M.roc_auc_uncertainty(y, s, method="jackknife")


def test_sic_curve_ignores_low_statistics_region():
    y, s, _ = _sample(7, n_bkg=2000, n_sig=500)
    fpr, tpr, sic, thr = M.sic_curve(y, s, min_background=20)
    assert fpr.min() >= 20 / 2000 - 1e-12
    np.testing.assert_allclose(sic, tpr / np.sqrt(fpr))
    best = M.max_sic(y, s, min_background=20)
    assert best.sic == pytest.approx(sic.max())
    # With a lower limit the maximum can only grow (more points are allowed).
    assert M.max_sic(y, s, min_background=1).sic >= best.sic
    # Hand case: perfect separation, 100 bkg; at 10 bkg events passing, TPR = 1 -> SIC = 1/sqrt(0.1).
    y = np.r_[np.zeros(100), np.ones(10)]
    s = np.r_[np.arange(100), 1000 + np.arange(10)]
    assert M.max_sic(y, s, min_background=10).sic == pytest.approx(1 / np.sqrt(0.1))
    assert np.isnan(M.max_sic(y, s, min_background=1000).sic)


def test_rates_and_rejection():
    assert M.trigger_rate_hz(1e-4) == pytest.approx(4000.0)
    assert M.trigger_rate_hz(1e-3, collision_rate_hz=1e6) == pytest.approx(1000.0)
    np.testing.assert_allclose(M.background_rejection([1e-3, 0.5]), [1000.0, 2.0])
    assert M.background_rejection(0.0) == np.inf


def test_input_errors_are_helpful():
    with pytest.raises(InputError, match="both classes"):
        M.roc_auc([0, 0], [1, 2])
    with pytest.raises(InputError, match="same length"):
        M.roc_auc([0, 1], [1, 2, 3])
    with pytest.raises(InputError, match="NaN"):
        M.roc_auc([0, 1], [np.nan, 2])
    with pytest.raises(InputError, match="0 \\(background\\) and 1"):
        M.roc_auc([0, 2], [1, 2])
    with pytest.raises(ConfigError, match="\\(0, 1\\)"):
        M.tpr_at_fpr([0, 1], [1, 2], 0.0)
