"""The ZeroMQ wire format (issue 11, item 6): bad messages are rejected with a reason and the
trigger keeps running; no received event is dropped uncounted; several producers, each with its
own end-of-stream; ``stream`` reports what the trigger acknowledged. Loopback only, bounded waits."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hepad
from hepad.trigger import ZmqSource, run_trigger, stream_events
from hepad.trigger.sources import WIRE_VERSION, Rejected, WireDecoder, parse_source

from _deploy_helpers import trained


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def events(tiny_dataset):
    """2,000 realistic events, (N, 19, 4) float32: the tiny Pythia SM samples and signals, cycled."""
    parts = [hepad.read_events(tiny_dataset[k]).data for k in sorted(tiny_dataset)]
    ev = np.concatenate(parts)
    return np.ascontiguousarray(np.resize(ev, (2000, *ev.shape[1:])), dtype=np.float32)


@pytest.fixture(scope="module")
def events_file(events, tmp_path_factory):
    path = tmp_path_factory.mktemp("wire") / "events.h5"
    hepad.write_events(hepad.EventSet(events), path)
    return path


@pytest.fixture(scope="module")
def scorer():
    from hepad.engine import make_scorer

    return make_scorer(trained("ae"), threads=1)


def _hdr(**kw) -> dict:
    doc = {"v": WIRE_VERSION, "type": "batch", "producer": "p", "seq": 0, "first_id": 0, "count": 0,
           "shape": [0, 19, 4], "dtype": "<f4"}
    doc.update(kw)
    return doc


def _batch(data: np.ndarray, first_id: int, seq: int, producer: str = "p", /, **over) -> list[bytes]:
    h = _hdr(producer=producer, seq=seq, first_id=first_id, count=len(data), shape=list(data.shape),
             dtype=data.dtype.str)
    h.update(over)
    return [json.dumps(h).encode(), data.tobytes()]


class _Client:
    """A raw DEALER producer: sends crafted frames and reads the trigger's answer to each."""

    def __init__(self, ep: str) -> None:
        import zmq

        self.zmq = zmq
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(ep)

    def send(self, frames: list[bytes], timeout_s: float = 10.0) -> dict:
        self.sock.send_multipart(frames)
        assert self.sock.poll(int(timeout_s * 1000)), "the trigger did not answer (did it die?)"
        return json.loads(self.sock.recv())

    def close(self) -> None:
        self.sock.close()


def _start_trigger(scorer, source, out, **kw):
    result: dict = {}

    def target():
        try:
            result["summary"] = run_trigger(scorer, source, out, target_rate_hz=1e5, collision_rate_hz=4e7, **kw)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            result["error"] = exc

    th = threading.Thread(target=target, daemon=True)
    th.start()
    return th, result


def _finish(th, result, timeout=60):
    th.join(timeout=timeout)
    assert not th.is_alive(), "the trigger did not stop"
    assert "error" not in result, repr(result.get("error"))
    return result["summary"]


