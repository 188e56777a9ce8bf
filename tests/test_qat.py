"""Quantisation-aware training (ae-qat) and its hls4ml export in the trained formats.

One hls4ml compile for the module (fixture ``qat_hls``) on the generator's tiny dataset: the
C simulation must reproduce the QAT model's own (fake-quantised PyTorch) scores.
"""

from __future__ import annotations

import numpy as np
import pytest

from hepad.errors import ConfigError

TINY_FPR = 0.05  # tiny's 200 held-out background events resolve 5 % (10 events)
SIGNALS = ("ato4l", "lq-btau", "h0-tautau", "hplus-taunu")


@pytest.fixture(scope="module")
def tiny_events(tiny_dataset):
    import hepad

    return {name: hepad.read_events(path) for name, path in tiny_dataset.items()}


@pytest.fixture(scope="module")
def qat_det(tiny_events):
    import hepad

    det = hepad.make_detector("ae-qat", quantize="w6a8", epochs=15, batch_size=64, n_threads=1, random_state=0)
    return det.fit(tiny_events["sm_train"], X_val=tiny_events["sm_val"])


@pytest.fixture(scope="module")
def qat_hls(qat_det, tiny_events, tmp_path_factory):
    from hepad.export import export_hls

    sigs = {n: tiny_events[n] for n in SIGNALS}
    return export_hls(qat_det, tmp_path_factory.mktemp("qat") / "prj", data=tiny_events["sm_val"], signals=sigs,
                      target_fraction=TINY_FPR)


def _tpr(bkg: np.ndarray, sig: np.ndarray, fpr: float) -> float:
    from hepad.metrics import threshold_at_fpr

    return float((sig > threshold_at_fpr(bkg, fpr)[0]).mean())


def test_trained_weights_are_exact_in_their_fixed_point_type(qat_det):
    from hepad.detectors.quantized import QuantLinear

    layers = [m for m in qat_det.net_.modules() if isinstance(m, QuantLinear)]
    assert len(layers) == 4  # 57-32-8-32-57
    for layer in layers:
        i, f = layer.weight_format()
        q = layer.quant_weight().detach().numpy().astype(np.float64) * 2.0**f
        assert np.array_equal(q, np.round(q))  # on the 2^-f grid
        assert q.min() >= -(2 ** 5) and q.max() <= 2**5 - 1  # 6 bits, signed
        assert len(np.unique(q)) > 8  # trained, not collapsed
    # The activations after ReLU are unsigned 8-bit values.
    z = qat_det._prepared(np.asarray(qat_det._features(np.zeros((3, 57), np.float32))), qat_det._torch_pre())[0]
    h = qat_det.net_.encoder[:4](z).detach().numpy() * 2.0 ** qat_det.net_.encoder[3].frac_bits
    assert np.array_equal(h, np.round(h)) and h.min() >= 0 and h.max() <= 255


def test_hls_types_are_the_trained_formats(qat_det, qat_hls):
    fmts = qat_det.net_.formats()
    names = sorted((k for k in qat_hls.types if k != "input"), key=lambda s: int(s[1:]))
    assert [qat_hls.types[n]["result"] for n in names[1:]] == [f["result"] for f in fmts]
    assert all(qat_hls.types[n]["weight"] == f"ap_fixed<6,{l.weight_format()[0]}>"
               for n, l in zip([n for n in names[1:] if "weight" in qat_hls.types[n]],
                               [m for m in qat_det.net_.modules() if m.__class__.__name__ == "QuantLinear"]))
    assert qat_hls.types[names[0]]["result"] == qat_det.net_.encoder[0].hls_type()


def test_c_simulation_reproduces_the_qat_model(qat_det, qat_hls, tiny_events):
    bkg = tiny_events["sm_test"]  # not seen by training nor sizing
    f_b, h_b = qat_det.score_samples(bkg), qat_hls.predict(bkg)
    assert np.corrcoef(h_b, f_b)[0, 1] >= 0.999
    for name in SIGNALS:
        sig = tiny_events[name]
        t_f = _tpr(f_b, qat_det.score_samples(sig), TINY_FPR)
        t_h = _tpr(h_b, qat_hls.predict(sig), TINY_FPR)
        assert t_f > 0, name
        assert abs(t_h - t_f) / t_f <= 0.02, (name, t_f, t_h)


def test_save_load_keeps_the_quantiser_state(qat_det, tiny_events, tmp_path):
    import hepad

    qat_det.save(tmp_path / "m")
    assert not list((tmp_path / "m").rglob("*.pkl"))
    back = hepad.load(tmp_path / "m")
    X = tiny_events["sm_test"]
    np.testing.assert_array_equal(back.score_samples(X), qat_det.score_samples(X))
    assert back.net_.formats() == qat_det.net_.formats()


@pytest.mark.parametrize("spec", ["8bit", "w1a8", "w6", "w6a40"])
def test_bad_quantize_spec_is_one_config_error(spec, tiny_events):
    import hepad

    with pytest.raises(ConfigError, match="quantize"):
        hepad.make_detector("ae-qat", quantize=spec, epochs=1).fit(tiny_events["sm_train"])
