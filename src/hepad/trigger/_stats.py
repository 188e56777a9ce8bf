"""Online statistics of the trigger: the threshold tracker, Welford moments, latency quantiles.

Threshold tracking: exact quantile over a sliding window
-------------------------------------------------------
The trigger keeps its accept fraction at ``f = target_rate / collision_rate`` by cutting at the
``(1 - f)`` quantile of the scores of the last ``W`` events (default ``W = 400 / f``: 400
expected accepts per window). Only the top of each micro-batch can matter for that quantile, so
the window stores, per micro-batch, just its ``m ~ f * 2W`` largest scores (a top-k sketch):
memory is ``O(blocks * f * W)`` floats, not ``W``, and the quantile is *exact* on the window.

Convergence: on a stationary stream the window quantile is the empirical quantile of ``W``
events; the accept fraction it gives on the next events has a relative standard deviation of
about ``sqrt((1 - f) / (f W))`` = 5 % for 400 accepts per window. After a change of the score
distribution the threshold follows fully within ``W`` events (it moves as new events replace
old ones in the window). Until the window holds enough events for ``min_accepts`` expected
accepts, the model's own ``threshold_`` is used (the warm-up). The cut is causal: each
micro-batch is decided with the threshold learned from the events before it.

Calibrated start: with a ``prior`` (the background score quantiles stored with the model at
fit or export, :func:`score_quantiles`) there is no warm-up. The window starts full of
``W`` pseudo-events drawn from the calibration background, so the first cut is the one at the
target rate; each real event replaces one pseudo-event, so after ``W`` events the cut rests on
the stream alone and follows its drift.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from ..thresholds import cut_at_fraction

__all__ = [
    "WindowQuantileTracker",
    "RunningStats",
    "LatencyHistogram",
    "AcceptRateMonitor",
]


class WindowQuantileTracker:
    """The cut that accepts a fraction ``fraction`` of the last ``window`` scores (exact, top-k sketch).

    Parameters
    ----------
    fraction : float
        Target accept fraction, in (0, 1).
    initial : float
        Threshold used during the warm-up (the model's ``threshold_``).
    window : int, optional
        Events in the sliding window (default ``ceil(400 / fraction)``, at least 10,000).
    min_accepts : float
        The warm-up ends once the window holds ``min_accepts / fraction`` events.
    """

    def __init__(self, fraction: float, initial: float, *, window: int | None = None, min_accepts: float = 10.0,
                 prior: dict | None = None) -> None:
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        self.fraction = float(fraction)
        self.prior = prior
        if prior:
            initial = cut_at_fraction(prior, self.fraction)
        self.initial = float(initial)
        self.window = int(window) if window else max(10_000, math.ceil(400.0 / fraction))
        self.min_events = max(1, math.ceil(min_accepts / fraction))
        self._m = max(2, math.ceil(self.fraction * 2 * self.window) + 2)
        # Small micro-batches are merged so the window never holds more than ~128 blocks.
        self._merge_below = max(1, self.window // 128)
        self._blocks: deque[list] = deque()  # [n_events, top scores (desc not required)]
        self._n = 0
        self.threshold = self.initial
        # With a calibration prior the cut holds the target from the first event.
        self.warm = bool(prior)
        self.n_seen = 0

    def _top(self, scores: np.ndarray, m: int) -> np.ndarray:
        if scores.size <= m:
            return scores.copy()
        return np.partition(scores, scores.size - m)[scores.size - m :].copy()

    def update(self, scores: np.ndarray) -> float:
        """Add a micro-batch of scores (after deciding it) and return the new threshold."""
        s = np.asarray(scores, dtype=np.float32).ravel()
        s = s[np.isfinite(s)]
        n = int(s.size)
        if n == 0:
            return self.threshold
        self.n_seen += n
        m = max(self._m, math.ceil(self.fraction * n) + 2)
        if self._blocks and self._blocks[-1][0] + n <= self._merge_below:
            last = self._blocks[-1]
            last[0] += n
            last[1] = self._top(np.concatenate([last[1], s]), m)
        else:
            self._blocks.append([n, self._top(s, m)])
        self._n += n
        while len(self._blocks) > 1 and self._n - self._blocks[0][0] >= self.window:
            self._n -= self._blocks.popleft()[0]
        n_prior = max(self.window - self._n, 0) if self.prior else 0
        if not n_prior and self._n < self.min_events:
            return self.threshold
        self.warm = True
        tops = [b[1] for b in self._blocks]
        if n_prior:
            tops.append(self._prior_top(n_prior))
        union = np.concatenate(tops)
        # Cut = the (k+1)-th largest score, so that exactly k = floor(f * n) scores lie above it.
        k = min(int(self.fraction * (self._n + n_prior)), union.size - 1)
        self.threshold = float(np.partition(union, union.size - 1 - k)[union.size - 1 - k])
        return self.threshold

    def _prior_top(self, n: int) -> np.ndarray:
        """The largest scores of ``n`` pseudo-events drawn from the calibration table (its quantiles)."""
        r = np.arange(1, min(self._m, n) + 1, dtype=np.float64)
        f = np.asarray(self.prior["fractions"], dtype=np.float64)
        c = np.asarray(self.prior["scores"], dtype=np.float64)
        # The r-th largest of n events sits at accept fraction (r - 1/2) / n.
        return np.interp(np.log((r - 0.5) / n), np.log(f), c).astype(np.float32)

    @property
    def n_window(self) -> int:
        """Events currently in the window."""
        return self._n


class RunningStats:
    """Welford / Chan running mean and variance of a stream, updated a batch at a time."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self._m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).ravel()
        x = x[np.isfinite(x)]
        nb = int(x.size)
        if nb == 0:
            return
        mb = float(x.mean())
        m2b = float(((x - mb) ** 2).sum())
        n = self.n + nb
        delta = mb - self.mean
        # Chan et al.'s parallel update: numerically stable merge of two (n, mean, M2) sets.
        self.mean += delta * nb / n
        self._m2 += m2b + delta * delta * self.n * nb / n
        self.n = n
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))

    @property
    def var(self) -> float:
        return self._m2 / (self.n - 1) if self.n > 1 else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    def to_dict(self) -> dict[str, float]:
        return {
            "n": self.n,
            "mean": self.mean,
            "std": self.std,
            "min": self.min if self.n else float("nan"),
            "max": self.max if self.n else float("nan"),
        }


