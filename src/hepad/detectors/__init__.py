"""Anomaly detectors behind one scikit-learn-style interface (see :mod:`hepad.detectors.base`).

The registry (:mod:`hepad.detectors.registry`) maps names to ``"module:Class"`` strings, so
importing this package imports no detector module, no torch and no scikit-learn.
"""

from .registry import (
    DEFAULT_DETECTOR,
    PRESETS,
    TRIGGER_DETECTOR,
    available_detectors,
    describe_detectors,
    get_detector_class,
    make_detector,
    register,
    register_preset,
)

__all__ = [
    "DEFAULT_DETECTOR",
    "PRESETS",
    "TRIGGER_DETECTOR",
    "available_detectors",
    "describe_detectors",
    "get_detector_class",
    "make_detector",
    "register",
    "register_preset",
]
