"""Event sources of the trigger (file replay, ZeroMQ) and the ZeroMQ producer.

Wire format, version 2 (ZeroMQ DEALER -> ROUTER)
-----------------------------------------------
The trigger binds a ROUTER socket (it is the long-lived service); each producer connects a
DEALER (``zmq+connect:`` reverses who binds). A producer message is exactly two frames:

1. a UTF-8 JSON object of at most 4 KiB, the header::

     {"v": 2, "type": "batch", "producer": "NAME", "seq": S, "first_id": I0, "count": N,
      "shape": [N, 19, 4], "dtype": "<f4"}
     {"v": 2, "type": "eos", "producer": "NAME", "seq": S, "total": T}

   ``producer`` (1-128 characters) names the stream, unique per producer process; ``seq``
   counts that producer's messages from 0; ``first_id`` >= 0 is the id of the batch's first
   event (ids ``I0 .. I0+N-1``); ``shape`` is ``[N, 19, 4]`` (ADC2021 objects) or ``[N, F]``
   (features), matching the model; ``dtype`` is ``"<f4"`` or ``"<f8"``; ``total`` is the number
   of events the producer sent. No other keys.
2. the events as raw C-order little-endian bytes, exactly ``N * prod(shape[1:]) * itemsize``
   bytes, every value finite (empty for ``eos``).

The trigger answers each message with one JSON frame: ``{"v": 2, "type": "ack", "seq": S,
"accepted": N}`` (or ``"accepted": 0, "reason": "..."``), and an ``eos`` with ``{"type":
"eos_ack", "received": R, "rejected_events": X, "rejected_messages": M}``. An acknowledged event
has been taken into the trigger's accounting (it is processed before the trigger exits).

A message that breaks any rule is **rejected**: counted in the trigger summary under its
reason (``frames``, ``header``, ``version``, ``type``, ``keys``, ``value``, ``dtype``,
``shape``, ``size``, ``non_finite``, ``duplicate_ids``, ``after_eos``, ``too_large``), acknowledged
with that reason, logged, and the trigger keeps running; the messages around it are unaffected.
Ids are unique over the run: a batch overlapping ids already received is rejected.

The stream ends when every producer seen has sent its ``eos`` and no message has arrived for
``eos_grace_s`` (0.5 s), or, with ``producers=N`` (``zmq:tcp://HOST:PORT?producers=N``), as soon
as N producers have ended (others still talking are then cut off: their later messages are never
received, and their producers see them unacknowledged); ``idle_timeout=S`` ends it after S seconds
without a valid message. Without ``producers=N``, a producer that connects more than 0.5 s after
all the others ended finds the trigger gone: give N when producers start at different times.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DependencyError, InputError, closest

log = logging.getLogger(__name__)

__all__ = [
    "Batch", "Source", "ReplaySource", "ZmqSource", "WireDecoder", "Rejected", "StreamResult", "parse_source",
    "stream_events", "WIRE_VERSION",
]

WIRE_VERSION = 2


@dataclass
class Batch:
    """Consecutive events from a source: ids ``first_id .. first_id + len - 1``."""

    first_id: int
    data: np.ndarray  # (n, 19, 4) objects or (n, F) features, float32
    t_arrival: float  # time.monotonic() when the batch reached the trigger

    def __len__(self) -> int:
        return int(self.data.shape[0])


class Source:
    """A source of :class:`Batch` es. ``receive`` waits at most ``timeout`` seconds."""

    #: True once the source has delivered its last event (end of file / end-of-stream message)
    done: bool = False
    description: str = ""

    def receive(self, timeout: float) -> Batch | None:  # pragma: no cover - interface
        raise NotImplementedError

    def drain(self, timeout: float) -> list[Batch]:
        """Batches that already reached this process, for a shutdown that loses nothing."""
        return []

    def expect_features(self, n_features: int) -> None:
        """Told by the trigger which inputs the model takes (a source may reject other shapes)."""

    def report(self) -> dict[str, Any]:
        """Source-specific counts for the trigger summary (e.g. rejected messages)."""
        return {}

    def close(self) -> None:
        pass


class ReplaySource(Source):
    """Replay a file's events in chunks, optionally paced at ``rate_hz`` events per second.

    A reader thread plays the detector readout: it reads (and paces) the file independently of
    the trigger and hands chunks over through a small queue, so reading never delays a
    micro-batch past its latency budget. Event ids are the row numbers in the file.
    """

    _END = object()

    def __init__(self, path: str | os.PathLike[str], *, rate_hz: float | None = None, chunk_size: int = 4096,
                 max_events: int | None = None, format: str | None = None, key: str | None = None,
                 queue_size: int = 8) -> None:
        import queue

        from ..io import iter_events

        if rate_hz is not None and rate_hz <= 0:
            raise ConfigError(f"replay rate must be positive, got {rate_hz} Hz.")
        self.path = Path(path)
        self.rate_hz = rate_hz
        # When pacing, emit small pieces (~10 ms of stream) so arrival times are realistic.
        if rate_hz is not None:
            chunk_size = max(1, min(chunk_size, int(rate_hz * 0.01) or 1))
        entry_range = (0, int(max_events)) if max_events is not None else None
        # Opening here makes a bad file fail now, in the caller's thread, with hepad's message.
        self._chunks = iter_events(self.path, chunk_size=max(1, chunk_size), format=format, key=key,
                                   entry_range=entry_range)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.description = f"replay:{self.path}" + (f"@{rate_hz:g}" if rate_hz else "")
        self._thread = threading.Thread(target=self._read, name="hepad-replay", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        next_id = 0
        t0 = time.monotonic()
        try:
            for chunk in self._chunks:
                if self.rate_hz is not None:
                    delay = t0 + next_id / self.rate_hz - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
                if not self._put(Batch(next_id, chunk.data, time.monotonic())):
                    return
                next_id += len(chunk)
        except BaseException as exc:  # handed to the trigger's thread by receive()
            self._error = exc
        self._put(self._END)

    def receive(self, timeout: float) -> Batch | None:
        import queue

        if self.done:
            return None
        try:
            item = self._queue.get(timeout=max(timeout, 0.0)) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if item is self._END:
            self.done = True
            if self._error is not None:
                raise self._error
            return None
        item.t_arrival = time.monotonic()
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


#: Largest header frame, message and batch the ZeroMQ source accepts (bounds memory per message).
MAX_HEADER_BYTES = 4096
MAX_MESSAGE_BYTES = 512 * 1024 * 1024
MAX_BATCH_EVENTS = 1_000_000
_DTYPES = {"<f4": np.dtype("<f4"), "<f8": np.dtype("<f8")}
_BATCH_KEYS = frozenset({"v", "type", "producer", "seq", "first_id", "count", "shape", "dtype"})
_EOS_KEYS = frozenset({"v", "type", "producer", "seq", "total"})
_MAX_ID = 2**62


class Rejected(Exception):
    """A message broke the wire format: ``reason`` (a short code) and ``detail`` (one line)."""

    def __init__(self, reason: str, detail: str, producer: str | None = None, count: int = 0) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.producer, self.count = reason, detail, producer, count


@dataclass
class ProducerStats:
    """What one producer sent, as the trigger saw it."""

    messages: int = 0
    events: int = 0
    rejected_messages: int = 0
    rejected_events: int = 0
    ended: bool = False
    announced_total: int | None = None
    next_seq: int = 0


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _IdSet:
    """Disjoint, merged half-open id ranges, for duplicate detection across producers."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.stops: list[int] = []

    def overlaps(self, a: int, b: int) -> bool:
        import bisect

        i = bisect.bisect_right(self.starts, a) - 1
        if i >= 0 and self.stops[i] > a:
            return True
        return i + 1 < len(self.starts) and self.starts[i + 1] < b

    def add(self, a: int, b: int) -> None:
        import bisect

        i = bisect.bisect_right(self.starts, a)
        if i > 0 and self.stops[i - 1] == a:  # extends the range before
            self.stops[i - 1] = b
            i -= 1
        else:
            self.starts.insert(i, a)
            self.stops.insert(i, b)
        if i + 1 < len(self.starts) and self.starts[i + 1] == self.stops[i]:  # touches the next
            self.stops[i] = self.stops.pop(i + 1)
            self.starts.pop(i + 1)


