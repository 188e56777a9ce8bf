"""``hepad inspect`` and ``hepad convert``: look into event files, convert between formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import InputError
from ._app import app, console, err_console, progress, verbose

_FORMAT_HELP = "File format (hdf5, csv, parquet, root); default: from the suffix."
_KEY_HELP = "HDF5 dataset or ROOT tree (default: Particles/data, or the only/Events/mini/events tree)."
_COLUMNS_HELP = "Comma-separated columns/branches to read as flat features, in this order."
_DROP_HELP = "Drop invalid events (NaN/inf, type outside 0-4, pT < 0 or above 14 TeV, |eta|/phi out of range) and report them, instead of failing."
_MAPPING_HELP = ("ROOT: YAML file naming the electron/muon/jet/MET collections (prefix or branches, "
                 "units, extra cuts) where detection cannot decide; see docs/formats.md.")


def _columns(columns: Optional[str]) -> Optional[list[str]]:
    if columns is None:
        return None
    cols = [c.strip() for c in columns.split(",") if c.strip()]
    if not cols:
        raise InputError("--columns is empty; give comma-separated column names.")
    return cols


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        a = abs(v)
        return f"{v:.4g}" if 1e-3 <= a < 1e6 else f"{v:.3e}"
    return str(v)


@app.command("inspect")
def inspect_cmd(
    files: list[Path] = typer.Argument(..., help="Event files to describe.", show_default=False),
    format: Optional[str] = typer.Option(None, "--format", "-f", help=_FORMAT_HELP),
    key: Optional[str] = typer.Option(None, "--key", "-k", help=_KEY_HELP),
    columns: Optional[str] = typer.Option(None, "--columns", help=_COLUMNS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
    drop_invalid: bool = typer.Option(False, "--drop-invalid", help=_DROP_HELP),
    chunk_size: int = typer.Option(100_000, "--chunk-size", min=1, help="Events per streamed chunk."),
    sample: int = typer.Option(
        100_000, "--sample", min=1, help="Events sampled (uniformly, seeded) for the quantiles."
    ),
    mapping: Optional[Path] = typer.Option(None, "--mapping", "-m", help=_MAPPING_HELP),
) -> None:
    """Describe event files: format, events, object multiplicities, feature quantiles.

    For ROOT files it also shows which branches became electrons, muons, jets and MET, and
    why (or why a collection is missing); --mapping FILE overrides what detection chose.
    Files are streamed in chunks, so any size works in bounded memory; a progress bar shows
    on large files. Nothing is printed unless every file could be read.

    Example: hepad inspect HZZ.root --mapping hzz.yaml
    """
    from ..io import hdf5_keys_to_inspect, summarize

    cols = _columns(columns)
    summaries = []
    for path in files:
        keys = [key] if key is not None else hdf5_keys_to_inspect(path, format)
        for k in keys:
            summaries.append(_summarize_with_progress(
                summarize, path, format=format, key=k, columns=cols, drop_invalid=drop_invalid,
                chunk_size=chunk_size, sample_size=sample,
                **({"mapping": mapping} if mapping is not None else {}),
            ))
    if as_json:
        console.print_json(json.dumps(summaries))
        return
    for s in summaries:
        _print_summary(s)


def _summarize_with_progress(summarize, path: Path, **kwargs: Any) -> dict:
    chunk_size = kwargs["chunk_size"]
    show = err_console.is_terminal or verbose()
    with progress(disable=not show) as bar:
        task = None

        def on_progress(done: int, total: Optional[int]) -> None:
            nonlocal task
            if total is not None and total <= chunk_size:
                return  # one chunk: a bar would only flash
            if task is None:
                task = bar.add_task(f"reading {path.name}", total=total)
            bar.update(task, completed=done)

        return summarize(path, on_progress=on_progress, **kwargs)


def _wide() -> Console:
    """stdout console for the tables: the terminal's width, or 140 columns when piped."""
    return console if console.is_terminal else Console(width=max(console.width, 140))


