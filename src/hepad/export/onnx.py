"""ONNX export of the torch detectors: raw inputs in, anomaly score out.

The exported graph is the detector's ``export_module()``: it takes the raw float32 inputs
(``input``, shape ``(batch, F)``, 57 for the ADC2021 layout) with the preprocessing folded in
as graph operations, and returns ``score``, shape ``(batch,)``, higher = more anomalous. The batch
axis is dynamic. The model's threshold, feature names and provenance ride along as ONNX
``metadata_props``, so the file alone is enough to run a trigger decision::

    import onnxruntime as ort, json
    sess = ort.InferenceSession("model.onnx")
    meta = sess.get_modelmeta().custom_metadata_map
    accept = sess.run(None, {"input": x})[0] > float(meta["hepad.threshold"])
"""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

from .._atomic import atomic_path
from ..errors import ConfigError, DependencyError, ModelFileError

log = logging.getLogger(__name__)

__all__ = ["export_onnx", "onnx_model_bytes", "read_onnx_metadata", "INPUT_NAME", "OUTPUT_NAME", "DEFAULT_OPSET"]

INPUT_NAME = "input"
OUTPUT_NAME = "score"
#: ONNX opset of the exported graph: supported by every current ONNX Runtime and by hls4ml's tools.
DEFAULT_OPSET = 17
_PREFIX = "hepad."


def _resolve(detector_or_path: Any) -> Any:
    if isinstance(detector_or_path, (str, os.PathLike)):
        import hepad

        return hepad.load(detector_or_path)
    return detector_or_path


def _check_exportable(detector: Any) -> None:
    if not callable(getattr(detector, "export_module", None)):
        name = getattr(detector, "name", type(detector).__name__)
        raise ConfigError(
            f"{name}: only torch detectors (ae, vae, axol1tl-like, deep-svdd, ...) export to ONNX; "
            "this one has no export_module(). Score it in Python with hepad score, or train a torch detector."
        )
    detector._check_fitted()


def _metadata(detector: Any) -> dict[str, str]:
    from .._version import __version__

    threshold = getattr(detector, "threshold_", None)
    meta = {
        "detector": detector.name,
        "params": json.dumps(detector.get_params(), default=str),
        "threshold": "" if threshold is None else repr(float(threshold)),
        "threshold_rule": json.dumps(getattr(detector, "threshold_rule_", {}), default=str),
        "feature_names": json.dumps(list(getattr(detector, "feature_names_in_", []))),
        "n_features": str(int(detector.n_features_in_)),
        "score": "anomaly score, higher = more anomalous; accept when score > threshold",
        "hepad_version": __version__,
    }
    return {_PREFIX + k: v for k, v in meta.items()}


def onnx_model_bytes(detector: Any, *, opset: int = DEFAULT_OPSET) -> bytes:
    """The serialised ONNX model of a fitted torch detector (with metadata), in memory.

    Used by :func:`export_onnx` and by the ``onnx`` engine of :func:`hepad.engine.make_scorer`.
    """
    _check_exportable(detector)
    try:
        import onnx
        import torch
    except ImportError as exc:  # pragma: no cover - pinned dependencies
        raise DependencyError(f"ONNX export needs onnx and torch ({exc}): pip install onnx==1.23.2") from None

    module = detector.export_module().eval()
    example = torch.zeros(2, int(detector.n_features_in_), dtype=torch.float32)
    buf = io.BytesIO()
    # The TorchScript-based exporter (dynamo=False) handles these plain dense graphs directly,
    # without onnxscript, and gives the compact Gemm/Relu graph ONNX Runtime fuses best.
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            buf,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=int(opset),
            do_constant_folding=True,
        )
    model = onnx.load_from_string(buf.getvalue())
    model.producer_name = "hepad"
    for key, value in _metadata(detector).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    return model.SerializeToString()


def export_onnx(detector_or_path: Any, path: str | os.PathLike[str], *, opset: int = DEFAULT_OPSET) -> Path:
    """Export a fitted torch detector to an ONNX file (atomically).

    Parameters
    ----------
    detector_or_path : BaseDetector or path-like
        A fitted torch detector, or a saved model directory (loaded with :func:`hepad.load`).
    path : path-like
        Output ``.onnx`` file; it appears only once complete.
    opset : int
        ONNX opset version (default 17).

    Returns
    -------
    Path
        The file written. Its graph maps ``input`` (batch, F) raw float32 -> ``score`` (batch,);
        ``metadata_props`` hold ``hepad.threshold``, ``hepad.feature_names`` (JSON),
        ``hepad.detector``, ``hepad.params``, ``hepad.threshold_rule``, ``hepad.hepad_version``.
    """
    detector = _resolve(detector_or_path)
    data = onnx_model_bytes(detector, opset=opset)
    with atomic_path(path, suffix=".onnx.tmp") as tmp:
        tmp.write_bytes(data)
    log.info("wrote %s (%d bytes)", path, len(data))
    return Path(path)


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The hepad metadata of an exported ONNX file: threshold, feature_names, detector, params...

    Raises
    ------
    ModelFileError
        The file is not a readable ONNX model or was not written by hepad.
    """
    import onnx

    p = Path(path)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError...
        raise ModelFileError(f"{p}: not a readable ONNX model ({exc.__class__.__name__}: {exc}).") from None
    props = {m.key[len(_PREFIX):]: m.value for m in model.metadata_props if m.key.startswith(_PREFIX)}
    if "feature_names" not in props:
        raise ModelFileError(f"{p}: no hepad metadata; export it with `hepad export onnx MODEL -o {p.name}`.")
    out: dict[str, Any] = dict(props)
    try:
        out["feature_names"] = json.loads(props["feature_names"])
        out["threshold"] = float(props["threshold"]) if props.get("threshold") else None
        for key in ("params", "threshold_rule"):
            if key in props:
                out[key] = json.loads(props[key])
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{p}: malformed hepad metadata ({exc}); export the model again.") from None
    if not isinstance(out["feature_names"], list):
        raise ModelFileError(f"{p}: malformed hepad metadata (feature_names is not a list); export the model again.")
    return out
