"""Event validation at read time and one-line messages (issue 11, items 10 and 12).

Hard cases are planted into the generator's tiny dataset: a corrupted data region (types outside
0-4, values up to 2.4e24), negative pT, pT of 1e30, bool and complex dtypes.
"""

from __future__ import annotations

import shutil
import warnings

import h5py
import numpy as np
import pytest

import hepad
from _cli import cli, one_error_line
from hepad.errors import InputError, InvalidValuesError


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_dataset):
    d = tmp_path_factory.mktemp("val")
    hepad.train("mahalanobis", tiny_dataset["sm_train"], output=d / "model")
    return d / "model"


def planted(tiny_dataset, tmp_path, name="bad.h5", fn=None, dtype=None):
    """A copy of the tiny test file whose Particles are changed by ``fn(array)``."""
    out = tmp_path / name
    shutil.copy(tiny_dataset["sm_test"], out)
    with h5py.File(out, "r+") as f:
        data = f["Particles"][...]
        fn(data)
        del f["Particles"]
        f["Particles"] = data if dtype is None else data.astype(dtype)
    return out


def corrupt_region(d: np.ndarray) -> None:
    """What a damaged data region looks like: a third of the events hold garbage floats."""
    rng = np.random.default_rng(7)
    n = len(d) // 3
    d[:n] = rng.uniform(-1, 1, d[:n].shape) * 10.0 ** rng.integers(0, 25, d[:n].shape)
    d[0, 3, 3] = 7.0
    d[1, 9, 0] = 2.4e24


def test_corrupted_region_is_refused_with_counts_per_class(tiny_dataset, tmp_path):
    bad = planted(tiny_dataset, tmp_path, fn=corrupt_region)
    with pytest.raises(InvalidValuesError) as info:
        hepad.read_events(bad)
    msg = str(info.value)
    assert "\n" not in msg and str(bad) in msg
    assert "66 of 200 events hold invalid values" in msg
    for what in ("object type outside 0-4", "negative pT", "pT above 14000 GeV", "|eta| above 10",
                 "phi outside [-pi, pi]"):
        assert what in msg
    assert "--drop-invalid" in msg
    # iterating gives the same verdict, chunk by chunk
    with pytest.raises(InvalidValuesError, match="invalid values"):
        list(hepad.iter_events(bad, chunk_size=50))


def test_drop_invalid_keeps_exactly_the_valid_events(tiny_dataset, tmp_path, caplog):
    bad = planted(tiny_dataset, tmp_path, fn=corrupt_region)
    ref = hepad.read_events(tiny_dataset["sm_test"])
    got = hepad.read_events(bad, drop_invalid=True)
    assert len(got) == 200 - 66 and got.provenance["dropped_invalid"] == 66
    np.testing.assert_array_equal(got.data, ref.data[66:])
    chunks = list(hepad.iter_events(bad, chunk_size=30, drop_invalid=True))
    assert sum(len(c) for c in chunks) == 134 and sum(c.provenance.get("dropped_invalid", 0) for c in chunks) == 66


@pytest.mark.parametrize("case", ["negative-pt", "pt-1e30", "eta", "phi", "type-fraction", "nan"])
def test_score_refuses_unphysical_events_in_one_line(capsys, model, tiny_dataset, tmp_path, case):
    def plant(d):
        if case == "negative-pt":
            d[5, 9, 0] = -40.0
        elif case == "pt-1e30":
            d[:, 0, 0] = 1e30
        elif case == "eta":
            d[5, 9, 1] = 55.0
        elif case == "phi":
            d[5, 9, 2] = 7.0
        elif case == "type-fraction":
            d[5, 9, 3] = 3.5
        else:
            d[5, 9, 1] = np.nan

    bad = planted(tiny_dataset, tmp_path, fn=plant)
    code, out, err = cli(capsys, "score", model, bad, "-o", tmp_path / "s.h5")
    assert code == 1, out + err
    line = one_error_line(err)
    assert str(bad) in line and "invalid values" in line
    assert not (tmp_path / "s.h5").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5"]


@pytest.mark.parametrize("dtype", [bool, np.complex64])
def test_bool_and_complex_dtypes_are_refused(capsys, model, tiny_dataset, tmp_path, dtype):
    bad = planted(tiny_dataset, tmp_path, fn=lambda d: None, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ComplexWarning may leak
        with pytest.raises(InputError, match="real numbers"):
            hepad.read_events(bad)
        code, _, err = cli(capsys, "inspect", bad)
    assert code == 1 and "real numbers" in one_error_line(err)
    with pytest.raises(InputError, match="real numbers"):
        hepad.EventSet(np.zeros((3, 5), dtype=dtype))


def test_convert_drop_invalid_reports_counts_and_writes_the_rest(capsys, tiny_dataset, tmp_path):
    bad = planted(tiny_dataset, tmp_path, fn=corrupt_region)
    out = tmp_path / "clean.h5"
    code, _, err = cli(capsys, "convert", bad, out, "--drop-invalid", "--chunk-size", "64")
    assert code == 0, err
    assert len(hepad.read_events(out)) == 134
    warn = [ln for ln in err.splitlines() if ln.startswith("hepad: warning:")]
    assert warn and all("invalid values" in w and "object type outside 0-4" in w for w in warn)
    assert sum(int(w.split("dropped ")[1].split(" of")[0]) for w in warn) == 66


def test_real_files_pass_the_policy(real_data, tiny_dataset):
    """The policy refuses nothing that is real: every shared open-data file and the tiny dataset."""
    files = sorted(real_data.glob("*.csv")) + sorted(real_data.glob("*.root")) + list(tiny_dataset.values())
    assert len(files) > 10
    for f in files:
        ev = hepad.read_events(f)
        assert len(ev) > 0 and "dropped_invalid" not in ev.provenance


# ------------------------------------------------------------------ item 12: one line, always
def test_a_warning_before_an_error_is_not_printed(capsys, tiny_dataset, real_data, tmp_path):
    # Ymumu.csv: a dropped-column warning, then a feature-count error that must name the file.
    code, _, err = cli(capsys, "train", "-d", "mahalanobis", "--data", tiny_dataset["sm_train"],
                       "--val", real_data / "Ymumu.csv", "-o", tmp_path / "m")
    assert code == 1
    line = one_error_line(err)
    assert "Ymumu.csv" in line and "mahalanobis" not in line


def test_evaluate_feature_mismatch_names_the_file(capsys, model, real_data, tiny_dataset, tmp_path):
    code, _, err = cli(capsys, "evaluate", model, "-b", real_data / "Ymumu.csv", "-s", tiny_dataset["ato4l"],
                       "-o", tmp_path / "e")
    assert code == 1
    line = one_error_line(err)
    assert "Ymumu.csv" in line and "18 features" in line
    assert list(tmp_path.iterdir()) == []


def test_root_branch_warning_then_error_is_one_line(capsys, model, real_data, tmp_path):
    code, _, err = cli(capsys, "score", model, real_data / "uproot-Zmumu.root", "-o", tmp_path / "s.h5")
    assert code == 1
    assert "uproot-Zmumu.root" in one_error_line(err)


def test_warnings_of_a_successful_command_are_one_line_each(capsys, real_data, tmp_path):
    code, _, err = cli(capsys, "convert", real_data / "Ymumu.csv", tmp_path / "y.parquet")
    assert code == 0
    lines = [ln for ln in err.splitlines() if ln.startswith("hepad: warning:")]
    assert len(lines) == 1 and "type1, type2" in lines[0]
