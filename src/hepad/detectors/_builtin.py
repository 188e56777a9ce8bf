"""Imports every module that registers detectors (loaded on first registry use)."""

from . import classical  # noqa: F401
from . import deep  # noqa: F401
from . import ensemble  # noqa: F401
from . import supervised  # noqa: F401
