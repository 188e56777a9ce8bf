"""Typed YAML configuration for training (pydantic v2; unknown keys and wrong types are errors).

A configuration names the detector and its parameters, the preprocessing, the training
options of deep detectors, and the threshold rule::

    model:
      detector: ae              # registry key or preset (hepad detectors lists them)
      params: {latent_dim: 8}
    preprocessing: {scaling: standard, log_pt: false}
    training: {epochs: 50, batch_size: 1024, learning_rate: 0.001, seed: 0}
    evaluation:
      threshold: {percentile: 95}          # or {sigma: 3} or {rate_hz: 1000, collision_rate_hz: 4.0e7}
      signals: [ato4l.h5]
    data: {train: sm_train.h5, val: sm_val.h5}

Errors name the file, the key path and the expected type, e.g.
``config.yaml: training.epochs: expected an integer, got 'ten'``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError, closest
from .rates import COLLISION_RATE_HZ
from .thresholds import KINDS, ThresholdRule

log = logging.getLogger(__name__)

__all__ = ["HepadConfig", "load_config", "TRAINING_PARAM_MAP"]

#: training section key -> deep detector parameter name
TRAINING_PARAM_MAP = {
    "epochs": "epochs",
    "batch_size": "batch_size",
    "learning_rate": "learning_rate",
    "weight_decay": "weight_decay",
    "patience": "patience",
    "lr_patience": "lr_patience",
    "lr_factor": "lr_factor",
    "min_delta": "min_delta",
    "seed": "random_state",
    "device": "device",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(_Section):
    """Which detector, with which parameters."""

    detector: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class PreprocessingSection(_Section):
    """Options of :class:`hepad.preprocessing.Preprocessor`."""

    scaling: Literal["standard", "minmax", "none"] = "standard"
    log_pt: bool = False
    phi: Literal["keep", "drop"] = "keep"
    mask_padding: bool = False


class TrainingSection(_Section):
    """Training options of deep detectors (ignored, with a log note, by classical ones)."""

    epochs: int | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=None, gt=0)
    learning_rate: float | None = Field(default=None, gt=0)
    weight_decay: float | None = Field(default=None, ge=0)
    patience: int | None = Field(default=None, gt=0)
    lr_patience: int | None = Field(default=None, gt=0)
    lr_factor: float | None = Field(default=None, gt=0, lt=1)
    min_delta: float | None = Field(default=None, ge=0)
    seed: int | None = Field(default=None, ge=0)
    device: Literal["auto", "cpu", "cuda"] | None = None


class ThresholdSection(_Section):
    """At most one rule: a background percentile, mean + sigma x std, a trigger rate, or an FPR."""

    percentile: float | None = Field(default=None, gt=0, lt=100)
    sigma: float | None = None
    rate_hz: float | None = Field(default=None, gt=0)
    fpr: float | None = Field(default=None, gt=0, lt=1)
    collision_rate_hz: float = Field(default=COLLISION_RATE_HZ, gt=0)

    @model_validator(mode="after")
    def _one_rule(self) -> ThresholdSection:
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of {', '.join(KINDS)} (got {', '.join(given)})")
        return self

    def rule(self) -> ThresholdRule | None:
        """The rule this section gives (None when it gives none: the detector's own applies)."""
        for kind in KINDS:
            value = getattr(self, kind)
            if value is not None:
                return ThresholdRule(kind, value, self.collision_rate_hz if kind == "rate_hz" else None)
        return None


class EvaluationSection(_Section):
    """Working point and the signal samples to evaluate on."""

    threshold: ThresholdSection = Field(default_factory=ThresholdSection)
    signals: list[str] = Field(default_factory=list)


class DataSection(_Section):
    """Input files (paths relative to the configuration file) and how to read them."""

    train: str | None = None
    val: str | None = None
    test: str | None = None
    format: str | None = None
    key: str | None = None
    columns: list[str] | None = None


class HepadConfig(_Section):
    """A whole training configuration; see the module docstring for the layout."""

    model: ModelSection = Field(default_factory=ModelSection)
    preprocessing: PreprocessingSection | None = None
    training: TrainingSection = Field(default_factory=TrainingSection)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    data: DataSection = Field(default_factory=DataSection)
    #: where the configuration was read from (not a key of the file)
    _source: str = "<config>"
    _base_dir: Path | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: Any, source: str = "<config>", base_dir: str | os.PathLike[str] | None = None) -> HepadConfig:
        """Validate a mapping (e.g. parsed YAML); errors name ``source`` and the key path."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping of sections (model, training, ...), got {type(data).__name__}.")
        try:
            cfg = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_format_error(source, exc)) from None
        cfg._source = source
        cfg._base_dir = Path(base_dir) if base_dir is not None else None
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-able mapping (unset optional values dropped)."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def source(self) -> str:
        return self._source

    def resolve_path(self, path: str | None) -> Path | None:
        """A data path from the file, relative to the configuration file's directory."""
        if path is None:
            return None
        p = Path(path).expanduser()
        if not p.is_absolute() and self._base_dir is not None:
            p = self._base_dir / p
        return p

    # ------------------------------------------------------------------ detector
    def detector_params(self, detector: str | None = None) -> tuple[str, dict[str, Any]]:
        """The detector name and the parameters this configuration gives it.

        ``model.params`` are checked against the detector's parameter names; the
        ``preprocessing`` section becomes its ``preprocessing`` parameter; the ``training``
        section fills the deep-model parameters it has (and is ignored, with a log note,
        for detectors without them).
        """
        from .detectors.registry import DEFAULT_DETECTOR, PRESETS, get_detector_class

        name = detector or self.model.detector or DEFAULT_DETECTOR
        try:
            cls = get_detector_class(name)
        except ConfigError as exc:
            key = "model.detector" if detector is None else "detector"
            raise ConfigError(f"{self._source}: {key}: {exc}") from None
        valid = cls._param_names()
        params: dict[str, Any] = {}
        for k, v in self.model.params.items():
            if k not in valid:
                raise ConfigError(
                    f"{self._source}: model.params.{k}: unknown parameter of {name!r}.{closest(k, valid)} "
                    f"Valid: {', '.join(valid)}."
                )
            params[k] = v
        if self.preprocessing is not None:
            if "preprocessing" not in valid:
                raise ConfigError(f"{self._source}: preprocessing: detector {name!r} takes no preprocessing.")
            if "preprocessing" in params:
                raise ConfigError(
                    f"{self._source}: preprocessing is given both as a section and in model.params; keep one."
                )
            params["preprocessing"] = self.preprocessing.model_dump()
        ignored = []
        training = self.training.model_dump(exclude_none=True)
        if "members" in valid and isinstance(params.get("members"), list) and training:
            # An ensemble passes the training section on to its members that train in epochs.
            params["members"] = [self._member_with_training(m, training) for m in params["members"]]
            training = {k: v for k, v in training.items() if k == "seed" and "random_state" in valid}
        for key, value in training.items():
            pname = TRAINING_PARAM_MAP[key]
            if pname in valid:
                if pname in params and params[pname] != value:
                    raise ConfigError(
                        f"{self._source}: training.{key} and model.params.{pname} disagree "
                        f"({value!r} vs {params[pname]!r}); keep one."
                    )
                params[pname] = value
            else:
                ignored.append(key)
        if ignored:
            log.info("%s: training.%s ignored: %s has no such parameter", self._source, ", training.".join(ignored), name)
        if name in PRESETS:
            log.debug("%s: preset %s -> %s", self._source, name, PRESETS[name].detector)
        return name, params


    @staticmethod
    def _member_with_training(member: Any, training: dict[str, Any]) -> Any:
        from .detectors.registry import get_detector_class

        spec = {"detector": member} if isinstance(member, str) else member
        if not isinstance(spec, dict) or not isinstance(spec.get("detector"), str):
            return member  # the ensemble reports malformed members itself
        names = get_detector_class(spec["detector"])._param_names()
        mparams = dict(spec.get("params") or {})
        for key, value in training.items():
            pname = TRAINING_PARAM_MAP[key]
            if pname in names and pname not in mparams:
                mparams[pname] = value
        return {**spec, "params": mparams}


