"""CSV and Parquet: numeric columns, dropped-column reports, streaming, round trips."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hepad
from hepad.errors import FormatError, InputError, InvalidValuesError, MissingKeyError
from hepad.io import count_events, iter_events, read_events, write_events

REAL = Path(os.environ.get("HEPAD_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "real"))
needs_real = pytest.mark.skipif(
    not (REAL / "Zee_Run2011A.csv").exists(),
    reason=f"real CMS/ATLAS sample files not found in {REAL} (set HEPAD_REAL_DATA)",
)


def test_csv_numeric_columns_and_dropped_report(tmp_path, caplog):
    (tmp_path / "a.csv").write_text("run,kind,pt,ok\n1,EB,10.5,true\n2,EE,20.25,false\n")
    with caplog.at_level(logging.WARNING):
        ev = read_events(tmp_path / "a.csv")
    assert ev.feature_names == ("run", "pt", "ok")
    np.testing.assert_array_equal(ev.data, [[1, 10.5, 1], [2, 20.25, 0]])
    assert ev.provenance["dropped_columns"] == ["kind"]
    assert "kind" in caplog.text and "a.csv" in caplog.text


def test_csv_columns_select_and_errors(tmp_path):
    (tmp_path / "a.csv").write_text("x,y,name\n1,2,a\n3,4,b\n")
    ev = read_events(tmp_path / "a.csv", columns=["y", "x"])
    np.testing.assert_array_equal(ev.data, [[2, 1], [4, 3]])
    assert "dropped_columns" not in ev.provenance
    with pytest.raises(MissingKeyError, match=r"a\.csv: no column 'z'"):
        read_events(tmp_path / "a.csv", columns=["z"])
    with pytest.raises(FormatError, match="'name' is not numeric"):
        read_events(tmp_path / "a.csv", columns=["name"])


def test_csv_without_numeric_column_or_rows(tmp_path):
    (tmp_path / "text.csv").write_text("a,b\nx,y\n")
    with pytest.raises(FormatError, match=r"text\.csv: no numeric column"):
        read_events(tmp_path / "text.csv")
    (tmp_path / "header.csv").write_text("a,b\n")
    with pytest.raises(InputError, match=r"header\.csv: the file holds no events"):
        read_events(tmp_path / "header.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty"):
        read_events(tmp_path / "empty.csv")


def test_csv_nan_inf_and_missing_cells(tmp_path):
    (tmp_path / "n.csv").write_text("a,b\n1,2\nnan,3\n4,inf\n5,\n6,7\n")
    with pytest.raises(InvalidValuesError, match=r"3 of 5 events.*2 NaN, 1 inf"):
        read_events(tmp_path / "n.csv")
    ev = read_events(tmp_path / "n.csv", drop_invalid=True)
    np.testing.assert_array_equal(ev.data, [[1, 2], [6, 7]])


def test_csv_value_beyond_float32_is_named_not_just_inf(tmp_path):
    # 1e39 fits a CSV and float64 but not the float32 events are kept in: it must not pass, and
    # the message must say why a finite number counts as inf (and numpy must not warn).
    import warnings

    (tmp_path / "big.csv").write_text("a,b\n1,2\n3,1e39\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidValuesError, match=r"1 of 2 events.*1 inf; a number beyond float32's range"):
            read_events(tmp_path / "big.csv")
        ev = read_events(tmp_path / "big.csv", drop_invalid=True)
    np.testing.assert_array_equal(ev.data, [[1, 2]])


def test_csv_label_and_weight_columns_are_not_features(tmp_path):
    (tmp_path / "l.csv").write_text("x,label,weight\n1,0,0.5\n2,1,2.0\n")
    ev = read_events(tmp_path / "l.csv")
    assert ev.feature_names == ("x",)
    np.testing.assert_array_equal(ev.labels, [0, 1])
    np.testing.assert_allclose(ev.weights, [0.5, 2.0])


def test_csv_streams_in_exact_chunks_even_when_types_change(tmp_path):
    # 'b' looks integer in the first block and holds a decimal far down the file.
    n = 300_000
    lines = ["a,b"] + [f"{i},{i % 7}" for i in range(n - 1)] + [f"{n - 1},2.5"]
    (tmp_path / "big.csv").write_text("\n".join(lines) + "\n")
    chunks = list(iter_events(tmp_path / "big.csv", chunk_size=70_000))
    assert [len(c) for c in chunks] == [70_000] * 4 + [20_000]
    assert chunks[-1].data[-1, 1] == 2.5
    np.testing.assert_array_equal(chunks[2].data[:, 0], np.arange(140_000, 210_000))
    part = read_events(tmp_path / "big.csv", entry_range=(123_456, 123_460))
    np.testing.assert_array_equal(part.data[:, 0], np.arange(123_456, 123_460))
    assert count_events(tmp_path / "big.csv") == n


def test_csv_text_in_numeric_column_downstream_is_a_clear_error(tmp_path):
    lines = ["a,b"] + [f"{i},{i}" for i in range(200_000)] + ["7,oops"]
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError, match=r"bad\.csv: cannot parse the CSV"):
        read_events(tmp_path / "bad.csv")


def test_parquet_object_roundtrip_and_row_groups(tmp_path):
    rng = np.random.default_rng(2)
    data = np.zeros((500, 19, 4), np.float32)
    data[:, 0, 0] = rng.exponential(30, 500)
    data[:, 0, 3] = 1
    ev = hepad.EventSet(data, labels=rng.integers(0, 2, 500), process=np.array(["a", "b"] * 250),
                        provenance={"note": "x"})
    write_events((ev[i : i + 128] for i in range(0, 500, 128)), tmp_path / "o.parquet")
    assert pq.ParquetFile(tmp_path / "o.parquet").num_row_groups == 4
    back = read_events(tmp_path / "o.parquet")
    assert back.is_objects
    np.testing.assert_array_equal(back.data, data)
    np.testing.assert_array_equal(back.labels, ev.labels)
    assert list(back.process) == list(ev.process) and back.provenance["note"] == "x"
    part = read_events(tmp_path / "o.parquet", entry_range=(250, 390))
    np.testing.assert_array_equal(part.data, data[250:390])
    chunks = list(iter_events(tmp_path / "o.parquet", chunk_size=100, entry_range=(130, 500)))
    assert [len(c) for c in chunks] == [100, 100, 100, 70]
    np.testing.assert_array_equal(np.concatenate([c.data for c in chunks]), data[130:])
    assert count_events(tmp_path / "o.parquet") == 500


def test_parquet_foreign_table_drops_strings(tmp_path, caplog):
    table = pa.table({"pt": [1.0, 2.0], "name": ["a", "b"], "n": pa.array([1, 2], pa.int16())})
    pq.write_table(table, tmp_path / "f.parquet")
    with caplog.at_level(logging.WARNING):
        ev = read_events(tmp_path / "f.parquet")
    assert ev.feature_names == ("pt", "n") and ev.provenance["dropped_columns"] == ["name"]
    assert "name" in caplog.text
    assert read_events(tmp_path / "f.parquet", columns=["n"]).feature_names == ("n",)


def test_parquet_truncated(tmp_path):
    write_events(hepad.EventSet(np.ones((100, 3), np.float32)), tmp_path / "t.parquet")
    raw = (tmp_path / "t.parquet").read_bytes()
    (tmp_path / "t.parquet").write_bytes(raw[: len(raw) - 20])
    with pytest.raises(FormatError, match=r"t\.parquet.*(truncated|corrupt)"):
        read_events(tmp_path / "t.parquet")


@needs_real
def test_real_cms_csvs():
    zee = read_events(REAL / "Zee_Run2011A.csv")
    assert len(zee) == 18_885
    assert zee.provenance["dropped_columns"] == ["type1", "type2"]
    zmm = read_events(REAL / "Zmumu_Run2011A.csv", columns=["pt1", "pt2"])
    assert len(zmm) == 10_583 and (zmm.data > 0).all()
    w = read_events(REAL / "Wmunu.csv")
    assert "MET" in w.feature_names and len(w) == 1000
    four = read_events(REAL / "4mu_2011.csv")
    # The stored four-lepton mass M lies in the H->ZZ* search window of the skim.
    m = four.data[:, four.feature_names.index("M")]
    assert (m > 70).all() and (m < 1000).all()


def test_both_label_spellings_never_become_features(tmp_path):
    path = tmp_path / "two_labels.csv"
    path.write_text("a,b,label,labels\n1,2,0,0\n3,4,1,1\n5,6,0,0\n")
    ev = hepad.read_events(path)
    assert ev.feature_names == ("a", "b")
    assert ev.labels.tolist() == [0, 1, 0]