class LatencyHistogram:
    """Event-weighted latency quantiles from log-spaced bins (1 us .. 1000 s, 2 % wide)."""

    _EDGES = np.logspace(-6, 3, 1051)

    def __init__(self) -> None:
        self.counts = np.zeros(self._EDGES.size + 1, dtype=np.float64)
        self.n = 0.0
        self.max = 0.0

    def add(self, seconds: float, weight: float = 1.0) -> None:
        i = int(np.searchsorted(self._EDGES, seconds))
        self.counts[i] += weight
        self.n += weight
        self.max = max(self.max, seconds)

    def quantile(self, q: float) -> float:
        """Latency in seconds below which a fraction q of the events were decided (bin upper edge)."""
        if self.n <= 0:
            return float("nan")
        i = int(np.searchsorted(np.cumsum(self.counts), q * self.n))
        return float(self._EDGES[min(i, self._EDGES.size - 1)])


class AcceptRateMonitor:
    """Accept fraction over the last ``window`` events; flags when it leaves its band.

    Out of band: the observed fraction differs from ``target`` by more than ``band`` (relative)
    *and* by more than 3 Poisson standard deviations of the expected count (so that small
    windows do not raise false alarms).
    """

    def __init__(self, target: float, window: int, band: float = 0.5) -> None:
        self.target = float(target)
        self.window = int(window)
        self.band = float(band)
        self._blocks: deque[tuple[int, int]] = deque()
        self.n = 0
        self.k = 0

    def update(self, n: int, k: int) -> None:
        self._blocks.append((int(n), int(k)))
        self.n += int(n)
        self.k += int(k)
        while len(self._blocks) > 1 and self.n - self._blocks[0][0] >= self.window:
            n0, k0 = self._blocks.popleft()
            self.n -= n0
            self.k -= k0

    @property
    def fraction(self) -> float:
        return self.k / self.n if self.n else float("nan")

    def out_of_band(self) -> bool:
        if self.n < self.window:
            return False
        expected = self.target * self.n
        dev = abs(self.k - expected)
        return dev > self.band * expected and dev > 3.0 * math.sqrt(max(expected, 1.0))
