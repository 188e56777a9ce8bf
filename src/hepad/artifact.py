"""The model directory: a fitted detector saved as JSON + safetensors, loaded without pickle.

Layout of a model directory::

    manifest.json          format "hepad-model", format version, detector name, hepad version,
                           sha256 and size of every other file
    detector.json          registry name, constructor params, common fitted attributes, meta
    preprocessing.json     the fitted Preprocessor (or null)
    thresholds.json        threshold_ and the rule that set it
    weights.safetensors    every learned array (torch state_dict entries prefixed ``net.``)
    history.json           training history of deep models (or {})
    metadata.json          versions, training-data provenance, creation time, user metadata

:func:`load` checks the manifest, the exact set of files and every hash before it parses
anything else, and rebuilds the detector only from registered hepad classes, JSON values and
numeric arrays: a model file can never execute code.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_dir
from ._write import json_default, versions
from ._version import __version__
from .errors import HepadError, ModelFileError

log = logging.getLogger(__name__)

__all__ = ["FORMAT", "FORMAT_VERSION", "save", "load", "read_manifest"]

FORMAT = "hepad-model"
FORMAT_VERSION = 1

MANIFEST = "manifest.json"
DETECTOR = "detector.json"
PREPROCESSING = "preprocessing.json"
THRESHOLDS = "thresholds.json"
WEIGHTS = "weights.safetensors"
HISTORY = "history.json"
METADATA = "metadata.json"
#: every file of a model directory besides the manifest
FILES = (DETECTOR, PREPROCESSING, THRESHOLDS, WEIGHTS, HISTORY, METADATA)

# JSON files larger than this are not a hepad model (guards against parsing huge foreign files).
_MAX_JSON_BYTES = 64 * 1024 * 1024

#: Load-time limits, checked before anything is allocated: a saved value beyond them is refused
#: as a damaged or forged model file (no trained hepad model comes near them).
MAX_THREADS = 1024  # libgomp aborts on absurd thread counts (n_threads=1e6)
MAX_LAYER_WIDTH = 16384  # units per hidden layer / latent dimension
MAX_FEATURES = 1_000_000  # inputs per event
MAX_ABS_WEIGHT = 1e6  # |weight| of a network layer (trained ones stay below ~1e2)
MAX_ABS_RUNNING_STAT = 1e12  # |batch-norm running mean/var| (unscaled GeV inputs squared)

# The keys each JSON file may hold (metadata.json and history.json are free-form).
_KEYS = {
    MANIFEST: ({"format", "format_version", "detector", "hepad_version", "files"}, {"format", "format_version", "files"}),
    DETECTOR: ({"name", "params", "fitted", "meta"}, {"name", "params", "fitted"}),
    DETECTOR + ":fitted": ({"n_features_in", "feature_names_in"}, {"n_features_in", "feature_names_in"}),
    THRESHOLDS: ({"threshold", "rule", "background_quantiles"}, {"threshold"}),
}


class _NonFinite:
    """A NaN/Infinity literal met while parsing (hepad writes JSON with allow_nan=False)."""

    def __init__(self, text: str) -> None:
        self.text = text


def _find_non_finite(obj: Any, where: str = "") -> str | None:
    if isinstance(obj, _NonFinite):
        return f"{where or '(top level)'}={obj.text}"
    if isinstance(obj, dict):
        items: Any = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj)
    else:
        return None
    for k, v in items:
        hit = _find_non_finite(v, f"{where}.{k}" if where else str(k))
        if hit:
            return hit
    return None


def _check_keys(obj: Any, path: Path, which: str) -> None:
    allowed, required = _KEYS[which]
    label = which.partition(":")[2]
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path}: {label or 'the file'} is not a JSON object; the model directory is damaged.")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ModelFileError(
            f"{path}: unknown key {(label + '.') if label else ''}{unknown[0]!r}; a hepad model holds only "
            f"{', '.join(sorted(allowed))} there. Refusing to load (was it edited?)."
        )
    missing = sorted(required - set(obj))
    if missing:
        raise ModelFileError(f"{path}: missing key {(label + '.') if label else ''}{missing[0]!r}; save the model again.")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_load_limits(path: Path, params: dict[str, Any], fitted: dict[str, Any]) -> None:
    """Sizes and thread counts that would allocate or abort before the detector's own checks."""
    def refuse(key: str, value: Any, rule: str) -> ModelFileError:
        return ModelFileError(f"{path}: {key}={value!r} is invalid ({rule}); the model file was edited or damaged.")

    n = fitted.get("n_features_in")
    if not _is_int(n) or not 1 <= n <= MAX_FEATURES:
        raise refuse("fitted.n_features_in", n, f"an integer in [1, {MAX_FEATURES}]")
    names = fitted.get("feature_names_in")
    if not isinstance(names, list) or len(names) != n or not all(isinstance(x, str) for x in names):
        raise refuse("fitted.feature_names_in", type(names).__name__, f"a list of {n} strings")
    threads = params.get("n_threads")
    if threads is not None and (not _is_int(threads) or not 1 <= threads <= MAX_THREADS):
        raise refuse("params.n_threads", threads, f"an integer in [1, {MAX_THREADS}] or null")
    hidden = params.get("hidden_layers")
    if hidden is not None:
        if not isinstance(hidden, list) or not all(_is_int(h) and 1 <= h <= MAX_LAYER_WIDTH for h in hidden):
            raise refuse("params.hidden_layers", hidden, f"a list of integers in [1, {MAX_LAYER_WIDTH}]")
    for key in ("latent_dim",):
        v = params.get(key)
        if v is not None and (not _is_int(v) or not 1 <= v <= MAX_LAYER_WIDTH):
            raise refuse(f"params.{key}", v, f"an integer in [1, {MAX_LAYER_WIDTH}]")


