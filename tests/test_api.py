"""hepad.api: model-spec resolution (directory, .onnx file, config, detector name) for the CLI."""

from __future__ import annotations

import pytest

import hepad
from hepad._toy import toy_events
from hepad.api import load_model, resolve_model
from hepad.errors import ConfigError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from hepad.export.onnx import export_onnx

    d = tmp_path_factory.mktemp("api")
    det = hepad.make_detector("ae", hidden_layers=[8], latent_dim=4, epochs=1, n_threads=1).fit(toy_events(800, seed=3))
    det.save(d / "model")
    export_onnx(det, d / "m.onnx")
    return d, det


def test_evaluate_takes_an_exported_onnx_model(saved):
    """hepad.evaluate on the .onnx export of a model gives that model's metrics."""
    from hepad.evaluation import evaluate

    d, det = saved
    onnx_model = load_model(d / "m.onnx")
    bkg, sig = toy_events(2000, "background", seed=8), {"toy": toy_events(500, "signal", seed=9)}
    a, b = evaluate(det, bkg, sig, fprs=(1e-2,)), evaluate(onnx_model, bkg, sig, fprs=(1e-2,))
    assert b.metrics["toy"]["auc"] == pytest.approx(a.metrics["toy"]["auc"], abs=1e-6)
    assert b.threshold == pytest.approx(det.threshold_)


def test_resolve_model_specs(saved, tmp_path):
    d, det = saved
    label, m = resolve_model(d / "model")
    assert label == "model" and m.get_params() == det.get_params()
    label, m = resolve_model(str(d / "m.onnx"))
    assert label == "m" and m.threshold_ == pytest.approx(det.threshold_)
    label, m = resolve_model("mahalanobis", train=toy_events(500, seed=1), val=toy_events(300, seed=2))
    assert label == "mahalanobis" and m.threshold_rule_ == {"percentile": 95.0}
    with pytest.raises(ConfigError, match="Did you mean 'iforest'") as info:
        resolve_model("iforst")
    assert "--" not in str(info.value)  # library errors name no command-line flag
    with pytest.raises(ConfigError, match=r"give training events \(train=\)"):
        resolve_model("iforest")
