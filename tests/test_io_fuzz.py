"""Damaged files: every outcome is a valid EventSet or a HepadError, never a crash or a hang.

Valid HDF5, CSV, Parquet and ROOT files are truncated, bit-flipped, partly zeroed or replaced by
random bytes and fed to read_events, iter_events and count_events, each in a forked child so
that a hang or a segfault inside a C library fails the test instead of stopping the run.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hepad
from hepad.errors import HepadError

PER_CALL_TIMEOUT_S = 20


def _objects(n: int, seed: int = 0) -> hepad.EventSet:
    rng = np.random.default_rng(seed)
    data = np.zeros((n, 19, 4), dtype=np.float32)
    data[:, 0, 0] = rng.exponential(30, n)
    data[:, 0, 2] = rng.uniform(-np.pi, np.pi, n)
    data[:, 0, 3] = 1
    data[:, 9:12, 0] = rng.exponential(40, (n, 3)) + 15
    data[:, 9:12, 1] = rng.normal(0, 1.5, (n, 3))
    data[:, 9:12, 3] = 4
    return hepad.EventSet(data, labels=rng.integers(0, 2, n), process=np.where(data[:, 0, 0] > 30, "a", "bb"),
                          provenance={"note": "fuzz"})


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory) -> dict[str, bytes]:
    import awkward as ak
    import uproot

    d = tmp_path_factory.mktemp("valid")
    ev = _objects(300)
    hepad.write_events(ev, d / "a.h5")
    hepad.write_events(ev, d / "a.parquet")
    rng = np.random.default_rng(1)
    lines = ["x,y,name"] + [f"{a:.4f},{b:.4f},s{i}" for i, (a, b) in enumerate(rng.normal(size=(200, 2)))]
    (d / "a.csv").write_text("\n".join(lines) + "\n")
    counts = rng.integers(0, 4, 100)
    muon_pt = ak.unflatten(rng.exponential(20, counts.sum()) + 1, counts)
    tree = {
        "MET_pt": rng.exponential(30, 100).astype(np.float32),
        "MET_phi": rng.uniform(-3, 3, 100).astype(np.float32),
        "Muon": ak.zip({"pt": muon_pt, "eta": muon_pt * 0 + 0.5, "phi": muon_pt * 0 - 1.0}),
    }
    with uproot.recreate(d / "a.root") as f:  # a NanoAOD-like TTree (not the RNTuple default)
        types = {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in tree.items()}
        f.mktree("Events", types).extend(tree)
    return {s: (d / f"a.{s}").read_bytes() for s in ("h5", "parquet", "csv", "root")}


def _in_child(path: Path) -> None:
    """Run the readers in a forked child: a hang or a crash (segfault) in C code is caught too."""
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_exercise_or_exit, args=(path,))
    child.start()
    child.join(PER_CALL_TIMEOUT_S)
    if child.is_alive():
        child.kill()
        child.join()
        kept = path.with_name(f"hang_{path.name}")
        path.replace(kept)
        pytest.fail(f"readers hung for > {PER_CALL_TIMEOUT_S} s on {kept}")
    if child.exitcode != 0:
        kept = path.with_name(f"crash_{path.name}")
        path.replace(kept)
        pytest.fail(f"readers failed (exit code {child.exitcode}, see stderr) on {kept}")


def _exercise_or_exit(path: Path) -> None:
    try:
        _exercise(path)
    except BaseException:
        traceback.print_exc()
        os._exit(3)
    os._exit(0)


def _mutate(data: bytes, kind: str, draw_ints: list[int], rnd: bytes) -> bytes:
    if kind == "truncate":
        return data[: draw_ints[0] % max(1, len(data))]
    if kind == "flip":
        buf = bytearray(data)
        for v in draw_ints:
            pos = v % len(buf)
            buf[pos] ^= 1 << (v % 8)
        return bytes(buf)
    if kind == "zero_block":
        buf = bytearray(data)
        pos = draw_ints[0] % len(buf)
        buf[pos : pos + 64] = bytes(min(64, len(buf) - pos))
        return bytes(buf)
    # random bytes, keeping the first bytes (magic numbers) so readers get past the signature
    head = data[: draw_ints[0] % 64]
    return head + rnd


def _exercise(path: Path) -> None:
    try:
        ev = hepad.read_events(path, drop_invalid=True)
        assert isinstance(ev, hepad.EventSet)
        assert ev.data.dtype == np.float32
    except HepadError:
        pass
    try:
        for chunk in hepad.iter_events(path, chunk_size=64, drop_invalid=True):
            assert isinstance(chunk, hepad.EventSet)
    except HepadError:
        pass
    try:
        assert hepad.io.count_events(path) >= 0
    except HepadError:
        pass


_mutation = st.tuples(
    st.sampled_from(["truncate", "flip", "zero_block", "random"]),
    st.lists(st.integers(min_value=0, max_value=2**31), min_size=1, max_size=8),
    st.binary(min_size=0, max_size=4096),
)


@pytest.mark.parametrize("suffix", ["h5", "csv", "parquet", "root"])
def test_damaged_files_raise_hepad_errors_only(valid_files, tmp_path_factory, suffix):
    original = valid_files[suffix]
    work = tmp_path_factory.mktemp(f"fuzz_{suffix}")

    @settings(max_examples=30, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(_mutation)
    def check(mutation):
        kind, ints, rnd = mutation
        path = work / f"damaged.{suffix}"
        path.write_bytes(_mutate(original, kind, ints, rnd))
        _in_child(path)

    check()


def test_valid_files_read_back(valid_files, tmp_path):
    # The fuzz above is only meaningful if the undamaged files are read successfully.
    for suffix, data in valid_files.items():
        p = tmp_path / f"ok.{suffix}"
        p.write_bytes(data)
        ev = hepad.read_events(p)
        assert len(ev) == {"h5": 300, "parquet": 300, "csv": 200, "root": 100}[suffix]