def _check_threshold(path: Path, thr: dict[str, Any]) -> None:
    import math

    t = thr["threshold"]
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
        raise ModelFileError(
            f"{path}: threshold={t!r} is invalid (a finite number is needed: NaN accepts nothing, -inf "
            "accepts everything); set it again with detector.set_threshold and save."
        )
    if not isinstance(thr.get("rule", {}), dict):
        raise ModelFileError(f"{path}: rule must be a JSON object; the model file was edited or damaged.")


def _check_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # Network weights only: tree models store NaN thresholds at their leaves on purpose.
    for key, a in arrays.items():
        if not (key.startswith("net.") or ".net." in key):
            continue
        if a.dtype.kind in "fc" and a.size and not np.isfinite(a).all():
            bad = int(a.size - np.isfinite(a).sum())
            raise ModelFileError(
                f"{path}: array {key!r} holds {bad} NaN/inf value(s); every score would be NaN. "
                "The weights are damaged (or training diverged): train the model again."
            )
        limit = MAX_ABS_RUNNING_STAT if key.endswith(("running_mean", "running_var")) else MAX_ABS_WEIGHT
        if a.dtype.kind in "fc" and a.size and np.abs(a.astype(np.float64)).max() > limit:
            raise ModelFileError(
                f"{path}: array {key!r} holds a value of {float(np.abs(a).max()):.3g}, beyond the {limit:g} no trained "
                "network reaches (scores would overflow to inf); the weights are damaged. Train the model again."
            )


