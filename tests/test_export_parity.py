"""One parity suite over every exporter: the exported model must score like the PyTorch one.

ONNX (ONNX Runtime) for every torch detector and score, on toy events (a numerical identity);
hls4ml (bit-accurate C simulation at the default settings: per-layer types sized on the
background) on the generator's tiny dataset, for the trigger default (ae) and, marked slow, the
axol1tl-like encoder, batch norm and scaled inputs. The hls4ml compile takes 30-60 s on 2 cores,
so the default run builds one project (module fixture) and every fast hls test reuses it.
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
#: tiny's 200 held-out background events resolve a background efficiency of 5 % (10 events);
#: the TPR comparison runs there (the issue's FPR 1e-3 needs >= 10,000 background events:
#: benchmarks/hls_precision.py measures it on the small dataset).
TINY_FPR = 0.05
SIGNALS = ("ato4l", "lq-btau", "h0-tautau", "hplus-taunu")


def _tpr(bkg: np.ndarray, sig: np.ndarray, fpr: float) -> float:
    from hepad.metrics import threshold_at_fpr

    return float((sig > threshold_at_fpr(bkg, fpr)[0]).mean())


@pytest.fixture(scope="module")
def tiny_events(tiny_dataset):
    import hepad

    return {name: hepad.read_events(path) for name, path in tiny_dataset.items()}


@pytest.fixture(scope="module")
def tiny_hls(tiny_events, tmp_path_factory):
    """The trigger default trained on tiny and exported at the default settings: one compile."""
    import hepad
    from hepad.detectors import TRIGGER_DETECTOR
    from hepad.export import export_hls

    det = hepad.make_detector(TRIGGER_DETECTOR, epochs=30, batch_size=64, n_threads=1, random_state=0)
    det.fit(tiny_events["sm_train"], X_val=tiny_events["sm_val"])
    sigs = {n: tiny_events[n] for n in SIGNALS}
    hm = export_hls(det, tmp_path_factory.mktemp("hls") / "prj", data=tiny_events["sm_val"], signals=sigs,
                    target_fraction=TINY_FPR)
    return det, hm


def test_hls_default_export_matches_float_on_generated_events(tiny_hls, tiny_events):
    det, hm = tiny_hls
    assert hm.folded and (hm.output_dir / "firmware").is_dir()
    bkg = tiny_events["sm_test"]  # not seen by training nor by the type sizing
    f_b, h_b = det.score_samples(bkg), hm.predict(bkg)
    # The float version of the FPGA pipeline (scaling layer + host post-processing) is exact.
    assert _rel(hm.predict(bkg, emulate=False), f_b) < 1e-3
    assert np.corrcoef(h_b, f_b)[0, 1] >= 0.999
    for name in SIGNALS:
        sig = tiny_events[name]
        t_f = _tpr(f_b, det.score_samples(sig), TINY_FPR)
        t_h = _tpr(h_b, hm.predict(sig), TINY_FPR)
        assert t_f > 0, name
        assert abs(t_h - t_f) / t_f <= 0.02, (name, t_f, t_h)


def test_hls_types_cover_every_layer_on_background_and_signal(tiny_hls, tiny_events):
    """Nothing overflows: every layer's float values on the sizing events lie inside its type."""
    from hepad.export._precision import layer_names, layer_outputs, type_range
    from hepad.export._network import _host_inputs

    det, hm = tiny_hls
    plan = hm._plan
    for events in [tiny_events["sm_val"]] + [tiny_events[n] for n in SIGNALS]:
        x = _host_inputs(plan, events.features)[0]
        outs = [x.astype(np.float64)] + layer_outputs(plan.net, x)
        for name, out in zip(["input"] + layer_names(plan.net), outs):
            limit = type_range(hm.types[name]["result"])
            q = np.quantile(np.abs(out), 0.999) if events is not tiny_events["sm_val"] else np.abs(out).max()
            assert q < limit, (name, q, hm.types[name])
    # The scaling is its own layer: the first Linear's weights stay O(1), not 1/spread.
    from torch import nn

    assert isinstance(plan.net[0], nn.BatchNorm1d)
    assert float(plan.net[1].weight.detach().abs().max()) < 10


