"""hepad: anomaly detection for LHC collision events, from raw files to a trigger decision.

Quick tour::

    import hepad
    bkg = hepad.read_events("background.h5")          # EventSet, (N, 19, 4) or (N, F)
    det = hepad.train("ae", bkg)                        # or any name from hepad.available_detectors()
    scores = det.score_samples(hepad.read_events("signal.h5"))
    det.save("model/")  ;  det = hepad.load("model/")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import HepadError

__all__ = [
    "__version__",
    "HepadError",
    "EventSet",
    "read_events",
    "iter_events",
    "write_events",
    "count_events",
    "available_detectors",
    "make_detector",
    "train",
    "load",
    "evaluate",
    "compare",
    "generate",
    "build_dataset",
    "score_files",
    "make_scorer",
    "export_onnx",
    "export_hls",
]

# Everything but the version and the error class is imported on first use, so `import hepad`
# (and with it every `hepad` command) pays for numpy, torch or scikit-learn only when it needs them.
_LAZY = {
    "EventSet": ("hepad.events", "EventSet"),
    "read_events": ("hepad.io", "read_events"),
    "iter_events": ("hepad.io", "iter_events"),
    "write_events": ("hepad.io", "write_events"),
    "count_events": ("hepad.io", "count_events"),
    "available_detectors": ("hepad.detectors.registry", "available_detectors"),
    "make_detector": ("hepad.detectors.registry", "make_detector"),
    "train": ("hepad.api", "train"),
    "load": ("hepad.artifact", "load"),
    "evaluate": ("hepad.evaluation", "evaluate"),
    "compare": ("hepad.evaluation", "compare"),
    "generate": ("hepad.generate", "generate"),
    "build_dataset": ("hepad.generate", "build_dataset"),
    "score_files": ("hepad.scoring", "score_files"),
    "make_scorer": ("hepad.engine", "make_scorer"),
    "export_onnx": ("hepad.export.onnx", "export_onnx"),
    "export_hls": ("hepad.export.hls", "export_hls"),
}


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .events import EventSet
    from .io import count_events, iter_events, read_events, write_events


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'hepad' has no attribute {name!r}")