def _probe_network(path: Path, doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """For torch detectors: build the network on torch's ``meta`` device (no memory) and check its
    shapes against the saved weights, so forged layer sizes fail before any allocation."""
    from .detectors.registry import DETECTORS, get_detector_class

    name = doc["name"]
    if name not in DETECTORS:
        return  # detector_from_state gives the error
    cls = get_detector_class(name)
    if not callable(getattr(cls, "_build_net", None)):
        return
    meta = doc.get("meta") or {}
    n_in = meta.get("n_inputs") if isinstance(meta, dict) else None
    if not _is_int(n_in) or not 1 <= n_in <= MAX_FEATURES:
        raise ModelFileError(f"{path}: meta.n_inputs={n_in!r} is invalid (an integer in [1, {MAX_FEATURES}]).")
    import torch

    probe = cls()
    probe.set_params(**(doc.get("params") or {}))
    probe._validate_params()
    try:
        with torch.device("meta"):
            net = probe._build_net(int(n_in))
    except HepadError:
        raise
    except Exception:  # noqa: BLE001 - a net that cannot be built on meta is checked by load_state_dict
        log.debug("%s: cannot build %s on the meta device; shapes are checked after building", path, name)
        return
    # Compared without unit axes: a 0-d buffer (num_batches_tracked) comes back as shape (1,).
    def squeeze(shape: Any) -> tuple[int, ...]:
        return tuple(int(d) for d in shape if d != 1)

    want = {f"net.{k}": squeeze(v.shape) for k, v in net.state_dict().items()}
    have = {k: squeeze(v.shape) for k, v in arrays.items() if k.startswith("net.")}
    for key in sorted(set(want) | set(have)):
        if want.get(key) != have.get(key):
            raise ModelFileError(
                f"{path.parent / WEIGHTS}: array {key!r} has shape {have.get(key)} but the parameters in "
                f"{DETECTOR} need {want.get(key)}; the model files do not belong together."
            )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _dump_json(obj: Any, path: Path) -> None:
    try:
        text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=json_default)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"cannot write {path.name}: the detector state is not plain JSON ({exc}).") from None
    path.write_text(text + "\n", encoding="utf-8")


def save(detector: Any, path: str | os.PathLike[str], *, metadata: dict[str, Any] | None = None) -> Path:
    """Write a fitted detector to the model directory ``path``, atomically.

    Parameters
    ----------
    detector : BaseDetector
        A fitted detector.
    path : path-like
        The directory to create (an existing one is replaced only once the new one is complete).
    metadata : dict, optional
        JSON-serialisable extras stored in ``metadata.json`` (e.g. training data provenance,
        the configuration used).

    Returns
    -------
    Path
        The model directory.
    """
    from safetensors.numpy import save_file

    if not callable(getattr(detector, "_export_state", None)):
        raise ModelFileError(f"{path}: can only save hepad detectors, got {type(detector).__name__}.")
    doc, arrays = detector._export_state()
    fitted = doc["fitted"]
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ModelFileError(f"{target}: exists and is not a directory; choose another output path.")
    if target.is_dir() and any(target.iterdir()) and not (target / MANIFEST).is_file():
        raise ModelFileError(
            f"{target}: directory exists, is not empty and is not a hepad model; refusing to replace it."
        )
    clean: dict[str, np.ndarray] = {}
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.dtype == object or a.dtype.kind in "USV":
            raise ModelFileError(f"{detector.name}: array {k!r} has dtype {a.dtype}; only numeric arrays can be saved.")
        clean[str(k)] = np.ascontiguousarray(a)
    meta_doc = {
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "detector": detector.name,
    }
    meta_doc.update(metadata or {})
    try:
        json.dumps(meta_doc, allow_nan=False, default=json_default)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{target}: metadata is not JSON-serialisable: {exc}.") from None
    with atomic_dir(target) as tmp:
        _dump_json(
            {
                "name": doc["name"],
                "params": doc["params"],
                "fitted": {
                    "n_features_in": fitted["n_features_in"],
                    "feature_names_in": fitted["feature_names_in"],
                },
                "meta": doc["meta"],
            },
            tmp / DETECTOR,
        )
        _dump_json(fitted["preprocessor"], tmp / PREPROCESSING)
        _dump_json({"threshold": fitted["threshold"], "rule": fitted["threshold_rule"],
                    "background_quantiles": fitted.get("background_quantiles")}, tmp / THRESHOLDS)
        _dump_json(fitted["history"] or {}, tmp / HISTORY)
        _dump_json(meta_doc, tmp / METADATA)
        save_file(clean, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        # mkdtemp makes the folder private (0700); a model is shared like any output file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        for name in FILES:
            os.chmod(tmp / name, 0o666 & ~umask)
        files = {
            name: {"sha256": _sha256(tmp / name), "bytes": (tmp / name).stat().st_size} for name in FILES
        }
        _dump_json(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "detector": doc["name"],
                "hepad_version": __version__,
                "files": files,
            },
            tmp / MANIFEST,
        )
        os.chmod(tmp / MANIFEST, 0o666 & ~umask)
    log.info("saved %s model to %s", detector.name, target)
    return target


