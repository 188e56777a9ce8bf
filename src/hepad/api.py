"""``hepad.train``: one call from events (or files) to a fitted, thresholded, saved detector."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, ModelFileError
from .events import EventSet

log = logging.getLogger(__name__)

__all__ = ["train", "load_model", "resolve_model"]

PathLike = str | os.PathLike


def _as_config(config: Any) -> Any:
    from .config import HepadConfig, load_config

    if config is None or isinstance(config, HepadConfig):
        return config
    if isinstance(config, dict):
        return HepadConfig.from_dict(config, source="<config dict>")
    if isinstance(config, (str, os.PathLike)):
        return load_config(config)
    raise ConfigError(f"config must be a path, a mapping or a HepadConfig, got {type(config).__name__}.")


def _threshold_rule(percentile: float | None, sigma: float | None, rate_hz: float | None,
                    fpr: float | None, collision_rate_hz: float | None, cfg: Any) -> Any:
    """The rule given as options, else the configuration's, else None (the detector's own)."""
    from .thresholds import ThresholdRule

    default = cfg.evaluation.threshold.rule() if cfg is not None else None
    if rate_hz is not None and collision_rate_hz is None and cfg is not None:
        collision_rate_hz = cfg.evaluation.threshold.collision_rate_hz
    return ThresholdRule.from_options(percentile=percentile, sigma=sigma, rate_hz=rate_hz, fpr=fpr,
                                      collision_rate_hz=collision_rate_hz, default=default)


def train(
    detector: Any = None,
    data: Any = None,
    val: Any = None,
    *,
    signal: Any = None,
    labels: Sequence[int] | np.ndarray | None = None,
    config: Any = None,
    output: PathLike | None = None,
    percentile: float | None = None,
    sigma: float | None = None,
    rate_hz: float | None = None,
    fpr: float | None = None,
    collision_rate_hz: float | None = None,
    checkpoint_dir: PathLike | None = None,
    resume: bool = False,
    progress: Callable[[int, int, dict[str, Any]], None] | None = None,
    format: str | None = None,
    key: str | None = None,
    columns: Sequence[str] | None = None,
    drop_invalid: bool = False,
    metadata: dict[str, Any] | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    **params: Any,
) -> Any:
    """Fit a detector on background events, set its threshold, and optionally save it.

    Parameters
    ----------
    detector : str or BaseDetector, optional
        Registry key or preset (``hepad.available_detectors()``), or a detector instance.
        Default: ``model.detector`` of ``config``, else :data:`DEFAULT_DETECTOR`.
    data : EventSet, array or path, optional
        Background training events (default: ``data.train`` of ``config``). For supervised
        references, the labelled mix, or background with ``signal`` given.
    val : EventSet, array or path, optional
        Held-out background: used for early stopping of deep models and to set the threshold
        (default: ``data.val`` of ``config``; without it the threshold is set on the training
        events, which is biased low for models that overfit).
    signal : EventSet, array or path, optional
        Signal events for supervised references (labelled 1; ``data`` labelled 0).
    labels : array of int, optional
        Per-event labels of ``data`` for supervised references (else ``data.labels``).
    config : path, mapping or HepadConfig, optional
        Typed configuration (see :mod:`hepad.config`).
    output : path, optional
        Save the fitted detector to this model directory (atomically).
    percentile, sigma, rate_hz, fpr : float, optional
        The threshold rule (at most one; default: the config's, else the detector's
        ``threshold_rule`` parameter, by default the 95th percentile). It becomes the
        detector's ``threshold_rule`` parameter, so it is saved with the model.
    collision_rate_hz : float, optional
        The stream rate ``rate_hz`` is a fraction of (default 40 MHz).
    checkpoint_dir, resume, progress
        Run options of deep detectors: checkpoint every epoch, resume from the last
        checkpoint, and a ``progress(epoch, n_epochs, logs)`` callback.
    format, key, columns, drop_invalid
        How to read ``data`` / ``val`` / ``signal`` given as paths (see ``hepad.read_events``).
    metadata : dict, optional
        Extra JSON-serialisable entries for the saved model's ``metadata.json``.
    epochs, seed : int, optional
        Shorthands for the ``epochs`` and ``random_state`` parameters of the detectors that
        have them (ignored, with a log note, by the others).
    **params
        Detector parameters; they override the configuration's.

    Returns
    -------
    BaseDetector
        The fitted detector with ``threshold_`` set.

    Raises
    ------
    ConfigError
        Unknown detector or parameter, wrong value, missing training data; raised before
        any event is read.
    """
    from .detectors.base import BaseDetector
    from .detectors.registry import DEFAULT_DETECTOR, make_detector

    cfg = _as_config(config)
    # 1. The detector, fully validated before any data is read.
    if isinstance(detector, BaseDetector):
        det = detector
        params.update(_shorthands(det.name, epochs, seed))
        if params:
            det.set_params(**params)
    else:
        if detector is not None and not isinstance(detector, str):
            raise ConfigError(f"detector must be a registry name or a detector, got {type(detector).__name__}.")
        if cfg is not None:
            name, cparams = cfg.detector_params(detector)
        else:
            name, cparams = detector or DEFAULT_DETECTOR, {}
        cparams.update(params)
        cparams.update(_shorthands(name, epochs, seed))
        det = make_detector(name, **cparams)
    rule = _threshold_rule(percentile, sigma, rate_hz, fpr, collision_rate_hz, cfg)
    if rule is not None:
        det.set_params(threshold_rule=rule)
    det._validate_params()
    if output is not None:
        out = Path(output)
        if out.exists() and not out.is_dir():
            raise ModelFileError(f"{out}: exists and is not a directory; choose another output path.")
    if signal is not None and not det.supervised:
        raise ConfigError(f"signal= is only used by supervised references; {det.name!r} learns from background alone.")

    # 2. The events.
    read_opts = {k: v for k, v in dict(format=format, key=key, columns=columns).items() if v is not None}
    if drop_invalid:
        read_opts["drop_invalid"] = True
    if cfg is not None:
        for k in ("format", "key", "columns"):
            if k not in read_opts and getattr(cfg.data, k) is not None:
                read_opts[k] = getattr(cfg.data, k)
        if data is None:
            data = cfg.resolve_path(cfg.data.train)
        if val is None:
            val = cfg.resolve_path(cfg.data.val)
    if data is None:
        raise ConfigError("No training data: pass data=, or set data.train in the configuration.")
    from .evaluation.samples import as_events

    train_ev = as_events(data, "data", **read_opts)
    val_ev = None if val is None else as_events(val, "val", **read_opts)
    y = None
    if det.supervised:
        if signal is not None:
            sig_ev = as_events(signal, "signal", **read_opts)
            train_ev = EventSet.concat([train_ev.with_labels(0), sig_ev.with_labels(1)])
        elif labels is not None:
            y = np.asarray(labels)
        elif train_ev.labels is None or set(np.unique(train_ev.labels).tolist()) != {0, 1}:
            raise ConfigError(
                f"{det.name} is a supervised reference: pass signal= with signal events, "
                f"or data labelled 0 (background) and 1 (signal); {train_ev.source} holds "
                f"{'no labels' if train_ev.labels is None else 'labels ' + str(sorted(set(np.unique(train_ev.labels).tolist())))}."
            )
        if y is None:
            y = train_ev.labels

    # 3. Fit, then the threshold on held-out background when there is some.
    fit_opts: dict[str, Any] = {}
    if checkpoint_dir is not None:
        fit_opts["checkpoint_dir"] = checkpoint_dir
    if resume:
        fit_opts["resume"] = True
    if progress is not None:
        fit_opts["progress"] = progress
    t0 = time.perf_counter()
    # fit sets the threshold by the rule, on val when given, else on the training background
    det.fit(train_ev, y, X_val=val_ev, **fit_opts)
    fit_s = time.perf_counter() - t0
    on = "val" if val_ev is not None else "train"
    if on == "train":
        log.info("threshold set on the training events (no validation sample); it is biased low for models that overfit")
    log.info("%s: fitted on %d events in %.1f s; threshold %.6g (%s on %s)", det.name, len(train_ev), fit_s,
             det.threshold_, det.threshold_rule_, on)

    # 4. Save.
    if output is not None:
        meta: dict[str, Any] = {
            "training_data": {
                "train": {"n_events": len(train_ev), **_provenance(train_ev)},
                "val": None if val_ev is None else {"n_events": len(val_ev), **_provenance(val_ev)},
            },
            "threshold_set_on": on,
            "fit_seconds": round(fit_s, 3),
        }
        if cfg is not None:
            meta["config"] = cfg.to_dict()
        meta.update(metadata or {})
        det.save(output, metadata=meta)
    return det


def _shorthands(name: str, epochs: int | None, seed: int | None) -> dict[str, Any]:
    from .detectors.registry import get_detector_class

    names = get_detector_class(name)._param_names()
    out: dict[str, Any] = {}
    for value, pname, why in ((epochs, "epochs", "is not trained in epochs"), (seed, "random_state", "has no random_state")):
        if value is None:
            continue
        if pname in names:
            out[pname] = value
        else:
            log.warning("%s ignored: %s %s.", "epochs" if pname == "epochs" else "seed", name, why)
    return out


#: ``train`` under a name that resolve_model's ``train=`` keyword does not hide.
_train = train


def _provenance(ev: EventSet) -> dict[str, Any]:
    import json

    out = {}
    for k, v in ev.provenance.items():
        try:
            json.dumps(v, allow_nan=False)
        except (TypeError, ValueError):
            v = str(v)
        out[str(k)] = v
    return out


def load_model(model: PathLike | Any, *, engine: str = "auto", threads: int | None = None) -> Any:
    """A fitted model from a saved directory, an exported ``.onnx`` file, or a fitted detector.

    A directory gives the detector (:func:`hepad.load`); an ``.onnx`` file (written by
    :func:`hepad.export_onnx`) gives a :class:`hepad.engine.Scorer` running it on ONNX Runtime,
    which scores like a detector (``score_samples``, ``predict``, ``threshold_``,
    ``feature_names_in_``), so :func:`hepad.evaluate` and :func:`hepad.score_files` take either.
    """
    if not isinstance(model, (str, os.PathLike)):
        if not callable(getattr(model, "score_samples", None)):
            raise ConfigError(f"Expected a model directory, an .onnx file or a fitted detector, got {type(model).__name__}.")
        return model
    p = Path(model)
    if p.suffix.lower() == ".onnx":
        if not p.is_file():
            raise ModelFileError(f"{p}: no such ONNX file; write one with hepad.export_onnx(detector, path).")
        from .engine import make_scorer

        return make_scorer(p, engine=engine, threads=threads)
    from .artifact import load

    return load(p)


def resolve_model(
    spec: PathLike | str,
    *,
    train: Any = None,
    val: Any = None,
    progress: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> tuple[str, Any]:
    """``(label, fitted model)`` from a model spec: what ``hepad compare`` takes per model.

    A model directory or ``.onnx`` file is loaded (:func:`load_model`); a YAML configuration is
    trained (:func:`train`, its own data unless ``train`` is given); a detector or preset name
    is trained on ``train`` (with ``val``). The label is the folder / file stem or the name.

    Raises
    ------
    ConfigError
        A spec that is none of these (with the closest detector name), or a detector name
        without training events.
    """
    p = Path(spec)
    if p.is_dir() or p.suffix.lower() == ".onnx":
        return (p.name if p.is_dir() else p.stem), load_model(p)
    is_config = p.suffix.lower() in (".yaml", ".yml")
    if is_config:
        if not p.is_file():
            raise ConfigError(f"{p}: no such configuration file.")
        return p.stem, _train(config=p, data=train, val=val, progress=progress)
    from .detectors.registry import available_detectors

    names = list(available_detectors())
    if str(spec) not in names:
        from .errors import closest

        raise ConfigError(
            f"{str(spec)!r} is neither a model directory, an .onnx file, a YAML config nor a detector name."
            f"{closest(str(spec), names)} hepad.available_detectors() lists the names."
        )
    if train is None:
        raise ConfigError(f"{str(spec)!r} is a detector name: give training events (train=) to train it first (and val=).")
    return str(spec), _train(str(spec), train, val, progress=progress)

