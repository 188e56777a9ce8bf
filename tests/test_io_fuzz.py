"""A randomised fuzzer over the readers and the command line (issue 11, Done-when 2).

Targets, each run with 200 fresh random examples in ``make test`` and 5,000 in ``make test-slow``:

- ``arrays``: the tiny dataset's events with a random shape, dtype and planted values (NaN, inf,
  negative or huge pT, bad types, eta, phi), written as HDF5; read whole, streamed, with and
  without ``drop_invalid``;
- ``csv``: random CSV text (numbers, NaN/inf spellings, empty cells, words, ragged rows);
- ``bytes``: truncated, bit-flipped, zeroed or random-tailed copies of valid HDF5, Parquet, CSV
  and ROOT files, read in a forked child so that a hang or a crash in C code fails the test;
- ``cli``: ``hepad score``, ``convert`` and ``inspect`` run in-process on fuzzed files.

Every outcome must be a valid result or one clean error: a :class:`~hepad.HepadError` (one line
from the CLI, exit 1), never another exception, a hang, a lost event or a partial file. A valid
result is checked against an oracle written here (the documented validation policy) and against
the other readers (streamed chunks concatenate to the whole read; count_events agrees).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import traceback
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hepad
from hepad.cli import main
from hepad.errors import HepadError

FAST, SLOW = 200, 5000
PER_EXAMPLE_TIMEOUT_S = 20
_HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
           HealthCheck.large_base_example]


def budget(n: int):
    return settings(max_examples=n, deadline=None, database=None, suppress_health_check=_HEALTH)


@contextlib.contextmanager
def time_limit(seconds: float = PER_EXAMPLE_TIMEOUT_S):
    """Fail an example that runs for longer than ``seconds`` (a hang in Python code)."""

    def on_alarm(*_):
        raise TimeoutError(f"example ran for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------------ the oracle
def policy_invalid(data: np.ndarray) -> np.ndarray:
    """Events breaking the README's validation policy, computed independently of hepad."""
    d = data.astype(np.float64)
    flat = d.reshape(len(d), int(np.prod(d.shape[1:])))
    bad = ~np.isfinite(flat).all(axis=1)
    with np.errstate(invalid="ignore"):
        if d.ndim == 3:
            pt, eta, phi, typ = (np.where(np.isfinite(d[..., i]), d[..., i], 0.0) for i in range(4))
            bad |= ((typ != np.round(typ)) | (typ < 0) | (typ > 4)).any(axis=1)
            bad |= ((pt < 0) | (pt > 14_000)).any(axis=1)
            bad |= (np.abs(eta) > 10).any(axis=1) | (np.abs(phi) > np.pi + 1e-4).any(axis=1)
        else:
            bad |= (np.where(np.isfinite(flat), np.abs(flat), 0) > 1e15).any(axis=1)
    return bad


def check_valid(ev: hepad.EventSet) -> None:
    assert isinstance(ev, hepad.EventSet)
    assert ev.data.dtype == np.float32
    assert not policy_invalid(ev.data).any(), "an invalid event was returned as valid"


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def base_events(tiny_dataset) -> np.ndarray:
    """Realistic events: the tiny dataset's test sample and a signal, (N, 19, 4) float32."""
    a = hepad.read_events(tiny_dataset["sm_test"]).data
    b = hepad.read_events(tiny_dataset["ato4l"]).data
    return np.concatenate([a, b])


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_dataset) -> Path:
    d = tmp_path_factory.mktemp("fuzz_model")
    hepad.train("mahalanobis", tiny_dataset["sm_train"], output=d / "model")
    return d / "model"


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory, tiny_dataset, real_data) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("valid")
    ev = hepad.read_events(tiny_dataset["sm_test"])[:120]
    hepad.write_events(ev, d / "a.h5")
    hepad.write_events(ev, d / "a.parquet")
    files = {"h5": d / "a.h5", "parquet": d / "a.parquet", "csv": real_data / "Wmunu.csv",
             "root": real_data / "data_A.4lep.root"}
    for p in files.values():
        hepad.read_events(p)  # each seed file is valid
    return {k: p.read_bytes() for k, p in files.items()}