def _read_json(path: Path) -> Any:
    if path.stat().st_size > _MAX_JSON_BYTES:
        raise ModelFileError(f"{path}: too large for a hepad model file; not a hepad model.")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"), parse_constant=_NonFinite)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{path}: not valid JSON ({type(exc).__name__}: {exc}); the model directory is damaged.") from None
    hit = _find_non_finite(doc)
    if hit:
        raise ModelFileError(f"{path}: {hit} is not a finite number (hepad never writes one); the file was edited or damaged.")
    return doc


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked ``manifest.json`` of the model directory ``path``.

    Raises
    ------
    ModelFileError
        When ``path`` is not a directory, has no manifest, or the manifest is not a hepad
        model manifest of a supported format version.
    """
    root = Path(path)
    if not root.exists():
        raise ModelFileError(f"{root}: no such model directory.")
    if not root.is_dir():
        raise ModelFileError(
            f"{root}: is a file; a hepad model is a directory written by `hepad train -o DIR` or detector.save(DIR)."
        )
    mpath = root / MANIFEST
    if not mpath.is_file() or mpath.is_symlink():
        raise ModelFileError(
            f"{root}: not a hepad model directory (no {MANIFEST}); train one with `hepad train -o DIR`."
        )
    manifest = _read_json(mpath)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFileError(f"{mpath}: not a hepad model manifest (format is not {FORMAT!r}).")
    _check_keys(manifest, mpath, MANIFEST)
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{mpath}: format_version is missing or not an integer.")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{mpath}: model format version {version} is newer than this hepad ({__version__}) "
            f"reads (version {FORMAT_VERSION}); upgrade hepad."
        )
    if version < 1:
        raise ModelFileError(f"{mpath}: unknown model format version {version}.")
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != set(FILES):
        raise ModelFileError(
            f"{mpath}: the manifest must list exactly {', '.join(FILES)}; the model directory is damaged."
        )
    return manifest


def _verify(root: Path, manifest: dict[str, Any]) -> None:
    present = {p.name for p in root.iterdir()}
    expected = set(FILES) | {MANIFEST}
    extra = sorted(present - expected)
    if extra:
        raise ModelFileError(
            f"{root}: unexpected file(s) {', '.join(extra)} in the model directory; a hepad model "
            f"holds only {', '.join(sorted(expected))}. Refusing to load (was it tampered with?)."
        )
    for name in FILES:
        p = root / name
        if not p.exists():
            raise ModelFileError(f"{p}: missing from the model directory; save the model again.")
        if p.is_symlink() or not p.is_file():
            raise ModelFileError(f"{p}: not a regular file; refusing to load.")
        entry = manifest["files"][name]
        if isinstance(entry, dict) and set(entry) - {"sha256", "bytes"}:
            raise ModelFileError(
                f"{root / MANIFEST}: unknown key files.{name}.{sorted(set(entry) - {'sha256', 'bytes'})[0]!r}; "
                "refusing to load (was it edited?)."
            )
        want = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(want, str) or _sha256(p) != want:
            raise ModelFileError(
                f"{p}: content does not match the sha256 in {MANIFEST}; the file was modified or "
                "damaged after saving. Refusing to load."
            )


#: Largest |offset| and scale of a saved preprocessor (raw inputs are GeV and radians; a fitted
#: mean or standard deviation beyond this is a forged or damaged file, and would give inf scores).
MAX_PREPROCESSING_CONSTANT = 1e7


def _check_preprocessor(path: Path, det: Any) -> None:
    """Column indices inside the inputs and finite, positive constants: what from_dict does not check."""
    pre = getattr(det, "preprocessor_", None)
    if pre is None:
        return
    n = int(det.n_features_in_)

    def refuse(key: str, rule: str) -> ModelFileError:
        return ModelFileError(f"{path}: {key} is invalid ({rule}); the model file was edited or damaged.")

    if int(pre.n_features_in_) != n:
        raise refuse("feature_names_in", f"{pre.n_features_in_} names for a model of {n} inputs")
    keep = np.asarray(pre.keep_columns_)
    for key, cols, lo in (("pt_columns", pre.pt_columns_, 0), ("keep_columns", keep, 0),
                          ("slot_pt_column", pre.slot_pt_column_, -1)):
        cols = np.asarray(cols)
        if cols.ndim != 1 or (cols.size and (cols.min() < lo or cols.max() >= n)):
            raise refuse(key, f"a list of column indices in [{lo}, {n})")
    if np.asarray(pre.slot_pt_column_).shape != keep.shape or keep.size == 0:
        raise refuse("slot_pt_column", f"one entry per kept column ({keep.size})")
    offset, scale = np.asarray(pre.offset_, np.float64), np.asarray(pre.scale_, np.float64)
    if offset.ndim != 1 or not np.isfinite(offset).all() or np.abs(offset).max() > MAX_PREPROCESSING_CONSTANT:
        raise refuse("offset", f"finite numbers within +-{MAX_PREPROCESSING_CONSTANT:g}")
    if scale.ndim != 1 or not np.isfinite(scale).all() or scale.min() <= 0 or scale.max() > MAX_PREPROCESSING_CONSTANT:
        raise refuse("scale", f"positive numbers up to {MAX_PREPROCESSING_CONSTANT:g}")


def _self_test(root: Path, det: Any) -> None:
    """Score two empty events: a damaged model that loads but cannot score (a missing preprocessor,
    weights that overflow to inf) fails here, at load, with the model's name, not later."""
    probe = np.zeros((2, int(det.n_features_in_)), dtype=np.float32)
    try:
        with np.errstate(all="ignore"):
            scores = np.asarray(det.score_samples(probe), dtype=np.float64)
    except HepadError as exc:
        raise ModelFileError(f"{root}: the loaded model cannot score an event ({exc}); the model files are damaged.") from None
    except Exception as exc:  # noqa: BLE001 - any failure here means files that do not belong together
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise ModelFileError(f"{root}: the loaded model cannot score an event ({detail}); the model files are damaged.") from None
    if scores.shape != (2,) or not np.isfinite(scores).all():
        raise ModelFileError(
            f"{root}: the loaded model gives non-finite scores ({scores.tolist()}) for an empty event; its "
            "weights or constants are damaged. Train or save the model again."
        )


