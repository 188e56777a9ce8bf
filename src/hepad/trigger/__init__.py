"""A streaming trigger emulator: score events as they arrive and keep a target accept rate.

::

    from hepad.trigger import run_trigger
    summary = run_trigger("model/", "zmq:tcp://127.0.0.1:5555", "accepted/",
                          target_rate_hz=1000, collision_rate_hz=40e6)
    summary.accepted, summary.rejected     # processed = accepted + rejected

Sources: :class:`ReplaySource` (a file, optionally paced), :class:`ZmqSource` (DEALER/ROUTER
batches, see :mod:`hepad.trigger.sources` for the wire format) and :func:`stream_events`, the
matching producer. The threshold method and its convergence are described in
:mod:`hepad.trigger._stats`; ``docs/deployment.md`` has the operator's view.
"""

from __future__ import annotations

from ._runner import TriggerStatus, TriggerSummary, run_trigger
from ._stats import AcceptRateMonitor, LatencyHistogram, RunningStats, WindowQuantileTracker
from ._writer import read_accepted_ids
from .sources import Batch, ReplaySource, Source, ZmqSource, parse_source, stream_events

__all__ = [
    "run_trigger",
    "TriggerStatus",
    "TriggerSummary",
    "Source",
    "Batch",
    "ReplaySource",
    "ZmqSource",
    "parse_source",
    "stream_events",
    "read_accepted_ids",
    "WindowQuantileTracker",
    "RunningStats",
    "LatencyHistogram",
    "AcceptRateMonitor",
]