class WireDecoder:
    """Validates wire-format messages (see the module docstring) and keeps the per-producer counts.

    ``decode(frames)`` returns a :class:`Batch`, or None for an end-of-stream; it raises
    :class:`Rejected` for a bad message (after counting it). It never raises anything else.
    """

    def __init__(self, n_features: int | None = None) -> None:
        self.producers: dict[str, ProducerStats] = {}
        self.rejected: dict[str, int] = {}
        self.rejected_events = 0
        #: producer and seq of the last message decoded (None where its header did not say)
        self.last_producer: str | None = None
        self.last_seq: int | None = None
        self._ids = _IdSet()
        self._shapes: set[tuple[int, ...]] | None = None
        if n_features is not None:
            self.expect_features(n_features)

    def expect_features(self, n_features: int) -> None:
        """Accept only events the model takes: (F,) features, or (19, 4) objects when F is 57."""
        shapes = {(int(n_features),)}
        if int(n_features) == 57:
            shapes.add((19, 4))
        self._shapes = shapes

    # ------------------------------------------------------------------ helpers
    def _reject(self, reason: str, detail: str, producer: str | None = None, count: int = 0) -> Rejected:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self.rejected_events += count
        if producer is not None and producer in self.producers:
            st = self.producers[producer]
            st.rejected_messages += 1
            st.rejected_events += count
        return Rejected(reason, detail, producer, count)

    def _header(self, frame: bytes) -> dict[str, Any]:
        if len(frame) > MAX_HEADER_BYTES:
            raise self._reject("header", f"header frame of {len(frame)} bytes (at most {MAX_HEADER_BYTES})")
        try:
            header = json.loads(bytes(frame).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise self._reject("header", "header frame is not UTF-8 JSON") from None
        if not isinstance(header, dict):
            raise self._reject("header", f"header is a JSON {type(header).__name__}, not an object")
        return header

    # ------------------------------------------------------------------ decode
    def decode(self, frames: Sequence[bytes]) -> Batch | None:
        self.last_producer, self.last_seq = None, None
        if len(frames) != 2:
            raise self._reject("frames", f"{len(frames)} frame(s); a message is a header frame and a payload frame")
        header = self._header(frames[0])
        payload = frames[1]
        v = header.get("v")
        if v != WIRE_VERSION or not _is_int(v):
            raise self._reject("version", f"wire version {v!r}; this trigger speaks version {WIRE_VERSION}")
        kind = header.get("type")
        if kind not in ("batch", "eos"):
            raise self._reject("type", f"message type {kind!r}; expected 'batch' or 'eos'")
        allowed = _BATCH_KEYS if kind == "batch" else _EOS_KEYS
        keys = set(header)
        if keys != allowed:
            what = (f"missing {sorted(allowed - keys)}" if allowed - keys else "") + (
                f"{' and ' if allowed - keys else ''}unknown {sorted(keys - allowed)}" if keys - allowed else "")
            raise self._reject("keys", f"{kind} header: {what}")
        producer = header["producer"]
        self.last_producer, self.last_seq = None, header["seq"] if _is_int(header["seq"]) else None
        if not isinstance(producer, str) or not 1 <= len(producer) <= 128:
            raise self._reject("value", "producer must be a string of 1-128 characters")
        st = self.producers.get(producer)
        seq = header["seq"]
        if not _is_int(seq) or seq < 0:
            raise self._reject("value", f"seq={seq!r} is not a non-negative integer", producer if st else None)
        if st is None:
            st = self.producers[producer] = ProducerStats()
        self.last_producer = producer
        if st.ended:
            c = header.get("count")
            n = c if kind == "batch" and _is_int(c) and 1 <= c <= MAX_BATCH_EVENTS else 0
            raise self._reject("after_eos", f"producer {producer!r} sent a message after its end-of-stream", producer, n)
        if kind == "eos":
            total = header["total"]
            if not _is_int(total) or total < 0:
                raise self._reject("value", f"eos total={total!r} is not a non-negative integer", producer)
            if len(payload):
                raise self._reject("size", f"eos with a {len(payload)}-byte payload (must be empty)", producer)
            st.ended, st.announced_total = True, total
            st.messages += 1
            st.next_seq = seq + 1
            lost = total - st.events - st.rejected_events
            if lost:
                log.warning("producer %r announced %d events; %d received, %d rejected, %d never arrived",
                            producer, total, st.events, st.rejected_events, lost)
            return None
        count = header["count"]
        count_ok = _is_int(count) and 1 <= count <= MAX_BATCH_EVENTS
        n_claimed = count if count_ok else 0
        if not count_ok:
            raise self._reject("value", f"count={count!r} (an integer in [1, {MAX_BATCH_EVENTS}])", producer)
        first_id = header["first_id"]
        if not _is_int(first_id) or not 0 <= first_id <= _MAX_ID - count:
            raise self._reject("value", f"first_id={first_id!r} (an integer in [0, 2**62))", producer, n_claimed)
        dtype = _DTYPES.get(header["dtype"]) if isinstance(header["dtype"], str) else None
        if dtype is None:
            raise self._reject("dtype", f"dtype {header['dtype']!r}; send one of {', '.join(_DTYPES)}", producer, n_claimed)
        shape = header["shape"]
        if not isinstance(shape, list) or not 2 <= len(shape) <= 3 or not all(_is_int(d) and d >= 1 for d in shape):
            raise self._reject("shape", f"shape {shape!r}; expected [count, 19, 4] or [count, F]", producer, n_claimed)
        event_shape = tuple(shape[1:])
        if shape[0] != count:
            raise self._reject("shape", f"shape {shape} holds {shape[0]} events, count says {count}", producer, n_claimed)
        if self._shapes is not None and event_shape not in self._shapes:
            want = " or ".join(str([count, *s]) for s in sorted(self._shapes))
            raise self._reject("shape", f"events of shape {list(event_shape)}; the model takes {want}", producer, n_claimed)
        size = count * int(np.prod(event_shape)) * dtype.itemsize
        if size > MAX_MESSAGE_BYTES:
            raise self._reject("too_large", f"{size} payload bytes (at most {MAX_MESSAGE_BYTES})", producer, n_claimed)
        if len(payload) != size:
            raise self._reject("size", f"payload of {len(payload)} bytes; shape {shape} {header['dtype']} needs {size}",
                               producer, n_claimed)
        data = np.frombuffer(payload, dtype=dtype).reshape(shape)
        with np.errstate(over="ignore", invalid="ignore"):
            data = data.astype(np.float32)  # a copy: the frame buffer is not kept
        if not np.isfinite(data).all():
            bad = int(data.size - np.count_nonzero(np.isfinite(data)))
            raise self._reject("non_finite", f"{bad} NaN/inf value(s) (or beyond float32)", producer, n_claimed)
        if self._ids.overlaps(first_id, first_id + count):
            raise self._reject("duplicate_ids", f"ids {first_id}..{first_id + count - 1} overlap ids already received",
                               producer, n_claimed)
        if self._shapes is None:
            self._shapes = {event_shape}  # without a model's word, the first good batch sets the shape
        self._ids.add(first_id, first_id + count)
        st.messages += 1
        st.events += count
        st.next_seq = seq + 1
        return Batch(first_id, data, time.monotonic())

    # ------------------------------------------------------------------ report
    def report(self) -> dict[str, Any]:
        return {
            "wire_version": WIRE_VERSION,
            "received_events": sum(p.events for p in self.producers.values()),
            "rejected_messages": dict(sorted(self.rejected.items())),
            "rejected_events": self.rejected_events,
            "producers": {
                name: {
                    "messages": p.messages, "events": p.events, "rejected_messages": p.rejected_messages,
                    "rejected_events": p.rejected_events, "ended": p.ended, "announced_total": p.announced_total,
                }
                for name, p in self.producers.items()
            },
        }


class ZmqSource(Source):
    """Receive event batches on a ZeroMQ ROUTER socket (bound by default); see the wire format above.

    Parameters
    ----------
    endpoint : str
        ``tcp://HOST:PORT``.
    bind : bool
        Bind (default) or connect to a binding producer.
    producers : int, optional
        End the stream once this many producers have sent their end-of-stream (default: once
        every producer seen has ended and none spoke for ``eos_grace_s``).
    idle_timeout_s : float, optional
        End the stream after this many seconds without a valid message.
    n_features : int, optional
        The model's inputs per event (the trigger sets it): other event shapes are rejected.
    """

    eos_grace_s = 0.5
    #: warnings per rejection reason before they are only counted
    _warn_limit = 10

    def __init__(self, endpoint: str, *, bind: bool = True, rcvhwm: int = 64, producers: int | None = None,
                 idle_timeout_s: float | None = None, n_features: int | None = None) -> None:
        if producers is not None and (not _is_int(producers) or producers < 1):
            raise ConfigError(f"zmq source: producers must be a positive integer, got {producers!r}.")
        if idle_timeout_s is not None and not idle_timeout_s > 0:
            raise ConfigError(f"zmq source: idle_timeout must be positive, got {idle_timeout_s!r}.")
        zmq = _zmq()
        self._zmq = zmq
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.RCVHWM, int(rcvhwm))
        self._sock.setsockopt(zmq.SNDHWM, 100_000)  # acks are tiny; never block the trigger on them
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES + MAX_HEADER_BYTES)
        try:
            if bind:
                self._sock.bind(endpoint)
            else:
                self._sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self._sock.close()
            raise ConfigError(f"cannot {'bind' if bind else 'connect'} {endpoint}: {exc}. Is the port in use?") from None
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT) if bind else endpoint
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        self.description = f"zmq:{self.endpoint}"
        self.expected_producers = producers
        self.idle_timeout_s = idle_timeout_s
        self.decoder = WireDecoder(n_features)
        self.end_reason: str | None = None
        self._last_valid = time.monotonic()
        self._last_message = time.monotonic()
        self._warned: dict[str, int] = {}

    def expect_features(self, n_features: int) -> None:
        self.decoder.expect_features(n_features)

    @property
    def total_announced(self) -> int | None:
        """Sum of the end-of-stream totals of the producers that ended (None before any)."""
        totals = [p.announced_total for p in self.decoder.producers.values() if p.announced_total is not None]
        return sum(totals) if totals else None

    def report(self) -> dict[str, Any]:
        """Per-producer counts and rejected messages by reason (goes into the trigger summary)."""
        out = self.decoder.report()
        out["end_reason"] = self.end_reason
        return out

    def _ack(self, identity: bytes, doc: dict[str, Any]) -> None:
        try:
            self._sock.send_multipart([identity, json.dumps({"v": WIRE_VERSION, **doc}).encode()],
                                      flags=self._zmq.NOBLOCK)
        except self._zmq.ZMQError:  # the producer is gone or not reading: its count stays unacknowledged
            pass

    def _take(self, frames: list[bytes]) -> Batch | None:
        identity, body = frames[0], frames[1:]
        self._last_message = time.monotonic()
        try:
            batch = self.decoder.decode(body)
        except Rejected as r:
            n = self._warned.get(r.reason, 0) + 1
            self._warned[r.reason] = n
            if n <= self._warn_limit:
                log.warning("%s: rejected a message%s: %s%s", self.description,
                            f" from {r.producer!r}" if r.producer else "", r,
                            " (further ones of this kind are only counted)" if n == self._warn_limit else "")
            self._ack(identity, {"type": "ack", "seq": self.decoder.last_seq, "accepted": 0,
                                 "reason": r.reason, "detail": r.detail})
            return None
        self._last_valid = time.monotonic()
        if batch is None:  # an end-of-stream
            st = self.decoder.producers[str(self.decoder.last_producer)]
            self._ack(identity, {"type": "eos_ack", "seq": self.decoder.last_seq, "received": st.events,
                                 "rejected_events": st.rejected_events, "rejected_messages": st.rejected_messages})
            self._check_end()
            return None
        self._ack(identity, {"type": "ack", "seq": self.decoder.last_seq, "accepted": len(batch)})
        return batch

    def _all_ended(self) -> bool:
        prods = self.decoder.producers.values()
        return bool(prods) and all(p.ended for p in prods)

    def _check_end(self) -> None:
        if self.done:
            return
        now = time.monotonic()
        ended = sum(p.ended for p in self.decoder.producers.values())
        if self.expected_producers is not None:
            if ended >= self.expected_producers:
                self.done, self.end_reason = True, f"end_of_stream ({ended} producers)"
        elif self._all_ended() and now - self._last_message >= self.eos_grace_s:
            self.done, self.end_reason = True, f"end_of_stream ({ended} producer{'s' if ended != 1 else ''})"
        if not self.done and self.idle_timeout_s is not None and now - self._last_valid >= self.idle_timeout_s:
            self.done, self.end_reason = True, f"idle_timeout ({self.idle_timeout_s:g} s without a valid message)"
            log.warning("%s: no valid message for %.3g s; ending the stream", self.description, self.idle_timeout_s)

    def receive(self, timeout: float) -> Batch | None:
        if self.done:
            return None
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            # Rejected messages and end-of-streams are taken in the same call: a flood of bad
            # messages cannot hold up the micro-batch clock for longer than ``timeout``.
            left = max(0.0, deadline - time.monotonic())
            if self._all_ended() and self.expected_producers is None:
                left = min(left, max(0.0, self._last_message + self.eos_grace_s - time.monotonic()))
            if not self._poller.poll(int(left * 1000)):
                self._check_end()
                return None
            b = self._take(self._sock.recv_multipart(copy=True))
            if b is not None:
                return b
            self._check_end()
            if self.done or time.monotonic() >= deadline:
                return None

    def drain(self, timeout: float) -> list[Batch]:
        """Everything queued on the socket, waiting up to ``timeout`` s for in-flight messages."""
        out: list[Batch] = []
        deadline = time.monotonic() + timeout
        while not self.done:
            left = deadline - time.monotonic()
            # A short quiet gap ends the drain: the producer may keep sending forever.
            if left <= 0 or not self._poller.poll(int(min(left, 0.05) * 1000)):
                break
            b = self._take(self._sock.recv_multipart(copy=True))
            if b is not None:
                out.append(b)
        return out

    def close(self) -> None:
        self._sock.close(linger=0)