# ---------------------------------------------------------------------- every kind of bad message
def _bad_messages(ev: np.ndarray) -> list[tuple[str, list[bytes]]]:
    good = ev[:10]
    h = json.dumps(_hdr(first_id=5000, count=10, shape=[10, 19, 4])).encode()
    return [
        ("frames", [b"\x00\xffgarbage bytes"]),
        ("header", [b"\x00\xffgarbage bytes", b""]),
        ("header", [b"\xff\xfe\x00not utf-8", good.tobytes()]),
        ("header", [b"[1, 2, 3]", good.tobytes()]),
        ("header", [b"42", good.tobytes()]),
        ("header", [b'"batch"', b""]),
        ("header", [b"null", b""]),
        ("header", [b"[" * 3000 + b"]" * 1000, b""]),
        ("header", [b" " * 5000 + h, good.tobytes()]),
        ("frames", [h, good.tobytes(), b"extra"]),
        ("frames", [h]),
        ("version", _batch(good, 5000, 1, v=1)),
        ("version", _batch(good, 5000, 1, v=99)),
        ("version", _batch(good, 5000, 1, v="2")),
        ("type", _batch(good, 5000, 1, type="hello")),
        ("keys", [json.dumps({k: v for k, v in _hdr(count=10, shape=[10, 19, 4], first_id=5000).items()
                              if k != "first_id"}).encode(), good.tobytes()]),
        ("keys", _batch(good, 5000, 1, exec="rm -rf /")),
        ("value", _batch(good, 5000, 1, count=-1)),
        ("value", _batch(good, 5000, 1, count="10")),
        ("value", _batch(good, -5, 1)),
        ("value", _batch(good, 5000, 1, seq=True)),
        ("value", _batch(good, 5000, 1, producer="")),
        ("dtype", _batch(good, 5000, 1, dtype="<i4")),
        ("dtype", _batch(good, 5000, 1, dtype="|O")),
        ("dtype", _batch(good, 5000, 1, dtype=7)),
        ("shape", _batch(good, 5000, 1, shape=[10, 19, 5])),
        ("shape", _batch(good, 5000, 1, shape=[10, 10])),
        ("shape", _batch(good, 5000, 1, shape=[11, 19, 4])),
        ("shape", _batch(good, 5000, 1, shape=[10, 19, 4, 1])),
        ("shape", _batch(good, 5000, 1, shape="10x19x4")),
        ("size", [_batch(good, 5000, 1)[0], good.tobytes()[:-4]]),
        ("size", [_batch(good, 5000, 1)[0], good.tobytes() + b"\0" * 8]),
        ("non_finite", _batch(np.where(np.arange(good.size).reshape(good.shape) == 7, np.nan, good).astype(np.float32),
                              5000, 1)),
        ("non_finite", _batch(np.full_like(good, 1e300, dtype=np.float64), 5000, 1)),
        ("duplicate_ids", _batch(good, 0, 1)),  # ids 0..9 were already received
        ("duplicate_ids", _batch(good, 995, 1)),  # overlaps the end of the first batch
    ]


