"""The one detector interface: a scikit-learn estimator with a fitted threshold.

Every detector is a scikit-learn ``BaseEstimator`` with outlier-detector semantics:
``fit(X, y=None, *, X_val=None) -> self``, ``score_samples(X)`` (higher = more anomalous, the
PyOD convention, also given by ``decision_function``), a fitted ``threshold_`` set on
background scores by the ``threshold_rule`` parameter (a :class:`hepad.thresholds.ThresholdRule`,
like PyOD's ``contamination``), ``predict(X)`` in {0, 1} and ``fit_predict``. ``clone``,
``Pipeline`` and ``check_is_fitted`` work on every detector.

``__init__`` only stores keyword-only parameters (scikit-learn style); nothing is validated,
seeded or allocated there. Parameters are checked from one declared table,
``_parameter_constraints``, by :meth:`BaseDetector._validate_params` (when ``fit`` runs and when
a model file is loaded). Everything learned in ``fit`` ends with ``_``.

The registry (names -> classes) is :mod:`hepad.detectors.registry`.
"""

from __future__ import annotations

import inspect
import logging
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.base import clone as _sk_clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError

from ..errors import ConfigError, InputError, NotFittedError, closest
from ..events import EventSet
from ..rates import COLLISION_RATE_HZ
from ..thresholds import ThresholdRule, threshold_from_scores
from .registry import (  # noqa: F401 (re-exported)
    DEFAULT_DETECTOR,
    PRESETS,
    TRIGGER_DETECTOR,
    available_detectors,
    detector_from_state,
    get_detector_class,
    make_detector,
)

log = logging.getLogger(__name__)

__all__ = [
    "COLLISION_RATE_HZ",
    "BaseDetector",
    "Interval",
    "Options",
    "detector_from_state",
    "as_features",
    "threshold_from_scores",
    "check_arrays",
    "sub_arrays",
]


def as_features(X: Any, name: str = "X") -> np.ndarray:
    """Model inputs as a C-contiguous float32 (N, F) array from an EventSet or an array.

    The ADC2021 (N, 19, 4) layout becomes its 57 (pT, eta, phi) inputs.
    """
    if isinstance(X, EventSet):
        arr = X.features
    else:
        if hasattr(X, "tocsr") or hasattr(X, "todense"):
            raise InputError(f"{name} is a sparse matrix; sparse input is not supported: pass X.toarray().")
        arr = np.asarray(X)
        if np.iscomplexobj(arr):
            raise InputError(f"{name} holds complex numbers: Complex data not supported.")
        if arr.ndim == 3 and arr.shape[1:] == (19, 4):
            arr = arr[:, :, :3].reshape(len(arr), 57)
    if arr.ndim != 2:
        hint = " Reshape your data: X.reshape(1, -1) for one event." if arr.ndim == 1 else ""
        raise InputError(f"{name} has shape {arr.shape}; expected (N, F) features or (N, 19, 4) objects.{hint}")
    if arr.shape[0] == 0:
        raise InputError(f"{name} holds no events.")
    if arr.shape[1] == 0:
        raise InputError(f"{name} has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required.")
    try:
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} holds values that are not numbers (dtype {arr.dtype}: {exc}).") from None
    if not np.isfinite(arr).all():
        raise InputError(f"{name} holds NaN or infinite values; drop them first (drop_invalid=True when reading).")
    return arr


def check_training_events(X: Any, Xf: np.ndarray) -> None:
    """Refuse training sets no detector can learn background from, naming the source."""
    src = X.source if isinstance(X, EventSet) else "the training events"
    if len(Xf) < 2:
        raise InputError(
            f"{src}: the training set holds {len(Xf)} event (n_samples = {len(Xf)}); a detector learns the background from many "
            "events (thousands). Pass a background file with more events."
        )
    if not Xf.any():
        raise InputError(
            f"{src}: every feature of all {len(Xf)} training events is zero (all-zero columns): the events hold "
            "no objects. Check the file, --key or --columns."
        )


def check_feature_names(X: Any, trained: Sequence[str], name: str) -> None:
    """Refuse events whose named features differ from those the detector was trained on."""
    if not isinstance(X, EventSet) or all(n == f"f{i}" for i, n in enumerate(trained)):
        return  # bare arrays carry no names; a model fitted on a bare array has none to compare
    got = list(X.feature_names)
    if got != list(trained):
        diff = next((i for i, (a, b) in enumerate(zip(got, trained)) if a != b), min(len(got), len(trained)))
        shown = lambda names: ", ".join(names[diff:diff + 3]) or "(none)"  # noqa: E731
        raise InputError(
            f"{X.source}: its features differ from the ones {name} was trained on, from feature {diff} on "
            f"(file: {shown(got)}; model: {shown(list(trained))}). Score events with the training set's "
            "columns (same --columns/--key and format)."
        )


