"""The one detector interface, the registry, and threshold setting.

Every detector: ``fit(X, X_val=None) -> self``, ``score_samples(X)`` (higher = more anomalous),
a fitted ``threshold_`` set on background scores, and ``predict(X)`` in {0, 1}.

``__init__`` only stores keyword-only parameters (scikit-learn style); nothing is validated,
seeded or allocated there. Everything learned in ``fit`` ends with ``_``.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import numbers
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError, InputError, NotFittedError, closest
from ..events import EventSet

log = logging.getLogger(__name__)

#: The LHC bunch-crossing rate seen by the L1 trigger, in Hz.
COLLISION_RATE_HZ = 40e6

#: The detector ``hepad.train`` and ``hepad train`` use when none is named.
DEFAULT_DETECTOR = "ae"

__all__ = [
    "COLLISION_RATE_HZ",
    "DEFAULT_DETECTOR",
    "BaseDetector",
    "Interval",
    "Options",
    "detector_from_state",
    "register_preset",
    "as_features",
    "threshold_from_scores",
    "register",
    "get_detector_class",
    "make_detector",
    "available_detectors",
    "PRESETS",
]


def as_features(X: Any, name: str = "X") -> np.ndarray:
    """Model inputs as a C-contiguous float32 (N, F) array from an EventSet or an array.

    The ADC2021 (N, 19, 4) layout becomes its 57 (pT, eta, phi) inputs.
    """
    if isinstance(X, EventSet):
        arr = X.features
    else:
        arr = np.asarray(X)
        if arr.ndim == 3 and arr.shape[1:] == (19, 4):
            arr = arr[:, :, :3].reshape(len(arr), 57)
    if arr.ndim != 2:
        raise InputError(f"{name} has shape {arr.shape}; expected (N, F) features or (N, 19, 4) objects.")
    if arr.shape[0] == 0:
        raise InputError(f"{name} holds no events.")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise InputError(f"{name} holds NaN or infinite values; drop them first (--drop-invalid).")
    return arr


def _feature_names(X: Any, n_features: int) -> list[str]:
    if isinstance(X, EventSet):
        return list(X.feature_names)
    if n_features == 57:
        # A bare 57-column array is taken as the ADC2021 flat inputs (as the seeds' X_train is),
        # so pT-aware preprocessing (log pT, padding mask) works on it too.
        from .._layout import FLAT57_NAMES

        return list(FLAT57_NAMES)
    return [f"f{i}" for i in range(n_features)]


def threshold_from_scores(
    scores: np.ndarray,
    *,
    percentile: float | None = None,
    sigma: float | None = None,
    rate_hz: float | None = None,
    fpr: float | None = None,
    collision_rate_hz: float = COLLISION_RATE_HZ,
) -> float:
    """A cut on background ``scores``: exactly one of percentile, sigma, rate_hz or fpr.

    - ``percentile``: the given percentile of the background scores (the seeds use 95);
    - ``sigma``: mean + sigma * std of the background scores;
    - ``rate_hz``: accept this rate of a ``collision_rate_hz`` stream (an FPR of rate/collision rate);
    - ``fpr``: accept this fraction of background.

    Events with ``score > threshold`` are predicted anomalous.
    """
    given = {k: v for k, v in dict(percentile=percentile, sigma=sigma, rate_hz=rate_hz, fpr=fpr).items() if v is not None}
    if len(given) != 1:
        raise ConfigError(
            f"Give exactly one of percentile, sigma, rate_hz or fpr to set a threshold (got {sorted(given) or 'none'})."
        )
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise InputError("No background scores to set a threshold on.")
    if percentile is not None:
        if not 0 < percentile < 100:
            raise ConfigError(f"percentile must be in (0, 100), got {percentile}.")
        from ..metrics import threshold_at_fpr

        # The cut above which at most (100 - percentile) % of background lies.
        return threshold_at_fpr(scores, 1.0 - percentile / 100.0)[0]
    if sigma is not None:
        return float(scores.mean() + sigma * scores.std())
    if rate_hz is not None:
        if rate_hz <= 0 or collision_rate_hz <= 0:
            raise ConfigError(f"rate_hz and collision_rate_hz must be positive, got {rate_hz}, {collision_rate_hz}.")
        fpr = rate_hz / collision_rate_hz
    assert fpr is not None
    if not 0 < fpr < 1:
        raise ConfigError(f"The accept fraction must be in (0, 1), got {fpr}.")
    if fpr * scores.size < 1:
        log.warning(
            "Threshold for FPR %.2g set on only %d background events: fewer than one expected "
            "accept; the cut is the maximum score. Use more background events.",
            fpr,
            scores.size,
        )
    from ..metrics import threshold_at_fpr

    # The lowest cut with (score > t) keeping at most a fraction fpr of background: the same
    # definition as the evaluation's working points.
    return threshold_at_fpr(scores, fpr)[0]


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


class BaseDetector:
    """Base class of every registered detector.

    Subclasses implement ``_fit(X, X_val)`` and ``_score(X)`` on float32 (N, F) arrays and
    declare their parameters as keyword-only ``__init__`` arguments with defaults.
    Threshold parameters common to all detectors are set with :meth:`set_threshold`.
    """

    #: registry key, set by :func:`register`
    name: ClassVar[str] = ""
    #: one line for ``hepad detectors``
    summary: ClassVar[str] = ""
    #: True for detectors that need signal labels in ``fit`` (supervised references)
    supervised: ClassVar[bool] = False
    #: parameter name -> list of accepted constraints (``Interval``, ``Options``, a type, None),
    #: checked when ``fit`` runs (never in ``__init__``), as scikit-learn's declared constraints.
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {}

    # ------------------------------------------------------------------ parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters (JSON-serialisable), as scikit-learn's ``get_params``."""
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> BaseDetector:
        valid = self._param_names()
        for k, v in params.items():
            if k not in valid:
                raise ConfigError(f"{self.name or type(self).__name__}: unknown parameter {k!r}.{closest(k, valid)} Valid: {', '.join(valid)}.")
            setattr(self, k, v)
        return self

    def clone(self) -> BaseDetector:
        """An unfitted copy with the same parameters (deep-copied, as scikit-learn's ``clone``)."""
        return type(self)(**copy.deepcopy(self.get_params()))

    def _validate_params(self) -> None:
        """Check every parameter against ``_parameter_constraints``; raise ConfigError naming it."""
        label = self.name or type(self).__name__
        for key, allowed in self._parameter_constraints.items():
            value = getattr(self, key)
            if not any(_constraint_accepts(c, value) for c in allowed):
                expected = " or ".join(_constraint_text(c) for c in allowed)
                raise ConfigError(f"{label}: parameter {key}={value!r} is invalid; expected {expected}.")
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

    # ------------------------------------------------------------------ API
    def fit(self, X: Any, X_val: Any = None, y: Any = None, **fit_options: Any) -> BaseDetector:
        """Learn background from ``X`` (and optionally validate on ``X_val``). Returns self.

        The default threshold is the 95th percentile of the background scores (of ``X_val``
        when given, else of ``X``); change it with :meth:`set_threshold`. ``fit_options`` are
        run options of some detectors (e.g. ``checkpoint_dir``, ``resume``, ``progress`` for
        the deep ones), never model parameters.
        """
        self._validate_params()
        if self.supervised and y is None and isinstance(X, EventSet) and X.labels is not None:
            y = X.labels
        Xf = as_features(X, "X")
        Xv = None if X_val is None else as_features(X_val, "X_val")
        self._reset_fitted()
        self.feature_names_in_ = _feature_names(X, Xf.shape[1])
        self.n_features_in_ = Xf.shape[1]
        if self.supervised:
            if y is None:
                raise ConfigError(f"{self.name}: a supervised reference needs labels y (0 background, 1 signal).")
            y = np.asarray(y).astype(np.int64).ravel()
            if y.shape != (len(Xf),):
                raise InputError(f"{self.name}: {len(y)} labels for {len(Xf)} events.")
            if set(np.unique(y).tolist()) != {0, 1}:
                raise InputError(f"{self.name}: labels must hold both 0 (background) and 1 (signal), got {sorted(set(np.unique(y).tolist()))}.")
            self._fit_supervised(Xf, y, Xv, **fit_options)
        else:
            self._fit(Xf, Xv, **fit_options)
        bkg = Xv if Xv is not None else Xf
        if self.supervised and Xv is None:
            bkg = Xf[y == 0]
        self.set_threshold(bkg, percentile=95.0)
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        """Anomaly score per event, float32; higher means more anomalous."""
        self._check_fitted()
        Xf = as_features(X, "X")
        if Xf.shape[1] != self.n_features_in_:
            raise InputError(
                f"{self.name}: got {Xf.shape[1]} features per event, the model was trained on {self.n_features_in_}."
            )
        return np.asarray(self._score(Xf), dtype=np.float32)

    def set_threshold(
        self,
        X_background: Any = None,
        *,
        scores: np.ndarray | None = None,
        percentile: float | None = None,
        sigma: float | None = None,
        rate_hz: float | None = None,
        fpr: float | None = None,
        collision_rate_hz: float = COLLISION_RATE_HZ,
    ) -> BaseDetector:
        """Set ``threshold_`` on background events (or their precomputed ``scores``)."""
        if scores is None:
            if X_background is None:
                raise ConfigError("set_threshold needs background events or their scores.")
            scores = self.score_samples(X_background)
        self.threshold_ = threshold_from_scores(
            scores, percentile=percentile, sigma=sigma, rate_hz=rate_hz, fpr=fpr,
            collision_rate_hz=collision_rate_hz,
        )
        self.threshold_rule_ = {
            k: v for k, v in dict(percentile=percentile, sigma=sigma, rate_hz=rate_hz, fpr=fpr).items() if v is not None
        }
        if rate_hz is not None:
            self.threshold_rule_["collision_rate_hz"] = collision_rate_hz
        return self

    def predict(self, X: Any) -> np.ndarray:
        """1 for events scoring above ``threshold_`` (anomalous), else 0."""
        scores = self.score_samples(X)
        return (scores > self.threshold_).astype(np.int8)

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
        return {
            "n_features_in": int(self.n_features_in_),
            "feature_names_in": [str(n) for n in self.feature_names_in_],
            "threshold": float(self.threshold_),
            "threshold_rule": dict(getattr(self, "threshold_rule_", {})),
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
        self.threshold_rule_ = dict(common.get("threshold_rule") or {})
        if common.get("preprocessor") is not None:
            self.preprocessor_ = Preprocessor.from_dict(common["preprocessor"])
        if common.get("history") is not None:
            self.history_ = {str(k): list(v) for k, v in common["history"].items()}

    def _export_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Everything needed to rebuild this fitted detector: a JSON-able document and arrays."""
        self._check_fitted()
        meta, arrays = self._get_state()
        doc = {"name": self.name, "params": self.get_params(), "fitted": self._common_state(), "meta": meta}
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
            raise NotFittedError(
                f"{self.name or type(self).__name__} is not fitted: call fit(X) first or load a saved model with hepad.load(path)."
            )

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


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


def detector_from_state(doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> BaseDetector:
    """Rebuild a fitted detector from :meth:`BaseDetector._export_state` output.

    Only registered detector classes can be built, with JSON parameters: nothing is executed
    that is not hepad's own code.
    """
    name = doc["name"]
    cls = get_detector_class(name)
    if name not in _REGISTRY:
        raise ConfigError(f"{name!r} is a preset, not a detector class.")
    params = doc.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{name}: params must be a mapping.")
    det = cls()
    det.set_params(**params)
    det._validate_params()  # a forged parameter gets the same error as in fit
    det._set_common_state(doc["fitted"])
    det._set_state(doc.get("meta") or {}, arrays)
    return det


def sub_arrays(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays whose names start with ``prefix``, with the prefix removed."""
    n = len(prefix)
    return {k[n:]: v for k, v in arrays.items() if k.startswith(prefix)}


def check_arrays(name: str, arrays: dict[str, np.ndarray], required: Sequence[str]) -> None:
    """Raise ValueError naming missing saved arrays (caught and reported by ``hepad.load``)."""
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ValueError(f"{name}: saved arrays missing: {', '.join(missing)}")


# ---------------------------------------------------------------------- registry
_REGISTRY: dict[str, type[BaseDetector]] = {}
#: preset name -> (registry key, parameter overrides, one-line summary)
PRESETS: dict[str, tuple[str, dict[str, Any], str]] = {}


def register(name: str, summary: str = "") -> Callable[[type[BaseDetector]], type[BaseDetector]]:
    """Class decorator: add a detector to the registry under ``name``."""

    def deco(cls: type[BaseDetector]) -> type[BaseDetector]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ConfigError(f"Detector name {name!r} is registered twice.")
        cls.name = name
        cls.summary = summary or (cls.__doc__ or "").strip().splitlines()[0]
        _REGISTRY[name] = cls
        return cls

    return deco


def register_preset(name: str, detector: str, params: dict[str, Any], summary: str) -> None:
    """Add a named preset: a registered detector with fixed parameter overrides."""
    PRESETS[name] = (detector, dict(params), summary)


def _load_builtin() -> None:
    # Importing the modules registers their detectors (lazily, to keep `import hepad` light).
    from . import _builtin  # noqa: F401


def available_detectors() -> dict[str, str]:
    """Every registry key and preset with its one-line summary."""
    _load_builtin()
    out = {k: c.summary for k, c in sorted(_REGISTRY.items())}
    out.update({k: v[2] for k, v in sorted(PRESETS.items())})
    return out


def get_detector_class(name: str) -> type[BaseDetector]:
    _load_builtin()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in PRESETS:
        return _REGISTRY[PRESETS[name][0]]
    choices = list(_REGISTRY) + list(PRESETS)
    raise ConfigError(f"Unknown detector {name!r}.{closest(name, choices)} Run `hepad detectors` to list them.")


def make_detector(name: str, **params: Any) -> BaseDetector:
    """An unfitted detector by registry key or preset name, with parameter overrides."""
    cls = get_detector_class(name)
    base = copy.deepcopy(PRESETS[name][1]) if name in PRESETS else {}
    base.update(params)
    det = cls()
    det.set_params(**base)
    return det