def test_every_bad_message_is_rejected_with_its_reason_and_no_good_event_is_lost(events, scorer, tmp_path):
    ep = f"tcp://127.0.0.1:{_free_port()}"
    source = ZmqSource(ep, producers=1)
    # One long micro-batch: the first good batch is still pending while the bad ones arrive.
    th, result = _start_trigger(scorer, source, tmp_path / "out", batch_size=100_000, max_latency_ms=60_000)
    client = _Client(ep)
    try:
        assert client.send(_batch(events[:1000], 0, 0))["accepted"] == 1000
        cases = _bad_messages(events)
        for want, frames in cases:
            ack = client.send(frames)
            assert ack["accepted"] == 0 and ack["reason"] == want, (want, ack)
            assert th.is_alive(), f"the trigger died on a {want!r} message"
        assert client.send(_batch(events[1000:], 1000, 1))["accepted"] == 1000
        eos = client.send([json.dumps({"v": WIRE_VERSION, "type": "eos", "producer": "p", "seq": 2,
                                       "total": 2000}).encode(), b""])
        assert eos["type"] == "eos_ack" and eos["received"] == 2000
        # After its end-of-stream a producer may not send more (the trigger may already be gone).
    finally:
        client.close()
    s = _finish(th, result)
    assert s.processed == 2000 == s.accepted + s.rejected
    assert s.processed_id_ranges == [[0, 2000]]
    assert s.stopped_by == "end_of_stream"
    wire = s.extra["source"]
    expected: dict[str, int] = {}
    for want, _ in cases:
        expected[want] = expected.get(want, 0) + 1
    assert wire["rejected_messages"] == dict(sorted(expected.items()))
    assert wire["producers"]["p"]["events"] == 2000 and wire["producers"]["p"]["ended"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["extra"]["source"]["rejected_messages"] == wire["rejected_messages"]


def test_a_message_after_end_of_stream_is_rejected(events):
    dec = WireDecoder(57)
    assert dec.decode(_batch(events[:5], 0, 0)) is not None
    assert dec.decode([json.dumps({"v": 2, "type": "eos", "producer": "p", "seq": 1, "total": 5}).encode(), b""]) is None
    with pytest.raises(Rejected) as info:
        dec.decode(_batch(events[5:10], 5, 2))
    assert info.value.reason == "after_eos"
    assert dec.report()["producers"]["p"] == {"messages": 2, "events": 5, "rejected_messages": 1,
                                              "rejected_events": 5, "ended": True, "announced_total": 5}


# ---------------------------------------------------------------------- several producers
def test_the_trigger_waits_for_every_producer_it_was_told_of(events, scorer, tmp_path):
    ep = f"tcp://127.0.0.1:{_free_port()}"
    source = parse_source(f"zmq:{ep}?producers=2&idle_timeout=60")
    th, result = _start_trigger(scorer, source, tmp_path / "out", batch_size=512)
    a = stream_events(events[:800], ep, batch_size=100, producer="A", timeout_s=20)
    assert a.complete and a.acknowledged == a.sent == 800
    time.sleep(3 * ZmqSource.eos_grace_s)  # B starts well after A's end-of-stream
    assert th.is_alive(), "the trigger stopped at the first producer's end-of-stream"
    b = stream_events(events[800:], ep, batch_size=300, first_id=800, producer="B", timeout_s=20)
    assert b.complete and b.acknowledged == b.sent == 1200
    s = _finish(th, result)
    assert s.processed == 2000 and s.processed_id_ranges == [[0, 2000]]
    prods = s.extra["source"]["producers"]
    assert {k: (v["events"], v["announced_total"]) for k, v in prods.items()} == {"A": (800, 800), "B": (1200, 1200)}
    assert s.announced_total == 2000


def test_concurrent_producers_each_end_and_every_event_is_counted(events, scorer, tmp_path):
    ep = f"tcp://127.0.0.1:{_free_port()}"
    source = ZmqSource(ep)
    th, result = _start_trigger(scorer, source, tmp_path / "out", batch_size=256)
    results: dict = {}
    # A slow producer and a fast one: the fast one's end-of-stream must not stop the trigger.
    slow = threading.Thread(target=lambda: results.__setitem__("slow", stream_events(
        events[:600], ep, batch_size=50, rate_hz=1500, producer="slow", timeout_s=20)))
    slow.start()
    results["fast"] = stream_events(events[600:], ep, batch_size=200, first_id=600, producer="fast", timeout_s=20)
    slow.join(timeout=30)
    s = _finish(th, result)
    assert results["slow"].acknowledged == 600 and results["fast"].acknowledged == 1400
    assert s.processed == 2000 and s.processed_id_ranges == [[0, 2000]]
    assert set(s.extra["source"]["producers"]) == {"slow", "fast"}


def test_duplicate_ids_from_two_producers_are_rejected_not_counted_twice(events, scorer, tmp_path):
    ep = f"tcp://127.0.0.1:{_free_port()}"
    source = ZmqSource(ep, producers=2)
    th, result = _start_trigger(scorer, source, tmp_path / "out")
    a = stream_events(events[:500], ep, batch_size=100, producer="A", timeout_s=20)
    b = stream_events(events[:500], ep, batch_size=100, producer="B", timeout_s=20)  # same ids 0..499
    s = _finish(th, result)
    assert a.acknowledged == 500 and b.acknowledged == 0 and b.rejected == {"duplicate_ids": 500}
    assert s.processed == 500 and s.extra["source"]["rejected_messages"] == {"duplicate_ids": 5}


# ---------------------------------------------------------------------- what stream reports
def test_stream_reports_what_the_trigger_acknowledged_not_what_it_queued(events, scorer, tmp_path):
    ep = f"tcp://127.0.0.1:{_free_port()}"
    source = ZmqSource(ep)
    th, result = _start_trigger(scorer, source, tmp_path / "out", max_events=600, batch_size=100)
    res = stream_events(events, ep, batch_size=100, timeout_s=3, ack_timeout_s=1.0)
    s = _finish(th, result)
    assert s.stopped_by == "max_events"
    assert res.acknowledged == s.processed == 600
    assert res.sent > res.acknowledged and res.unacknowledged == res.sent - 600
    assert not res.complete


def test_stream_command_exits_non_zero_when_events_were_not_acknowledged(events_file, scorer, tmp_path, monkeypatch,
                                                                         capsys):
    from hepad.cli import run

    ep = f"tcp://127.0.0.1:{_free_port()}"
    source = ZmqSource(ep)
    th, result = _start_trigger(scorer, source, tmp_path / "out", max_events=500, batch_size=100)
    monkeypatch.setattr(sys, "argv", ["hepad", "stream", str(events_file), "--to", f"zmq:{ep}",
                                      "--batch-size", "100", "--timeout", "3", "--ack-timeout", "1"])
    with pytest.raises(SystemExit) as info:
        run()
    out, err = capsys.readouterr()
    s = _finish(th, result)
    assert info.value.code == 1
    assert f"acknowledged {s.processed:,} of" in out and "never confirmed" in err and err.count("\n") == 1


def test_stream_command_reports_a_complete_stream(events_file, scorer, tmp_path, monkeypatch, capsys):
    from hepad.cli import run

    ep = f"tcp://127.0.0.1:{_free_port()}"
    th, result = _start_trigger(scorer, ZmqSource(ep), tmp_path / "out")
    monkeypatch.setattr(sys, "argv", ["hepad", "stream", str(events_file), "--to", f"zmq:{ep}",
                                      "--batch-size", "700", "--max-events", "2000", "--timeout", "10"])
    try:
        run()  # returns on success
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    out, _ = capsys.readouterr()
    s = _finish(th, result)
    assert s.processed == 2000 and "acknowledged 2,000 of 2,000 events" in out


def test_source_options_are_checked():
    from hepad.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown option 'producer'"):
        parse_source("zmq:tcp://127.0.0.1:1?producer=2")
    with pytest.raises(ConfigError, match="not a number"):
        parse_source("zmq:tcp://127.0.0.1:1?producers=two")
    with pytest.raises(ConfigError, match="positive"):
        parse_source("zmq:tcp://127.0.0.1:1?producers=0")


# ---------------------------------------------------------------------- fuzz: the decoder, then a live trigger
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=6,
)


