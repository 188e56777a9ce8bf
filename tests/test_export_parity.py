"""One parity suite over every exporter: the exported model must score like the PyTorch one.

ONNX (ONNX Runtime) for every torch detector and score; hls4ml (bit-accurate C simulation at
ap_fixed<16,6>) for the autoencoder and the axol1tl-like encoder. The hls4ml compile takes
10-30 s, so one hls case runs in ``make test`` and the others are marked slow.
"""

from __future__ import annotations

import numpy as np
import pytest

from hepad._toy import toy_events
from hepad.errors import ConfigError

from _deploy_helpers import TORCH_DETECTORS, trained


@pytest.fixture(scope="module")
def eval_events():
    bkg = toy_events(1500, "background", seed=21)
    sig = toy_events(500, "signal", seed=22)
    return bkg, sig


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-3)))


def _auc(bkg: np.ndarray, sig: np.ndarray) -> float:
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([bkg, sig]))
    return float((r[len(bkg):].sum() - len(sig) * (len(sig) + 1) / 2) / (len(bkg) * len(sig)))


# ---------------------------------------------------------------------- ONNX
@pytest.mark.parametrize("label", list(TORCH_DETECTORS))
def test_onnx_matches_pytorch(label, eval_events, tmp_path):
    import onnxruntime as ort

    from hepad.export import export_onnx, read_onnx_metadata

    det = trained(label)
    path = export_onnx(det, tmp_path / f"{label}.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    X = np.concatenate([e.features for e in eval_events])
    ref = det.score_samples(X)
    got = sess.run(None, {"input": X})[0]
    assert got.shape == (len(X),) and got.dtype == np.float32
    assert _rel(got, ref) < 1e-5
    # Dynamic batch axis: a single event and an odd batch give the same scores.
    assert _rel(sess.run(None, {"input": X[:1]})[0], ref[:1]) < 1e-5
    assert _rel(sess.run(None, {"input": X[3:780]})[0], ref[3:780]) < 1e-5
    meta = read_onnx_metadata(path)
    assert meta["threshold"] == pytest.approx(det.threshold_, rel=1e-12)
    assert meta["feature_names"] == list(det.feature_names_in_)
    assert meta["detector"] == det.name


def test_onnx_export_of_saved_model_dir(tmp_path, eval_events):
    from hepad.export import export_onnx
    from hepad.engine import make_scorer

    det = trained("ae")
    det.save(tmp_path / "model")
    path = export_onnx(tmp_path / "model", tmp_path / "out" / "m.onnx")
    assert [p.name for p in path.parent.iterdir()] == ["m.onnx"]  # no temporary left behind
    X = eval_events[0].features
    assert _rel(make_scorer(path, threads=1)(X), det.score_samples(X)) < 1e-5


def test_onnx_rejects_a_non_torch_detector(tmp_path):
    import hepad
    from hepad.export import export_onnx

    det = hepad.make_detector("mahalanobis").fit(toy_events(500, "background", seed=5))
    with pytest.raises(ConfigError, match="torch detectors"):
        export_onnx(det, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


# ---------------------------------------------------------------------- hls4ml
def _hls_case(label: str, eval_events, tmp_path) -> None:
    from hepad.export import export_hls

    det = trained(label, epochs=8)
    bkg, sig = eval_events
    hm = export_hls(det, tmp_path / "prj", precision="ap_fixed<16,6>", reuse_factor=1)
    assert hm.folded and (tmp_path / "prj" / "firmware").is_dir()
    f_b, f_s = det.score_samples(bkg), det.score_samples(sig)
    # The float version of the FPGA pipeline (folded scaling + host post-processing) is exact.
    assert _rel(hm.predict(bkg, emulate=False), f_b) < 1e-3
    h_b, h_s = hm.predict(bkg), hm.predict(sig)
    corr = np.corrcoef(np.concatenate([h_b, h_s]), np.concatenate([f_b, f_s]))[0, 1]
    assert corr > 0.999, corr
    assert abs(_auc(h_b, h_s) - _auc(f_b, f_s)) < 0.005


def test_hls_autoencoder_matches_pytorch(eval_events, tmp_path):
    _hls_case("ae", eval_events, tmp_path)


@pytest.mark.slow
def test_hls_axol1tl_encoder_matches_pytorch(eval_events, tmp_path):
    _hls_case("axol1tl-like", eval_events, tmp_path)


@pytest.mark.slow
def test_hls_batchnorm_is_folded(eval_events, tmp_path):
    _hls_case("ae-batchnorm", eval_events, tmp_path)


def test_fpga_network_folds_scaling_and_batchnorm_exactly(eval_events):
    """The layer surgery alone (no compile): raw inputs through the folded net == PyTorch."""
    from torch import nn

    from hepad.export.hls import HLSModel, fpga_network

    for label in ("ae-batchnorm", "axol1tl-like", "deep-svdd"):
        det = trained(label)
        plan = fpga_network(det)
        assert not any(isinstance(m, (nn.BatchNorm1d, nn.Dropout)) for m in plan.net)
        assert plan.net[0].in_features == 57
        hm = HLSModel(None, plan, "unused", "ap_fixed<16,6>", "ap_fixed<18,13>", 1, det.threshold_)
        X = eval_events[0].features
        assert _rel(hm.predict(X, emulate=False), det.score_samples(X)) < 1e-3, label


def test_hls_refuses_to_fold_log_pt_and_kl():
    from hepad.export.hls import fpga_network

    with pytest.raises(ConfigError, match="fold_preprocessing=False"):
        fpga_network(trained("ae-logpt-masked"))
    plan = fpga_network(trained("ae-logpt-masked"), fold_preprocessing=False)
    assert plan.mask_padding and not plan.folded
    with pytest.raises(ConfigError, match="no hls4ml export"):
        fpga_network(trained("vae-kl"))


@pytest.mark.slow
def test_hls_inputs_scaled_with_masking(eval_events, tmp_path):
    from hepad.export import export_hls

    det = trained("ae-logpt-masked", epochs=8)
    hm = export_hls(det, tmp_path / "prj", fold_preprocessing=False)
    bkg, sig = eval_events
    X = np.concatenate([bkg.features, sig.features])
    assert np.corrcoef(hm.predict(X), det.score_samples(X))[0, 1] > 0.999