def _zmq() -> Any:
    try:
        import zmq
    except ImportError:  # pragma: no cover - pinned dependency
        raise DependencyError("The ZeroMQ source needs pyzmq: pip install pyzmq==27.3.0") from None
    return zmq


def parse_source(spec: str, *, max_events: int | None = None, chunk_size: int = 4096) -> Source:
    """A source from its command-line form.

    ``replay:FILE`` or ``replay:FILE@RATE_HZ`` (paced), ``zmq:tcp://HOST:PORT`` (bind and
    receive), ``zmq+connect:tcp://HOST:PORT`` (connect to a binding producer). A ZeroMQ spec
    takes options after ``?``: ``producers=N`` (end after N producers' end-of-stream) and
    ``idle_timeout=SECONDS``, e.g. ``zmq:tcp://127.0.0.1:5555?producers=2&idle_timeout=30``.
    """
    scheme, sep, rest = str(spec).partition(":")
    if not sep or not rest:
        raise ConfigError(
            f"source {spec!r}: write replay:FILE[@RATE_HZ], zmq:tcp://HOST:PORT or zmq+connect:tcp://HOST:PORT."
        )
    if scheme == "replay":
        path, rate = rest, None
        if "@" in rest:
            head, _, tail = rest.rpartition("@")
            try:
                rate = float(tail)
                path = head
            except ValueError:
                pass  # an '@' inside the file name
        if not Path(path).exists():
            raise InputError(f"replay source: no such file {path}.")
        return ReplaySource(path, rate_hz=rate, chunk_size=chunk_size, max_events=max_events)
    if scheme in ("zmq", "zmq+connect"):
        endpoint, _, query = rest.partition("?")
        opts: dict[str, Any] = {}
        for item in filter(None, query.split("&")):
            key, _, value = item.partition("=")
            if key not in ("producers", "idle_timeout"):
                raise ConfigError(
                    f"source {spec!r}: unknown option {key!r}.{closest(key, ['producers', 'idle_timeout'])} "
                    "Valid: producers=N, idle_timeout=SECONDS."
                )
            try:
                if key == "producers":
                    opts["producers"] = int(value)
                else:
                    opts["idle_timeout_s"] = float(value)
            except ValueError:
                raise ConfigError(f"source {spec!r}: {key}={value!r} is not a number.") from None
        return ZmqSource(endpoint, bind=scheme == "zmq", **opts)
    raise ConfigError(
        f"source {spec!r}: unknown scheme {scheme!r}; write replay:FILE[@RATE_HZ], zmq:tcp://HOST:PORT "
        "or zmq+connect:tcp://HOST:PORT."
    )