def _print_summary(s: dict) -> None:
    head = f"[bold]{s['file']}[/bold]  format={s['format']}"
    if s.get("key"):
        head += f"  key={s['key']}"
    if s.get("tree_kind"):
        head += f"  tree={s['tree_kind']}"
    head += f"  layout={s['layout']}  events={s['n_events']:,}  features={s['n_features']}"
    console.print(head)
    if s["dropped_invalid"]:
        console.print(f"  dropped {s['dropped_invalid']:,} events with invalid values")
    if s["dropped_columns"]:
        console.print(f"  dropped non-numeric columns: {', '.join(s['dropped_columns'])}")
    if s.get("collections"):
        found = [k for k, c in s["collections"].items() if "missing" not in c]
        console.print(f"  collections found: {', '.join(found) or 'none'}"
                      + (f"; missing (empty slots): {', '.join(s['missing_collections'])}"
                         if s.get("missing_collections") else ""), soft_wrap=True)
        for kind, c in s["collections"].items():
            if "missing" in c:
                console.print(f"    {kind:<8} - {c['missing']}", markup=False, highlight=False, soft_wrap=True)
            else:
                console.print(f"    {kind:<8} {', '.join(c['branches'].values())}  <- {c['why']}",
                              markup=False, highlight=False, soft_wrap=True)
    if "multiplicities" in s:
        t = Table(title="objects per event", title_justify="left")
        t.add_column("object")
        t.add_column("mean", justify="right")
        width = max(len(m["distribution"]) for m in s["multiplicities"].values())
        for i in range(width):
            t.add_column(f"n={i}", justify="right")
        for name, m in s["multiplicities"].items():
            dist = [str(m["distribution"].get(str(i), "")) for i in range(width)]
            t.add_row(name, f"{m['mean']:.3f}", *dist)
        _wide().print(t)
    exact = s["quantiles_from"] >= s["n_events"]
    title = "features" + ("" if exact else f" (quantiles from a sample of {s['quantiles_from']:,} events)")
    if s["layout"] == "adc2021":
        title += "; object slots over events where filled"
    t = Table(title=title, title_justify="left")
    cols = ["name", "filled", "mean", "min", "q01", "q25", "q50", "q75", "q99", "max"]
    for c in cols:
        t.add_column(c, justify="left" if c == "name" else "right", no_wrap=True)
    for f in s["features"]:
        row = [f["name"], f"{f['filled']:.1%}"] + [_fmt(f.get(c)) for c in cols[2:]]
        t.add_row(*row)
    _wide().print(t)


@app.command("convert")
def convert_cmd(
    source: Path = typer.Argument(..., help="Input event file.", show_default=False),
    output: Path = typer.Argument(..., help="Output file: .h5 (ADC2021 HDF5) or .parquet.", show_default=False),
    format: Optional[str] = typer.Option(None, "--format", "-f", help=_FORMAT_HELP),
    key: Optional[str] = typer.Option(None, "--key", "-k", help=_KEY_HELP),
    columns: Optional[str] = typer.Option(None, "--columns", help=_COLUMNS_HELP),
    drop_invalid: bool = typer.Option(False, "--drop-invalid", help=_DROP_HELP),
    features: Optional[str] = typer.Option(
        None, "--features", help="Compute physics features on the way: 'dilepton'."
    ),
    chunk_size: int = typer.Option(100_000, "--chunk-size", min=1, help="Events per streamed chunk."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
    mapping: Optional[Path] = typer.Option(None, "--mapping", "-m", help=_MAPPING_HELP),
) -> None:
    """Convert an event file (HDF5, CSV, Parquet, ROOT) to HDF5 or Parquet, streaming.

    ROOT NanoAOD and ATLAS trees become the ADC2021 object layout. The output appears only
    when complete; on any error nothing is written.

    Example: hepad convert nanoAOD.root events.h5 --features dilepton
    """
    from .._outputs import writing
    from ..features import dilepton_features
    from ..io import count_events, iter_events, write_events
    from ..io import WRITE_FORMATS, detect_format

    if features not in (None, "dilepton"):
        raise InputError(f"--features {features!r} is unknown; choose 'dilepton'.")
    out_fmt = detect_format(output)
    if out_fmt not in WRITE_FORMATS:
        raise InputError(f"{output}: hepad writes {', '.join(WRITE_FORMATS)}; use a .h5 or .parquet name.")
    from .._outputs import check_output

    check_output(output, inputs=[source, *([mapping] if mapping is not None else [])], force=force,
                 what="output file")
    mkw = {"mapping": mapping} if mapping is not None else {}
    total = count_events(source, format=format, key=key, **mkw)
    n_written = 0
    show = err_console.is_terminal or verbose()

    def chunks():
        nonlocal n_written
        with progress(disable=not show or total <= chunk_size) as bar:
            task = bar.add_task(f"converting {source.name}", total=total)
            done = 0
            for chunk in iter_events(source, chunk_size=chunk_size, format=format, key=key,
                                     columns=_columns(columns), drop_invalid=drop_invalid, **mkw):
                done += chunk_size
                if features == "dilepton":
                    chunk = dilepton_features(chunk)
                n_written += len(chunk)
                bar.update(task, completed=min(done, total))
                yield chunk
        if n_written == 0:
            raise InputError(f"{source}: no valid events to convert (all {total:,} were dropped); nothing written.")

    with writing(output, inputs=[source, *([mapping] if mapping is not None else [])], force=force,
                 what="output file"):
        write_events(chunks(), output)
    err_console.print(f"wrote {n_written:,} events to {output}")
