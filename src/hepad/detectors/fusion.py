"""Detectors fused on tail-calibrated background p-values.

Why: no single preprocessing finds every signal. An autoencoder on standardised inputs finds
soft multi-object signals (A -> 4l, the leptoquark), while one that reconstructs raw pT in GeV
finds heavy resonances that the standardised one misses (its error is dominated by the
unpredictable angles). A trigger that ORs them needs each member's score on a common scale that
is exact where the cut lies, at a background rate of 1e-3 to 1e-4, not in the bulk.

How: after the members are trained, each member's scores on held-out background (``X_val``, or
``calibration_fraction`` of ``X`` kept out of the members' training) give its background
survival function p(s) = P(score > s). Each member score becomes a surprisal
t = -log p(s):

- in the bulk, p comes from the empirical quantiles of the calibration scores (a table at
  log-spaced tail probabilities, so the table is fine exactly where the trigger cuts);
- above the ``tail_events``-th largest calibration score u, the tail is continued with a
  peaks-over-threshold fit: an exponential in the score (``tail="exponential"``) or in log score
  (``tail="pareto"``, a power law, chosen by ``"auto"`` when every calibration score is positive,
  as reconstruction errors are), t = t(u) + (g(s) - g(u)) / lambda with lambda the mean excess.
  So events beyond every calibration event keep their order and get p-values on one scale.

The fused score is ``max`` of the surprisals (the smallest p-value: an OR of the members, each
at its own background rate) or ``fisher`` (their sum, Fisher's method). ``weights`` share the
accept rate between the members as a trigger menu shares its budget between paths: with
``max``, member i fires when p_i < w_i * n * p_cut (the score is max_i t_i + log(n w_i)), so a
member of weight 1/2 among three gets 1.5x the rate of an equal share; with ``fisher``, the
sum is weighted (n w_i t_i). Equal weights (the default) give the unweighted score exactly.
The final ``threshold_`` is set on the fused score as for every detector.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from .base import BaseDetector, Interval, Options, detector_from_state, sub_arrays
from .registry import get_detector_class, make_detector

log = logging.getLogger(__name__)

__all__ = ["FusionDetector", "TailCalibration", "FUSION_MEMBERS"]

#: The offline default's members: the same compact AE on standardised inputs and on raw
#: inputs (pT in GeV dominates its error, so it sees hard objects), per the issue's study.
FUSION_MEMBERS: tuple[dict[str, Any], ...] = (
    {"detector": "ae"},
    {"detector": "ae", "params": {"preprocessing": {"scaling": "none"}}},
)


class TailCalibration:
    """Background survival function of one score: a quantile table plus a fitted tail.

    ``surprisal(s)`` = -log P(background score > s), non-decreasing in ``s``.
    """

    def __init__(self, knots: np.ndarray, logp: np.ndarray, u: float, logp_u: float, scale: float, log_scores: bool,
                 shift: float) -> None:
        self.knots, self.logp = knots, logp  # increasing scores, decreasing log p
        self.u, self.logp_u, self.scale = u, logp_u, scale
        self.log_scores, self.shift = log_scores, shift

    @classmethod
    def fit(cls, scores: np.ndarray, *, tail_events: int, tail: str, n_knots: int = 512) -> TailCalibration:
        s = np.sort(np.asarray(scores, dtype=np.float64))
        n = s.size
        if n < 2:
            raise InputError(f"tail calibration needs at least 2 background scores, got {n}.")
        log_scores = tail == "pareto" or (tail == "auto" and s[0] > 0)
        if tail == "pareto" and s[0] <= 0:
            raise ConfigError("fusion: tail='pareto' needs positive scores; use tail='exponential' or 'auto'.")
        shift = 0.0
        g = np.log(s) if log_scores else s - shift
        # Survival probabilities at log-spaced levels from 1 (the minimum) to 1/n (the maximum).
        p = np.unique(np.r_[np.geomspace(1.0 / n, 1.0, n_knots), 1.0])[::-1]
        # score with a fraction p of calibration events above it: the (1 - p) quantile
        knots = np.quantile(g, 1.0 - p)
        knots, idx = np.unique(knots, return_index=True)  # ties (e.g. many equal scores): keep the first
        logp = np.log(p[idx])
        k = int(min(max(tail_events, 2), n - 1))
        u = float(g[n - k - 1])  # k events above the tail threshold
        excess = g[n - k:] - u
        scale = float(excess.mean())
        if not np.isfinite(scale) or scale <= 0:
            scale = float(max(np.ptp(g), 1.0) * 1e-6)
        logp_u = float(np.log(k / n))
        return cls(knots, logp, u, logp_u, scale, log_scores, shift)

    def _g(self, s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=np.float64)
        if self.log_scores:
            return np.log(np.maximum(s, np.finfo(np.float64).tiny))
        return s - self.shift

    def surprisal(self, s: np.ndarray) -> np.ndarray:
        g = self._g(s)
        t = -np.interp(g, self.knots, self.logp, left=0.0, right=-self.logp[-1])
        tail = -self.logp_u + (g - self.u) / self.scale
        # above u the fitted tail alone: smoother than the few calibration events out there
        return np.where(g > self.u, tail, t)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"knots": self.knots, "logp": self.logp}

    def to_meta(self) -> dict[str, Any]:
        return {"u": self.u, "logp_u": self.logp_u, "scale": self.scale, "log_scores": self.log_scores,
                "shift": self.shift}

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> TailCalibration:
        knots = np.asarray(arrays["knots"], dtype=np.float64)
        logp = np.asarray(arrays["logp"], dtype=np.float64)
        if knots.shape != logp.shape or knots.ndim != 1 or knots.size < 1:
            raise ValueError("fusion: calibration tables do not match")
        return cls(knots, logp, float(meta["u"]), float(meta["logp_u"]), float(meta["scale"]),
                   bool(meta["log_scores"]), float(meta["shift"]))


def _member_spec(i: int, spec: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and "detector" in spec and not set(spec) - {"detector", "params"}:
        params = spec.get("params") or {}
        if not isinstance(params, dict):
            raise ConfigError(f"fusion: members[{i}].params must be a mapping, got {params!r}.")
        return str(spec["detector"]), dict(params)
    raise ConfigError(
        f"fusion: members[{i}] must be a detector name or a mapping with keys 'detector' and optional 'params', "
        f"got {spec!r}."
    )


class FusionDetector(BaseDetector):
    """Several detectors, each calibrated to its background p-value, fused by max or Fisher.

    Parameters
    ----------
    members : list, optional
        Registry names or mappings ``{"detector": name, "params": {...}}``; default: the same AE
        on standardised and on raw inputs (:data:`FUSION_MEMBERS`).
    combine : {"max", "fisher"}
        Fused score: the largest surprisal -log p (the OR of members) or their sum.
    calibration_fraction : float
        Without ``X_val``, this fraction of ``X`` is kept out of the members' training and
        calibrates their p-values (members trained on it would look too normal there).
    weights : list of float, optional
        Share of the accept rate of each member (normalised to sum to 1; default: equal).
    tail_events : int
        Calibration events above the tail threshold of the peaks-over-threshold fit (default 5:
        with 50, every p-value below 5 % of 1,000 calibration events came from the fit, and the
        fused TPR at FPR 1e-3 of the study in docs/detectors.md fell well below its better member's).
    tail : {"auto", "exponential", "pareto"}
        Tail shape beyond the threshold; "auto" takes "pareto" for positive scores.
    random_state : int
        Seed of the calibration split and of members that do not set their own.
    threshold_rule : ThresholdRule, mapping or None
        How ``fit`` sets ``threshold_`` on the fused background scores (default: the 95th percentile).
    """

    name = "fusion"

    _parameter_constraints = {
        "members": [None, list],
        "combine": [Options(("max", "fisher"))],
        "weights": [None, list],
        "calibration_fraction": [Interval(float, 0, 1, "neither")],
        "tail_events": [Interval(int, 2, None)],
        "tail": [Options(("auto", "exponential", "pareto"))],
        "random_state": [Interval(int, 0, None)],
    }

    def __init__(
        self,
        *,
        members: list | None = None,
        combine: str = "max",
        weights: list | None = None,
        calibration_fraction: float = 0.25,
        tail_events: int = 5,
        tail: str = "auto",
        random_state: int = 0,
        threshold_rule: Any = None,
    ) -> None:
        self.members = members
        self.combine = combine
        self.weights = weights
        self.calibration_fraction = calibration_fraction
        self.tail_events = tail_events
        self.tail = tail
        self.random_state = random_state
        self.threshold_rule = threshold_rule

    def _make_members(self) -> list[BaseDetector]:
        raw = [copy.deepcopy(m) for m in FUSION_MEMBERS] if self.members is None else self.members
        if not raw:
            raise ConfigError("fusion: members is empty; name at least one detector.")
        out = []
        for i, spec in enumerate(raw):
            name, params = _member_spec(i, spec)
            try:
                cls = get_detector_class(name)
                if cls.supervised:
                    raise ConfigError(f"{name!r} is a supervised reference; members must be unsupervised.")
                if "random_state" in cls._param_names() and "random_state" not in params:
                    params["random_state"] = self.random_state
                det = make_detector(name, **params)
                det._validate_params()
            except ConfigError as exc:
                raise ConfigError(f"fusion: members[{i}]: {exc}") from None
            out.append(det)
        return out

    def _validate_params(self) -> None:
        super()._validate_params()
        members = self._make_members()
        self._log_weights(len(members))

    def _log_weights(self, n: int) -> np.ndarray:
        """log(n w_i) of the normalised weights: zeros for equal shares."""
        if self.weights is None:
            return np.zeros(n)
        try:
            w = np.asarray(self.weights, dtype=float)
        except (TypeError, ValueError):
            raise ConfigError(f"fusion: weights must be numbers, got {self.weights!r}.") from None
        if w.shape != (n,):
            raise ConfigError(f"fusion: weights has {w.size} entries for {n} members; give one share per member.")
        if not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ConfigError(f"fusion: weights must be positive and finite, got {self.weights!r}.")
        return np.log(n * w / w.sum())

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None, **fit_options: Any) -> None:
        members = self._make_members()
        if X_val is None:
            n_cal = int(round(self.calibration_fraction * len(X)))
            if n_cal < 2 or len(X) - n_cal < 2:
                raise InputError(
                    f"fusion: {len(X)} training events are too few to keep {self.calibration_fraction:.0%} for "
                    "calibration; give more background events or a validation set (X_val)."
                )
            order = np.random.default_rng(self.random_state).permutation(len(X))
            X_cal, X = X[order[:n_cal]], X[order[n_cal:]]
        else:
            X_cal = X_val
        for i, m in enumerate(members):
            log.info("fusion: fitting member %d/%d (%s)", i + 1, len(members), m.name)
            # The members hold their own validation split for early stopping; the calibration
            # events stay unseen by them unless the caller gave X_val.
            m.fit(X, X_val=X_val, **{k: v for k, v in fit_options.items() if k == "progress"})
        self.members_ = members
        self.calibrations_ = [
            TailCalibration.fit(m.score_samples(X_cal), tail_events=self.tail_events, tail=self.tail) for m in members
        ]
        self.n_calibration_ = int(len(X_cal))

    def fit_source(self, source: Any, *, val_source: Any = None, **run_options: Any) -> FusionDetector:
        """Fit from a batch source (streaming from files: :func:`hepad.data.fit_streaming`).

        Each member is fitted from ``source`` (members must be deep detectors); the calibration
        uses ``val_source``, else ``source.sample()``, which the members were trained on
        (biased towards small scores for members that overfit; with a million events the bias
        is small, but give held-out files when you can).
        """
        from ..thresholds import ThresholdRule
        from ..training import ArraySource

        self._validate_params()
        rule = ThresholdRule.parse(self.threshold_rule)
        self._reset_fitted()
        members = self._make_members()
        for i, m in enumerate(members):
            if not callable(getattr(m, "fit_source", None)):
                raise ConfigError(f"fusion: members[{i}] {m.name!r} cannot train from a stream; use deep members.")
            m.fit_source(source, val_source=val_source, **run_options)
        self.feature_names_in_ = list(source.feature_names)
        self.n_features_in_ = len(self.feature_names_in_)
        cal = val_source if val_source is not None else ArraySource(source.sample())
        X_cal = np.concatenate([np.asarray(c, dtype=np.float32) for c in cal.chunks()])
        self.members_ = members
        self.calibrations_ = [
            TailCalibration.fit(m.score_samples(X_cal), tail_events=self.tail_events, tail=self.tail) for m in members
        ]
        self.n_calibration_ = int(len(X_cal))
        self.set_threshold(scores=self._score(X_cal), rule=rule)
        return self

    def member_surprisals(self, X: Any) -> np.ndarray:
        """(n_members, N) background surprisals -log p of each member's score."""
        self._check_fitted()
        from .base import as_features

        Xf = as_features(X, "X")
        return np.vstack([c.surprisal(m.score_samples(Xf)) for m, c in zip(self.members_, self.calibrations_)])

    def _score(self, X: np.ndarray) -> np.ndarray:
        t = np.vstack([c.surprisal(m.score_samples(X)) for m, c in zip(self.members_, self.calibrations_)])
        lw = self._log_weights(len(self.members_))
        if self.combine == "max":
            return (t + lw[:, None]).max(axis=0)
        return (np.exp(lw)[:, None] * t).sum(axis=0)

    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        docs, arrays = [], {}
        for i, (m, c) in enumerate(zip(self.members_, self.calibrations_)):
            doc, arr = m._export_state()
            docs.append(doc)
            arrays.update({f"m{i}.{k}": v for k, v in arr.items()})
            arrays.update({f"cal{i}.{k}": v for k, v in c.to_arrays().items()})
        meta = {"members": docs, "calibrations": [c.to_meta() for c in self.calibrations_],
                "n_calibration": self.n_calibration_}
        return meta, arrays

    def _set_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        docs, cals = meta["members"], meta["calibrations"]
        if len(docs) != len(cals):
            raise ValueError("fusion: members and calibrations do not match")
        self.members_ = [detector_from_state(d, sub_arrays(arrays, f"m{i}.")) for i, d in enumerate(docs)]
        self.calibrations_ = [TailCalibration.from_state(c, sub_arrays(arrays, f"cal{i}.")) for i, c in enumerate(cals)]
        self.n_calibration_ = int(meta["n_calibration"])
