"""Ensembles of registered detectors: normalised member scores, combined or voted.

Member scores live on unrelated scales (a reconstruction error, an isolation depth, a squared
distance), so each is first normalised on background: ``rank`` maps a score to the empirical
CDF of that member's background scores (a stored, sorted quantile table; beyond its ends the
CDF is continued with the slope of its outer 1%, so outliers keep their order), ``zscore``
standardises it with the background mean and standard deviation.

The normalised scores are then combined into one ensemble score:

- ``mean`` / ``max``: the average or the largest normalised score;
- ``any`` / ``majority`` / ``unanimous``: the ATLAS seed's voting. A member votes "anomalous"
  when its normalised score exceeds a common cut ``c``; the ensemble accepts when at least
  ``k`` members vote (``any``: k=1, ``unanimous``: k=all, ``majority``: ``min_votes``,
  by default at least 2 as in the seed, and at least half). That is exactly
  "the k-th largest normalised score > c", so the ensemble score is that order statistic and
  ``threshold_`` is the common cut: ``predict``, ``set_threshold(fpr=...)`` and every
  evaluation metric work unchanged, and the vote is calibrated to the requested background
  rate as a whole.

:meth:`EnsembleDetector.member_predictions` gives each member's own decision at its own
``threshold_``, set by the same rule as the ensemble's.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ConfigError
from .base import BaseDetector, Interval, Options, as_features, sub_arrays
from .registry import detector_from_state, get_detector_class, make_detector

log = logging.getLogger(__name__)

__all__ = ["EnsembleDetector", "DEFAULT_MEMBERS"]

#: The ATLAS seed's ensemble: autoencoder + isolation forest + one-class SVM + elliptic envelope.
DEFAULT_MEMBERS: tuple[dict[str, Any], ...] = (
    {"detector": "ae"},
    {"detector": "iforest"},
    {"detector": "ocsvm"},
    {"detector": "mahalanobis"},
)

_VOTES = ("any", "majority", "unanimous")


def _member_spec(i: int, spec: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict):
        extra = set(spec) - {"detector", "params"}
        if extra or "detector" not in spec:
            raise ConfigError(
                f"ensemble: members[{i}] must be a detector name or a mapping with keys 'detector' "
                f"and optional 'params', got keys {sorted(spec)}."
            )
        params = spec.get("params") or {}
        if not isinstance(params, dict):
            raise ConfigError(f"ensemble: members[{i}].params must be a mapping, got {params!r}.")
        return str(spec["detector"]), dict(params)
    raise ConfigError(f"ensemble: members[{i}] must be a detector name or a mapping, got {spec!r}.")


def _rank_table(scores: np.ndarray, n_quantiles: int) -> np.ndarray:
    n = max(2, min(int(n_quantiles), scores.size))
    return np.quantile(scores.astype(np.float64), np.linspace(0.0, 1.0, n))


def _tail_slopes(q: np.ndarray) -> tuple[float, float]:
    """CDF slopes of the lowest and highest 1% of the table, used to continue it beyond its ends."""
    n = q.size
    p = np.linspace(0.0, 1.0, n)
    j = min(n - 2, max(1, int(round(0.01 * (n - 1)))))
    span = q[-1] - q[0]
    eps = span * 1e-9 if span > 0 else 1e-12

    def slope(dp: float, dq: float) -> float:
        return float(dp / dq) if dq > eps else float(dp / eps)

    return slope(p[j] - p[0], q[j] - q[0]), slope(p[-1] - p[n - 1 - j], q[-1] - q[n - 1 - j])


def _rank(s: np.ndarray, q: np.ndarray, slope_lo: float, slope_hi: float) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    n = q.size
    p = np.linspace(0.0, 1.0, n)
    i = np.clip(np.searchsorted(q, s, side="right"), 1, n - 1)
    lo, hi = q[i - 1], q[i]
    width = hi - lo
    frac = np.where(width > 0, (s - lo) / np.where(width > 0, width, 1.0), 1.0)
    r = p[i - 1] + np.clip(frac, 0.0, 1.0) * (p[i] - p[i - 1])
    r = np.where(s > q[-1], 1.0 + slope_hi * (s - q[-1]), r)
    return np.where(s < q[0], -slope_lo * (q[0] - s), r)


class EnsembleDetector(BaseDetector):
    """Several registered detectors, normalised on background and combined or voted.

    Parameters
    ----------
    members : list, optional
        Member detectors: registry names or mappings ``{"detector": name, "params": {...}}``.
        Default: the ATLAS seed's ``ae``, ``iforest``, ``ocsvm``, ``mahalanobis``.
    normalization : {"rank", "zscore"}
        Per-member score normalisation on background (see the module notes).
    combine : {"mean", "max", "any", "majority", "unanimous"}
        How normalised scores become the ensemble score; the last three are votes.
    min_votes : int, optional
        Votes needed for ``combine="majority"`` (default: max(2, ceil(n_members / 2))).
    n_quantiles : int
        Size of each member's background quantile table (``rank``).
    preprocessing : dict, optional
        Preprocessing for members that do not set their own.
    random_state : int
        Seed for members that do not set their own.

    Notes
    -----
    The normalisation is calibrated on ``X_val`` when given, else on the training events
    (biased low for members that memorise their training sample, e.g. ``knn``, or overfit).
    """

    name = "ensemble"

    _parameter_constraints = {
        "members": [None, list],
        "normalization": [Options(("rank", "zscore"))],
        "combine": [Options(("mean", "max") + _VOTES)],
        "min_votes": [None, Interval(int, 1, None)],
        "n_quantiles": [Interval(int, 2, None)],
        "random_state": [Interval(int, 0, None)],
    }

    def __init__(
        self,
        *,
        members: list | None = None,
        normalization: str = "rank",
        combine: str = "mean",
        min_votes: int | None = None,
        n_quantiles: int = 10_000,
        preprocessing: dict | None = None,
        random_state: int = 0,
        threshold_rule: Any = None,
    ) -> None:
        self.members = members
        self.normalization = normalization
        self.combine = combine
        self.min_votes = min_votes
        self.n_quantiles = n_quantiles
        self.preprocessing = preprocessing
        self.random_state = random_state
        self.threshold_rule = threshold_rule

    # ------------------------------------------------------------------ members
    def _specs(self) -> list[tuple[str, dict[str, Any]]]:
        raw = list(DEFAULT_MEMBERS) if self.members is None else self.members
        if not raw:
            raise ConfigError("ensemble: members is empty; name at least one detector.")
        return [_member_spec(i, s) for i, s in enumerate(raw)]

    def _make_members(self) -> list[BaseDetector]:
        out = []
        for i, (name, params) in enumerate(self._specs()):
            try:
                cls = get_detector_class(name)
            except ConfigError as exc:
                raise ConfigError(f"ensemble: members[{i}]: {exc}") from None
            if cls.supervised:
                raise ConfigError(f"ensemble: members[{i}] {name!r} is a supervised reference; members must be unsupervised.")
            names = cls._param_names()
            params = copy.deepcopy(params)
            if "preprocessing" in names and "preprocessing" not in params and self.preprocessing is not None:
                params["preprocessing"] = copy.deepcopy(self.preprocessing)
            if "random_state" in names and "random_state" not in params:
                params["random_state"] = self.random_state
            try:
                det = make_detector(name, **params)
                det._validate_params()
            except ConfigError as exc:
                raise ConfigError(f"ensemble: members[{i}]: {exc}") from None
            out.append(det)
        return out

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.min_votes is not None and self.min_votes > len(self._specs()):
            raise ConfigError(f"ensemble: min_votes={self.min_votes} exceeds the {len(self._specs())} members.")
        self._make_members()  # checks every member name and parameter before any fitting

    @staticmethod
    def _labels(members: list[BaseDetector]) -> list[str]:
        labels, seen = [], {}
        for m in members:
            seen[m.name] = seen.get(m.name, 0) + 1
            labels.append(m.name if seen[m.name] == 1 else f"{m.name}#{seen[m.name]}")
        return labels

    # ------------------------------------------------------------------ fit / score
    def _fit(self, X: np.ndarray, X_val: np.ndarray | None, **fit_options: Any) -> None:
        members = self._make_members()
        labels = self._labels(members)
        progress: Callable | None = fit_options.pop("progress", None)
        ckpt = fit_options.pop("checkpoint_dir", None)
        for i, (m, label) in enumerate(zip(members, labels)):
            opts = dict(fit_options)
            if ckpt is not None:
                from pathlib import Path

                opts["checkpoint_dir"] = Path(ckpt) / f"m{i}-{label.replace('#', '-')}"
            if progress is not None:
                opts["progress"] = _member_progress(progress, label)
            log.info("ensemble: fitting member %d/%d (%s)", i + 1, len(members), label)
            m.fit(X, X_val=X_val, **opts)
        self.members_ = members
        self.member_names_ = labels
        bkg = X_val if X_val is not None else X
        raw = [m.score_samples(bkg).astype(np.float64) for m in members]
        if self.normalization == "rank":
            self.quantiles_ = [_rank_table(r, self.n_quantiles) for r in raw]
            self.tail_slopes_ = [_tail_slopes(q) for q in self.quantiles_]
        else:
            self.score_mean_ = [float(r.mean()) for r in raw]
            self.score_std_ = [float(r.std()) if r.std() > 0 else 1.0 for r in raw]

    def _k(self) -> int:
        n = len(self.members_)
        if self.combine == "any":
            return 1
        if self.combine == "unanimous":
            return n
        return min(n, self.min_votes if self.min_votes is not None else max(2, math.ceil(n / 2)))

    def _raw(self, X: np.ndarray) -> list[np.ndarray]:
        return [m.score_samples(X).astype(np.float64) for m in self.members_]

    def _normalize(self, raw: list[np.ndarray]) -> np.ndarray:
        if self.normalization == "rank":
            rows = [_rank(r, q, *sl) for r, q, sl in zip(raw, self.quantiles_, self.tail_slopes_)]
        else:
            rows = [(r - mu) / sd for r, mu, sd in zip(raw, self.score_mean_, self.score_std_)]
        return np.vstack(rows)

    def _combine(self, norm: np.ndarray) -> np.ndarray:
        if self.combine == "mean":
            return norm.mean(axis=0)
        if self.combine in ("max", "any"):
            return norm.max(axis=0)
        # the k-th largest normalised score: > cut exactly when at least k members vote
        return np.sort(norm, axis=0)[-self._k()]

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self._combine(self._normalize(self._raw(X)))

    def set_threshold(self, X_background: Any = None, *, scores: np.ndarray | None = None, rule: Any = None,
                      **rule_options: Any) -> EnsembleDetector:
        """Set the ensemble's ``threshold_`` and, given events, each member's by the same rule.

        ``rule_options``: one of percentile, sigma, rate_hz (with collision_rate_hz), fpr.
        """
        rule = self._rule_of(rule, **rule_options)
        if scores is None and X_background is not None:
            self._check_fitted()
            Xf = as_features(X_background, "X_background")
            raw = self._raw(Xf)
            for m, r in zip(self.members_, raw):
                m.set_threshold(scores=r, rule=rule)
            scores = self._combine(self._normalize(raw)).astype(np.float32)
        super().set_threshold(scores=scores, rule=rule)
        return self

    # ------------------------------------------------------------------ inspection
    def member_scores(self, X: Any, *, normalized: bool = False) -> dict[str, np.ndarray]:
        """Each member's score (raw, or normalised on background), by member name."""
        self._check_fitted()
        raw = self._raw(as_features(X, "X"))
        rows = self._normalize(raw) if normalized else raw
        return {n: np.asarray(r, dtype=np.float32) for n, r in zip(self.member_names_, rows)}

    def member_predictions(self, X: Any) -> dict[str, np.ndarray]:
        """Each member's 0/1 decision at its own ``threshold_``, by member name."""
        self._check_fitted()
        Xf = as_features(X, "X")
        return {n: m.predict(Xf) for n, m in zip(self.member_names_, self.members_)}

    def n_votes(self, X: Any) -> np.ndarray:
        """How many members' normalised scores exceed the ensemble cut ``threshold_``.

        For ``combine`` = any / majority / unanimous, ``predict`` is 1 exactly when this
        reaches 1 / ``min_votes`` / all members.
        """
        self._check_fitted()
        norm = self._normalize(self._raw(as_features(X, "X"))).astype(np.float32)
        return (norm > self.threshold_).sum(axis=0).astype(np.int16)

    # ------------------------------------------------------------------ state
    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        docs, arrays = [], {}
        for i, m in enumerate(self.members_):
            doc, arr = m._export_state()
            docs.append(doc)
            arrays.update({f"m{i}.{k}": v for k, v in arr.items()})
        meta: dict[str, Any] = {"member_names": list(self.member_names_), "members": docs}
        if self.normalization == "rank":
            for i, q in enumerate(self.quantiles_):
                arrays[f"norm{i}.quantiles"] = q
            meta["tail_slopes"] = [list(s) for s in self.tail_slopes_]
        else:
            meta["score_mean"] = list(self.score_mean_)
            meta["score_std"] = list(self.score_std_)
        return meta, arrays

    def _set_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        docs = meta["members"]
        self.members_ = [detector_from_state(d, sub_arrays(arrays, f"m{i}.")) for i, d in enumerate(docs)]
        self.member_names_ = [str(n) for n in meta["member_names"]]
        if len(self.member_names_) != len(self.members_):
            raise ValueError("ensemble: member names do not match the members")
        if self.normalization == "rank":
            self.quantiles_ = [arrays[f"norm{i}.quantiles"].astype(np.float64) for i in range(len(docs))]
            self.tail_slopes_ = [tuple(float(v) for v in s) for s in meta["tail_slopes"]]
        else:
            self.score_mean_ = [float(v) for v in meta["score_mean"]]
            self.score_std_ = [float(v) for v in meta["score_std"]]


def _member_progress(progress: Callable, label: str) -> Callable:
    def cb(epoch: int, n_epochs: int, logs: dict) -> None:
        progress(epoch, n_epochs, {**dict(logs or {}), "member": label})

    return cb
