"""``hepad dataset download``: fetch the ADC2021 challenge files from Zenodo (thin wrapper)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import typer

from ._app import console, err_console, verbose
from ._generate import dataset_app


@contextlib.contextmanager
def _byte_bar():
    """progress(name, done, total) feeding a rich bar in bytes; none when stderr is not a terminal."""
    if not (err_console.is_terminal or verbose()):
        yield None
        return
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=err_console) as bar:
        tasks: dict[str, int] = {}

        def update(name: str, done: int, total: Optional[int]) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done, total=total)

        yield update


@dataset_app.command("download")
def dataset_download_cmd(
    name: str = typer.Argument(..., help="Dataset to fetch: adc2021.", show_default=False),
    signals: Optional[str] = typer.Option(
        None, "--signals", help="Comma-separated signals (ato4l, lq-btau, h0-tautau, hplus-taunu); default all."
    ),
    directory: Optional[Path] = typer.Option(
        None, "--dir", help="Dataset folder (default: $HEPAD_DATA_DIR or ~/.cache/hepad/datasets/adc2021)."
    ),
    record: list[int] = typer.Option(
        [], "--record", help="Also fetch every .h5 file of this Zenodo record (e.g. a black box); repeatable."
    ),
    base_url: Optional[str] = typer.Option(
        None, "--base-url", help="Zenodo server (default $HEPAD_ZENODO_URL or https://zenodo.org)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace existing files that do not match."),
) -> None:
    """Download the ADC2021 challenge files from Zenodo and make them a hepad dataset.

    Every file is checked against Zenodo's MD5, written under a temporary name and renamed when
    complete; an interrupted download resumes where it stopped when you rerun the command. The
    background becomes sm_train/sm_val/sm_test (first 50 % / next 10 % / last 40 % of its
    events), the signals ato4l, lq-btau, h0-tautau, hplus-taunu: the names of a built dataset.

    Example: hepad dataset download adc2021 --signals ato4l,lq-btau --dir data/adc2021
    """
    from .._outputs import writing
    from ..download import download_adc2021, prepare_adc2021
    from ..errors import ConfigError
    from ..generate import default_dataset_dir
    from ._app import set_interrupt_hint

    if name.lower() != "adc2021":
        raise ConfigError(f"unknown dataset {name!r}; hepad downloads 'adc2021'.")
    chosen = None if signals is None else [s.strip() for s in signals.split(",") if s.strip()]
    target = directory if directory is not None else default_dataset_dir("adc2021")
    set_interrupt_hint(f"finished files and partial downloads are kept in {target}/zenodo/; "
                       "run the same command again to resume.")
    # An existing folder is the normal case (verified files are reused, partial ones resumed),
    # hence force=True here: the library replaces only files that do not match, with --force.
    with writing(target, kind="dir", force=True, what="dataset folder", keep_partial=True):
        with _byte_bar() as cb:
            files = download_adc2021(target, signals=chosen, records=record, base=base_url, progress=cb,
                                     force=force)
        for key, path in files.items():
            console.print(f"downloaded {key}: {path}", soft_wrap=True)
        paths = prepare_adc2021(files, target, force=force)
    for stem, path in paths.items():
        console.print(f"{stem}: {path}", soft_wrap=True)