@st.composite
def _messages(draw, ev: np.ndarray):
    """A valid message, then mutated: keys dropped or replaced, shape/dtype/size changed, bytes flipped."""
    n = draw(st.integers(1, 12))
    first = draw(st.integers(0, 3000))
    dtype = draw(st.sampled_from(["<f4", "<f8"]))
    data = ev[first % 1900 : first % 1900 + n].astype(dtype)
    header = _hdr(seq=draw(st.integers(0, 50)), first_id=first, count=len(data), shape=list(data.shape), dtype=dtype,
                  producer=draw(st.sampled_from(["p", "q", "r"])))
    payload = data.tobytes()
    kind = draw(st.sampled_from(["valid", "drop", "replace", "add", "payload", "bytes", "frames", "raw", "eos", "nan"]))
    if kind == "drop":
        header.pop(draw(st.sampled_from(sorted(header))))
    elif kind == "replace":
        header[draw(st.sampled_from(sorted(header)))] = draw(_json_values)
    elif kind == "add":
        header[draw(st.text(min_size=1, max_size=5))] = draw(_json_values)
    elif kind == "payload":
        payload = payload[: draw(st.integers(0, len(payload)))] + draw(st.binary(max_size=16))
    elif kind == "nan":
        arr = data.copy().reshape(-1)
        arr[draw(st.integers(0, arr.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        payload = arr.tobytes()
    elif kind == "eos":
        header = {"v": 2, "type": "eos", "producer": header["producer"], "seq": header["seq"],
                  "total": draw(st.integers(-5, 5000))}
        payload = b""
    text = json.dumps(header, allow_nan=True).encode()
    if kind == "bytes":
        text = bytearray(text)
        for _ in range(draw(st.integers(1, 4))):
            text[draw(st.integers(0, len(text) - 1))] = draw(st.integers(0, 255))
        text = bytes(text)
    frames = [text, payload]
    if kind == "frames":
        frames = draw(st.lists(st.binary(max_size=40), min_size=1, max_size=4))
    elif kind == "raw":
        frames = [draw(st.binary(max_size=200)), draw(st.binary(max_size=200))]
    return frames


def _check_decode(dec: WireDecoder, frames: list[bytes]) -> None:
    before = sum(dec.rejected.values())
    try:
        b = dec.decode(frames)
    except Rejected as r:
        assert sum(dec.rejected.values()) == before + 1 and r.reason in dec.rejected and "\n" not in str(r)
        return
    assert sum(dec.rejected.values()) == before
    if b is not None:
        assert b.data.dtype == np.float32 and b.data.shape[1:] == (19, 4) and np.isfinite(b.data).all()
        assert len(b) >= 1 and b.first_id >= 0


_FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)


def test_fuzz_wire_decoder(events):
    dec = WireDecoder(57)

    @_FUZZ
    @given(_messages(events))
    def run(frames):
        _check_decode(dec, frames)

    run()
    r = dec.report()
    assert r["received_events"] == sum(p["events"] for p in r["producers"].values())


@pytest.mark.slow
def test_fuzz_wire_decoder_nightly(events):
    dec = WireDecoder(57)

    @settings(_FUZZ, max_examples=5000)
    @given(_messages(events))
    def run(frames):
        _check_decode(dec, frames)

    run()


def _fuzz_live(events, scorer, tmp_path, n_examples):
    ep = f"tcp://127.0.0.1:{_free_port()}"
    source = ZmqSource(ep, producers=1, idle_timeout_s=60)
    th, result = _start_trigger(scorer, source, tmp_path / "out", batch_size=4096, max_latency_ms=5)
    client = _Client(ep)
    seen = {"accepted": 0}
    try:
        assert client.send(_batch(events[:1000], 10**9, 0, "good"))["accepted"] == 1000

        @settings(_FUZZ, max_examples=n_examples)
        @given(_messages(events))
        def run(frames):
            # Hostile messages never end the stream: the trigger waits for the 'good' producer.
            if frames and frames[0].startswith(b"{") and b'"eos"' in frames[0]:
                frames = [frames[0].replace(b'"eos"', b'"eof"'), frames[1] if len(frames) > 1 else b""]
            ack = client.send(frames)
            assert ack["type"] == "ack", ack
            seen["accepted"] += ack["accepted"]
            assert th.is_alive(), "the trigger died"

        run()
        eos = client.send([json.dumps({"v": 2, "type": "eos", "producer": "good", "seq": 1, "total": 1000}).encode(), b""])
        assert eos["type"] == "eos_ack"
    finally:
        client.close()
    # 'p', 'q', 'r' never end: the trigger stops once the one producer it was told of has ended.
    s = _finish(th, result)
    assert s.processed == 1000 + seen["accepted"] == s.accepted + s.rejected
    return s


def test_fuzz_a_live_trigger_keeps_running_and_counts_every_event(events, scorer, tmp_path):
    s = _fuzz_live(events, scorer, tmp_path, 200)
    assert sum(s.extra["source"]["rejected_messages"].values()) > 50


@pytest.mark.slow
def test_fuzz_a_live_trigger_nightly(events, scorer, tmp_path):
    _fuzz_live(events, scorer, tmp_path, 5000)
