"""The model directory: round trip, and refusal (without executing anything) of bad files."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import hepad
from hepad import artifact
from hepad.detectors.base import make_detector
from hepad.errors import ModelFileError


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, toy_bkg, toy_bkg_val):
    det = make_detector("mahalanobis").fit(toy_bkg, X_val=toy_bkg_val)
    path = tmp_path_factory.mktemp("art") / "model"
    det.save(path, metadata={"note": "test"})
    return path


@pytest.fixture
def copy_model(model_dir, tmp_path):
    import shutil

    dst = tmp_path / "model"
    shutil.copytree(model_dir, dst)
    return dst


class _Marker:
    """Unpickling this creates a marker file: proof that a pickle was executed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _pickle_bytes(marker: Path) -> bytes:
    return pickle.dumps(_Marker(str(marker)))


def _resign(path: Path) -> None:
    """Recompute the manifest hashes, as a forger would, to reach the checks behind them."""
    mpath = path / artifact.MANIFEST
    manifest = json.loads(mpath.read_text())
    for name in manifest["files"]:
        data = (path / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    mpath.write_text(json.dumps(manifest))


def test_round_trip_and_layout(model_dir, toy_bkg_val):
    names = sorted(p.name for p in model_dir.iterdir())
    assert names == sorted(artifact.FILES + (artifact.MANIFEST,))
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["format"] == "hepad-model" and manifest["detector"] == "mahalanobis"
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert meta["note"] == "test" and meta["versions"]["hepad"] == hepad.__version__ and "numpy" in meta["versions"]
    det = hepad.load(model_dir)  # the public entry point
    again = make_detector("mahalanobis").fit(hepad._toy.toy_events(2000, "background", 1), X_val=toy_bkg_val)
    np.testing.assert_array_equal(det.score_samples(toy_bkg_val), again.score_samples(toy_bkg_val))
    assert oct(model_dir.stat().st_mode & 0o777) != oct(0o700), "model folder should not stay private"


def test_flipped_weight_bytes(copy_model):
    w = copy_model / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-5] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="weights.safetensors"):
        artifact.load(copy_model)


def test_edited_detector_json(copy_model):
    p = copy_model / "detector.json"
    doc = json.loads(p.read_text())
    doc["params"]["reg_covar"] = 0.5
    p.write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="detector.json"):
        artifact.load(copy_model)


def test_edited_threshold(copy_model):
    p = copy_model / "thresholds.json"
    p.write_text(p.read_text().replace('"threshold": ', '"threshold": 1'))
    with pytest.raises(ModelFileError, match="thresholds.json"):
        artifact.load(copy_model)


def test_extra_pickle_file_is_refused_and_not_run(copy_model, tmp_path):
    marker = tmp_path / "pwned"
    (copy_model / "model.pkl").write_bytes(_pickle_bytes(marker))
    with pytest.raises(ModelFileError, match="model.pkl"):
        artifact.load(copy_model)
    assert not marker.exists()


@pytest.mark.parametrize("victim", ["weights.safetensors", "detector.json"])
def test_pickle_in_place_of_a_model_file_is_not_run(copy_model, tmp_path, victim):
    marker = tmp_path / "pwned"
    (copy_model / victim).write_bytes(_pickle_bytes(marker))
    with pytest.raises(ModelFileError, match=victim):
        artifact.load(copy_model)
    _resign(copy_model)  # even with matching hashes, the content is parsed as data only
    with pytest.raises(ModelFileError, match=victim):
        artifact.load(copy_model)
    assert not marker.exists()


def test_forged_consistent_model_with_unknown_detector(copy_model):
    p = copy_model / "detector.json"
    doc = json.loads(p.read_text())
    doc["name"] = "os.system"
    p.write_text(json.dumps(doc))
    m = json.loads((copy_model / "manifest.json").read_text())
    m["detector"] = "os.system"
    (copy_model / "manifest.json").write_text(json.dumps(m))
    _resign(copy_model)
    with pytest.raises(ModelFileError, match="Unknown detector 'os.system'"):
        artifact.load(copy_model)


def test_forged_weights_with_wrong_shapes(copy_model):
    from safetensors.numpy import save_file

    save_file({"location": np.zeros(3), "covariance": np.eye(3), "precision": np.eye(3)}, str(copy_model / "weights.safetensors"))
    _resign(copy_model)
    with pytest.raises(ModelFileError, match="mahalanobis"):
        artifact.load(copy_model)


def test_not_a_model_directory(tmp_path):
    (tmp_path / "data.h5").write_bytes(b"\x89HDF\r\n")
    with pytest.raises(ModelFileError, match="not a hepad model"):
        artifact.load(tmp_path)
    with pytest.raises(ModelFileError, match="is a file"):
        artifact.load(tmp_path / "data.h5")
    with pytest.raises(ModelFileError, match="no such model"):
        artifact.load(tmp_path / "missing")


def test_foreign_manifest(copy_model):
    (copy_model / "manifest.json").write_text(json.dumps({"format": "keras", "format_version": 1}))
    with pytest.raises(ModelFileError, match="not a hepad model manifest"):
        artifact.load(copy_model)
    (copy_model / "manifest.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        artifact.load(copy_model)


def test_newer_format_version(copy_model):
    p = copy_model / "manifest.json"
    m = json.loads(p.read_text())
    m["format_version"] = artifact.FORMAT_VERSION + 1
    p.write_text(json.dumps(m))
    with pytest.raises(ModelFileError, match="newer than this hepad"):
        artifact.load(copy_model)


@pytest.mark.parametrize("name", ["weights.safetensors", "preprocessing.json"])
def test_missing_file(copy_model, name):
    os.remove(copy_model / name)
    with pytest.raises(ModelFileError, match=name):
        artifact.load(copy_model)


def test_save_refuses_to_replace_foreign_directory(tmp_path, toy_bkg):
    det = make_detector("mahalanobis").fit(toy_bkg)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ModelFileError, match="not a hepad model"):
        det.save(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    # an existing model directory is replaced
    det.save(tmp_path / "m")
    det.set_threshold(toy_bkg, percentile=50)
    det.save(tmp_path / "m")
    assert artifact.load(tmp_path / "m").threshold_ == det.threshold_


def test_unfitted_cannot_be_saved(tmp_path):
    from hepad.errors import NotFittedError

    with pytest.raises(NotFittedError):
        make_detector("iforest").save(tmp_path / "m")
    assert not (tmp_path / "m").exists()
