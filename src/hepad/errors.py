"""The package's errors. Every error a user can meet subclasses :class:`HepadError`.

Each message names the file (or key, column, parameter) and says what to do, so the CLI can
print it on one line and exit non-zero.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HepadError(Exception):
    """Base class of every error hepad raises on purpose."""


class InputError(HepadError, ValueError):
    """An input file is missing, unreadable, malformed, or holds invalid values."""


class FormatError(InputError):
    """The file format is unknown or the file does not match its format."""


class MissingKeyError(InputError, KeyError):
    """A key, branch or column that was asked for does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else ""


class InvalidValuesError(InputError):
    """The events hold NaN or infinite values."""


class ConfigError(HepadError, ValueError):
    """A configuration value or parameter is wrong (unknown key, wrong type, out of range)."""


class NotFittedError(HepadError):
    """A detector was used before ``fit`` (or ``load``)."""


class ModelFileError(HepadError):
    """A model directory is missing files, was tampered with, or is not a hepad model."""


class OutputError(HepadError):
    """An output path cannot be used: it is an input, exists (without --force), is locked by
    another run, or lies where nothing can be written."""


class GenerationError(HepadError):
    """Event generation failed (bad card line, Pythia initialisation failure)."""


class DependencyError(HepadError, ImportError):
    """An optional dependency is missing; the message gives the pip line."""


def closest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """A ' Did you mean ...?' hint, or an empty string when nothing is close."""
    matches = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" Did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
