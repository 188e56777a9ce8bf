"""``hepad score``: a thin layer over :func:`hepad.scoring.score_files`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from ._app import app, console, err_console, progress, verbose

log = logging.getLogger("hepad.cli")


@app.command("score")
def score_cmd(
    model: Path = typer.Argument(..., help="Model directory written by `hepad train`, or an exported .onnx file.", show_default=False),
    files: list[str] = typer.Argument(..., help="Input files or quoted globs ('data/*.h5'), scored in this order.", show_default=False),
    output: Path = typer.Option(..., "--output", "-o", help="Scores file to write (HDF5, atomically).", show_default=False),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", help="Dask scheduler address tcp://HOST:PORT or scheduler JSON file of a running cluster."
    ),
    workers: Optional[int] = typer.Option(
        None, "--workers", "-j", min=0,
        help="0: score in this process; K: a local Dask cluster of K processes. Default: in this process, unless the input is large enough for a local cluster to pay off.",
    ),
    chunk_size: Optional[int] = typer.Option(
        None, "--chunk-size", min=1, help="Events read and scored at once (default: 16,384, whole HDF5 chunks, within the 256 MiB working-memory budget, HEPAD_WORKING_MEMORY_MIB)."
    ),
    partition_size: int = typer.Option(
        250_000, "--partition-size", min=1, help="Events per partition: the unit of scheduling, retry and resume."
    ),
    engine: str = typer.Option("auto", "--engine", help="Scoring engine: auto, onnx, torch or native."),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, help="Engine threads per task (default: all cores in-process, 1 per Dask worker thread)."
    ),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Input format (hdf5, csv, parquet, root); default: from the suffix."),
    key: Optional[str] = typer.Option(None, "--key", "-k", help="HDF5 dataset or ROOT tree (default: Particles/data, or the tree found)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Skip partitions already scored by an interrupted run of the same job."),
    keep_parts: bool = typer.Option(False, "--keep-parts", help="Keep the per-partition files after assembling the output."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
) -> None:
    """Score events with a trained model: one score and accept flag per event, in input order.

    Writes datasets score (float32), accept (score > the model's threshold), source_file and
    source_row, and the attribute files (the inputs). Re-running an interrupted job resumes.

    Example: hepad score model/ 'data/bkg_*.h5' sig.h5 -o scores.h5 --workers 4
    """
    from .._outputs import check_inputs_exist, writing
    from ..engine import ENGINES
    from ..errors import ConfigError, closest
    from ..scoring import expand_files, parts_dir, score_files
    from ._app import set_interrupt_hint

    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r} is not known.{closest(engine, ENGINES)} Choose one of {', '.join(ENGINES)}.")
    show = err_console.is_terminal or verbose()
    bar = progress(disable=not show)
    task = None

    def on_progress(p) -> None:  # called by the library after every partition
        nonlocal task
        if task is None:
            task = bar.add_task("scoring", total=p.events_total, completed=p.events_done)
            if p.parts_skipped:
                err_console.print(f"resuming: {p.parts_skipped} of {p.parts_total} partitions already scored")
        else:
            bar.update(task, completed=p.events_done)

    check_inputs_exist(files)
    inputs = [model, *expand_files(files)]
    parts = parts_dir(output)

    def hint() -> str:
        n = len(list(parts.glob("*"))) if parts.is_dir() else 0
        if not n:
            return "nothing was written."
        return f"kept {n} scored partition file(s) in {parts}/; run the same command again to resume."

    set_interrupt_hint(hint)
    with writing(output, inputs=inputs, force=force, what="scores file", leftovers=[parts]), bar:
        report = score_files(
            model, files, output, format=format, key=key, chunk_size=chunk_size,
            partition_size=partition_size, engine=engine, threads=threads, scheduler=scheduler,
            n_workers=workers, resume=resume, keep_parts=keep_parts, progress=on_progress,
        )
    rate = report.events_per_s
    console.print(
        f"wrote {report.output}: {report.n_events:,} events from {len(report.files)} file(s), "
        f"{report.n_accepted:,} accepted (score > {report.threshold:.6g}, "
        f"{report.n_accepted / max(report.n_events, 1):.3%}); {report.n_partitions} partitions"
        + (f", {report.n_skipped} resumed" if report.n_skipped else "")
        + f", {report.mode} ({report.n_workers} worker{'s' if report.n_workers != 1 else ''})"
        + (f", {rate:,.0f} events/s" if report.n_scored and rate == rate else ""),
        soft_wrap=True,
    )