def test_hls_threshold_is_computed_on_the_quantised_scores(tiny_hls, tiny_events):
    import json

    from hepad.metrics import threshold_at_fpr

    det, hm = tiny_hls
    emu = hm.predict(tiny_events["sm_val"]).astype(np.float64)
    assert hm.target_fraction == TINY_FPR
    assert hm.threshold == threshold_at_fpr(emu, TINY_FPR)[0]
    assert (emu > hm.threshold).mean() == pytest.approx(TINY_FPR, abs=1 / len(emu))
    doc = json.loads((hm.output_dir / "hepad_trigger.json").read_text())
    assert doc["threshold"] == hm.threshold and doc["threshold_source"] == "quantised background scores"
    assert doc["background_quantiles"]["n_events"] == len(emu)
    header = (hm.output_dir / "firmware" / "hepad_threshold.h").read_text()
    assert repr(float(hm.threshold)) in header
    assert doc["estimate"]["source"] == "estimate (analytic)" and doc["estimate"]["dsp"] > 0


def test_hls_parity_report_on_generated_events(tiny_hls, tiny_events):
    det, hm = tiny_hls
    sigs = {n: tiny_events[n] for n in SIGNALS}
    rep = hm.parity(det, tiny_events["sm_test"], sigs, fraction=TINY_FPR)
    assert rep.correlation >= 0.999 and rep.n_background == len(tiny_events["sm_test"])
    assert set(rep.tpr) == set(SIGNALS)
    assert abs(rep.accept_change) < 0.5
    assert all(layer.saturated_fraction < 0.01 for layer in rep.layers)
    rep.check(min_correlation=0.999)  # passes
    from hepad.export._parity import HLSParityError

    with pytest.raises(HLSParityError, match=r"score correlation .* on 200 background events; .*raise --total-bits"):
        rep.check(min_correlation=1.0000001)


def test_fpga_network_scaling_layer_and_batchnorm_fold_exactly(eval_events):
    """The layer surgery alone (no compile): raw inputs through the FPGA net == PyTorch."""
    from torch import nn

    from hepad.export.hls import HLSModel, fpga_network

    for label in ("ae-batchnorm", "axol1tl-like", "deep-svdd"):
        det = trained(label)
        for scaling in ("layer", "fold"):
            plan = fpga_network(det, scaling=scaling)
            assert not any(isinstance(m, nn.Dropout) for m in plan.net)
            assert isinstance(plan.net[0], nn.BatchNorm1d) == (scaling == "layer")
            assert sum(isinstance(m, nn.BatchNorm1d) for m in plan.net) == (scaling == "layer")
            hm = HLSModel(None, plan, "unused", "ap_fixed<16,6>", "ap_fixed<18,13>", 1, det.threshold_)
            X = eval_events[0].features
            assert _rel(hm.predict(X, emulate=False), det.score_samples(X)) < 1e-3, (label, scaling)


def test_hls_refuses_to_fold_log_pt_and_kl():
    from hepad.export.hls import fpga_network

    with pytest.raises(ConfigError, match="fold_preprocessing=False"):
        fpga_network(trained("ae-logpt-masked"))
    plan = fpga_network(trained("ae-logpt-masked"), fold_preprocessing=False)
    assert plan.mask_padding and not plan.folded
    with pytest.raises(ConfigError, match="no hls4ml export"):
        fpga_network(trained("vae-kl"))


def _hls_case(label: str, tiny_events, tmp_path, **kwargs) -> None:
    import hepad
    from hepad.export import export_hls

    name, params = {"axol1tl-like": ("axol1tl-like", {}),
                    "ae-batchnorm": ("ae", {"batch_norm": True, "dropout": 0.1, "hidden_layers": [32, 16], "latent_dim": 8}),
                    "ae-logpt-masked": ("ae", {"preprocessing": {"log_pt": True, "phi": "drop", "mask_padding": True}})}[label]
    det = hepad.make_detector(name, epochs=20, batch_size=64, n_threads=1, random_state=0, **params)
    det.fit(tiny_events["sm_train"], X_val=tiny_events["sm_val"])
    hm = export_hls(det, tmp_path / "prj", data=tiny_events["sm_val"], **kwargs)
    X = np.concatenate([tiny_events["sm_test"].features] + [tiny_events[n].features for n in SIGNALS])
    bkg = tiny_events["sm_test"].features
    assert np.corrcoef(hm.predict(bkg), det.score_samples(bkg))[0, 1] >= 0.999
    assert np.corrcoef(hm.predict(X), det.score_samples(X))[0, 1] >= 0.99


@pytest.mark.slow
def test_hls_axol1tl_encoder_matches_float(tiny_events, tmp_path):
    _hls_case("axol1tl-like", tiny_events, tmp_path)


@pytest.mark.slow
def test_hls_batchnorm_is_folded(tiny_events, tmp_path):
    _hls_case("ae-batchnorm", tiny_events, tmp_path)


@pytest.mark.slow
def test_hls_inputs_scaled_with_masking(tiny_events, tmp_path):
    _hls_case("ae-logpt-masked", tiny_events, tmp_path, fold_preprocessing=False)
