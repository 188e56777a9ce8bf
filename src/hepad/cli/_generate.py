"""``hepad generate`` and ``hepad dataset build``: thin wrappers over :mod:`hepad.generate`."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import typer

from ._app import app, console, err_console, progress

dataset_app = typer.Typer(help="Build and manage the default benchmark dataset.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@contextlib.contextmanager
def _bar(description: str):
    """A progress callback feeding a rich bar; no bar when stderr is not a terminal."""
    if not err_console.is_terminal:
        yield None
        return
    with progress() as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _process_help() -> str:
    from ..generate import CATALOGUE

    lines = [f"{p.name}: {p.description}" for p in CATALOGUE.values()]
    return "; ".join(lines + ["sm-mix: W/QCD/Z/ttbar in the ADC2021 proportions"])


@app.command("generate")
def generate_cmd(
    process: Optional[str] = typer.Argument(
        None, help="Catalogue process (w, z, ttbar, qcd, sm-mix, ato4l, lq-btau, h0-tautau, hplus-taunu, "
        "zprime-ll, wprime-lnu); omit or 'custom' (or a new label) with --card.",
        show_default=False,
    ),
    n_events: Optional[int] = typer.Option(None, "-n", "--n-events", help="Number of accepted (written) events."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output HDF5 file (.h5)."),
    seed: int = typer.Option(0, "--seed", help="Base seed; output is identical for a seed and chunk size."),
    workers: Optional[int] = typer.Option(
        None, "--workers", "-j", help="Dask worker processes (default: one per core; 0 or 1: in-process)."
    ),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", help="Address of a running Dask scheduler (tcp://host:8786), or 'inline'."
    ),
    pileup: float = typer.Option(20.0, "--pileup", help="Mean number of pileup interactions overlaid (ADC2021: 20; 0: none)."),
    card: Optional[Path] = typer.Option(None, "--card", help="Pythia settings file of your own process."),
    chunk_size: int = typer.Option(500, "--chunk-size", help="Accepted events per chunk (resume unit)."),
    list_processes: bool = typer.Option(False, "--list", help="List the process catalogue and exit."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
) -> None:
    """Generate events with Pythia 8 + fastjet + a Delphes-CMS-like detector response (pileup 20 by
    default) into ADC2021 HDF5.

    Interrupted runs resume from finished chunks (kept in .FILE.parts/ next to the output).

    Example: hepad generate ato4l -n 10000 -o ato4l.h5 --seed 1 -j 2
    """
    from .._outputs import writing
    from ..generate import generate
    from ._app import set_interrupt_hint

    if list_processes:
        for line in _process_help().split("; "):
            console.print(line)
        raise typer.Exit()
    if n_events is None or output is None:
        from ..errors import ConfigError

        raise ConfigError("hepad generate needs -n N (accepted events) and -o FILE.h5.")
    parts = output.parent / f".{output.name}.parts"

    def hint() -> str:
        n = len(list(parts.glob("*.h5"))) if parts.is_dir() else 0
        if not n:
            return "nothing was written."
        return f"kept {n} finished chunk(s) in {parts}/; run the same command again to resume."

    set_interrupt_hint(hint)
    # The generator itself locks the output (for API callers too), hence lock=False here.
    with writing(output, inputs=[card] if card else [], force=force, what="events file",
                 leftovers=[parts], lock=False), _bar(f"generating {process or 'custom'}") as cb:
        path = generate(
            process, n_events, output, seed=seed, workers=workers, scheduler=scheduler,
            pileup=pileup, card=card, progress=cb, chunk_size=chunk_size,
        )
    console.print(f"wrote {n_events} events to {path}")


@dataset_app.command("build")
def dataset_build_cmd(
    size: str = typer.Option("small", "--size", help="demo, tiny, small, medium or large."),
    directory: Optional[Path] = typer.Option(
        None, "--dir", help="Output folder (default: $HEPAD_DATA_DIR or ~/.cache/hepad/datasets/SIZE)."
    ),
    workers: Optional[int] = typer.Option(
        None, "--workers", "-j", help="Dask worker processes (default: one per core; 0 or 1: in-process)."
    ),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Address of a running Dask scheduler."),
    extra: list[str] = typer.Option(
        [], "--extra", help="Extra signal: a catalogue name (zprime-ll) or NAME=CARD.cmnd; repeatable."
    ),
) -> None:
    """Build the benchmark dataset (SM-mix train/val/test + 4 signals); valid files are reused.

    Files that exist and match the requested size and seeds are kept; an interrupted build
    resumes from its finished chunks.

    Example: hepad dataset build --size tiny --dir data/tiny -j 2
    """
    from .._outputs import writing
    from ..errors import ConfigError
    from ..generate import build_dataset, default_dataset_dir
    from ._app import set_interrupt_hint

    extras: dict[str, Optional[str]] = {}
    for item in extra:
        name, sep, card = item.partition("=")
        if not name or (sep and not card):
            raise ConfigError(f"--extra {item!r}: use a catalogue name or NAME=CARD.cmnd.")
        extras[name] = card or None
    target = directory if directory is not None else default_dataset_dir(size)
    set_interrupt_hint(f"finished files and chunks are kept in {target}/; run the same command again to resume.")
    # An existing folder is the normal case (valid files are reused), hence force=True: the
    # builder itself replaces only files that do not match, and locks each file it writes.
    with writing(target, kind="dir", inputs=[c for c in extras.values() if c], force=True,
                 what="dataset folder", lock=False, keep_partial=True), _bar(f"dataset {size}") as cb:
        paths = build_dataset(size, target, workers=workers, progress=cb, extra=extras, scheduler=scheduler)
    for stem, path in paths.items():
        console.print(f"{stem}: {path}")