# ------------------------------------------------------------------ strategies
PLANTS = st.sampled_from([np.nan, np.inf, -np.inf, -1.0, -1e-3, 1e30, 2.4e24, 7.0, 3.5, -2.0, 1e-45,
                          14_001.0, 11.0, -11.0, 3.2, -3.2, 0.0, 5e3, 1e15, 3e15])
DTYPES = st.sampled_from(["float32", "float64", "float16", "int32", "int64", "uint8", "int8", "bool",
                          "complex64"])


@st.composite
def fuzzed_array(draw, base: np.ndarray) -> tuple[np.ndarray, str]:
    n = draw(st.integers(0, 60))
    start = draw(st.integers(0, len(base) - 1))
    data = np.resize(base[start:], (n,) + base.shape[1:]).copy()
    for _ in range(draw(st.integers(0, 6))):
        if n == 0:
            break
        i, s, c = draw(st.integers(0, n - 1)), draw(st.integers(0, 18)), draw(st.integers(0, 3))
        data[i, s, c] = draw(PLANTS)
    shape = draw(st.sampled_from(["objects", "objects", "flat57", "typeless", "one-d", "wide", "flat3"]))
    if shape == "flat57":
        data = data[:, :, :3].reshape(n, 57)
    elif shape == "typeless":
        data = data[:, :, :3]
    elif shape == "one-d":
        data = data[:, 0, 0]
    elif shape == "wide":
        data = np.concatenate([data, data[:, :, :1]], axis=2)
    elif shape == "flat3":
        data = data[:, 0, :3]
    dtype = draw(DTYPES)
    with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        data = data.astype(dtype)
    key = draw(st.sampled_from(["Particles", "data", "other"]))
    return data, key


def write_h5(path: Path, data: np.ndarray, key: str) -> None:
    with h5py.File(path, "w") as f:
        f[key] = data


# ------------------------------------------------------------------ target: arrays through the readers
def run_arrays(base: np.ndarray, tmp: Path, drawn) -> None:
    data, key = drawn
    path = tmp / "f.h5"
    write_h5(path, data, key)
    with time_limit():
        try:
            whole = hepad.read_events(path)
        except HepadError:
            whole = None
        if whole is not None:
            check_valid(whole)
            assert len(whole) == len(data)  # nothing lost, nothing added
        try:
            kept = hepad.read_events(path, drop_invalid=True)
        except HepadError:
            assert whole is None
            return
        check_valid(kept)
        dropped = int(kept.provenance.get("dropped_invalid", 0))
        assert len(kept) + dropped == len(data), "events lost or invented"
        if data.dtype.kind in "fiu" and data.ndim in (2, 3):
            ref = data.astype(np.float32)
            if ref.ndim == 3 and ref.shape[2] == 3:
                return  # the type column was added from the slot: compared in test_io_hdf5
            ref = ref.reshape(len(ref), *kept.data.shape[1:]) if ref.size else ref
            np.testing.assert_array_equal(kept.data, ref[~policy_invalid(ref)])
        chunks = list(hepad.iter_events(path, chunk_size=17, drop_invalid=True))
        got = np.concatenate([c.data for c in chunks]) if chunks else kept.data[:0]
        np.testing.assert_array_equal(got, kept.data)
        assert hepad.io.count_events(path) == len(data)


@budget(FAST)
@given(data=st.data())
def test_fuzz_arrays(base_events, tmp_path, data):
    run_arrays(base_events, tmp_path, data.draw(fuzzed_array(base_events)))


@pytest.mark.slow
@budget(SLOW)
@given(data=st.data())
def test_fuzz_arrays_nightly(base_events, tmp_path, data):
    run_arrays(base_events, tmp_path, data.draw(fuzzed_array(base_events)))


