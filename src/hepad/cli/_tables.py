"""The metrics table printed by ``hepad evaluate``, ``compare`` and the demo."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def table_header(fprs: Sequence[float]) -> list[str]:
    """Column titles matching :func:`iter_rows_text`."""
    return ["Detector", "Signal", "ROC AUC"] + [f"TPR@{f:.0e}".replace("e-0", "e-") for f in fprs] + ["maxSIC", "µs/evt"]


def iter_rows_text(rows: Iterable[Mapping[str, Any]], fprs: Sequence[float]) -> list[list[str]]:
    """Rows formatted for a terminal table: detector, signal, AUC±err, TPRs (* = unresolved), max SIC, µs/event."""
    out = []
    for r in rows:
        cells = [str(r["detector"]), str(r["signal"]), f"{r['auc']:.3f}±{r['auc_err']:.3f}"]
        for f in fprs:
            from ..evaluation import fpr_key

            k = fpr_key(f)
            if k in r:
                mark = "" if r[f"{k}_resolved"] else "*"
                cells.append(f"{r[k]:.3f}{mark}")
            else:
                cells.append("-")
        cells.append("-" if r["max_sic"] != r["max_sic"] else f"{r['max_sic']:.2f}")
        cells.append(f"{r['time_per_event_us']:.3g}" if r.get("time_per_event_us") else "-")
        out.append(cells)
    return out


def print_table(rows: list[dict[str, Any]], fprs: tuple[float, ...], title: str = "") -> None:
    """The metrics table on stdout (rich)."""
    from rich import box
    from rich.table import Table

    from ..evaluation import fpr_key
    from ._app import console

    table = Table(title=title or None, header_style="bold", show_lines=False, box=box.SIMPLE_HEAD, pad_edge=False)
    for i, h in enumerate(table_header(fprs)):
        table.add_column(h, justify="left" if i < 2 else "right", no_wrap=True)
    for cells in iter_rows_text(rows, fprs):
        table.add_row(*cells)
    # A pipe or a log file gets the whole table (rich assumes 80 columns there and would cut the
    # numbers); a terminal gets its own width.
    # (Console.print clamps width= to the console's own, hence a wider console on the same file.)
    if not console.is_terminal:
        from rich.console import Console

        console = Console(file=console.file, width=max(console.width, 160))
    console.print(table)
    if any(not r.get(f"{fpr_key(f)}_resolved", True) for r in rows for f in fprs):
        console.print("[dim]* working point not resolved: fewer than 10/FPR background events.[/]")
