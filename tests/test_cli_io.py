"""``hepad inspect`` and ``hepad convert``: output, one-line errors, exit codes, no partial output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

import hepad
from hepad.features import dilepton_features
from _cli import cli_run as hepad_cli

REAL = Path(os.environ.get("HEPAD_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "real"))


def _objects(n: int) -> hepad.EventSet:
    rng = np.random.default_rng(0)
    d = np.zeros((n, 19, 4), np.float32)
    d[:, 0, 0], d[:, 0, 3] = rng.exponential(30, n), 1
    d[: n // 2, 5, :] = (40.0, 0.5, 1.0, 3)  # half the events have one muon
    d[:, 9, :] = (50.0, 0.0, 0.0, 4)
    return hepad.EventSet(d)


def test_inspect_object_file_json(monkeypatch, capsys, tmp_path):
    hepad.write_events(_objects(1000), tmp_path / "ev.h5")
    code, out, err = hepad_cli(monkeypatch, capsys, "inspect", tmp_path / "ev.h5", "--json",
                               "--chunk-size", "300")
    assert code == 0, err
    (s,) = json.loads(out)
    assert s["n_events"] == 1000 and s["layout"] == "adc2021" and s["format"] == "hdf5"
    assert s["multiplicities"]["muons"]["distribution"]["1"] == 500
    assert s["multiplicities"]["muons"]["mean"] == pytest.approx(0.5)
    assert s["multiplicities"]["jets"]["distribution"]["1"] == 1000
    mu1 = next(f for f in s["features"] if f["name"] == "mu1_pt")
    assert mu1["filled"] == pytest.approx(0.5) and mu1["q50"] == pytest.approx(40.0)
    met = next(f for f in s["features"] if f["name"] == "MET_pt")
    assert met["min"] <= met["q01"] <= met["q50"] <= met["q99"] <= met["max"]


def test_inspect_table_and_split_file(monkeypatch, capsys, tmp_path):
    with h5py.File(tmp_path / "split.h5", "w") as f:
        f["X_train"] = np.ones((20, 57), np.float32)
        f["X_test"] = np.zeros((7, 57), np.float32)
    code, out, err = hepad_cli(monkeypatch, capsys, "inspect", tmp_path / "split.h5")
    assert code == 0, err
    assert "key=X_train" in out and "key=X_test" in out and "events=7" in out
    assert "MET_pt" in out and "q50" in out


def test_inspect_csv_columns_and_drop_invalid(monkeypatch, capsys, tmp_path):
    (tmp_path / "a.csv").write_text("x,y,t\n1,2,a\nnan,3,b\n4,5,c\n")
    code, out, err = hepad_cli(monkeypatch, capsys, "inspect", tmp_path / "a.csv")
    assert code == 1 and out == ""
    last = err.strip().splitlines()[-1]  # after the logged warning about column t
    assert last.startswith("hepad: error: ") and "a.csv" in last and "--drop-invalid" in last
    code, out, err = hepad_cli(monkeypatch, capsys, "inspect", tmp_path / "a.csv", "--drop-invalid",
                               "--columns", "y,x", "--json")
    assert code == 0, err
    (s,) = json.loads(out)
    assert s["n_events"] == 2 and s["dropped_invalid"] == 1
    assert [f["name"] for f in s["features"]] == ["y", "x"]


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    hepad.write_events(_objects(500), tmp_path / "ok.h5", compression=None)
    raw = (tmp_path / "ok.h5").read_bytes()
    (tmp_path / "trunc.h5").write_bytes(raw[: len(raw) // 3])
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "text.csv").write_text("a,b\nx,y\n")
    (tmp_path / "junk.root").write_bytes(b"\x00junk" * 100)
    with h5py.File(tmp_path / "shape.h5", "w") as f:
        f["Particles"] = np.zeros((3, 19, 3), np.float32)
    return {
        "missing": ([str(tmp_path / "missing.h5")], "no such file"),
        "unknown format": ([str(tmp_path / "ok.h5"), "--format", "xlsx"], "unknown format"),
        "unknown suffix": ([str(tmp_path / "text.csv"), "--format", "json"], "unknown format"),
        "missing key": ([str(tmp_path / "ok.h5"), "--key", "X_test"], "Particles"),
        "wrong shape": ([str(tmp_path / "shape.h5")], "(3, 19, 3)"),
        "truncated": ([str(tmp_path / "trunc.h5")], "truncated"),
        "corrupt root": ([str(tmp_path / "junk.root")], "not a ROOT file"),
        "no numeric": ([str(tmp_path / "text.csv")], "no numeric column"),
        "empty": ([str(tmp_path / "empty.csv")], "empty"),
    }


def test_inspect_bad_input_one_line_errors(monkeypatch, capsys, tmp_path):
    for name, (args, needle) in _bad_inputs(tmp_path).items():
        code, out, err = hepad_cli(monkeypatch, capsys, "inspect", *args)
        assert code == 1, (name, err)
        assert err.startswith("hepad: error: ") and err.count("\n") == 1, (name, err)
        assert needle in err, (name, err)
        assert Path(args[0]).name in err, (name, err)
        assert out == "", name


def test_convert_root_with_features_to_parquet(monkeypatch, capsys, tmp_path):
    src = REAL / "data_B.4lep.root"
    if not src.exists():
        pytest.skip(f"real ATLAS file not found in {REAL}")
    code, out, err = hepad_cli(monkeypatch, capsys, "convert", src, tmp_path / "b.parquet",
                               "--features", "dilepton", "--chunk-size", "50")
    assert code == 0, err
    feats = hepad.read_events(tmp_path / "b.parquet")
    expected = dilepton_features(hepad.read_events(src))
    assert feats.feature_names == expected.feature_names
    np.testing.assert_allclose(feats.data, expected.data, rtol=1e-6)


def test_convert_failures_leave_no_output(monkeypatch, capsys, tmp_path):
    # A NaN far into the file fails the conversion after chunks were already written.
    d = _objects(1000).data
    d[900, 0, 0] = np.nan
    hepad.write_events(hepad.EventSet(d), tmp_path / "nan.h5")
    code, out, err = hepad_cli(monkeypatch, capsys, "convert", tmp_path / "nan.h5",
                               tmp_path / "out.h5", "--chunk-size", "100")
    assert code == 1 and "1 NaN" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.h5"]
    code, out, err = hepad_cli(monkeypatch, capsys, "convert", tmp_path / "nan.h5",
                               tmp_path / "out.h5", "--drop-invalid")
    assert code == 0 and len(hepad.read_events(tmp_path / "out.h5")) == 999
    code, out, err = hepad_cli(monkeypatch, capsys, "convert", tmp_path / "nan.h5", tmp_path / "out.h5")
    assert code == 1 and "--force" in err
    code, out, err = hepad_cli(monkeypatch, capsys, "convert", tmp_path / "nan.h5", tmp_path / "out.csv")
    assert code == 1 and "out.csv" in err
