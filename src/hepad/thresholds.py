"""The threshold rule: how a detector's cut ``threshold_`` follows from background scores.

One rule, one place (as PyOD's ``contamination``): a :class:`ThresholdRule` is parsed and
validated once, when it is built, and every layer (a detector's ``threshold_rule`` parameter,
``set_threshold``, ``hepad.train``, the configuration's ``evaluation.threshold``, the command
line) builds it the same way, with :meth:`ThresholdRule.parse` or
:meth:`ThresholdRule.from_options`.

Four kinds:

- ``percentile``: the given percentile of the background scores (the seeds use 95);
- ``sigma``: mean + sigma * std of the background scores;
- ``rate_hz``: accept this rate of a ``collision_rate_hz`` stream (a background efficiency of
  rate / collision rate; by default the LHC's 40 MHz, :data:`COLLISION_RATE_HZ`);
- ``fpr``: accept this fraction of background.

Events with ``score > threshold`` are selected (predicted anomalous).

A rule is an immutable mapping in its JSON form (``{"percentile": 95.0}``,
``{"rate_hz": 1000.0, "collision_rate_hz": 4e7}``), which is how model files store it, so
``json.dumps(rule)`` and ``rule == {"fpr": 1e-4}`` work as they do on the plain dict.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from .errors import ConfigError, InputError
from .metrics import threshold_at_fpr
from .rates import COLLISION_RATE_HZ

log = logging.getLogger(__name__)

__all__ = ["COLLISION_RATE_HZ", "KINDS", "DEFAULT_RULE", "ThresholdRule", "threshold_from_scores", "score_quantiles",
           "cut_at_fraction"]

Kind = Literal["percentile", "sigma", "rate_hz", "fpr"]
#: The rule kinds, in the order they are documented.
KINDS: tuple[str, ...] = ("percentile", "sigma", "rate_hz", "fpr")


def _number(kind: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"threshold rule {kind}={value!r}: expected a number.") from None
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(f"threshold rule {kind}={value!r}: expected a finite number.")
    return v


class ThresholdRule(dict):
    """A validated, immutable threshold rule (see the module notes).

    Parameters
    ----------
    kind : {"percentile", "sigma", "rate_hz", "fpr"}
        What ``value`` is.
    value : float
        The percentile in (0, 100), the number of standard deviations, the accept rate in Hz
        (> 0, below ``collision_rate_hz``) or the background fraction in (0, 1).
    collision_rate_hz : float, optional
        The stream rate a ``rate_hz`` rule is a fraction of (default :data:`COLLISION_RATE_HZ`);
        only for ``rate_hz``.

    Raises
    ------
    ConfigError
        For an unknown kind or a value out of range, naming both.
    """

    __slots__ = ()

    def __init__(self, kind: str, value: Any, collision_rate_hz: Any = None) -> None:
        if kind not in KINDS:
            from .errors import closest

            raise ConfigError(f"Unknown threshold rule {kind!r}.{closest(str(kind), KINDS)} Use one of {', '.join(KINDS)}.")
        v = _number(kind, value)
        if kind == "percentile" and not 0 < v < 100:
            raise ConfigError(f"threshold rule percentile={value}: must be in (0, 100).")
        if kind == "fpr" and not 0 < v < 1:
            raise ConfigError(f"threshold rule fpr={value}: the accepted background fraction must be in (0, 1).")
        doc: dict[str, float] = {kind: v}
        if kind == "rate_hz":
            rate = COLLISION_RATE_HZ if collision_rate_hz is None else _number("collision_rate_hz", collision_rate_hz)
            if rate <= 0:
                raise ConfigError(f"threshold rule collision_rate_hz={collision_rate_hz}: must be positive.")
            if not 0 < v < rate:
                raise ConfigError(
                    f"threshold rule rate_hz={value}: must be positive and below the {rate:g} Hz collision rate."
                )
            doc["collision_rate_hz"] = rate
        elif collision_rate_hz is not None:
            raise ConfigError(f"collision_rate_hz only applies to a rate_hz threshold rule, not to {kind}.")
        super().__init__(doc)

    # -------------------------------------------------------------- typed view
    @property
    def kind(self) -> str:
        return next(iter(self))

    @property
    def value(self) -> float:
        return dict.__getitem__(self, self.kind)

    @property
    def collision_rate_hz(self) -> float | None:
        return self.get("collision_rate_hz")

    @property
    def background_fraction(self) -> float | None:
        """The background fraction the rule accepts (None for ``sigma``, which depends on the scores)."""
        if self.kind == "percentile":
            return 1.0 - self.value / 100.0
        if self.kind == "rate_hz":
            return self.value / float(self.collision_rate_hz)  # type: ignore[arg-type]
        if self.kind == "fpr":
            return self.value
        return None

    # -------------------------------------------------------------- building
    @classmethod
    def parse(cls, spec: Any) -> ThresholdRule:
        """A rule from any accepted spelling.

        ``None`` (the default rule, the 95th percentile), a :class:`ThresholdRule`, a mapping
        (``{"fpr": 1e-4}``, ``{"rate_hz": 1000, "collision_rate_hz": 4e7}``) or a string
        (``"percentile=99"``, ``"rate_hz=1000"``, ``"fpr=1e-4"``, ``"sigma=3"``).
        """
        if spec is None:
            return DEFAULT_RULE
        if isinstance(spec, ThresholdRule):
            return spec
        if isinstance(spec, str):
            key, sep, val = spec.partition("=")
            if not sep:
                raise ConfigError(
                    f"threshold rule {spec!r}: write KIND=VALUE with KIND one of {', '.join(KINDS)} (e.g. 'fpr=1e-4')."
                )
            return cls(key.strip(), val.strip())
        if isinstance(spec, Mapping):
            doc = dict(spec)
            rate = doc.pop("collision_rate_hz", None)
            kinds = [k for k, v in doc.items() if v is not None]
            if len(kinds) != 1:
                raise ConfigError(
                    f"threshold rule {dict(spec)!r}: give exactly one of {', '.join(KINDS)} "
                    f"(got {', '.join(map(str, kinds)) or 'none'})."
                )
            return cls(str(kinds[0]), doc[kinds[0]], rate)
        raise ConfigError(
            f"threshold rule must be a mapping such as {{'fpr': 1e-4}} or a string such as 'fpr=1e-4', "
            f"got {type(spec).__name__}."
        )

    @classmethod
    def from_options(
        cls,
        *,
        percentile: float | None = None,
        sigma: float | None = None,
        rate_hz: float | None = None,
        fpr: float | None = None,
        collision_rate_hz: float | None = None,
        default: ThresholdRule | None = None,
    ) -> ThresholdRule | None:
        """The rule given as separate keyword options (at most one kind), else ``default``.

        A lone ``collision_rate_hz`` re-bases a ``rate_hz`` ``default``.
        """
        given = {k: v for k, v in dict(percentile=percentile, sigma=sigma, rate_hz=rate_hz, fpr=fpr).items() if v is not None}
        if len(given) > 1:
            raise ConfigError(f"Give at most one threshold rule ({', '.join(KINDS)}), got {', '.join(sorted(given))}.")
        if given:
            (kind, value), = given.items()
            return cls(kind, value, collision_rate_hz if kind == "rate_hz" else _only_rate(collision_rate_hz, kind))
        if collision_rate_hz is not None:
            if default is None or default.kind != "rate_hz":
                raise ConfigError("collision_rate_hz only applies with a rate_hz threshold rule.")
            return cls("rate_hz", default.value, collision_rate_hz)
        return default

    # -------------------------------------------------------------- applying
    def threshold(self, scores: Any) -> float:
        """The cut on background ``scores`` (``score > cut`` selects)."""
        scores = np.asarray(scores, dtype=np.float64).ravel()
        if scores.size == 0:
            raise InputError("No background scores to set a threshold on.")
        if self.kind == "sigma":
            return float(scores.mean() + self.value * scores.std())
        fpr = self.background_fraction
        assert fpr is not None
        if not 0 < fpr < 1:
            raise ConfigError(f"threshold rule {self}: the accepted fraction {fpr:g} must be in (0, 1).")
        if self.kind != "percentile" and fpr * scores.size < 1:
            log.warning(
                "Threshold for FPR %.2g set on only %d background events: fewer than one expected "
                "accept; the cut is the maximum score. Use more background events.",
                fpr,
                scores.size,
            )
        # The lowest cut with (score > t) keeping at most a fraction fpr of background: the same
        # definition as the evaluation's working points; then moved half-way to the next higher
        # background score, as scikit-learn's trees place a split between samples. Both select
        # the same background events, but a cut equal to one event's score would let a
        # recomputation of that score one float32 step higher (torch's results depend on the
        # batch size) flip the event's decision.
        t = threshold_at_fpr(scores, fpr)[0]
        above = scores[scores > t]
        return float(t + 0.5 * (above.min() - t)) if above.size else t

    # -------------------------------------------------------------- immutability and text
    def _immutable(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a ThresholdRule cannot be changed; build a new one")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _immutable  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self.items()))

    def __reduce__(self) -> Any:
        return (type(self), (self.kind, self.value, self.collision_rate_hz))

    def __copy__(self) -> ThresholdRule:
        return self

    def __deepcopy__(self, memo: Any) -> ThresholdRule:
        return self

    def __repr__(self) -> str:
        return f"ThresholdRule({str(self)!r})"

    def __str__(self) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in self.items())


def _only_rate(collision_rate_hz: float | None, kind: str) -> None:
    if collision_rate_hz is not None:
        raise ConfigError(f"collision_rate_hz only applies with a rate_hz threshold rule, not with {kind}.")
    return None


#: The rule ``fit`` applies when none is given: the seeds' 95th percentile of background scores.
DEFAULT_RULE = ThresholdRule("percentile", 95.0)


def threshold_from_scores(
    scores: np.ndarray,
    *,
    percentile: float | None = None,
    sigma: float | None = None,
    rate_hz: float | None = None,
    fpr: float | None = None,
    collision_rate_hz: float | None = None,
) -> float:
    """A cut on background ``scores`` by exactly one rule (see :class:`ThresholdRule`)."""
    rule = ThresholdRule.from_options(
        percentile=percentile, sigma=sigma, rate_hz=rate_hz, fpr=fpr, collision_rate_hz=collision_rate_hz
    )
    if rule is None:
        raise ConfigError(f"Give exactly one of {', '.join(KINDS)} to set a threshold (got none).")
    return rule.threshold(scores)


# Background score tables: a model's cut at any accept fraction without its training data
# (stored at fit and export; the streaming trigger's first cut, see hepad.trigger).

def score_quantiles(scores: np.ndarray, n_points: int = 97) -> dict:
    """The upper tail of background scores as a JSON-able table, for a cut at any accept fraction.

    ``fractions`` are log-spaced from ``1/N`` (the smallest the sample resolves) to 0.5;
    ``scores[i]`` is the cut (``score > cut``) that accepts ``fractions[i]`` of the events.
    Stored with a model at fit and export, it gives the trigger its first cut (see
    :func:`cut_at_fraction`).
    """
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    s = s[np.isfinite(s)]
    if s.size < 2:
        raise ValueError("score_quantiles needs at least 2 finite scores")
    fractions = np.logspace(np.log10(1.0 / s.size), np.log10(0.5), int(n_points))
    # The cut accepting k = floor(f N) events is the (k+1)-th largest score.
    k = np.minimum(np.floor(fractions * s.size * (1 + 1e-12)).astype(np.int64), s.size - 1)
    cuts = s[s.size - 1 - k]
    return {"n_events": int(s.size), "fractions": fractions.tolist(), "scores": cuts.tolist(), "max": float(s[-1])}


def cut_at_fraction(table: dict, fraction: float) -> float:
    """The cut of a :func:`score_quantiles` table that accepts ``fraction`` (log-interpolated).

    Below the smallest tabulated fraction the largest background score is returned (the sample
    does not resolve that rate).
    """
    f = np.asarray(table["fractions"], dtype=np.float64)
    c = np.asarray(table["scores"], dtype=np.float64)
    if fraction < f[0]:
        return float(table.get("max", c[0]))
    if fraction == f[0]:
        return float(c[0])
    if fraction >= f[-1]:
        return float(c[-1])
    return float(np.interp(np.log(fraction), np.log(f), c))
