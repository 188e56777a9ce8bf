"""The typer application object and shared CLI helpers. Commands live in sibling modules."""

from __future__ import annotations

import logging
import os
import warnings

import typer
from rich.console import Console


def format_number(value: float) -> str:
    """One way to show a number in help: 1000, 0.5, 1e-4, 40e6 (never 40000000.0)."""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e6 and not f"{value:g}".endswith("e+05"):
        return str(int(value))
    if abs(value) >= 1e4:
        exp = 3 * (int(f"{abs(value):e}".split("e")[1]) // 3)
        mant = value / 10**exp
        return f"{mant:g}e{exp}"
    text = f"{value:g}"
    if "e" in text:
        mant, exp = text.split("e")
        return f"{mant}e{int(exp)}"
    return text


def _plain_help() -> None:
    """Plain metavars (PATH, INT, FLOAT, TEXT) and one way of showing defaults in every --help.

    typer renders Python types (``<path>``, ``<list[str]>``, ``<int range>``) and float defaults
    as ``40000000.0``; these two hooks make the help read like a Unix tool's. The tests in
    tests/test_cli_vocabulary.py fail if a typer upgrade changes the hooks.
    """
    import typer.core as tc

    if getattr(tc, "_hepad_plain_help", False):
        return
    tc._hepad_plain_help = True

    def plain_type(self, ctx) -> str | None:
        if getattr(self, "is_flag", False) or getattr(self, "is_bool_flag", False):
            return None
        if self.metavar:
            return self.metavar
        desc = self.type_descriptor
        if desc.is_path:
            return "PATH"
        ann = desc.annotation
        origin = getattr(ann, "__origin__", None)
        if origin is list:
            ann = ann.__args__[0]
        return {int: "INT", float: "FLOAT", str: "TEXT", bool: None}.get(ann, "VALUE")

    tc.TyperOption.display_type_rich = plain_type
    tc.TyperArgument.display_type_rich = plain_type

    def usage_name(self) -> str:
        name = (self.metavar or self.name or "").upper()
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")

    def rich_name(self) -> str:
        return (self.metavar or self.name or "").upper() + ("..." if self.nargs != 1 else "")

    tc.TyperArgument._usage_display_name = usage_name
    tc.TyperArgument._rich_display_name = rich_name
    tc.TyperArgument.get_error_hint = lambda self, ctx=None: f"'{rich_name(self)}'"
    original = tc._get_default_string

    def default_string(obj, *, ctx, show_default_is_str, default_value):
        if show_default_is_str:
            return str(obj.show_default)
        if isinstance(default_value, float):
            return format_number(default_value)
        if isinstance(default_value, (list, tuple)) and default_value and all(isinstance(v, float) for v in default_value):
            return " ".join(format_number(v) for v in default_value)
        return original(obj, ctx=ctx, show_default_is_str=show_default_is_str, default_value=default_value)

    tc._get_default_string = default_string

    # A default described in the help text, "(default: one per core)", moves to the one
    # "[default: ...]" place, so every option shows its default the same way.
    import re

    pattern = re.compile(r"\s*\(default:?\s+([^()]*(?:\([^()]*\)[^()]*)*)\)|\s*(?:[;,]\s*default|Default):\s+(.*?)\.?$")
    init = tc.TyperOption.__init__

    def option_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        text = self.help or ""
        m = pattern.search(text)
        if m and not isinstance(self.show_default, str):
            self.help = (text[: m.start()] + text[m.end():]).strip()
            self.show_default = (m.group(1) or m.group(2)).strip()

    tc.TyperOption.__init__ = option_init


_plain_help()


def _reflow(doc: str) -> str:
    """Join the hard-wrapped lines of each docstring paragraph (the help renderer keeps single
    newlines, so source wrapping would show as ragged lines); list items and indented lines stay."""
    import inspect

    out: list[str] = []
    for para in inspect.cleandoc(doc).split("\n\n"):
        lines: list[str] = []
        for ln in para.splitlines():
            if lines and ln.strip() and not ln.startswith((" ", "-", "*", "Example")):
                lines[-1] = lines[-1] + " " + ln.strip()
            else:
                lines.append(ln)
        out.append("\n".join(lines))
    return "\n\n".join(out)


def reflow_help(typer_app: typer.Typer) -> None:
    """Reflow the docstring of every command of ``typer_app`` (sub-apps included), once."""
    for info in typer_app.registered_commands:
        cb = info.callback
        if cb is not None and cb.__doc__ and not getattr(cb, "_hepad_reflowed", False):
            cb.__doc__ = _reflow(cb.__doc__)
            cb._hepad_reflowed = True
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            reflow_help(group.typer_instance)

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
        from ._listing import print_version

        print_version()
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
