"""What ``hepad --version`` and ``hepad detectors`` print; imports rich and the registry only."""

from __future__ import annotations

import json


def print_version() -> None:
    from .._version import __version__

    print(f"hepad {__version__}")


def print_detectors(as_json: bool = False, console=None) -> None:
    """One line per detector and preset (name, kind, summary); the two defaults are marked."""
    from rich.console import Console
    from rich.table import Table

    from ..detectors.registry import DEFAULT_DETECTOR, TRIGGER_DETECTOR, available_detectors, describe_detectors

    console = console or Console()
    if as_json:
        console.print_json(json.dumps(available_detectors()))
        return
    rows = []
    for name, entry in describe_detectors().items():
        kind = entry.kind
        if name == DEFAULT_DETECTOR:
            kind += " (offline default)"
        if name == TRIGGER_DETECTOR:
            kind += " (trigger default)"
        rows.append((name, kind, entry.summary))
    table = Table(title=None, show_lines=False)
    # Names and kinds are never cut (they are what users type); long summaries are, to the
    # width left (4 borders and 2 spaces of padding per column), also when piped (80 columns).
    w_name, w_kind = (max(len(r[i]) for r in rows) for i in (0, 1))
    table.add_column("name", no_wrap=True, style="bold", min_width=w_name, max_width=w_name)
    table.add_column("kind", no_wrap=True, min_width=w_kind, max_width=w_kind)
    table.add_column("summary", no_wrap=True, overflow="ellipsis",
                     max_width=max(12, console.width - w_name - w_kind - 10))
    for row in rows:
        table.add_row(*row)
    console.print(table)
