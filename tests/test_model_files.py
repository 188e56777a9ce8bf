"""Model files that load once the manifest is re-hashed, and ONNX files with one flipped byte
(issue 11, item 7): each is one clean ModelFileError naming the file and the key, before any
allocation; an intact file still loads and scores the same."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import hepad
from hepad import artifact
from hepad.cli import run
from hepad.engine import make_scorer
from hepad.errors import HepadError, ModelFileError


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def events(tiny_dataset):
    """Realistic events: the generator's tiny SM sample (train) and its test sample."""
    train = hepad.read_events(tiny_dataset["sm_train"])
    test = hepad.read_events(tiny_dataset["sm_test"])
    return train, test


@pytest.fixture(scope="module")
def ae_model(events, tmp_path_factory):
    det = hepad.make_detector("ae", epochs=2, batch_size=256, n_threads=1, random_state=0, hidden_layers=[16],
                              latent_dim=4)
    det.fit(events[0])
    path = tmp_path_factory.mktemp("mf") / "ae"
    det.save(path)
    return path


@pytest.fixture(scope="module")
def ae_onnx(ae_model, tmp_path_factory):
    from hepad.export.onnx import export_onnx

    return export_onnx(ae_model, tmp_path_factory.mktemp("mfo") / "ae.onnx")


@pytest.fixture
def model(ae_model, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(ae_model, dst)
    return dst


def _resign(path: Path) -> None:
    """Recompute the manifest hashes, as a forger would, to reach the checks behind them."""
    mpath = path / artifact.MANIFEST
    manifest = json.loads(mpath.read_text())
    for name in manifest["files"]:
        data = (path / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    mpath.write_text(json.dumps(manifest))


def _edit_json(path: Path, name: str, fn) -> None:
    doc = json.loads((path / name).read_text())
    fn(doc)
    (path / name).write_text(json.dumps(doc))  # json.dumps writes NaN / Infinity literals
    _resign(path)


def _refused(path: Path, *words: str) -> str:
    with pytest.raises(ModelFileError) as info:
        hepad.load(path)
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    return msg


# ---------------------------------------------------------------------- thresholds
@pytest.mark.parametrize("value", [float("nan"), float("-inf"), float("inf"), "0.5", True, None])
def test_non_finite_or_non_numeric_threshold_is_refused(model, value):
    _edit_json(model, artifact.THRESHOLDS, lambda d: d.__setitem__("threshold", value))
    _refused(model, artifact.THRESHOLDS, "threshold")


def test_the_intact_model_still_loads_and_scores_the_same(ae_model, model, events):
    a = hepad.load(ae_model).score_samples(events[1])
    _resign(model)  # re-hashing alone changes nothing
    b = hepad.load(model).score_samples(events[1])
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a).all()


# ---------------------------------------------------------------------- weights
@pytest.mark.parametrize("value, word", [(np.nan, "NaN"), (-np.inf, "NaN/inf"), (3e30, "beyond")])
def test_nan_or_overflowing_weights_are_refused(model, value, word):
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(model / artifact.WEIGHTS))
    key = next(k for k in arrays if k.endswith("weight") and arrays[k].ndim == 2)
    arrays[key] = arrays[key].copy()
    arrays[key][0, 0] = value
    save_file(arrays, str(model / artifact.WEIGHTS), metadata={"format": artifact.FORMAT})
    _resign(model)
    _refused(model, artifact.WEIGHTS, key, word)


def test_unknown_array_is_refused(model):
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(model / artifact.WEIGHTS))
    arrays["payload"] = np.zeros(3, np.float32)
    save_file(arrays, str(model / artifact.WEIGHTS), metadata={"format": artifact.FORMAT})
    _resign(model)
    _refused(model, artifact.WEIGHTS, "payload")


# ---------------------------------------------------------------------- unknown keys
@pytest.mark.parametrize(
    "name, edit, key",
    [
        (artifact.DETECTOR, lambda d: d.__setitem__("exec", "rm -rf /"), "exec"),
        (artifact.DETECTOR, lambda d: d["fitted"].__setitem__("threshold_", 0.1), "threshold_"),
        (artifact.DETECTOR, lambda d: d["meta"].__setitem__("hook", 1), "hook"),
        (artifact.DETECTOR, lambda d: d["params"].__setitem__("learning_rat", 0.1), "learning_rat"),
        (artifact.THRESHOLDS, lambda d: d.__setitem__("threshold_override", 0.0), "threshold_override"),
    ],
)
def test_unknown_keys_are_refused(model, name, edit, key):
    _edit_json(model, name, edit)
    _refused(model, name, key)


