"""Ensemble: normalisation on background, mean/max combination, and calibrated voting."""

from __future__ import annotations

import numpy as np
import pytest

from hepad._toy import toy_events
from hepad.artifact import load
from hepad.detectors.base import make_detector
from hepad.detectors.ensemble import DEFAULT_MEMBERS, EnsembleDetector, _rank, _rank_table, _tail_slopes
from hepad.errors import ConfigError

MEMBERS = [{"detector": "mahalanobis"}, {"detector": "knn", "params": {"n_neighbors": 3}}, {"detector": "iforest", "params": {"n_estimators": 30}}]


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # BLAS/OpenMP threads that spin-wait make small fits many times slower on a shared machine.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def held_out():
    return toy_events(3000, "background", seed=21)


@pytest.fixture(scope="module")
def fitted(toy_bkg, toy_bkg_val):
    """One fitted ensemble; other combination rules reuse its members (same normalisation)."""
    return make_detector("ensemble", members=MEMBERS).fit(toy_bkg, X_val=toy_bkg_val)


def _with_combine(det: EnsembleDetector, combine: str, **kw) -> EnsembleDetector:
    other = det.clone().set_params(combine=combine, **kw)
    for k, v in vars(det).items():
        if k.endswith("_"):
            setattr(other, k, v)
    return other


def test_default_members_follow_the_atlas_seed():
    assert EnsembleDetector().members is None
    assert [m["detector"] for m in DEFAULT_MEMBERS] == ["ae", "iforest", "ocsvm", "mahalanobis"]


def test_rank_normalisation_is_the_background_cdf(fitted, toy_bkg_val):
    norm = fitted.member_scores(toy_bkg_val, normalized=True)
    raw = fitted.member_scores(toy_bkg_val)
    assert list(norm) == ["mahalanobis", "knn", "iforest"]
    for name in norm:
        r = norm[name]
        # on the calibration background the normalised score is uniform on [0, 1]
        assert r.min() >= 0 and r.max() <= 1
        assert abs(np.median(r) - 0.5) < 0.02 and abs(np.mean(r > 0.9) - 0.1) < 0.02
        # and it keeps each member's ordering
        order = np.argsort(raw[name], kind="stable")
        assert np.all(np.diff(r[order]) >= -1e-6)


def test_rank_continues_beyond_the_table():
    q = _rank_table(np.random.default_rng(0).normal(size=5000), 1000)
    lo, hi = _tail_slopes(q)
    s = np.array([q[0] - 2, q[0] - 1, q[0], 0.0, q[-1], q[-1] + 1, q[-1] + 2])
    r = _rank(s, q, lo, hi)
    assert np.all(np.diff(r) > 0), "outliers beyond the background table must keep their order"
    assert r[2] == 0 and r[4] == 1 and r[-1] > 1 and r[0] < 0


def test_zscore_normalisation(toy_bkg, toy_bkg_val):
    det = make_detector("ensemble", members=MEMBERS[:2], normalization="zscore", combine="max").fit(toy_bkg, X_val=toy_bkg_val)
    for r in det.member_scores(toy_bkg_val, normalized=True).values():
        assert abs(r.mean()) < 1e-3 and abs(r.std() - 1) < 1e-3
    np.testing.assert_allclose(
        det.score_samples(toy_bkg_val), np.max(list(det.member_scores(toy_bkg_val, normalized=True).values()), axis=0), rtol=1e-6
    )


@pytest.mark.parametrize("combine, k", [("any", 1), ("majority", 2), ("unanimous", 3)])
def test_votes_match_predict(fitted, toy_bkg_val, held_out, combine, k):
    det = _with_combine(fitted, combine)
    det.set_threshold(toy_bkg_val, fpr=0.05)
    votes = det.n_votes(held_out)
    np.testing.assert_array_equal(det.predict(held_out), (votes >= k).astype(np.int8))
    # the vote is calibrated as a whole: the requested background rate, whatever k is
    rate = det.predict(held_out).mean()
    assert abs(rate - 0.05) < 3 * np.sqrt(0.05 * 0.95 * (1 / 1000 + 1 / 3000)) + 1e-3


def test_min_votes_and_mean(fitted, toy_bkg_val):
    det = _with_combine(fitted, "majority", min_votes=3)
    np.testing.assert_array_equal(det.score_samples(toy_bkg_val), _with_combine(fitted, "unanimous").score_samples(toy_bkg_val))
    norm = np.vstack(list(fitted.member_scores(toy_bkg_val, normalized=True).values()))
    np.testing.assert_allclose(fitted.score_samples(toy_bkg_val), norm.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_member_predictions_use_member_thresholds(fitted, toy_bkg_val):
    fitted.set_threshold(toy_bkg_val, percentile=90)
    preds = fitted.member_predictions(toy_bkg_val)
    assert list(preds) == fitted.member_names_
    for name, m in zip(fitted.member_names_, fitted.members_):
        assert m.threshold_rule_ == {"percentile": 90}
        assert abs(preds[name].mean() - 0.10) <= 0.002


def test_ensemble_beats_chance_on_signal(fitted, toy_bkg_val, toy_sig):
    from sklearn.metrics import roc_auc_score

    s = np.r_[fitted.score_samples(toy_bkg_val), fitted.score_samples(toy_sig)]
    y = np.r_[np.zeros(len(toy_bkg_val)), np.ones(len(toy_sig))]
    assert roc_auc_score(y, s) > 0.8


def test_duplicate_members_get_distinct_names_and_round_trip(toy_bkg, toy_bkg_val, tmp_path):
    det = make_detector("ensemble", members=["mahalanobis", {"detector": "mahalanobis", "params": {"reg_covar": 0.1}}]).fit(toy_bkg, X_val=toy_bkg_val)
    assert det.member_names_ == ["mahalanobis", "mahalanobis#2"]
    det.save(tmp_path / "m")
    back = load(tmp_path / "m")
    assert back.member_names_ == det.member_names_
    assert back.members_[1].reg_covar == 0.1
    np.testing.assert_array_equal(back.score_samples(toy_bkg_val), det.score_samples(toy_bkg_val))
    a, b = back.member_scores(toy_bkg_val), det.member_scores(toy_bkg_val)
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "members, match",
    [
        ([], "members is empty"),
        (["iforest", "isoforest"], r"members\[1\].*Unknown detector 'isoforest'"),
        (["iforest", {"detector": "knn", "params": {"k": 3}}], r"members\[1\].*unknown parameter 'k'.*n_neighbors"),
        (["gbdt"], r"members\[0\] 'gbdt' is a supervised reference"),
        ([{"name": "knn"}], r"members\[0\] must be a detector name or a mapping"),
    ],
)
def test_bad_members_fail_before_fitting(members, match):
    det = make_detector("ensemble", members=members)
    with pytest.raises(ConfigError, match=match):
        det.fit(np.zeros((10, 57), dtype=np.float32))


def test_min_votes_above_member_count():
    with pytest.raises(ConfigError, match="min_votes=4 exceeds the 2 members"):
        make_detector("ensemble", members=["iforest", "knn"], combine="majority", min_votes=4)._validate_params()
