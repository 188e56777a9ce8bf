"""The one writer of user-facing output files: text, JSON and PNG figures, each atomically.

:mod:`hepad.evaluation` (metrics, plots) and :mod:`hepad.report` (HTML) write through these
functions, so every output appears whole (temporary file + rename, :mod:`hepad._atomic`), with
the usual permissions, and JSON is strict (NaN and infinities become ``null``).
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path

__all__ = ["json_default", "finite", "write_text", "write_json", "write_figure", "versions"]


def json_default(o: Any) -> Any:
    """``json.dumps`` fallback for numpy scalars and arrays and paths."""
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (Path, os.PathLike)):
        return os.fspath(o)
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


def finite(obj: Any) -> Any:
    """``obj`` with numpy values made plain and non-finite floats replaced by None (JSON null)."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return finite(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    target = Path(path)
    with atomic_path(target, suffix=target.suffix or ".tmp") as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 1) -> Path:
    """Strict JSON (undefined numbers as null, never NaN) written atomically."""
    return write_text(path, json.dumps(finite(obj), indent=indent, default=json_default, allow_nan=False))


def write_figure(path: str | os.PathLike[str], fig: Any, *, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically (the figure is not closed: it is not pyplot's)."""
    target = Path(path)
    with atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return target


def versions() -> dict[str, str]:
    """Versions of hepad, Python and the libraries that shape the results (read without importing them)."""
    import importlib.metadata as md

    from ._version import __version__

    out = {"hepad": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("numpy", "scipy", "torch", "scikit-learn", "safetensors", "matplotlib", "mplhep", "h5py"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
