"""Event sources of the trigger (file replay, ZeroMQ) and the ZeroMQ producer.

Wire format (ZeroMQ PUSH -> PULL): every message is two frames,

1. a small JSON header: ``{"v": 1, "type": "batch", "first_id": i0, "count": n,
   "shape": [n, 19, 4], "dtype": "<f4"}``, or ``{"v": 1, "type": "eos", "total": N}`` at the
   end of the stream;
2. the events as raw C-order numpy bytes (empty for ``eos``).

Event ids of a batch are ``first_id .. first_id + count - 1``. The trigger binds its PULL
socket (it is the long-lived service) and producers connect; ``zmq+connect:`` reverses that.
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

from ..errors import ConfigError, DependencyError, InputError

log = logging.getLogger(__name__)

__all__ = ["Batch", "Source", "ReplaySource", "ZmqSource", "parse_source", "stream_events", "WIRE_VERSION"]

WIRE_VERSION = 1


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


class ZmqSource(Source):
    """Receive event batches on a ZeroMQ PULL socket (bound by default).

    The stream ends ``eos_grace_s`` seconds after an end-of-stream message once no further
    message arrives (stragglers from other producer connections are still taken).
    """

    eos_grace_s = 0.2

    def __init__(self, endpoint: str, *, bind: bool = True, rcvhwm: int = 64) -> None:
        zmq = _zmq()
        self._zmq = zmq
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PULL)
        self._sock.setsockopt(zmq.RCVHWM, int(rcvhwm))
        self._sock.setsockopt(zmq.LINGER, 0)
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
        self.total_announced: int | None = None
        self._eos_seen = False

    def _decode(self, frames: list[bytes]) -> Batch | None:
        try:
            header = json.loads(frames[0])
        except ValueError:
            raise InputError(f"{self.description}: a message header is not JSON; is the producer a hepad stream?") from None
        kind = header.get("type")
        if kind == "eos":
            # Messages of other producer connections may still be in flight (each connection
            # is its own ordered pipe): keep taking them until the socket has been quiet.
            self._eos_seen = True
            self.total_announced = header.get("total")
            return None
        if kind != "batch" or len(frames) != 2:
            raise InputError(f"{self.description}: unexpected message {header!r} (wire version {WIRE_VERSION}).")
        data = np.frombuffer(frames[1], dtype=np.dtype(header.get("dtype", "<f4")))
        data = data.reshape(header["shape"]).astype(np.float32, copy=False)
        if data.shape[0] != int(header["count"]):
            raise InputError(f"{self.description}: header says {header['count']} events, payload holds {data.shape[0]}.")
        return Batch(int(header["first_id"]), data, time.monotonic())

    def receive(self, timeout: float) -> Batch | None:
        if self.done:
            return None
        if self._eos_seen:
            timeout = self.eos_grace_s
        if not self._poller.poll(max(0, int(timeout * 1000))):
            if self._eos_seen:
                self.done = True
            return None
        return self._decode(self._sock.recv_multipart(copy=True))

    def drain(self, timeout: float) -> list[Batch]:
        """Everything queued on the socket, waiting up to ``timeout`` s for in-flight messages."""
        out: list[Batch] = []
        deadline = time.monotonic() + timeout
        while not self.done:
            left = deadline - time.monotonic()
            if self._eos_seen:
                left = min(left, self.eos_grace_s)
            # A short quiet gap ends the drain: the producer may keep sending forever.
            if left <= 0 or not self._poller.poll(int(min(left, 0.05) * 1000)):
                break
            b = self._decode(self._sock.recv_multipart(copy=True))
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
    receive), ``zmq+connect:tcp://HOST:PORT`` (connect to a binding producer).
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
        return ZmqSource(rest, bind=scheme == "zmq")
    raise ConfigError(
        f"source {spec!r}: unknown scheme {scheme!r}; write replay:FILE[@RATE_HZ], zmq:tcp://HOST:PORT "
        "or zmq+connect:tcp://HOST:PORT."
    )


# ---------------------------------------------------------------------- producer
def _header(first_id: int, data: np.ndarray) -> bytes:
    return json.dumps({"v": WIRE_VERSION, "type": "batch", "first_id": int(first_id), "count": int(data.shape[0]),
                       "shape": list(data.shape), "dtype": data.dtype.str}).encode()


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


def _send(zmq: Any, sock: Any, frames: list, stop_event: threading.Event | None, timeout_s: float | None) -> bool:
    """Send when the peer has room; False if stopped or timed out (a blocking send could hang)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        if sock.poll(100, zmq.POLLOUT):
            sock.send_multipart(frames, copy=True)
            return True
        if stop_event is not None and stop_event.is_set():
            return False
        if deadline is not None and time.monotonic() > deadline:
            log.warning("no trigger took a message for %.1f s; stopping the stream", timeout_s)
            return False


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
) -> int:
    """Push events to a trigger over ZeroMQ (PUSH socket); returns the number of events sent.

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
        Id of the first event (ids are consecutive).
    send_eos : bool
        Send the end-of-stream message at the end (the trigger then stops).
    stop_event : threading.Event, optional
        Set it to stop early (an end-of-stream message is still sent).
    on_batch : callable, optional
        ``on_batch(first_id, count)`` after each message is queued.
    timeout_s : float, optional
        Give up when the trigger takes no message for this long (default: wait forever, e.g.
        for a trigger that is not up yet).
    """
    zmq = _zmq()
    sizes = [int(batch_size)] if isinstance(batch_size, (int, np.integer)) else [int(b) for b in batch_size]
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"batch sizes must be >= 1, got {batch_size}.")
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, 16)
    # Give queued messages (and the end-of-stream) up to 10 s to leave on close.
    sock.setsockopt(zmq.LINGER, 10_000)
    try:
        if bind:
            sock.bind(endpoint)
        else:
            sock.connect(endpoint)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise ConfigError(f"cannot {'bind' if bind else 'connect'} {endpoint}: {exc}.") from None
    sent = 0
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
            frames = [_header(first_id + sent, data), memoryview(data).cast("B")]
            if not _send(zmq, sock, frames, stop_event, timeout_s):
                break
            if on_batch is not None:
                on_batch(first_id + sent, int(data.shape[0]))
            sent += int(data.shape[0])
        if send_eos:
            eos = [json.dumps({"v": WIRE_VERSION, "type": "eos", "total": sent}).encode(), b""]
            # After a stop request, wait at most a second for the trigger to take the message.
            _send(zmq, sock, eos, None, 1.0 if stop_event is not None and stop_event.is_set() else timeout_s)
    finally:
        stopped = stop_event is not None and stop_event.is_set()
        sock.close(linger=0 if stopped else None)
    log.info("streamed %d events to %s in %.2f s", sent, endpoint, time.monotonic() - t0)
    return sent