# ---------------------------------------------------------------------- producer
@dataclass
class StreamResult:
    """What :func:`stream_events` sent and what the trigger acknowledged.

    ``acknowledged`` events were taken into the trigger's accounting; ``rejected`` maps a
    rejection reason to the events the trigger refused for it; ``unacknowledged`` events were
    sent but never confirmed (still queued, or lost when the trigger stopped). ``complete`` is
    True when the trigger confirmed this producer's end-of-stream.
    """

    producer: str
    sent: int
    acknowledged: int
    rejected: dict[str, int]
    complete: bool

    @property
    def unacknowledged(self) -> int:
        return self.sent - self.acknowledged - sum(self.rejected.values())


def _producer_name() -> str:
    import socket
    import uuid

    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _header(producer: str, seq: int, first_id: int, data: np.ndarray) -> bytes:
    return json.dumps({"v": WIRE_VERSION, "type": "batch", "producer": producer, "seq": int(seq),
                       "first_id": int(first_id), "count": int(data.shape[0]), "shape": list(data.shape),
                       "dtype": data.dtype.str}).encode()


def _iter_arrays(events: Any, sizes: list[int], max_events: int | None) -> Iterator[np.ndarray]:
    """Slices of ``events`` with sizes cycling through ``sizes`` (a file is read in chunks)."""
    import itertools

    from ..events import EventSet
    from ..io import iter_events

    if isinstance(events, (str, os.PathLike)):
        entry_range = (0, int(max_events)) if max_events is not None else None
        blocks: Any = (c.data for c in iter_events(events, chunk_size=max(65536, max(sizes)), entry_range=entry_range))
    else:
        arr = events.data if isinstance(events, EventSet) else np.asarray(events, dtype=np.float32)
        blocks = iter([arr[: int(max_events)] if max_events is not None else arr])
    cycle = itertools.cycle(sizes)
    carry: np.ndarray | None = None
    for block in blocks:
        if carry is not None and len(carry):
            block = np.concatenate([carry, block])
        start = 0
        while True:
            size = next(cycle)
            if start + size > len(block):
                carry = block[start:]
                # The cycle position is kept by re-queuing this size first next time.
                cycle = itertools.chain([size], cycle)
                break
            yield block[start : start + size]
            start += size
    if carry is not None and len(carry):
        yield carry