# ------------------------------------------------------------------ target: CSV text
CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**20, 10**20).map(str),
    st.sampled_from(["", "nan", "NaN", "inf", "-inf", "Infinity", "abc", "1e999", "-0", "1,5", '"2"', "0x10", " 3 "]),
)


@st.composite
def csv_text(draw) -> str:
    k = draw(st.integers(1, 5))
    header = draw(st.lists(st.sampled_from(["x", "y", "pt", "eta", "phi", "E", "Run", "label", "weight", "x"]),
                           min_size=k, max_size=k))
    rows = draw(st.lists(st.lists(CELLS, min_size=max(0, k - 1), max_size=k + 1), max_size=30))
    return "\n".join([",".join(header)] + [",".join(r) for r in rows]) + draw(st.sampled_from(["", "\n", "\n\n"]))


def run_csv(tmp: Path, text: str) -> None:
    path = tmp / "f.csv"
    path.write_text(text)
    n_lines = max(0, len([ln for ln in text.split("\n")[1:] if ln != ""]))
    with time_limit():
        try:
            ev = hepad.read_events(path, drop_invalid=True)
        except HepadError:
            return
        check_valid(ev)
        assert len(ev) + int(ev.provenance.get("dropped_invalid", 0)) <= n_lines
        chunks = list(hepad.iter_events(path, chunk_size=7, drop_invalid=True))
        got = np.concatenate([c.data for c in chunks]) if chunks else ev.data[:0]
        np.testing.assert_array_equal(got, ev.data)


@budget(FAST)
@given(text=csv_text())
def test_fuzz_csv(tmp_path, text):
    run_csv(tmp_path, text)


@pytest.mark.slow
@budget(SLOW)
@given(text=csv_text())
def test_fuzz_csv_nightly(tmp_path, text):
    run_csv(tmp_path, text)


# ------------------------------------------------------------------ target: damaged bytes (forked child)
MUTATION = st.tuples(
    st.sampled_from(["h5", "parquet", "csv", "root"]),
    st.sampled_from(["truncate", "flip", "zero_block", "random"]),
    st.lists(st.integers(min_value=0, max_value=2**31), min_size=1, max_size=8),
    st.binary(min_size=0, max_size=2048),
)


def mutate(data: bytes, kind: str, ints: list[int], rnd: bytes) -> bytes:
    if kind == "truncate":
        return data[: ints[0] % max(1, len(data))]
    buf = bytearray(data)
    if kind == "flip":
        for v in ints:
            buf[v % len(buf)] ^= 1 << (v % 8)
    elif kind == "zero_block":
        pos = ints[0] % len(buf)
        buf[pos : pos + 64] = bytes(min(64, len(buf) - pos))
    else:  # keep the magic number so that the reader gets past the signature
        return data[: ints[0] % 64] + rnd
    return bytes(buf)


def exercise(path: Path) -> None:
    """The readers on one damaged file: a valid result, consistent across readers, or a HepadError."""
    try:
        ev = hepad.read_events(path, drop_invalid=True)
    except HepadError:
        ev = None
    if ev is not None:
        check_valid(ev)
        try:
            chunks = list(hepad.iter_events(path, chunk_size=50, drop_invalid=True))
        except HepadError:
            chunks = None  # a lazily read region can fail only when streamed: still a clean error
        if chunks is not None:
            got = np.concatenate([c.data for c in chunks]) if chunks else ev.data[:0]
            np.testing.assert_array_equal(got, ev.data)
    try:
        n = hepad.io.count_events(path)
        assert n >= 0
        if ev is not None:
            assert len(ev) + int(ev.provenance.get("dropped_invalid", 0)) == n
    except HepadError:
        pass


def _exercise_or_exit(path: Path) -> None:
    try:
        exercise(path)
    except BaseException:
        traceback.print_exc()
        os._exit(3)
    os._exit(0)


