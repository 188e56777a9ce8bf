"""The streaming trigger loop: receive, micro-batch, score, cut, write, monitor, shut down cleanly."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path
from ..errors import ConfigError, HepadError
from ..rates import COLLISION_RATE_HZ
from ._stats import AcceptRateMonitor, LatencyHistogram, RunningStats, WindowQuantileTracker
from ._writer import AcceptedWriter
from .sources import Batch, Source, parse_source

log = logging.getLogger(__name__)

__all__ = ["TriggerStatus", "TriggerSummary", "run_trigger"]


@dataclass
class TriggerStatus:
    """A snapshot for a live status line (passed to ``status_callback``)."""

    elapsed_s: float
    processed: int
    accepted: int
    rejected: int
    input_rate_hz: float  # events/s processed since the last status
    accept_rate_hz: float  # accepted events/s since the last status (wall clock)
    accept_fraction: float  # over the monitoring window
    target_fraction: float
    threshold: float
    warm: bool
    latency_p50_ms: float  # since the last status
    latency_p99_ms: float
    score_mean: float
    score_std: float
    alerts: int
    files: int


@dataclass
class TriggerSummary:
    """What a trigger run did; also written to ``summary.json`` in the output directory.

    ``processed == accepted + rejected`` always; every processed event id lies in
    ``processed_id_ranges`` (half-open ``[start, stop)``) and is either in an accepted file or
    rejected.
    """

    processed: int
    accepted: int
    rejected: int
    stopped_by: str  # "end_of_stream", "max_events", "signal", "stop_event" or "error: ..."
    source: str
    model: str
    engine: str
    target_rate_hz: float
    collision_rate_hz: float
    target_fraction: float
    accept_fraction: float
    accept_fraction_after_warmup: float
    processed_after_warmup: int
    accepted_after_warmup: int
    threshold_initial: float
    threshold_final: float
    window_events: int
    elapsed_s: float
    events_per_s: float  # processed / (last decision - first arrival): excludes waiting for a producer
    latency_ms: dict[str, float]
    score_stats: dict[str, float]
    alerts: dict[str, int]
    accepted_files: list[str]
    processed_id_ranges: list[list[int]]
    drained: int = 0
    announced_total: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _IdRanges:
    """Processed event ids as merged half-open ranges."""

    def __init__(self) -> None:
        self.ranges: list[list[int]] = []

    def add(self, start: int, stop: int) -> None:
        if self.ranges and self.ranges[-1][1] == start:
            self.ranges[-1][1] = stop
        else:
            self.ranges.append([start, stop])

    def merged(self) -> list[list[int]]:
        out: list[list[int]] = []
        for a, b in sorted(self.ranges):
            if out and a <= out[-1][1]:
                out[-1][1] = max(out[-1][1], b)
            else:
                out.append([a, b])
        return out


def _as_scorer(model: Any, engine: str, threads: int | None) -> Any:
    from ..engine import Scorer, make_scorer

    if isinstance(model, Scorer):
        return model
    return make_scorer(model, engine=engine, threads=threads)


def _stored_quantiles(model: Any, scorer: Any) -> dict | None:
    """The background score quantiles saved with a model (detector, model directory or ONNX file)."""
    table = getattr(model, "background_quantiles_", None) or getattr(scorer, "background_quantiles", None)
    if table:
        return table
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        try:
            if path.is_dir() and (path / "thresholds.json").is_file():
                return json.loads((path / "thresholds.json").read_text()).get("background_quantiles")
            if path.suffix == ".onnx":
                from ..export.onnx import read_onnx_metadata

                return read_onnx_metadata(path).get("background_quantiles")
        except (OSError, ValueError, HepadError) as exc:
            log.warning("%s: cannot read its background score quantiles (%s)", path, exc)
    return None


def run_trigger(
    model: Any,
    source: Source | str,
    output_dir: str | os.PathLike[str],
    *,
    target_rate_hz: float = 1000.0,
    collision_rate_hz: float = COLLISION_RATE_HZ,
    batch_size: int = 4096,
    max_latency_ms: float = 10.0,
    max_events: int | None = None,
    engine: str = "auto",
    threads: int | None = None,
    window_events: int | None = None,
    rotate_events: int = 10_000,
    rotate_seconds: float = 60.0,
    band: float = 0.5,
    drift_sigma: float = 0.5,
    status_interval_s: float = 1.0,
    status_callback: Callable[[TriggerStatus], None] | None = None,
    stop_event: threading.Event | None = None,
    handle_signals: bool = False,
    drain_timeout_s: float = 1.0,
    calibration: dict | None = None,
) -> TriggerSummary:
    """Run the streaming trigger emulator until the source ends, ``max_events``, or a stop request.

    Events arrive in batches from ``source``; they are collected into micro-batches of up to
    ``batch_size`` events, but never held longer than ``max_latency_ms``; each micro-batch is
    scored and cut at the current threshold, which follows the target accept fraction
    ``target_rate_hz / collision_rate_hz`` (exact quantile over a sliding window of scores that
    starts filled from the model's calibration background; see :mod:`hepad.trigger._stats`).

    Parameters
    ----------
    model : BaseDetector, path-like or Scorer
        A fitted detector, a model directory, a ``.onnx`` export, or a ready :class:`hepad.engine.Scorer`.
    source : Source or str
        A source object or its spec: ``replay:FILE[@RATE_HZ]``, ``zmq:tcp://HOST:PORT``.
    output_dir : path-like
        Accepted events go to ``accepted_NNNNNN.h5`` files here, the run summary to ``summary.json``.
    target_rate_hz, collision_rate_hz : float
        The accept rate to hold and the input (bunch-crossing) rate it is a fraction of.
    batch_size : int
        Largest micro-batch.
    max_latency_ms : float
        Longest time an event waits for its micro-batch to fill.
    max_events : int, optional
        Stop after the message that brings the processed count to this number.
    engine, threads : scoring engine and threads (see :func:`hepad.engine.make_scorer`).
    window_events : int, optional
        Sliding-window length of the threshold tracker (default ``400 / fraction``, >= 10,000).
    rotate_events, rotate_seconds : output file rotation.
    band : float
        Relative band of the accept fraction; leaving it raises an alert (warning + counter).
    drift_sigma : float
        Alert when the mean score of the last window moves by more than this many standard
        deviations of the first (reference) window.
    status_interval_s : float
        How often ``status_callback`` is called.
    status_callback : callable, optional
        Receives a :class:`TriggerStatus` (the CLI draws its live status line from it).
    stop_event : threading.Event, optional
        Set it to stop: the trigger drains, flushes and returns its summary.
    handle_signals : bool
        Install SIGINT/SIGTERM handlers that request the same clean stop (main thread only).
    drain_timeout_s : float
        On a stop, how long to keep taking messages that are already in flight.
    calibration : dict, optional
        Background score quantiles (:func:`hepad.thresholds.score_quantiles`) for the first
        cut. Default: those stored with the model (``background_quantiles_`` of a detector, its
        model directory's ``thresholds.json``, or an ONNX export's metadata). With them the cut
        starts at the target rate and the rate is held from the first event; without, the
        model's ``threshold_`` is used until the window holds ~10 expected accepts (``{}``:
        ignore the stored quantiles).

    Returns
    -------
    TriggerSummary
    """
    fraction = float(target_rate_hz) / float(collision_rate_hz)
    if not 0.0 < fraction < 1.0:
        raise ConfigError(
            f"target rate {target_rate_hz:g} Hz of a {collision_rate_hz:g} Hz stream is an accept fraction of "
            f"{fraction:g}; it must be in (0, 1)."
        )
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}.")
    if max_latency_ms < 0:
        raise ConfigError(f"max latency must be >= 0 ms, got {max_latency_ms}.")
    scorer = _as_scorer(model, engine, threads)
    if isinstance(source, str):
        source = parse_source(source, max_events=max_events)
    source.expect_features(scorer.n_features)  # a ZeroMQ source rejects batches of other shapes
    initial = scorer.threshold if scorer.threshold is not None and math.isfinite(scorer.threshold) else 0.0
    prior = calibration if calibration is not None else _stored_quantiles(model, scorer)
    if prior:
        n_cal = int(prior.get("n_events", 0))
        if n_cal and fraction * n_cal < 10:
            log.warning("the calibration background (%d events) holds %.1f events above the %.3g target: the first "
                        "cut is uncertain until the stream replaces it", n_cal, fraction * n_cal, fraction)
    else:
        log.warning("%s has no background score quantiles (fit or export it with this hepad): the trigger starts "
                    "from its threshold_ %.4g and follows the target after a warm-up", scorer.name, initial)
    tracker = WindowQuantileTracker(fraction, initial, window=window_events, prior=prior or None)
    initial = tracker.initial
    step = max(1, math.ceil(10.0 / fraction))  # decide in chunks of ~10 expected accepts
    monitor = AcceptRateMonitor(fraction, tracker.window, band=band)
    out = Path(output_dir)
    writer = AcceptedWriter(
        out, rotate_events=rotate_events, rotate_seconds=rotate_seconds,
        metadata={"model": scorer.name, "source": source.description, "target_rate_hz": target_rate_hz,
                  "collision_rate_hz": collision_rate_hz, "process": "trigger-accepted"},
        feature_names=tuple(scorer.feature_names),
    )
    stop = stop_event if stop_event is not None else threading.Event()
    max_latency = float(max_latency_ms) / 1000.0

    stats, ref_stats, win_stats = RunningStats(), RunningStats(), RunningStats()
    lat_all, lat_recent = LatencyHistogram(), LatencyHistogram()
    ids = _IdRanges()
    c = dict(processed=0, accepted=0, proc_warm=0, acc_warm=0, rate_alerts=0, drift_alerts=0, drained=0)
    first_arrival: list[float] = []
    in_alert = [False]
    signal_name: list[str] = []

    def process(batches: list[Batch]) -> None:
        if not batches:
            return
        data = batches[0].data if len(batches) == 1 else np.concatenate([b.data for b in batches])
        event_ids = np.concatenate([np.arange(b.first_id, b.first_id + len(b), dtype=np.int64) for b in batches])
        all_scores = scorer(data)
        k = 0
        n = int(len(all_scores))
        warm = tracker.n_seen >= tracker.window
        # One scoring call per micro-batch, but the cut moves every ~10 expected accepts.
        for a in range(0, n, step):
            scores = all_scores[a:a + step]
            cut = tracker.threshold
            acc = scores > cut
            kc = int(acc.sum())
            writer.add(data[a:a + step][acc], event_ids[a:a + step][acc], scores[acc], cut)
            if tracker.warm:  # monitor the controlled regime only, not the warm-up
                monitor.update(len(scores), kc)
            tracker.update(scores)
            k += kc
        scores = all_scores
        stats.update(scores)
        if ref_stats.n < tracker.window:
            ref_stats.update(scores)
        else:
            win_stats.update(scores)
            if win_stats.n >= tracker.window:
                shift = abs(win_stats.mean - ref_stats.mean)
                if ref_stats.std > 0 and shift > drift_sigma * ref_stats.std:
                    c["drift_alerts"] += 1
                    log.warning("score drift: mean %.4g over the last %d events vs %.4g (std %.3g) at the start",
                                win_stats.mean, win_stats.n, ref_stats.mean, ref_stats.std)
                win_stats.__init__()
        now = time.monotonic()
        if not first_arrival:
            first_arrival.append(batches[0].t_arrival)
        for b in batches:
            lat_all.add(now - b.t_arrival, len(b))
            lat_recent.add(now - b.t_arrival, len(b))
            ids.add(b.first_id, b.first_id + len(b))
        c["processed"] += n
        c["accepted"] += k
        if warm:
            c["proc_warm"] += n
            c["acc_warm"] += k
        if monitor.out_of_band():
            if not in_alert[0]:
                in_alert[0] = True
                c["rate_alerts"] += 1
                log.warning("accept fraction %.3g over the last %d events is outside %.3g +- %.0f%%",
                            monitor.fraction, monitor.n, fraction, 100 * band)
        elif in_alert[0]:
            in_alert[0] = False
            log.info("accept fraction back in band (%.3g)", monitor.fraction)

    old_handlers: dict[int, Any] = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        def _on_signal(signum: int, frame: Any) -> None:
            signal_name.append(signal.Signals(signum).name)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            old_handlers[sig] = signal.signal(sig, _on_signal)

    t_start = time.monotonic()
    last_status = [t_start, 0, 0]
    stopped_by = "end_of_stream"
    pending: list[Batch] = []
    pending_n = 0

    def emit_status(now: float) -> None:
        dt = max(now - last_status[0], 1e-9)
        st = TriggerStatus(
            elapsed_s=now - t_start, processed=c["processed"], accepted=c["accepted"],
            rejected=c["processed"] - c["accepted"],
            input_rate_hz=(c["processed"] - last_status[1]) / dt, accept_rate_hz=(c["accepted"] - last_status[2]) / dt,
            accept_fraction=monitor.fraction, target_fraction=fraction, threshold=tracker.threshold,
            warm=tracker.warm, latency_p50_ms=1e3 * lat_recent.quantile(0.5), latency_p99_ms=1e3 * lat_recent.quantile(0.99),
            score_mean=stats.mean, score_std=stats.std, alerts=c["rate_alerts"] + c["drift_alerts"],
            files=len(writer.files),
        )
        last_status[:] = [now, c["processed"], c["accepted"]]
        lat_recent.__init__()
        if status_callback is not None:
            status_callback(st)

    error: BaseException | None = None
    try:
        while True:
            if stop.is_set():
                stopped_by = "signal" if signal_name else "stop_event"
                break
            now = time.monotonic()
            timeout = max(0.0, pending[0].t_arrival + max_latency - now) if pending else 0.1
            b = source.receive(min(timeout, 0.1))
            if b is not None and len(b):
                pending.append(b)
                pending_n += len(b)
            now = time.monotonic()
            if pending and (
                pending_n >= batch_size
                or now - pending[0].t_arrival >= max_latency
                or source.done
                or (max_events is not None and c["processed"] + pending_n >= max_events)
            ):
                batches, pending, pending_n = pending, [], 0
                process(batches)
            if max_events is not None and c["processed"] >= max_events:
                stopped_by = "max_events"
                break
            if source.done and not pending:
                stopped_by = "end_of_stream"
                break
            writer.maybe_rotate(now)
            if status_callback is not None and now - last_status[0] >= status_interval_s:
                emit_status(now)
    except BaseException as exc:  # flush what was decided, record why, then re-raise
        error = exc
        stopped_by = f"error: {exc.__class__.__name__}: {exc}"
    finally:
        try:
            if error is None and stopped_by in ("signal", "stop_event"):
                drained = source.drain(drain_timeout_s)
                c["drained"] = sum(len(b) for b in drained)
                pending += drained
            if error is None or not isinstance(error, KeyboardInterrupt):
                process(pending)
            pending = []
        finally:
            writer.close()
            source.close()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
    t_end = time.monotonic()
    elapsed = t_end - t_start
    active = t_end - first_arrival[0] if first_arrival else 0.0
    if status_callback is not None:
        emit_status(time.monotonic())
    summary = TriggerSummary(
        processed=c["processed"], accepted=c["accepted"], rejected=c["processed"] - c["accepted"],
        stopped_by=stopped_by + (f" ({signal_name[0]})" if signal_name else ""),
        source=source.description, model=scorer.name, engine=scorer.engine,
        target_rate_hz=float(target_rate_hz), collision_rate_hz=float(collision_rate_hz), target_fraction=fraction,
        accept_fraction=c["accepted"] / c["processed"] if c["processed"] else float("nan"),
        accept_fraction_after_warmup=c["acc_warm"] / c["proc_warm"] if c["proc_warm"] else float("nan"),
        processed_after_warmup=c["proc_warm"], accepted_after_warmup=c["acc_warm"],
        threshold_initial=initial, threshold_final=tracker.threshold, window_events=tracker.window,
        elapsed_s=elapsed, events_per_s=c["processed"] / active if active > 0 else float("nan"),
        latency_ms={"p50": 1e3 * lat_all.quantile(0.5), "p99": 1e3 * lat_all.quantile(0.99), "max": 1e3 * lat_all.max},
        score_stats=stats.to_dict(),
        alerts={"accept_rate": c["rate_alerts"], "score_drift": c["drift_alerts"]},
        accepted_files=list(writer.files), processed_id_ranges=ids.merged(), drained=c["drained"],
        announced_total=getattr(source, "total_announced", None),
        extra={**({"source": source.report()} if source.report() else {}),
               "calibration_events": int(prior.get("n_events", 0)) if prior else None},
    )
    _write_summary(out / "summary.json", summary)
    if error is not None:
        raise error
    return summary


def _write_summary(path: Path, summary: TriggerSummary) -> None:
    def clean(o: Any) -> Any:
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o

    with atomic_path(path, suffix=".json.tmp") as tmp:
        tmp.write_text(json.dumps(clean(summary.to_dict()), indent=1))