_EXPECTED = {
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "dict_type": "expected a mapping",
    "list_type": "expected a list",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}


def _format_error(source: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        kind = err["type"]
        value = err.get("input")
        if kind == "extra_forbidden":
            section = err["loc"][:-1]
            model: Any = HepadConfig
            for p in section:
                ann = model.model_fields[str(p)].annotation if p in getattr(model, "model_fields", {}) else None
                model = _inner_model(ann)
            valid = list(getattr(model, "model_fields", {}) or {})
            key = str(err["loc"][-1])
            parts.append(f"{loc}: unknown key.{closest(key, valid)} Valid keys: {', '.join(valid)}.")
        elif kind == "missing":
            parts.append(f"{loc}: required key is missing.")
        elif kind in _EXPECTED:
            parts.append(f"{loc}: {_EXPECTED[kind]}, got {value!r}.")
        elif kind == "literal_error":
            parts.append(f"{loc}: expected {err['ctx']['expected']}, got {value!r}.")
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            parts.append(f"{loc}: {err['msg'].lower()}, got {value!r}.")
        elif kind == "value_error":
            msg = str(err.get("ctx", {}).get("error", err["msg"]))
            parts.append(f"{loc or 'config'}: {msg}.")
        else:
            parts.append(f"{loc}: {err['msg']} (got {value!r}).")
    return f"{source}: " + " ".join(parts)


def _inner_model(ann: Any) -> Any:
    import typing

    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for a in typing.get_args(ann):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def load_config(path: str | os.PathLike[str]) -> HepadConfig:
    """Read and validate a YAML configuration file.

    Raises
    ------
    ConfigError
        Naming the file (and line for YAML syntax errors, key path for wrong values).
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        hint = closest(p.name, [c.name for c in p.parent.iterdir()]) if p.parent.is_dir() else ""
        raise ConfigError(f"{p}: no such configuration file.{hint}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{p}: invalid YAML{where}: {problem}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text file; expected a YAML configuration.") from None
    return HepadConfig.from_dict(data, source=str(p), base_dir=p.parent)