def _check_round_trip(root: Path, doc: dict[str, Any], arrays: dict[str, np.ndarray], det: Any) -> None:
    """Unknown keys of the detector's own state: what the rebuilt detector would not write back."""
    try:
        meta2, arrays2 = det._get_state()
    except Exception:  # noqa: BLE001 - a detector that cannot re-export is reported by its own use
        return
    extra = sorted(set(doc.get("meta") or {}) - set(meta2))
    if extra:
        raise ModelFileError(f"{root / DETECTOR}: unknown key meta.{extra[0]!r} for a {doc['name']!r} detector; refusing to load (was it edited?).")
    extra = sorted(set(arrays) - set(arrays2))
    if extra:
        raise ModelFileError(f"{root / WEIGHTS}: unknown array {extra[0]!r} for a {doc['name']!r} detector; refusing to load (was it edited?).")


def load(path: str | os.PathLike[str]) -> Any:
    """Load a detector saved with :func:`save` (or ``detector.save``), ready to score.

    Parameters
    ----------
    path : path-like
        The model directory.

    Returns
    -------
    BaseDetector
        The fitted detector; ``score_samples`` accepts an EventSet or the flat (N, F) array
        it was trained on.

    Raises
    ------
    ModelFileError
        Naming the file, when the directory is not a hepad model, has a missing, extra or
        modified file, a newer format version, or content hepad cannot rebuild from.
        Always one line (text taken from a damaged file cannot break it).
    """
    try:
        return _load(path)
    except ModelFileError as exc:
        msg = str(exc)
        if "\n" in msg or "\r" in msg:
            raise ModelFileError(" ".join(msg.split())) from None
        raise


