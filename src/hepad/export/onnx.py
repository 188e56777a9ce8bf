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

Integrity: the last metadata entry, ``hepad.sha256``, is the SHA-256 of the whole serialised file
with that entry's 64 hex digits replaced by ``0`` characters, so it covers the graph, the weights
and every other metadata entry. :func:`read_onnx_file` (used by ``hepad trigger``, ``hepad score``
and :func:`hepad.make_scorer`) recomputes it and refuses a file that does not match: one flipped
byte is a clean :class:`~hepad.errors.ModelFileError`, never a silently different trigger. New
metadata entries go into :func:`_metadata` (they are then covered); ``hepad.sha256`` is set last.
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

__all__ = [
    "export_onnx", "onnx_model_bytes", "read_onnx_metadata", "read_onnx_file", "INPUT_NAME", "OUTPUT_NAME",
    "DEFAULT_OPSET",
]

INPUT_NAME = "input"
OUTPUT_NAME = "score"
#: ONNX opset of the exported graph: supported by every current ONNX Runtime and by hls4ml's tools.
DEFAULT_OPSET = 17
_PREFIX = "hepad."
_SHA_KEY = _PREFIX + "sha256"
_SHA_PLACEHOLDER = "0" * 64
#: ONNX files larger than this are not a hepad export (guards against reading huge foreign files).
_MAX_ONNX_BYTES = 2 * 1024**3


def _file_digest(data: bytes, digest_at: int) -> str:
    import hashlib

    h = hashlib.sha256()
    h.update(data[:digest_at])
    h.update(_SHA_PLACEHOLDER.encode())
    h.update(data[digest_at + 64 :])
    return h.hexdigest()


def _seal(model: Any) -> bytes:
    """Serialise ``model`` with its ``hepad.sha256`` entry (see the module docstring)."""
    prop = model.metadata_props.add()
    prop.key, prop.value = _SHA_KEY, _SHA_PLACEHOLDER
    data = model.SerializeToString()
    # metadata_props (field 14) are serialised after the graph (field 7): the last occurrence of
    # key + value is this entry.
    entry = _SHA_KEY.encode() + b"\x12\x40" + _SHA_PLACEHOLDER.encode()
    at = data.rfind(entry)
    if at < 0:  # pragma: no cover - protobuf wire format of a string map entry
        raise RuntimeError("cannot locate the sha256 entry in the serialised ONNX model")
    at += len(entry) - 64
    digest = _file_digest(data, at)
    return data[:at] + digest.encode() + data[at + 64 :]


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
    quantiles = getattr(detector, "background_quantiles_", None)
    if quantiles:
        # The upper tail of the background scores: a trigger starts from the cut at its own rate.
        meta["background_quantiles"] = json.dumps(quantiles)
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
    return _seal(model)


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
        ``hepad.detector``, ``hepad.params``, ``hepad.threshold_rule``, ``hepad.hepad_version`` and,
        when the detector has them, ``hepad.background_quantiles`` (JSON: the background score
        tail, from which :func:`hepad.trigger.run_trigger` takes its first cut).
    """
    detector = _resolve(detector_or_path)
    data = onnx_model_bytes(detector, opset=opset)
    with atomic_path(path, suffix=".onnx.tmp") as tmp:
        tmp.write_bytes(data)
    log.info("wrote %s (%d bytes)", path, len(data))
    return Path(path)


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The hepad metadata of an exported ONNX file: threshold, feature_names, detector, params...

    The file's ``hepad.sha256`` is verified first (see :func:`read_onnx_file`).

    Raises
    ------
    ModelFileError
        The file is not a readable ONNX model, was not written by hepad, or was modified.
    """
    return read_onnx_file(path)[1]


def read_onnx_file(path: str | os.PathLike[str]) -> tuple[bytes, dict[str, Any]]:
    """The verified bytes and hepad metadata of an exported ONNX file (read once: what is checked
    is what runs).

    Raises
    ------
    ModelFileError
        One line naming the file: unreadable, not ONNX, no hepad metadata, a sha256 that does
        not match the content, or metadata values out of range.
    """
    import math

    import onnx

    p = Path(path)
    try:
        if p.stat().st_size > _MAX_ONNX_BYTES:
            raise ModelFileError(f"{p}: too large for a hepad ONNX export ({p.stat().st_size} bytes).")
        data = p.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{p}: cannot read ({exc.strerror or exc}).") from None
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError, RuntimeError...
        raise ModelFileError(f"{p}: not a readable ONNX model ({exc.__class__.__name__}); export it again.") from None
    props: dict[str, str] = {}
    for m in model.metadata_props:
        if not isinstance(m.key, str) or not isinstance(m.value, str):  # protobuf hands back bytes for bad UTF-8
            raise ModelFileError(f"{p}: a metadata entry is not UTF-8 text; the file was modified or damaged. Export it again.")
        if m.key.startswith(_PREFIX):
            if m.key[len(_PREFIX):] in props:
                raise ModelFileError(f"{p}: metadata key {m.key!r} appears twice; the file was modified. Export it again.")
            props[m.key[len(_PREFIX):]] = m.value
    if "feature_names" not in props:
        raise ModelFileError(f"{p}: no hepad metadata; export it with `hepad export onnx MODEL -o {p.name}`.")
    digest = props.pop("sha256", None)
    if digest is None:
        raise ModelFileError(
            f"{p}: no {_SHA_KEY} integrity entry (exported by an older hepad, or modified); export it again "
            f"with `hepad export onnx MODEL -o {p.name}`."
        )
    at = data.rfind(digest.encode()) if len(digest) == 64 else -1
    if at < 0 or _file_digest(data, at) != digest:
        raise ModelFileError(
            f"{p}: content does not match its {_SHA_KEY}; the file was modified or damaged after export. "
            "Refusing to run it; export the model again."
        )
    out: dict[str, Any] = dict(props)
    try:
        out["feature_names"] = json.loads(props["feature_names"])
        out["threshold"] = float(props["threshold"]) if props.get("threshold") else None
        for key in ("params", "threshold_rule", "background_quantiles"):
            if key in props:
                out[key] = json.loads(props[key])
    except (ValueError, TypeError, RecursionError) as exc:
        raise ModelFileError(f"{p}: malformed hepad metadata ({exc}); export the model again.") from None
    names = out["feature_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ModelFileError(f"{p}: malformed hepad metadata (feature_names is not a list of names); export the model again.")
    if out["threshold"] is not None and not math.isfinite(out["threshold"]):
        raise ModelFileError(f"{p}: hepad.threshold={props['threshold']} is not finite; export the model again.")
    return data, out