def test_unknown_manifest_key_is_refused(model):
    mpath = model / artifact.MANIFEST
    doc = json.loads(mpath.read_text())
    doc["signed_by"] = "me"
    mpath.write_text(json.dumps(doc))
    _refused(model, artifact.MANIFEST, "signed_by")


# ---------------------------------------------------------------------- sizes and threads, before allocation
@pytest.mark.parametrize("value", [10**6, 0, -1, 2.5, "4"])
def test_absurd_thread_counts_are_refused(model, value):
    _edit_json(model, artifact.DETECTOR, lambda d: d["params"].__setitem__("n_threads", value))
    _refused(model, artifact.DETECTOR, "n_threads")


@pytest.mark.parametrize("hidden", [[8000, 8000], [10**6], [0]])
def test_forged_layer_sizes_fail_before_any_allocation(model, hidden, monkeypatch):
    import torch

    _edit_json(model, artifact.DETECTOR, lambda d: d["params"].__setitem__("hidden_layers", hidden))
    built: list[tuple[str, int]] = []
    real_init = torch.nn.Linear.__init__

    def spy(self, in_features, out_features, *a, **k):
        real_init(self, in_features, out_features, *a, **k)
        built.append((self.weight.device.type, in_features * out_features))

    monkeypatch.setattr(torch.nn.Linear, "__init__", spy)
    _refused(model, "hidden_layers" if max(hidden) > artifact.MAX_LAYER_WIDTH or min(hidden) < 1 else "shape")
    allocated = sum(n for dev, n in built if dev != "meta")
    assert allocated < 100_000, f"{allocated} weights allocated before the shapes were checked"


# ---------------------------------------------------------------------- ONNX integrity
def _flip_weight_byte(data: bytes) -> bytes:
    """Flip a mantissa bit inside the largest weight tensor: still a valid ONNX graph."""
    import onnx

    model = onnx.load_from_string(data)
    init = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    at = data.find(init.raw_data)
    assert at > 0
    out = bytearray(data)
    out[at + len(init.raw_data) // 2] ^= 0x10
    return bytes(out)


def test_exported_onnx_carries_a_verified_sha256(ae_onnx, events):
    from hepad.export.onnx import read_onnx_metadata

    meta = read_onnx_metadata(ae_onnx)
    assert "sha256" not in meta and np.isfinite(meta["threshold"])
    import onnx

    props = {p.key: p.value for p in onnx.load(str(ae_onnx)).metadata_props}
    assert len(props["hepad.sha256"]) == 64
    s = make_scorer(ae_onnx, threads=1)
    assert np.isfinite(s(events[1])).all()


def test_one_flipped_byte_in_an_onnx_file_is_refused(ae_onnx, tmp_path, events):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(_flip_weight_byte(ae_onnx.read_bytes()))
    with pytest.raises(ModelFileError, match="sha256") as info:
        hepad.make_scorer(bad, threads=1)
    assert str(bad) in str(info.value)


def test_onnx_without_its_sha256_is_refused(ae_onnx, tmp_path):
    import onnx

    model = onnx.load(str(ae_onnx))
    keep = [p for p in model.metadata_props if p.key != "hepad.sha256"]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    bad = tmp_path / "old.onnx"
    bad.write_bytes(model.SerializeToString())
    with pytest.raises(ModelFileError, match="integrity"):
        make_scorer(bad, threads=1)


def _cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["hepad", *map(str, args)])
    code = 0
    try:
        run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, *capsys.readouterr()


def test_trigger_refuses_a_flipped_onnx_file(ae_onnx, tmp_path, tiny_dataset, monkeypatch, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(_flip_weight_byte(ae_onnx.read_bytes()))
    code, out, err = _cli(monkeypatch, capsys, "trigger", bad, "--source", f"replay:{tiny_dataset['sm_test']}",
                          "-o", tmp_path / "acc", "--threads", "1")
    assert code == 1, err
    assert err.count("\n") == 1 and "sha256" in err and str(bad) in err
    assert not (tmp_path / "acc" / "summary.json").exists()


def test_a_truncated_onnx_file_is_one_clean_error(ae_onnx, tmp_path):
    data = ae_onnx.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 3):
        bad = tmp_path / f"cut{cut}.onnx"
        bad.write_bytes(data[:cut])
        with pytest.raises(HepadError):
            make_scorer(bad, threads=1)