def _load(path: str | os.PathLike[str]) -> Any:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from .detectors.registry import detector_from_state

    root = Path(path)
    manifest = read_manifest(root)
    _verify(root, manifest)
    doc = _read_json(root / DETECTOR)
    pre = _read_json(root / PREPROCESSING)
    thr = _read_json(root / THRESHOLDS)
    hist = _read_json(root / HISTORY)
    meta = _read_json(root / METADATA)
    try:
        arrays = load_file(str(root / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{root / WEIGHTS}: not a readable safetensors file ({exc}).") from None
    _check_keys(doc, root / DETECTOR, DETECTOR)
    if not isinstance(doc.get("name"), str):
        raise ModelFileError(f"{root / DETECTOR}: has no detector name.")
    if doc["name"] != manifest.get("detector"):
        raise ModelFileError(f"{root / DETECTOR}: detector {doc['name']!r} does not match the manifest.")
    if not isinstance(doc["params"], dict) or not isinstance(doc.get("meta") or {}, dict):
        raise ModelFileError(f"{root / DETECTOR}: params and meta must be JSON objects; the model file is damaged.")
    _check_keys(doc["fitted"], root / DETECTOR, DETECTOR + ":fitted")
    _check_keys(thr, root / THRESHOLDS, THRESHOLDS)
    _check_threshold(root / THRESHOLDS, thr)
    _check_load_limits(root / DETECTOR, doc["params"], doc["fitted"])
    if hist is not None and not isinstance(hist, dict):
        raise ModelFileError(f"{root / HISTORY}: not a JSON object; the model directory is damaged.")
    _check_arrays(root / WEIGHTS, arrays)
    try:
        _probe_network(root / DETECTOR, doc, arrays)
    except ModelFileError:
        raise
    except HepadError as exc:
        raise ModelFileError(f"{root / DETECTOR}: {exc}") from None
    try:
        fitted = dict(doc.get("fitted") or {})
        fitted.update(
            {
                "threshold": thr["threshold"],
                "threshold_rule": thr.get("rule") or {},
                "background_quantiles": thr.get("background_quantiles"),
                "preprocessor": pre,
                "history": hist or None,
            }
        )
        state = {"name": doc["name"], "params": doc.get("params") or {}, "fitted": fitted, "meta": doc.get("meta") or {}}
        det = detector_from_state(state, arrays)
    except ModelFileError:
        raise
    except HepadError as exc:
        raise ModelFileError(f"{root / DETECTOR}: cannot rebuild the detector: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError, ArithmeticError) as exc:
        raise ModelFileError(
            f"{root}: cannot rebuild the {doc['name']!r} detector from {DETECTOR} and {WEIGHTS} "
            f"({type(exc).__name__}: {exc})."
        ) from None
    _check_preprocessor(root / PREPROCESSING, det)
    _check_round_trip(root, doc, arrays, det)
    _self_test(root, det)
    versions = meta.get("versions") if isinstance(meta, dict) else None
    saved = versions.get("hepad") if isinstance(versions, dict) else None
    if saved and saved != __version__:
        log.info("%s was saved by hepad %s; this is hepad %s", root, saved, __version__)
    det.metadata_ = meta if isinstance(meta, dict) else {}
    return det
