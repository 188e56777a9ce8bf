"""The ``hepad`` command line: a thin typer layer over the public Python API.

Parse -> configuration -> library call. Nothing below this package sees typer.
"""

from __future__ import annotations

import sys

from ..errors import HepadError
from ._app import app, err_console, verbose

# Each module adds its commands to ``app``.
from . import _io, _generate, _train, _evaluate, _deploy, _score, _download  # noqa: E402,F401

__all__ = ["app", "run"]


def run() -> None:
    """Console entry point: one-line errors on stderr, non-zero exit, traceback with -v."""
    try:
        app(standalone_mode=False)
    except HepadError as exc:
        if verbose():
            err_console.print_exception()
        msg = str(exc).replace("\n", " ")
        print(f"hepad: error: {msg}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("hepad: interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click's usage errors and the unexpected
        import click

        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            print("hepad: aborted", file=sys.stderr)
            sys.exit(1)
        if verbose():
            raise
        print(f"hepad: internal error: {exc.__class__.__name__}: {exc} (run with -v for the traceback)", file=sys.stderr)
        sys.exit(2)
