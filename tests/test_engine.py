"""The batched scoring engine: every engine gives the detector's scores, in any batch split."""

from __future__ import annotations

import numpy as np
import pytest

import hepad
from hepad._toy import toy_events
from hepad.engine import Scorer, make_scorer
from hepad.errors import ConfigError, InputError

from _deploy_helpers import trained


@pytest.fixture(scope="module")
def X():
    return np.concatenate([toy_events(1500, "background", seed=31).features,
                           toy_events(300, "signal", seed=32).features])


@pytest.mark.parametrize("engine", ["auto", "onnx", "torch", "native"])
def test_every_engine_reproduces_score_samples(engine, X):
    det = trained("ae")
    scorer = make_scorer(det, engine=engine, threads=1, batch_size=512)
    assert isinstance(scorer, Scorer)
    assert scorer.engine == ("onnx" if engine == "auto" else engine)
    got = scorer(X)
    ref = det.score_samples(X)
    assert got.dtype == np.float32 and got.shape == (len(X),)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert scorer.threshold == det.threshold_
    np.testing.assert_array_equal(scorer.predict(X), (got > det.threshold_).astype(np.int8))


def test_batch_split_does_not_change_scores(X):
    det = trained("vae-mu2")
    whole = make_scorer(det, engine="onnx", threads=1, batch_size=len(X))(X)
    # 1800 events in batches of 7: many batches and a ragged last one.
    split = make_scorer(det, engine="onnx", threads=1, batch_size=7)(X)
    np.testing.assert_array_equal(whole, split)
    starts = [s for s, _ in make_scorer(det, threads=1, batch_size=500).iter_batches(X)]
    assert starts == [0, 500, 1000, 1500]


def test_object_layout_and_eventset_inputs():
    det = trained("ae")
    ev = toy_events(300, "background", seed=33)
    scorer = make_scorer(det, threads=1)
    ref = scorer(ev.features)
    np.testing.assert_array_equal(scorer(ev.data), ref)  # (N, 19, 4)
    np.testing.assert_array_equal(scorer(ev), ref)  # EventSet
    # float64 and non-contiguous inputs are converted, not refused.
    np.testing.assert_allclose(scorer(np.asfortranarray(ev.features.astype(np.float64))), ref, rtol=1e-6)


def test_wrong_width_and_bad_arguments_raise_helpful_errors():
    det = trained("ae")
    with pytest.raises(InputError, match=r"\(N, 57\)"):
        make_scorer(det, threads=1)(np.zeros((4, 56), np.float32))
    with pytest.raises(ConfigError, match="Did you mean 'onnx'"):
        make_scorer(det, engine="onx")
    with pytest.raises(ConfigError, match="batch_size"):
        make_scorer(det, batch_size=0)
    with pytest.raises(ConfigError, match="threads"):
        make_scorer(det, threads=0)


def test_classical_detector_runs_native_and_refuses_onnx():
    det = hepad.make_detector("mahalanobis").fit(toy_events(600, "background", seed=34))
    X = toy_events(200, "signal", seed=35).features
    scorer = make_scorer(det)
    assert scorer.engine == "native"
    np.testing.assert_array_equal(scorer(X), det.score_samples(X))
    with pytest.raises(ConfigError, match="native"):
        make_scorer(det, engine="onnx")


def test_threads_reach_onnx_runtime(monkeypatch):
    import onnxruntime as ort

    seen = {}
    real = ort.InferenceSession

    def spy(model, sess_options=None, **kw):
        seen["intra"] = sess_options.intra_op_num_threads
        seen["inter"] = sess_options.inter_op_num_threads
        return real(model, sess_options, **kw)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    make_scorer(trained("ae"), engine="onnx", threads=3)
    assert seen == {"intra": 3, "inter": 1}


def test_scorer_from_model_dir_and_onnx_file(tmp_path, X):
    from hepad.export import export_onnx

    det = trained("deep-svdd")
    det.save(tmp_path / "model")
    from_dir = make_scorer(tmp_path / "model", threads=1)
    np.testing.assert_allclose(from_dir(X), det.score_samples(X), rtol=1e-5, atol=1e-7)
    export_onnx(det, tmp_path / "m.onnx")
    from_file = make_scorer(tmp_path / "m.onnx", threads=1)
    assert from_file.threshold == pytest.approx(det.threshold_)
    assert from_file.feature_names == list(det.feature_names_in_)
    np.testing.assert_allclose(from_file(X), det.score_samples(X), rtol=1e-5, atol=1e-7)
    with pytest.raises(ConfigError, match="onnx engine"):
        make_scorer(tmp_path / "m.onnx", engine="torch")