def _send(zmq: Any, sock: Any, frames: list, stop_event: threading.Event | None, timeout_s: float | None,
          on_idle: Any = None) -> bool:
    """Send when the peer has room; False if stopped or timed out (a blocking send could hang)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        if sock.poll(100, zmq.POLLOUT):
            sock.send_multipart(frames, copy=True)
            return True
        if on_idle is not None:
            on_idle()
        if stop_event is not None and stop_event.is_set():
            return False
        if deadline is not None and time.monotonic() > deadline:
            log.warning("no trigger took a message for %.1f s; stopping the stream", timeout_s)
            return False


class _Acks:
    """The trigger's answers to one producer, read without blocking the stream."""

    def __init__(self, zmq: Any, sock: Any) -> None:
        self.zmq, self.sock = zmq, sock
        self.acknowledged = 0
        self.rejected: dict[str, int] = {}
        self.eos: dict[str, Any] | None = None
        self._sizes: dict[int, int] = {}

    def sent(self, seq: int, n: int) -> None:
        self._sizes[seq] = n

    def read(self, timeout_s: float = 0.0) -> None:
        zmq = self.zmq
        while self.sock.poll(int(timeout_s * 1000), zmq.POLLIN):
            timeout_s = 0.0
            try:
                doc = json.loads(self.sock.recv(zmq.NOBLOCK))
            except (zmq.ZMQError, ValueError):
                continue
            if not isinstance(doc, dict):
                continue
            if doc.get("type") == "eos_ack":
                self.eos = doc
            elif doc.get("type") == "ack":
                n = self._sizes.pop(doc.get("seq"), 0) if _is_int(doc.get("seq")) else 0
                if doc.get("reason"):
                    reason = str(doc["reason"])
                    self.rejected[reason] = self.rejected.get(reason, 0) + n
                elif _is_int(doc.get("accepted")):
                    self.acknowledged += int(doc["accepted"])


