"""In-process CLI calls for the tests: exit code, stdout and stderr of one `hepad` command."""

from __future__ import annotations

import sys

from hepad.cli import main, run


def cli(capsys, *args) -> tuple[int, str, str]:
    """``hepad ARGS`` through :func:`hepad.cli.main`."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def cli_run(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``hepad ARGS`` through the console entry point :func:`hepad.cli.run` (as a shell runs it)."""
    monkeypatch.setattr(sys, "argv", ["hepad", *map(str, args)])
    code = 0
    try:
        run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return (code, *capsys.readouterr())


def one_error_line(err: str) -> str:
    """The single ``hepad: error: ...`` line of ``err`` (fails on anything else)."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("hepad: error: ") and "internal error" not in lines[0], err
    return lines[0]
