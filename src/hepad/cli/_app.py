"""The typer application object and shared CLI helpers. Commands live in sibling modules."""

from __future__ import annotations

import os

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

_STATE = {"verbose": False}


def verbose() -> bool:
    return _STATE["verbose"]


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
