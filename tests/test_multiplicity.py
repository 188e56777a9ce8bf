"""The object-multiplicity detector: -log background frequency of (n_e, n_mu, n_jets), on the
generator's realistic events with rare multiplicities planted."""

from __future__ import annotations

import numpy as np
import pytest

import hepad
from hepad import _layout as L
from hepad.detectors.base import make_detector


@pytest.fixture(scope="module")
def bkg(tiny_dataset):
    return hepad.read_events(tiny_dataset["sm_train"])


E, MU, J = (list(range(19))[sl] for sl in (L.ELECTRON_SLOTS, L.MUON_SLOTS, L.JET_SLOTS))


def _counts(ev) -> np.ndarray:
    o = ev.data
    return np.stack([(o[:, E, 0] > 0).sum(1), (o[:, MU, 0] > 0).sum(1), (o[:, J, 0] > 0).sum(1)], axis=1)


def _planted(ev, n_e: int, n_mu: int):
    """Copies of the first event with n_e electrons and n_mu muons of 20 GeV."""
    o = ev.data[:1].copy()
    o[:, L.ELECTRON_SLOTS] = 0.0
    o[:, L.MUON_SLOTS] = 0.0
    for k in range(n_e):
        o[:, E[k]] = (20.0, 0.5, 0.1, 2)
    for k in range(n_mu):
        o[:, MU[k]] = (20.0, -0.5, 0.2, 3)
    return hepad.EventSet(o)


def test_a_seen_pattern_scores_its_smoothed_background_frequency(bkg):
    det = make_detector("multiplicity", prior_weight=2.0).fit(bkg)
    c = _counts(bkg)
    patterns, counts = np.unique(c, axis=0, return_counts=True)
    i = int(np.argmax(counts))  # the commonest pattern
    first = int(np.flatnonzero((c == patterns[i]).all(1))[0])
    n, width = len(c), len(J) + 1
    marg = [(np.bincount(c[:, k], minlength=width) + 0.5) / (n + 0.5 * width) for k in range(3)]
    p_ind = np.prod([marg[k][patterns[i][k]] for k in range(3)])
    expected = -np.log((counts[i] + 2.0 * p_ind) / (n + 2.0))
    assert det.score_samples(bkg[first : first + 1])[0] == pytest.approx(expected, rel=1e-6)


def test_multiplicities_the_background_never_had_rank_above_all_of_it(bkg):
    det = make_detector("multiplicity").fit(bkg)
    c = _counts(bkg)
    assert c[:, 0].max() < 3 and c[:, 1].max() < 3, "the tiny background should have no third electron or muon"
    s_bkg = det.score_samples(bkg)
    s3e = det.score_samples(_planted(bkg, 3, 0))[0]
    s3e3m = det.score_samples(_planted(bkg, 3, 3))[0]
    s4e4m = det.score_samples(_planted(bkg, 4, 4))[0]
    assert s3e > s_bkg.max()
    assert s3e3m > s3e  # two unseen counts rank above one
    assert s4e4m == pytest.approx(s3e3m)  # counts never seen are equally rare, whatever their size
    assert np.isfinite([s3e, s3e3m, s4e4m]).all()


def test_a_bare_array_counts_all_non_zero_columns_together():
    X = np.zeros((200, 6), dtype=np.float32)
    X[:150, :2] = 1.0  # 150 events with 2 entries, 50 with none
    det = make_detector("multiplicity").fit(X)
    s = det.score_samples(np.array([[1, 1, 0, 0, 0, 0], [0] * 6, [1] * 6], dtype=np.float32))
    assert s[0] < s[1] < s[2]


def test_save_and_load_give_the_same_scores_and_damaged_state_is_refused(bkg, tmp_path):
    det = make_detector("multiplicity").fit(bkg)
    path = det.save(tmp_path / "m")
    again = hepad.load(path)
    assert np.array_equal(again.score_samples(bkg), det.score_samples(bkg))
    meta, arrays = det._get_state()
    arrays["marginals"] = arrays["marginals"][:2]
    fresh = make_detector("multiplicity")
    fresh.feature_names_in_ = det.feature_names_in_
    with pytest.raises(ValueError, match="multiplicity"):
        fresh._set_state(meta, arrays)


def test_streaming_from_files_counts_the_same_as_in_memory(tiny_dataset, bkg):
    from hepad.data import fit_streaming

    path = tiny_dataset["sm_train"]
    streamed = fit_streaming(make_detector("multiplicity"), [path], n_fit=50)
    in_memory = make_detector("multiplicity").fit(bkg)
    assert streamed.n_background_ == len(bkg)
    assert np.array_equal(streamed.score_samples(bkg), in_memory.score_samples(bkg))
