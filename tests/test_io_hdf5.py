"""HDF5 reader/writer: ADC2021 layout, flat and split datasets, streaming, bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import hepad
from hepad import _layout as L
from hepad.errors import FormatError, HepadError, InputError, InvalidValuesError, MissingKeyError
from hepad.io import count_events, iter_events, list_keys, read_events, write_events


def make_objects(n: int, seed: int = 0) -> hepad.EventSet:
    rng = np.random.default_rng(seed)
    data = np.zeros((n, 19, 4), dtype=np.float32)
    data[:, 0, 0] = rng.exponential(30, n)
    data[:, 0, 2] = rng.uniform(-np.pi, np.pi, n)
    data[:, 0, 3] = 1
    n_mu = rng.integers(0, 5, n)
    for k in range(4):
        has = n_mu > k
        data[has, 5 + k, 0] = 50.0 / (k + 1) + rng.exponential(5, has.sum())
        data[has, 5 + k, 1] = rng.uniform(-2, 2, has.sum())
        data[has, 5 + k, 2] = rng.uniform(-3, 3, has.sum())
        data[has, 5 + k, 3] = 3
    return hepad.EventSet(
        data,
        labels=rng.integers(0, 2, n),
        weights=rng.uniform(0.5, 2, n),
        process=np.where(rng.random(n) < 0.5, "W", "ttbar"),
        provenance={"generator": "test", "seed": seed},
    )


def test_object_roundtrip_keeps_data_sides_and_provenance(tmp_path):
    ev = make_objects(1234)
    path = write_events(ev, tmp_path / "ev.h5")
    back = read_events(path)
    assert back.is_objects and back.data.shape == (1234, 19, 4)
    np.testing.assert_array_equal(back.data, ev.data)
    np.testing.assert_array_equal(back.labels, ev.labels)
    np.testing.assert_allclose(back.weights, ev.weights)
    assert list(back.process) == list(ev.process)
    assert back.provenance["generator"] == "test" and back.provenance["seed"] == 0
    assert back.provenance["source"] == str(path) and back.provenance["key"] == "Particles"
    np.testing.assert_array_equal(back.multiplicities["muons"], ev.multiplicities["muons"])


def test_flat_roundtrip_and_columns(tmp_path):
    x = np.arange(60, dtype=np.float32).reshape(20, 3)
    ev = hepad.EventSet(x, feature_names=("a", "b", "c"))
    write_events(ev, tmp_path / "flat.h5", compression=None)
    back = read_events(tmp_path / "flat.h5")
    assert back.feature_names == ("a", "b", "c")
    sel = read_events(tmp_path / "flat.h5", columns=["c", "a"])
    np.testing.assert_array_equal(sel.data, x[:, [2, 0]])
    with pytest.raises(MissingKeyError, match=r"no column 'bb'.*Did you mean 'b'"):
        read_events(tmp_path / "flat.h5", columns=["bb"])


def test_split_files_list_keys_and_read_by_key(tmp_path):
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "split.h5", "w") as f:
        for k, n in (("X_train", 30), ("X_val", 10), ("X_test", 12)):
            f[k] = rng.normal(size=(n, 57)).astype(np.float32)
    with pytest.raises(MissingKeyError) as err:
        read_events(tmp_path / "split.h5")
    msg = str(err.value)
    assert "X_train (30, 57)" in msg and "X_test (12, 57)" in msg and "--key" in msg
    test = read_events(tmp_path / "split.h5", key="X_test")
    assert len(test) == 12 and test.feature_names == L.FLAT57_NAMES
    assert test.provenance["key"] == "X_test"
    with pytest.raises(MissingKeyError, match="Did you mean 'X_test'"):
        read_events(tmp_path / "split.h5", key="X_tset")
    assert list_keys(tmp_path / "split.h5") == {"X_test": (12, 57), "X_train": (30, 57), "X_val": (10, 57)}


def test_single_dataset_and_seed_keys_are_defaults(tmp_path):
    with h5py.File(tmp_path / "sig.h5", "w") as f:
        f["Data"] = np.ones((5, 57), np.float32)
    assert len(read_events(tmp_path / "sig.h5")) == 5
    with h5py.File(tmp_path / "odd.h5", "w") as f:
        f["my_events"] = np.ones((7, 4), np.float32)
    assert read_events(tmp_path / "odd.h5").provenance["key"] == "my_events"


def test_iter_events_chunks_equal_whole_read_and_entry_range(tmp_path):
    ev = make_objects(1050, seed=3)
    write_events(ev, tmp_path / "ev.h5")
    chunks = list(iter_events(tmp_path / "ev.h5", chunk_size=100))
    assert [len(c) for c in chunks] == [100] * 10 + [50]
    np.testing.assert_array_equal(hepad.EventSet.concat(chunks).data, ev.data)
    np.testing.assert_array_equal(np.concatenate([c.labels for c in chunks]), ev.labels)
    part = read_events(tmp_path / "ev.h5", entry_range=(200, 260))
    np.testing.assert_array_equal(part.data, ev.data[200:260])
    np.testing.assert_array_equal(part.labels, ev.labels[200:260])
    ranged = list(iter_events(tmp_path / "ev.h5", chunk_size=25, entry_range=(990, 5000)))
    assert [len(c) for c in ranged] == [25, 25, 10]
    assert count_events(tmp_path / "ev.h5") == 1050


def test_streaming_write_appends_chunks(tmp_path):
    ev = make_objects(700, seed=5)
    write_events((ev[i : i + 128] for i in range(0, 700, 128)), tmp_path / "s.h5")
    back = read_events(tmp_path / "s.h5")
    np.testing.assert_array_equal(back.data, ev.data)
    np.testing.assert_array_equal(back.labels, ev.labels)


def test_failed_write_leaves_no_file(tmp_path):
    ev = make_objects(50)

    def chunks():
        yield ev
        raise RuntimeError("generator died")

    with pytest.raises(RuntimeError):
        write_events(chunks(), tmp_path / "out.h5")
    assert list(tmp_path.iterdir()) == []
    flat = hepad.EventSet(np.ones((3, 2), np.float32))
    with pytest.raises(InputError, match="different layout"):
        write_events([ev, flat], tmp_path / "mixed.h5")
    assert list(tmp_path.iterdir()) == []


def test_wrong_shape_and_dtype(tmp_path):
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["Particles"] = np.zeros((4, 19, 3), np.float32)
        f["one_d"] = np.zeros(4, np.float32)
        f["text"] = np.array([[b"a", b"b"]])
    with pytest.raises(FormatError, match=r"\(4, 19, 3\).*ADC2021 layout is \(N, 19, 4\)"):
        read_events(tmp_path / "bad.h5")
    with pytest.raises(FormatError, match="shape"):
        read_events(tmp_path / "bad.h5", key="one_d")
    with pytest.raises(FormatError, match="not numeric"):
        read_events(tmp_path / "bad.h5", key="text")


def test_nan_inf_are_counted_or_dropped(tmp_path):
    ev = make_objects(100)
    ev.data[3, 0, 0] = np.nan
    ev.data[7, 5, 1] = np.inf
    ev.data[7, 5, 2] = np.nan
    write_events(ev, tmp_path / "nan.h5")
    with pytest.raises(InvalidValuesError, match=r"2 of 100 events.*2 NaN, 1 inf.*--drop-invalid"):
        read_events(tmp_path / "nan.h5")
    kept = read_events(tmp_path / "nan.h5", drop_invalid=True)
    assert len(kept) == 98 and kept.provenance["dropped_invalid"] == 2
    np.testing.assert_array_equal(kept.labels, np.delete(ev.labels, [3, 7]))


def test_truncated_corrupt_empty_and_not_hdf5(tmp_path):
    write_events(make_objects(2000), tmp_path / "ok.h5", compression=None)
    raw = (tmp_path / "ok.h5").read_bytes()
    (tmp_path / "trunc.h5").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FormatError, match=r"trunc\.h5.*truncated or corrupt"):
        read_events(tmp_path / "trunc.h5")
    (tmp_path / "empty.h5").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.h5: the file is empty"):
        read_events(tmp_path / "empty.h5")
    (tmp_path / "text.h5").write_text("x,y\n1,2\n")
    with pytest.raises(FormatError, match="not an HDF5 file"):
        read_events(tmp_path / "text.h5")
    with h5py.File(tmp_path / "nodata.h5", "w") as f:
        f["Particles"] = np.zeros((0, 19, 4), np.float32)
    with pytest.raises(InputError, match="holds no events"):
        read_events(tmp_path / "nodata.h5")


def test_provenance_attribute_is_json(tmp_path):
    ev = make_objects(10)
    write_events(ev, tmp_path / "p.h5")
    with h5py.File(tmp_path / "p.h5") as f:
        prov = json.loads(f.attrs["hepad_provenance"])
    assert prov["generator"] == "test" and "source" not in prov


def test_errors_are_hepad_errors_with_one_line(tmp_path):
    with pytest.raises(HepadError) as err:
        read_events(tmp_path / "missing.h5")
    assert "\n" not in str(err.value) and "missing.h5" in str(err.value)


# ---------------------------------------------------------------------- BlockReader (what score streams)
def _stored(path, data, **opts):
    with h5py.File(path, "w") as f:
        f.create_dataset("Particles", data=data, **opts)
    return path


@pytest.mark.parametrize("opts, inflates", [
    (dict(chunks=(64, 19, 4), compression="gzip"), True),  # the layout hepad writes, small chunks
    (dict(chunks=(64, 19, 4)), False),  # no filter: h5py's copy
    (dict(chunks=(64, 19, 4), compression="gzip", shuffle=True), False),  # a filter it does not undo
    (dict(chunks=(50, 19, 4), compression="gzip", dtype="float64"), False),  # ADC2021 Zenodo dtype
    (dict(chunks=(64, 19, 2), compression="gzip"), False),  # chunks across columns
    ({}, False),  # contiguous
])
def test_block_reader_equals_h5py_on_any_range(tmp_path, opts, inflates):
    from hepad.io.hdf5 import BlockReader

    data = make_objects(1000, seed=3).data
    p = _stored(tmp_path / "ev.h5", data.astype(opts.pop("dtype", "float32")), **opts)
    rng = np.random.default_rng(0)
    ranges = [(0, 1000), (0, 64), (63, 65), (999, 1000), (640, 1000), (5, 5)]
    ranges += [tuple(sorted(rng.integers(0, 1001, 2))) for _ in range(20)]
    with BlockReader(p) as r, h5py.File(p) as f:
        assert r._inflate is inflates and r.n_events == 1000
        for lo, hi in ranges:
            got = r.read(lo, hi)
            assert got.dtype == np.float32 and np.array_equal(got, f["Particles"][lo:hi].astype(np.float32)), (lo, hi)
        ev = r.events(100, 300)
        assert ev.source == str(p) and np.array_equal(ev.data, data[100:300])


def test_block_reader_fills_unwritten_chunks_and_names_a_corrupt_one(tmp_path):
    from hepad.io.hdf5 import BlockReader

    data = make_objects(300, seed=4).data
    p = tmp_path / "partial.h5"
    with h5py.File(p, "w") as f:  # rows 100-199 never written: no chunk is stored for them
        ds = f.create_dataset("Particles", shape=(300, 19, 4), dtype="float32", chunks=(100, 19, 4), compression="gzip")
        ds[:100], ds[200:] = data[:100], data[200:]
    with BlockReader(p) as r, h5py.File(p) as f:
        assert r._inflate and np.array_equal(r.read(50, 250), f["Particles"][50:250])
        offset = f["Particles"].id.get_chunk_info_by_coord((200, 0, 0)).byte_offset
    raw = bytearray(p.read_bytes())
    raw[offset + 20 : offset + 60] = b"\x00" * 40  # damage the deflate stream of the last chunk
    p.write_bytes(bytes(raw))
    with BlockReader(p) as r:
        assert np.array_equal(r.read(0, 100), data[:100])
        with pytest.raises(FormatError, match=r"partial\.h5: cannot read events 0-300"):
            r.read(0, 300)
