"""The typer application object and shared CLI helpers. Commands live in sibling modules."""

from __future__ import annotations

import logging
import os
import warnings

import typer
from rich.console import Console

from .._version import __version__

app = typer.Typer(
    name="hepad",
    help=(
        "hepad: find new-physics collision events as anomalies.\n\n"
        "Read events (HDF5, CSV, Parquet, ROOT), generate SM and BSM samples with Pythia 8, "
        "train anomaly detectors on Standard Model background, evaluate them at trigger "
        "working points, and export them for the trigger."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: stdout for results; stderr for messages and progress
console = Console()
err_console = Console(stderr=True)

_STATE: dict = {"verbose": False, "hint": None, "warnings": []}


def verbose() -> bool:
    return _STATE["verbose"]


def set_interrupt_hint(hint) -> None:
    """What the Ctrl-C line says was kept and how to resume: a string or a callable giving one."""
    _STATE["hint"] = hint


def interrupt_hint() -> str:
    hint = _STATE.get("hint")
    _STATE["hint"] = None
    if callable(hint):
        try:
            hint = hint()
        except Exception:  # the hint must never hide the interrupt
            hint = None
    return hint or "nothing was written."


class _BufferedWarnings(logging.Handler):
    """Warnings of a command, printed one line each when it ends.

    Held back until the command finishes so that an error is the only line a failed command
    prints (a warning that led to the error would only repeat it); shown with -v in any case.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:  # pragma: no cover - a malformed log call
            msg = str(record.msg)
        _STATE["warnings"].append(" ".join(msg.split()))


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # Python warnings (numpy overflow, library deprecations) as one log line, no source lines.
    logging.getLogger("py.warnings").warning("%s: %s", category.__name__, " ".join(str(message).split()))


def flush_warnings(show: bool = True) -> None:
    """Print the held-back warnings (one line each) and forget them."""
    import sys

    pending, _STATE["warnings"] = _STATE["warnings"], []
    if show:
        for line in dict.fromkeys(pending):  # each distinct warning once
            print(f"hepad: warning: {line}", file=sys.stderr)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"hepad {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Log progress details, and show full tracebacks on errors."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """hepad command line."""
    _STATE["verbose"] = verbose or bool(os.environ.get("HEPAD_VERBOSE"))
    from .._logging import setup_logging

    setup_logging(_STATE["verbose"])
    _STATE["warnings"] = []
    _STATE["hint"] = None
    warnings.showwarning = _one_line_warning
    if not _STATE["verbose"]:
        root = logging.getLogger()
        for h in list(root.handlers):
            root.removeHandler(h)
        handler = _BufferedWarnings(level=logging.WARNING)
        root.addHandler(handler)


def progress(**kwargs):
    """A rich progress bar on stderr (hidden when stderr is not a terminal and not verbose)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
        **kwargs,
    )
