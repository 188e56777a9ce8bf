"""Format detection and the entry points shared by every format."""

from __future__ import annotations

import numpy as np
import pytest

import hepad
from hepad.errors import FormatError, InputError
from hepad.io import count_events, detect_format, read_events, write_events


@pytest.mark.parametrize(
    "name, fmt",
    [("a.h5", "hdf5"), ("a.HDF5", "hdf5"), ("a.csv", "csv"), ("a.parquet", "parquet"),
     ("a.root", "root"), ("dir.v2/a.pq", "parquet")],
)
def test_detect_format_from_suffix(name, fmt):
    assert detect_format(name) == fmt


def test_unknown_format_and_suffix_name_the_choices():
    with pytest.raises(FormatError, match=r"unknown format 'parqet'.*Did you mean 'parquet'"):
        detect_format("a.h5", "parqet")
    with pytest.raises(FormatError, match=r"a\.xlsx: cannot tell the format.*--format"):
        detect_format("a.xlsx")
    assert detect_format("a.dat", "CSV") == "csv"


def test_missing_file_directory_and_empty(tmp_path):
    with pytest.raises(InputError, match=r"nope\.csv: no such file"):
        read_events(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="is a directory"):
        read_events(tmp_path)
    (tmp_path / "e.parquet").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_events(tmp_path / "e.parquet")


def test_format_override_reads_odd_suffix(tmp_path):
    (tmp_path / "events.dat").write_text("a,b\n1,2\n3,4\n")
    ev = read_events(tmp_path / "events.dat", format="csv")
    np.testing.assert_array_equal(ev.data, [[1, 2], [3, 4]])
    with pytest.raises(FormatError, match="suffix"):
        read_events(tmp_path / "events.dat")


def test_bad_entry_range(tmp_path):
    (tmp_path / "a.csv").write_text("a\n1\n2\n")
    with pytest.raises(InputError, match="entry_range"):
        read_events(tmp_path / "a.csv", entry_range=(5, 2))
    with pytest.raises(InputError, match="entry_range"):
        read_events(tmp_path / "a.csv", entry_range=(-1, 2))


def test_write_rejects_unwritable_formats(tmp_path):
    ev = hepad.EventSet(np.ones((2, 2), np.float32))
    with pytest.raises(FormatError, match="hepad writes hdf5, parquet"):
        write_events(ev, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("suffix", [".h5", ".parquet"])
def test_count_matches_read_for_written_files(tmp_path, suffix):
    ev = hepad.EventSet(np.random.default_rng(0).normal(size=(321, 3)).astype(np.float32),
                        feature_names=("x", "y", "z"))
    p = write_events(ev, tmp_path / f"f{suffix}")
    assert count_events(p) == 321 == len(read_events(p))