def feature_names_of(X: Any, n_features: int) -> list[str]:
    """The input names of ``X``: an EventSet's, the ADC2021 flat names for 57 columns, else f0..."""
    if isinstance(X, EventSet):
        return list(X.feature_names)
    if n_features == 57:
        # A bare 57-column array is taken as the ADC2021 flat inputs (as the seeds' X_train is),
        # so pT-aware preprocessing (log pT, padding mask) works on it too.
        from .._layout import FLAT57_NAMES

        return list(FLAT57_NAMES)
    return [f"f{i}" for i in range(n_features)]


@dataclass(frozen=True)
class Interval:
    """A numeric parameter constraint: ``kind`` is ``int`` or ``float``; bounds may be None."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"  # "both", "left", "right", "neither"

    def accepts(self, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            return False
        if self.kind is int and not isinstance(v, numbers.Integral):
            return False
        if not math.isfinite(float(v)):
            return False
        lo_ok = self.low is None or (v >= self.low if self.closed in ("both", "left") else v > self.low)
        hi_ok = self.high is None or (v <= self.high if self.closed in ("both", "right") else v < self.high)
        return lo_ok and hi_ok

    def describe(self) -> str:
        name = "an integer" if self.kind is int else "a number"
        lo = "" if self.low is None else ("{} >= {}" if self.closed in ("both", "left") else "{} > {}").format("", self.low)
        hi = "" if self.high is None else ("{} <= {}" if self.closed in ("both", "right") else "{} < {}").format("", self.high)
        bounds = " and".join(b for b in (lo, hi) if b)
        return f"{name}{bounds}" if bounds else name


@dataclass(frozen=True)
class Options:
    """A parameter constraint: one of a fixed set of values."""

    values: tuple

    def accepts(self, v: Any) -> bool:
        return any(v == o and type(v) is type(o) for o in self.values)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.values)


def _constraint_accepts(c: Any, v: Any) -> bool:
    if c is None:
        return v is None
    if isinstance(c, (Interval, Options)):
        return c.accepts(v)
    if c is bool:
        return isinstance(v, bool)
    if isinstance(c, type):
        return isinstance(v, c) and not (c is not bool and isinstance(v, bool) and c in (int, float))
    if callable(c):
        return bool(c(v))
    raise TypeError(f"bad constraint {c!r}")


def _constraint_text(c: Any) -> str:
    if c is None:
        return "None"
    if isinstance(c, (Interval, Options)):
        return c.describe()
    if isinstance(c, type):
        return {bool: "true/false", dict: "a mapping", list: "a list", str: "a string"}.get(c, c.__name__)
    return getattr(c, "__doc__", None) or getattr(c, "__name__", repr(c))


class DetectorNotFittedError(NotFittedError, SklearnNotFittedError):
    """A detector was used before ``fit``: hepad's error, and scikit-learn's (for its checks)."""


class BaseDetector(OutlierMixin, BaseEstimator):
    """Base class of every registered detector.

    Subclasses implement ``_fit(X, X_val)`` (or ``_fit_supervised(X, y, X_val)``) and
    ``_score(X)`` on float32 (N, F) arrays, declare their parameters as keyword-only
    ``__init__`` arguments with defaults (``threshold_rule=None`` among them) and their
    constraints in ``_parameter_constraints``, and set ``name`` to their registry key.
    """

    #: registry key (the one :mod:`hepad.detectors.registry` lists the class under)
    name: ClassVar[str] = ""
    #: True for detectors that need signal labels in ``fit`` (supervised references)
    supervised: ClassVar[bool] = False
    #: parameter name -> list of accepted constraints (``Interval``, ``Options``, a type, None,
    #: or a predicate whose docstring says what it accepts), checked when ``fit`` runs and when
    #: a model is loaded (never in ``__init__``), as scikit-learn's declared constraints.
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {}

    # ------------------------------------------------------------------ parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        """The constructor parameters, in signature order."""
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]

    def set_params(self, **params: Any) -> BaseDetector:
        """Set constructor parameters; an unknown name is a ConfigError listing the valid ones."""
        valid = self._param_names()
        for k, v in params.items():
            if k not in valid:
                raise ConfigError(f"{self.name or type(self).__name__}: unknown parameter {k!r}.{closest(k, valid)} Valid: {', '.join(valid)}.")
            setattr(self, k, v)
        return self

    def clone(self) -> BaseDetector:
        """An unfitted copy with the same parameters (:func:`sklearn.base.clone`)."""
        return _sk_clone(self)

    def _validate_params(self) -> None:
        """Check every parameter against ``_parameter_constraints``; raise ConfigError naming it.

        Called by ``fit`` and by ``hepad.load`` (a forged model file gets the same error).
        """
        label = self.name or type(self).__name__
        for key, allowed in self._parameter_constraints.items():
            value = getattr(self, key)
            if not any(_constraint_accepts(c, value) for c in allowed):
                expected = " or ".join(_constraint_text(c) for c in allowed)
                words = [str(o) for c in allowed if isinstance(c, Options) for o in c.values]
                hint = closest(value, words) if isinstance(value, str) else ""
                raise ConfigError(f"{label}: parameter {key}={value!r} is invalid; expected {expected}.{hint}")
        try:
            ThresholdRule.parse(getattr(self, "threshold_rule", None))
        except ConfigError as exc:
            raise ConfigError(f"{label}: parameter threshold_rule: {exc}") from None
        prep = getattr(self, "preprocessing", None)
        if prep is not None:
            if not isinstance(prep, dict):
                raise ConfigError(f"{label}: preprocessing must be a mapping of Preprocessor options, got {prep!r}.")
            from ..preprocessing import Preprocessor

            valid = list(Preprocessor().get_params())
            for k in prep:
                if k not in valid:
                    raise ConfigError(
                        f"{label}: unknown preprocessing option {k!r}.{closest(str(k), valid)} Valid: {', '.join(valid)}."
                    )

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.target_tags.required = bool(self.supervised)
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "threshold_")

    # ------------------------------------------------------------------ API
    def fit(self, X: Any, y: Any = None, *, X_val: Any = None, **fit_options: Any) -> BaseDetector:
        """Learn background from ``X`` (validating on ``X_val``) and set ``threshold_``. Returns self.

        Parameters
        ----------
        X : EventSet or array, (N, F) or (N, 19, 4)
            Background events (supervised references: the labelled mix).
        y : array of int, optional
            Labels, 0 background / 1 signal: needed by supervised references (else taken from
            ``X.labels``); ignored by the unsupervised detectors, as scikit-learn's outlier
            detectors do.
        X_val : EventSet or array, optional
            Held-out background: monitors early stopping of deep models, and the threshold is
            set on it (else on the background of ``X``).
        **fit_options
            Run options of some detectors (``checkpoint_dir``, ``resume``, ``progress`` for the
            deep ones), never model parameters.
        """
        self._validate_params()
        rule = ThresholdRule.parse(getattr(self, "threshold_rule", None))
        y = self._check_y(X, y)
        Xf = as_features(X, "X")
        check_training_events(X, Xf)
        Xv = None if X_val is None else as_features(X_val, "X_val")
        self._reset_fitted()
        self.feature_names_in_ = feature_names_of(X, Xf.shape[1])
        self.n_features_in_ = Xf.shape[1]
        if self.supervised:
            if y.shape != (len(Xf),):
                raise InputError(f"{self.name}: {len(y)} labels for {len(Xf)} events.")
            self._fit_supervised(Xf, y, Xv, **fit_options)
        else:
            self._fit(Xf, Xv, **fit_options)
        bkg = Xv if Xv is not None else (Xf[y == 0] if self.supervised else Xf)
        self.set_threshold(bkg, rule=rule)
        return self

    def _check_y(self, X: Any, y: Any) -> np.ndarray | None:
        if not self.supervised:
            if y is not None and (isinstance(y, EventSet) or np.asarray(y).ndim != 1):
                raise ConfigError(
                    f"{self.name}: fit(X, y) got events as y; held-out background is keyword-only: "
                    "fit(X, X_val=events)."
                )
            return None
        if y is None and isinstance(X, EventSet):
            y = X.labels
        if y is None:
            raise ConfigError(f"{self.name}: a supervised reference needs labels y (0 background, 1 signal).")
        y = np.asarray(y).astype(np.int64).ravel()
        if set(np.unique(y).tolist()) != {0, 1}:
            raise InputError(f"{self.name}: labels must hold both 0 (background) and 1 (signal), got {sorted(set(np.unique(y).tolist()))}.")
        return y

    def score_samples(self, X: Any) -> np.ndarray:
        """Anomaly score per event, float32; higher means more anomalous."""
        self._check_fitted()
        Xf = as_features(X, "X")
        check_feature_names(X, self.feature_names_in_, self.name or type(self).__name__)
        if Xf.shape[1] != self.n_features_in_:
            raise InputError(
                f"{self.name}: X has {Xf.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input (the model was trained on {self.n_features_in_})."
            )
        return np.asarray(self._score(Xf), dtype=np.float32)

    def decision_function(self, X: Any) -> np.ndarray:
        """The anomaly scores, as PyOD's ``decision_function``: higher means more anomalous."""
        return self.score_samples(X)

    def _threshold_on_source(self, source: Any, val_source: Any, rule: Any) -> None:
        """After a fit from a batch source: the threshold by ``rule`` on the scores of
        ``val_source``, else of ``source.sample()`` (the events the fit started from)."""
        from ..training import ArraySource

        bkg = val_source if val_source is not None else ArraySource(source.sample())
        self.set_threshold(scores=np.concatenate([self.score_samples(chunk) for chunk in bkg.chunks()]), rule=rule)

    def set_threshold(
        self,
        X_background: Any = None,
        *,
        scores: np.ndarray | None = None,
        rule: Any = None,
        percentile: float | None = None,
        sigma: float | None = None,
        rate_hz: float | None = None,
        fpr: float | None = None,
        collision_rate_hz: float | None = None,
    ) -> BaseDetector:
        """Set ``threshold_`` on background events (or their precomputed ``scores``).

        The rule is ``rule`` (anything :meth:`ThresholdRule.parse` reads) or one keyword of
        percentile / sigma / rate_hz (with collision_rate_hz) / fpr.
        """
        rule = self._rule_of(rule, percentile, sigma, rate_hz, fpr, collision_rate_hz)
        if scores is None:
            if X_background is None:
                raise ConfigError("set_threshold needs background events or their scores.")
            scores = self.score_samples(X_background)
        self.threshold_ = rule.threshold(scores)
        self.threshold_rule_ = rule
        # The upper tail of the same background scores: a streaming trigger starts from the cut
        # at its own target rate (hepad.trigger), not from this threshold.
        from ..thresholds import score_quantiles

        s = np.asarray(scores, dtype=np.float64)
        self.background_quantiles_ = score_quantiles(s) if np.isfinite(s).sum() >= 2 else None
        return self

    @staticmethod
    def _rule_of(rule: Any = None, percentile: float | None = None, sigma: float | None = None,
                 rate_hz: float | None = None, fpr: float | None = None,
                 collision_rate_hz: float | None = None) -> ThresholdRule:
        given = ThresholdRule.from_options(percentile=percentile, sigma=sigma, rate_hz=rate_hz, fpr=fpr,
                                           collision_rate_hz=collision_rate_hz)
        if given is not None and rule is not None:
            raise ConfigError("Give the threshold rule once: rule= or one of percentile/sigma/rate_hz/fpr.")
        if given is None and rule is None:
            raise ConfigError("Give a threshold rule: rule= or one of percentile, sigma, rate_hz, fpr.")
        return given if given is not None else ThresholdRule.parse(rule)

    def predict(self, X: Any) -> np.ndarray:
        """1 for events scoring above ``threshold_`` (anomalous), else 0 (the PyOD convention)."""
        scores = self.score_samples(X)
        return (scores > self.threshold_).astype(np.int8)

    def fit_predict(self, X: Any, y: Any = None, **fit_kwargs: Any) -> np.ndarray:
        """``fit(X, y, **fit_kwargs).predict(X)``: 1 for anomalous events of ``X``, else 0."""
        return self.fit(X, y, **fit_kwargs).predict(X)

    def save(self, path: str | os.PathLike[str], *, metadata: dict[str, Any] | None = None) -> Path:
        """Write the fitted detector to the model directory ``path`` (see :func:`hepad.artifact.save`)."""
        from ..artifact import save

        return save(self, path, metadata=metadata)

    # ------------------------------------------------------------------ state protocol (no pickle)
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-able learned metadata and named numeric arrays of the detector-specific fit.

        The common fitted attributes (features, threshold, preprocessor, history) are handled
        by the base class; override this in every detector.
        """
        return {}, {}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Rebuild the fitted detector from :meth:`_get_state` output on a fresh instance."""

    def _common_state(self) -> dict[str, Any]:
        self._check_fitted()
        pre = getattr(self, "preprocessor_", None)
        hist = getattr(self, "history_", None)
        rule = getattr(self, "threshold_rule_", None)
        return {
            "n_features_in": int(self.n_features_in_),
            "feature_names_in": [str(n) for n in self.feature_names_in_],
            "threshold": float(self.threshold_),
            "threshold_rule": {} if rule is None else dict(rule),
            "background_quantiles": getattr(self, "background_quantiles_", None),
            "preprocessor": None if pre is None else pre.to_dict(),
            "history": None if hist is None else _jsonable_history(hist),
        }

    def _set_common_state(self, common: dict[str, Any]) -> None:
        from ..preprocessing import Preprocessor

        self.n_features_in_ = int(common["n_features_in"])
        self.feature_names_in_ = [str(n) for n in common["feature_names_in"]]
        if len(self.feature_names_in_) != self.n_features_in_:
            raise ValueError("feature_names_in does not match n_features_in")
        self.threshold_ = float(common["threshold"])
        rule = common.get("threshold_rule")
        self.threshold_rule_ = ThresholdRule.parse(rule) if rule else None
        self.background_quantiles_ = common.get("background_quantiles")
        if common.get("preprocessor") is not None:
            self.preprocessor_ = Preprocessor.from_dict(common["preprocessor"])
        if common.get("history") is not None:
            self.history_ = {str(k): list(v) for k, v in common["history"].items()}

    def _export_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Everything needed to rebuild this fitted detector: a JSON-able document and arrays."""
        self._check_fitted()
        meta, arrays = self._get_state()
        doc = {"name": self.name, "params": self.get_params(deep=False), "fitted": self._common_state(), "meta": meta}
        return doc, dict(arrays)

    def _reset_fitted(self) -> None:
        # A refit must not keep attributes (history, preprocessor) of an earlier fit.
        for k in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, k)

    # ------------------------------------------------------------------ to implement
    def _fit(self, X: np.ndarray, X_val: np.ndarray | None, **fit_options: Any) -> None:
        raise NotImplementedError

    def _fit_supervised(
        self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None, **fit_options: Any
    ) -> None:
        raise NotImplementedError

    def _make_preprocessor(self, X: np.ndarray) -> Any:
        """Fit ``self.preprocessor_`` on background ``X`` from the ``preprocessing`` parameter."""
        from ..preprocessing import Preprocessor

        opts = dict(getattr(self, "preprocessing", None) or {})
        try:
            self.preprocessor_ = Preprocessor(**opts)
        except TypeError as exc:
            raise ConfigError(f"{self.name}: bad preprocessing options {opts}: {exc}.") from None
        self.preprocessor_.fit(X, getattr(self, "feature_names_in_", None))
        return self.preprocessor_

    def _score(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "threshold_")

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise DetectorNotFittedError(
                f"{self.name or type(self).__name__} is not fitted: call fit(X) first or load a saved model with hepad.load(path)."
            )

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
        return f"{type(self).__name__}({params})"


def ignore_fit_options(name: str, fit_options: dict[str, Any]) -> None:
    """Log (debug) run options that a detector without training loop ignores."""
    # Run options of deep models (progress, checkpoint_dir, resume) mean nothing to the others.
    if fit_options:
        log.debug("%s ignores fit options %s", name, sorted(fit_options))


def _jsonable_history(hist: dict[str, Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for k, values in hist.items():
        row = []
        for v in list(values):
            if isinstance(v, (np.floating, float)):
                v = float(v)
                row.append(v if math.isfinite(v) else None)  # JSON has no NaN/inf
            elif isinstance(v, (np.integer,)):
                row.append(int(v))
            else:
                row.append(v)
        out[str(k)] = row
    return out


def sub_arrays(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays whose names start with ``prefix``, with the prefix removed."""
    n = len(prefix)
    return {k[n:]: v for k, v in arrays.items() if k.startswith(prefix)}


def check_arrays(name: str, arrays: dict[str, np.ndarray], required: Sequence[str]) -> None:
    """Raise ValueError naming missing saved arrays (caught and reported by ``hepad.load``)."""
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ValueError(f"{name}: saved arrays missing: {', '.join(missing)}")