def run_bytes(valid: dict[str, bytes], tmp: Path, mutation) -> None:
    suffix, kind, ints, rnd = mutation
    path = tmp / f"damaged.{suffix}"
    path.write_bytes(mutate(valid[suffix], kind, ints, rnd))
    child = multiprocessing.get_context("fork").Process(target=_exercise_or_exit, args=(path,))
    child.start()
    child.join(PER_EXAMPLE_TIMEOUT_S)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail(f"readers hung for > {PER_EXAMPLE_TIMEOUT_S} s on a {kind} {suffix} file")
    assert child.exitcode == 0, f"readers failed (exit code {child.exitcode}, traceback on stderr) on a {kind} {suffix} file"


@budget(FAST)
@given(mutation=MUTATION)
def test_fuzz_damaged_bytes(valid_files, tmp_path, mutation):
    run_bytes(valid_files, tmp_path, mutation)


@pytest.mark.slow
@budget(SLOW)
@given(mutation=MUTATION)
def test_fuzz_damaged_bytes_nightly(valid_files, tmp_path, mutation):
    run_bytes(valid_files, tmp_path, mutation)


# ------------------------------------------------------------------ target: the command line
def run_cli(model: Path, base: np.ndarray, tmp: Path, drawn, command: str, capsys) -> None:
    data, key = drawn
    work = tmp / f"cli-{os.urandom(4).hex()}"
    work.mkdir()
    src = work / "in.h5"
    write_h5(src, data, key)
    out = work / ("s.h5" if command == "score" else "c.parquet")
    args = {
        "score": ["score", model, src, "-o", out, "-j", "0", "--partition-size", "23", "--engine", "native"],
        "convert": ["convert", src, out, "--drop-invalid", "--chunk-size", "13"],
        "inspect": ["inspect", src, "--json", "--chunk-size", "11"],
    }[command]
    with time_limit():
        code = main([str(a) for a in args])
    cap = capsys.readouterr()
    assert code in (0, 1), f"exit {code}: {cap.err}"
    assert "Traceback" not in cap.err and "internal error" not in cap.err, cap.err
    if code == 1:
        lines = [ln for ln in cap.err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("hepad: error: "), cap.err
        assert sorted(p.name for p in work.iterdir()) == ["in.h5"], "a failed command left files behind"
        return
    if command == "score":
        from hepad.scoring import read_scores

        scores = read_scores(out)
        assert len(scores["score"]) == len(data)  # one score per event, none lost
        assert np.isfinite(scores["score"]).all()
    elif command == "convert":
        kept = hepad.read_events(out)
        check_valid(kept)
        ref = hepad.read_events(src, drop_invalid=True)
        np.testing.assert_array_equal(kept.data, ref.data)
    assert sorted(p.name for p in work.iterdir()) == sorted({"in.h5", out.name} - ({out.name} if command == "inspect" else set()))


@budget(FAST)
@given(data=st.data(), command=st.sampled_from(["score", "convert", "inspect"]))
def test_fuzz_cli(model, base_events, tmp_path, capsys, data, command):
    run_cli(model, base_events, tmp_path, data.draw(fuzzed_array(base_events)), command, capsys)


@pytest.mark.slow
@budget(SLOW)
@given(data=st.data(), command=st.sampled_from(["score", "convert", "inspect"]))
def test_fuzz_cli_nightly(model, base_events, tmp_path, capsys, data, command):
    run_cli(model, base_events, tmp_path, data.draw(fuzzed_array(base_events)), command, capsys)


def test_seed_files_are_valid(valid_files, tmp_path):
    """The byte fuzz is meaningful only if the undamaged files read back whole."""
    for suffix, raw in valid_files.items():
        p = tmp_path / f"ok.{suffix}"
        p.write_bytes(raw)
        ev = hepad.read_events(p)
        assert len(ev) == hepad.io.count_events(p) > 0
