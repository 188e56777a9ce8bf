"""Typed YAML configuration: valid files load, wrong ones fail naming the key and the type."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hepad.config import HepadConfig, load_config
from hepad.detectors.base import available_detectors, make_detector
from hepad.errors import ConfigError

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples" / "configs").glob("*.yaml"))


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def test_full_config(tmp_path):
    p = _write(tmp_path, """
model:
  detector: iforest
  params: {n_estimators: 20}
preprocessing: {scaling: minmax, log_pt: true}
training: {epochs: 5, seed: 3}
evaluation:
  threshold: {rate_hz: 1000, collision_rate_hz: 3.0e7}
  signals: [a.h5]
data: {train: sub/train.h5}
""")
    cfg = load_config(p)
    name, params = cfg.detector_params()
    assert name == "iforest"
    assert params["n_estimators"] == 20 and params["random_state"] == 3
    assert params["preprocessing"]["scaling"] == "minmax" and params["preprocessing"]["log_pt"] is True
    assert "epochs" not in params  # iforest has no epochs: the training key is ignored
    assert cfg.evaluation.threshold.rule() == {"rate_hz": 1000.0, "collision_rate_hz": 3.0e7}
    assert cfg.resolve_path(cfg.data.train) == tmp_path / "sub" / "train.h5"
    # round trip through YAML gives the same configuration
    again = HepadConfig.from_dict(__import__("yaml").safe_load(cfg.to_yaml()))
    assert again.to_dict() == cfg.to_dict()


def test_wrong_type_names_key_and_type(tmp_path):
    p = _write(tmp_path, "training:\n  epochs: ten\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value) == f"{p}: training.epochs: expected an integer, got 'ten'."


def test_unknown_key_suggests(tmp_path):
    p = _write(tmp_path, "training:\n  epoch: 10\n")
    with pytest.raises(ConfigError, match=r"training\.epoch: unknown key\. Did you mean 'epochs'\?"):
        load_config(p)
    p = _write(tmp_path, "modle: {detector: ae}\n")
    with pytest.raises(ConfigError, match=r"modle: unknown key.*Valid keys: model, preprocessing"):
        load_config(p)


@pytest.mark.parametrize(
    "text, match",
    [
        ("preprocessing: {scaling: robust}", r"preprocessing\.scaling: expected 'standard', 'minmax' or 'none', got 'robust'"),
        ("evaluation: {threshold: {percentile: 95, sigma: 3}}", r"only one of percentile, sigma, rate_hz"),
        ("evaluation: {threshold: {percentile: 120}}", r"evaluation\.threshold\.percentile: input should be less than 100"),
        ("training: {learning_rate: -1}", r"training\.learning_rate: input should be greater than 0"),
        ("training: {device: tpu}", r"training\.device: expected"),
        ("model: [ae]", r"model: expected a mapping"),
        ("- just\n- a list", r"expected a mapping of sections"),
    ],
)
def test_invalid_values(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_config(_write(tmp_path, text))


def test_unknown_detector_and_param(tmp_path):
    cfg = load_config(_write(tmp_path, "model: {detector: iforst}"))
    with pytest.raises(ConfigError, match=r"model\.detector: Unknown detector 'iforst'. Did you mean 'iforest'"):
        cfg.detector_params()
    cfg = load_config(_write(tmp_path, "model: {detector: iforest, params: {n_trees: 5}}"))
    with pytest.raises(ConfigError, match=r"model\.params\.n_trees: unknown parameter of 'iforest'.*n_estimators"):
        cfg.detector_params()


def test_conflicting_preprocessing(tmp_path):
    cfg = load_config(_write(tmp_path, "model: {detector: knn, params: {preprocessing: {}}}\npreprocessing: {log_pt: true}"))
    with pytest.raises(ConfigError, match="both as a section and in model.params"):
        cfg.detector_params()


def test_training_section_ignored_for_classical_is_logged(tmp_path, caplog):
    cfg = load_config(_write(tmp_path, "model: {detector: mahalanobis}\ntraining: {epochs: 4, batch_size: 8}"))
    with caplog.at_level(logging.INFO, logger="hepad.config"):
        _, params = cfg.detector_params()
    assert "epochs" not in params and "batch_size" not in params
    assert "training.epochs, training.batch_size ignored" in caplog.text


def test_training_section_reaches_ensemble_members(tmp_path):
    cfg = load_config(_write(tmp_path, """
model:
  detector: ensemble
  params:
    members: [iforest, {detector: knn, params: {n_neighbors: 3}}]
training: {seed: 7}
"""))
    _, params = cfg.detector_params()
    assert params["random_state"] == 7
    assert params["members"][0] == {"detector": "iforest", "params": {"random_state": 7}}
    assert params["members"][1]["params"] == {"n_neighbors": 3, "random_state": 7}


def test_yaml_syntax_error_names_line(tmp_path):
    with pytest.raises(ConfigError, match=r"invalid YAML \(line \d+, column \d+\)"):
        load_config(_write(tmp_path, "model:\n  detector: [ae\n"))
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_configs_build_their_detector(path):
    cfg = load_config(path)
    name, params = cfg.detector_params()
    members = [m["detector"] for m in params.get("members", [])]
    missing = [n for n in [name, *members] if n not in available_detectors()]
    if missing:
        pytest.skip(f"detector(s) {missing} not registered in this build")
    det = make_detector(name, **params)
    det._validate_params()  # every parameter value accepted by the detector
    assert cfg.evaluation.threshold.rule()


def test_examples_exist():
    assert {p.name for p in EXAMPLES} >= {"ae-keras-seed.yaml", "ae-torch-seed.yaml", "atlas-ensemble.yaml", "axol1tl-like.yaml"}
