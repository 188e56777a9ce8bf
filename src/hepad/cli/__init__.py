"""The ``hepad`` command line: a thin typer layer over the public Python API.

Parse -> configuration -> library call. Nothing below this package sees typer.

Exit codes: 0 success; 1 a :class:`~hepad.errors.HepadError` (one line: the file or value and
what to do); 2 a usage error (the usage line, the error and a "did you mean" hint) or an internal
error (a bug: one line, the traceback with ``-v``); 130 interrupted (Ctrl-C), with one line
saying what was kept and how to resume.

This module imports nothing heavy: ``hepad --version`` and ``hepad detectors [--json]`` are
answered without building the typer application (typer 0.29 imports pydantic to parse any
option, about 0.2 s), everything else goes through :mod:`hepad.cli._main`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["app", "run", "main", "print_table"]

#: argument lists answered without typer: the same output as the typer commands (tested)
_FAST = {("--version",), ("detectors",), ("detectors", "--json")}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Prints results on stdout and one line per error on stderr; never raises (except
    ``SystemExit`` from the commands themselves).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if tuple(args) in _FAST:
        from ._listing import print_detectors, print_version

        if args == ["--version"]:
            print_version()
        else:
            print_detectors(as_json=args[-1] == "--json")
        return 0
    from ._main import main as _main

    return _main(args)


def run() -> None:
    """Console entry point."""
    sys.exit(main())


def __getattr__(name: str) -> Any:
    if name == "app":
        from ._main import app

        return app
    if name == "print_table":  # the metrics table as the commands print it (used by hepad.demo)
        from ._tables import print_table

        return print_table
    raise AttributeError(f"module 'hepad.cli' has no attribute {name!r}")
