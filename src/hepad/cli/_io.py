"""CLI commands (filled in by the area owner)."""

from ._app import app  # noqa: F401