def stream_events(
    events: Any,
    endpoint: str,
    *,
    rate_hz: float | None = None,
    batch_size: int | Sequence[int] = 1000,
    max_events: int | None = None,
    first_id: int = 0,
    bind: bool = False,
    send_eos: bool = True,
    stop_event: threading.Event | None = None,
    on_batch: Any = None,
    timeout_s: float | None = None,
    ack_timeout_s: float = 5.0,
    producer: str | None = None,
) -> StreamResult:
    """Push events to a trigger over ZeroMQ (DEALER socket, wire format version 2).

    Parameters
    ----------
    events : path-like, EventSet or ndarray
        A file (streamed in chunks) or events in memory, (N, 19, 4) or (N, F).
    endpoint : str
        ``tcp://HOST:PORT`` of the trigger (connected to; ``bind=True`` binds instead).
    rate_hz : float, optional
        Pace the stream at this many events per second (default: as fast as possible).
    batch_size : int or sequence of int
        Events per message; a sequence cycles (e.g. ``[1000, 5000]``).
    max_events : int, optional
        Stop after this many events.
    first_id : int
        Id of the first event (ids are consecutive). Several producers need disjoint ids.
    send_eos : bool
        Send the end-of-stream message at the end.
    stop_event : threading.Event, optional
        Set it to stop early (an end-of-stream message is still sent).
    on_batch : callable, optional
        ``on_batch(first_id, count)`` after each message is queued.
    timeout_s : float, optional
        Give up when the trigger takes no message for this long (default: wait forever, e.g.
        for a trigger that is not up yet).
    ack_timeout_s : float
        After the end-of-stream, how long to wait for the trigger to confirm it.
    producer : str, optional
        This stream's name on the wire (default: host:pid:random).

    Returns
    -------
    StreamResult
        Events sent, acknowledged by the trigger, rejected by reason, and whether the trigger
        confirmed the end-of-stream.
    """
    zmq = _zmq()
    sizes = [int(batch_size)] if isinstance(batch_size, (int, np.integer)) else [int(b) for b in batch_size]
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"batch sizes must be >= 1, got {batch_size}.")
    if first_id < 0:
        raise ConfigError(f"first_id must be >= 0, got {first_id}.")
    name = producer or _producer_name()
    if not 1 <= len(name) <= 128:
        raise ConfigError(f"producer name must have 1-128 characters, got {len(name)}.")
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.SNDHWM, 16)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    sock.setsockopt(zmq.LINGER, 1000)
    try:
        if bind:
            sock.bind(endpoint)
        else:
            sock.connect(endpoint)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise ConfigError(f"cannot {'bind' if bind else 'connect'} {endpoint}: {exc}.") from None
    acks = _Acks(zmq, sock)
    sent = 0
    seq = 0
    t0 = time.monotonic()
    try:
        for data in _iter_arrays(events, sizes, max_events):
            if stop_event is not None and stop_event.is_set():
                break
            if rate_hz:
                delay = t0 + sent / float(rate_hz) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -0.1:
                    # Fell behind (the trigger was not up, or pushed back): resume the pace
                    # from now instead of bursting to catch up.
                    t0 -= delay + 0.1
            data = np.ascontiguousarray(data, dtype=np.float32)
            frames = [_header(name, seq, first_id + sent, data), memoryview(data).cast("B")]
            if not _send(zmq, sock, frames, stop_event, timeout_s, acks.read):
                break
            acks.sent(seq, int(data.shape[0]))
            seq += 1
            if on_batch is not None:
                on_batch(first_id + sent, int(data.shape[0]))
            sent += int(data.shape[0])
            acks.read()
        if send_eos:
            eos = [json.dumps({"v": WIRE_VERSION, "type": "eos", "producer": name, "seq": seq,
                               "total": sent}).encode(), b""]
            stopped = stop_event is not None and stop_event.is_set()
            # After a stop request, wait at most a second for the trigger to take the message.
            if _send(zmq, sock, eos, None, 1.0 if stopped else timeout_s, acks.read):
                deadline = time.monotonic() + (min(ack_timeout_s, 1.0) if stopped else ack_timeout_s)
                while acks.eos is None and time.monotonic() < deadline:
                    acks.read(min(0.1, max(0.0, deadline - time.monotonic())))
        acks.read()
    finally:
        stopped = stop_event is not None and stop_event.is_set()
        # Confirmed (everything arrived) or stopped: nothing to wait for. Otherwise give queued
        # messages a second; whatever is still queued then is reported as unacknowledged.
        sock.close(linger=0 if stopped or acks.eos is not None else 1000)
    result = StreamResult(producer=name, sent=sent, acknowledged=acks.acknowledged, rejected=dict(acks.rejected),
                          complete=acks.eos is not None)
    log.info("streamed %d events to %s in %.2f s; %d acknowledged", sent, endpoint, time.monotonic() - t0,
             result.acknowledged)
    return result
