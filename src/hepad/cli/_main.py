"""The typer application with every command registered, and the error-to-exit-code mapping."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..errors import HepadError
from ._app import app, err_console, flush_warnings, interrupt_hint, verbose

# Each module adds its commands to ``app``.
from . import _io, _generate, _train, _evaluate, _deploy, _score, _download  # noqa: E402,F401
from ._app import reflow_help  # noqa: E402

reflow_help(app)

__all__ = ["app", "main"]


def _click_exceptions():
    try:  # typer >= 0.2x vendors click
        from typer._click import exceptions as ce
    except ImportError:  # pragma: no cover - older typer on real click
        from click import exceptions as ce
    return ce


#: options renamed for one vocabulary across commands (issue 16): old spelling -> new one
RENAMED = {"-w": "-j/--workers", "--batch": "--batch-size"}


def _usage_error(exc) -> int:
    """The usage line, the error on one line, and a hint; exit 2."""
    ce = _click_exceptions()
    ctx = getattr(exc, "ctx", None)
    msg = exc.format_message().replace("\n", " ")
    hint = ""
    if isinstance(exc, ce.NoSuchOption) and exc.option_name in RENAMED and ctx is not None:
        new = RENAMED[exc.option_name]
        names = {o for p in ctx.command.params for o in p.opts}
        if new.split("/")[-1] in names:
            msg = f"No such option: {exc.option_name}."
            hint = f" It is now {new} (one spelling in every command)."
    if hint:
        pass
    elif isinstance(exc, ce.NoSuchOption) and getattr(exc, "possibilities", None):
        msg = f"No such option: {exc.option_name}."
        hint = f" Did you mean {', '.join(sorted(exc.possibilities))}?"
    elif isinstance(exc, ce.NoSuchOption) and ctx is not None:
        from ..errors import closest

        names = [o for p in ctx.command.params for o in (*p.opts, *getattr(p, "secondary_opts", ())) if o.startswith("--")]
        hint = closest(exc.option_name, names)
    elif ctx is not None and "No such command" in msg and "Did you mean" not in msg and hasattr(ctx.command, "list_commands"):
        from ..errors import closest

        name = msg.split("'")[1] if "'" in msg else ""
        hint = closest(name, ctx.command.list_commands(ctx))
    if not msg.rstrip().endswith((".", "?", "!")):
        msg = msg.rstrip() + "."
    if ctx is not None:
        print(ctx.get_usage(), file=sys.stderr)
        help_opt = ctx.help_option_names[0] if ctx.help_option_names else "--help"
        hint += f" Run '{ctx.command_path} {help_opt}' for the options and an example."
    print(f"hepad: error: {msg}{hint}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Prints results on stdout and one line per error on stderr; never raises (except
    ``SystemExit`` from the commands themselves).
    """
    ce = _click_exceptions()
    args = list(sys.argv[1:] if argv is None else argv)
    ok = False
    try:
        try:
            rv = app(args=args, prog_name="hepad", standalone_mode=False)
        except KeyboardInterrupt:
            rv = 130
        if rv == 130:  # typer turns KeyboardInterrupt into Exit(130) and returns the code
            print(f"hepad: interrupted; {interrupt_hint()}", file=sys.stderr)
            return 130
        ok = True
        return int(rv) if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except HepadError as exc:
        if verbose():
            err_console.print_exception()
        msg = str(exc).replace("\n", " ")
        print(f"hepad: error: {msg}", file=sys.stderr)
        return 1
    except SystemExit as exc:
        ok = exc.code in (0, None)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except ce.UsageError as exc:
        return _usage_error(exc)
    except ce.ClickException as exc:
        print(f"hepad: error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # the unexpected: a bug
        import typer

        if isinstance(exc, typer.Exit):
            ok = exc.exit_code == 0
            return exc.exit_code
        if isinstance(exc, typer.Abort):
            print(f"hepad: interrupted; {interrupt_hint()}", file=sys.stderr)
            return 130
        if verbose():
            raise
        text = str(exc).replace("\n", " ")
        print(f"hepad: internal error: {exc.__class__.__name__}: {text} (a bug: please report it; "
              "run with -v for the traceback)", file=sys.stderr)
        return 2
    finally:
        flush_warnings(show=ok or verbose())
