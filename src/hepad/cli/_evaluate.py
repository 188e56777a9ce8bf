"""``hepad evaluate``, ``hepad compare`` and ``hepad report``: thin layers over :mod:`hepad.evaluation`."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Optional

import typer

from .._outputs import writing
from ..errors import ConfigError
from ._app import app, console, err_console, progress, verbose
from ._tables import print_table

log = logging.getLogger("hepad.cli")

_BKG_HELP = "Background (SM) events: file or glob; repeatable, files are concatenated."
_SIG_HELP = "Signal events as NAME=FILE, or just FILE (named by its stem); repeatable."
_STYLE_HELP = "Plot style: CMS or ATLAS (mplhep)."


def _quiet_matplotlib() -> None:
    # Font fallback notices from matplotlib are noise on a terminal.
    logging.getLogger("matplotlib").setLevel(logging.ERROR)


def _fprs(values: Optional[list[float]]) -> tuple[float, ...]:
    from ..metrics import DEFAULT_FPRS

    if not values:
        return DEFAULT_FPRS
    for f in values:
        if not 0 < f < 1:
            raise ConfigError(f"--fpr {f}: a background efficiency must be in (0, 1), e.g. 1e-4.")
    return tuple(values)


def _signals(specs: list[str]) -> dict[str, str]:
    from ..evaluation import split_signal_spec

    out: dict[str, str] = {}
    for spec in specs:
        name, path = split_signal_spec(spec)
        if name in out:
            raise ConfigError(f"--signal: the name {name!r} is given twice; name them with NAME=FILE.")
        out[name] = path
    return out


def _bar_callback(bar: Any, task: Any):
    def cb(what: str, done: int, total: int) -> None:
        bar.update(task, completed=done, total=total, description=what)

    return cb


@app.command("evaluate")
def evaluate_cmd(
    model: Path = typer.Argument(..., help="Model directory (from `hepad train`) or an exported .onnx file.", show_default=False),
    background: list[str] = typer.Option(..., "--background", "-b", help=_BKG_HELP, show_default=False),
    signal: list[str] = typer.Option(..., "--signal", "-s", help=_SIG_HELP, show_default=False),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder: metrics.json, metrics.csv, plots/.", show_default=False),
    report: bool = typer.Option(False, "--report", help="Also write the self-contained report.html."),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", help="Dask scheduler address (tcp://host:port or scheduler JSON): evaluate from "
        "per-partition histograms on the cluster (metrics table only, no plots)."
    ),
    fpr: Optional[list[float]] = typer.Option(None, "--fpr", help="Working-point background efficiency; repeatable (default 1e-3 1e-4 1e-5)."),
    max_events: Optional[int] = typer.Option(None, "--max-events", min=1, help="Read at most this many events per file."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Write the metrics only."),
    tsne: bool = typer.Option(True, "--tsne/--no-tsne", help="Include the t-SNE latent view (a few seconds)."),
    style: str = typer.Option("CMS", "--style", help=_STYLE_HELP),
    open_data: bool = typer.Option(False, "--open-data", help="Label plots 'Open Data' instead of 'Simulation'."),
    force: bool = typer.Option(False, "--force", help="Write into an existing non-empty output folder."),
) -> None:
    """Evaluate a trained detector on background and signal files.

    Example: hepad evaluate model/ -b sm_test.h5 -s ato4l=ato4l.h5 -s lq-btau.h5 -o eval/ --report
    """
    from .. import evaluation as E

    _quiet_matplotlib()
    fprs = _fprs(fpr)
    sigs = _signals(signal)
    inputs = _event_inputs(background, sigs)
    show = err_console.is_terminal or verbose()
    t0 = time.perf_counter()
    with writing(output, kind="dir", inputs=[model, *inputs], force=force, what="evaluation folder"):
        written, result = _evaluate(model, background, sigs, output, scheduler, fprs, max_events, no_plots,
                                    tsne, report, style, open_data, show)
    print_table(result.table(), fprs, title=f"{result.detector} on {len(sigs)} signal(s)")
    err_console.print(f"wrote {output}/ ({len(written)} files) in {time.perf_counter() - t0:.1f} s")
    if "report.html" in written:
        console.print(f"report: {written['report.html']}")


def _event_inputs(background: list[str], sigs: dict[str, str]) -> list[Path]:
    """Every event file named (globs expanded), checked to be files, for the output policy."""
    from .._outputs import check_inputs_exist
    from ..scoring import expand_files

    specs = [*background, *sigs.values()]
    check_inputs_exist(specs)
    return expand_files(specs)


def _evaluate(model, background, sigs, output, scheduler, fprs, max_events, no_plots, tsne, report, style,
              open_data, show):
    from .. import evaluation as E

    if scheduler is not None:
        with progress(disable=not show) as bar:
            task = bar.add_task("evaluating on the cluster", total=None)

            def on_part(p: Any) -> None:
                bar.update(task, completed=getattr(p, "parts_done", 0), total=getattr(p, "parts_total", None))

            result = E.evaluate_files(model, background, sigs, scheduler=scheduler, fprs=fprs, progress=on_part)
    else:
        from ..api import load_model

        det = load_model(model)
        _check_model_features(det, [*background, *sigs.values()])
        with progress(disable=not show) as bar:
            task = bar.add_task("reading events", total=None)
            bkg, sig_events = E.load_samples(background, sigs, max_events=max_events)
            result = E.evaluate(
                det, bkg, sig_events, fprs=fprs, diagnostics=not no_plots,
                embed=("pca", "tsne") if tsne else ("pca",), progress=_bar_callback(bar, task),
                info={"model": str(model)},
            )
            bar.update(task, description="writing plots" if not no_plots else "writing metrics")
            written = result.save(output, plots=not no_plots, report=report, experiment=style, data=open_data)
    if scheduler is not None:
        written = result.save(output, plots=False, report=report, experiment=style, data=open_data)
    return written, result


def _check_model_features(det: Any, specs: list[str]) -> None:
    """Each event file must hold the model's features: checked on its first event, so that a
    mismatch names the file (not the detector) before anything is computed."""
    from ..io import read_events
    from ..scoring import expand_files

    n = getattr(det, "n_features_in_", None)
    if n is None:
        return
    for path in expand_files(specs):
        ev = read_events(path, entry_range=(0, 1), drop_invalid=True)
        k = ev.features.shape[1]
        if k != n:
            raise ConfigError(
                f"{path}: {k} features per event, but the model {det.name} was trained on {n}; "
                "give files with the model's features."
            )


def _named_models(models: list[str]) -> dict[str, str]:
    """``NAME=SPEC`` or ``SPEC`` -> {name or a placeholder: spec}; names must be unique."""
    out: dict[str, str] = {}
    for i, item in enumerate(models):
        name, sep, spec = item.partition("=")
        if sep and name and spec and not Path(item).exists():
            if name in out:
                raise ConfigError(f"{item!r}: the name {name!r} is given twice; give each model its own NAME=.")
            out[name] = spec
        elif sep and (not name or not spec) and not Path(item).exists():
            raise ConfigError(f"{item!r}: write NAME=MODEL (a model folder, YAML config or detector name).")
        else:
            out[f"\0{i}"] = item
    return out


def _load_or_train(spec: str, train: Optional[Path], val: Optional[Path], bar: Any, task: Any) -> tuple[str, Any]:
    """A model directory / .onnx file is loaded; a YAML config or a detector name is trained on --train."""
    from ..api import resolve_model
    from ..detectors import available_detectors

    if train is None and spec in available_detectors() and not Path(spec).exists():
        raise ConfigError(f"{spec!r} is a detector name: give --train BKG.h5 to train it first (and --val).")

    def on_epoch(epoch: int, n_epochs: int, logs: dict[str, Any]) -> None:
        bar.update(task, completed=epoch, total=n_epochs, description=f"training {Path(spec).stem}")

    bar.update(task, description=f"preparing {spec}", completed=0, total=None)
    return resolve_model(spec, train=train, val=val, progress=on_epoch)


@app.command("compare")
def compare_cmd(
    models: list[str] = typer.Argument(
        ..., help="Model folders, YAML configs or detector names (trained on --train), each optionally NAME=MODEL.",
        show_default=False),
    background: list[str] = typer.Option(..., "--background", "-b", help=_BKG_HELP, show_default=False),
    signal: list[str] = typer.Option(..., "--signal", "-s", help=_SIG_HELP, show_default=False),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder.", show_default=False),
    train: Optional[Path] = typer.Option(None, "--train", help="Background to train configs / detector names on."),
    val: Optional[Path] = typer.Option(None, "--val", help="Held-out background for early stopping and thresholds."),
    report: bool = typer.Option(False, "--report", help="Also write the self-contained report.html."),
    fpr: Optional[list[float]] = typer.Option(None, "--fpr", help="Working-point background efficiency; repeatable."),
    max_events: Optional[int] = typer.Option(None, "--max-events", min=1, help="Read at most this many events per file."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Write the metrics only."),
    tsne: bool = typer.Option(True, "--tsne/--no-tsne", help="Include the t-SNE latent view of every detector."),
    style: str = typer.Option("CMS", "--style", help=_STYLE_HELP),
    open_data: bool = typer.Option(False, "--open-data", help="Label plots 'Open Data' instead of 'Simulation'."),
    force: bool = typer.Option(False, "--force", help="Write into an existing non-empty output folder."),
) -> None:
    """Compare several detectors on the same events: table, ROC overlays, AUC vs time, agreement.

    Example: hepad compare ae iforest vae=model_vae/ --train sm_train.h5 --val sm_val.h5 -b sm_test.h5 -s ato4l.h5 -o cmp/
    """
    from .. import evaluation as E

    _quiet_matplotlib()
    fprs = _fprs(fpr)
    sigs = _signals(signal)
    named = _named_models(models)
    inputs = _event_inputs(background, sigs)
    inputs += [Path(m) for m in named.values() if Path(m).exists()]
    inputs += [p for p in (train, val) if p is not None]
    show = err_console.is_terminal or verbose()
    t0 = time.perf_counter()
    with writing(output, kind="dir", inputs=inputs, force=force, what="comparison folder"), \
            progress(disable=not show) as bar:
        task = bar.add_task("loading", total=None)
        dets: dict[str, Any] = {}
        for given, spec in named.items():
            label, det = _load_or_train(spec, train, val, bar, task)
            if given is not None and not given.startswith("\0"):
                label = given
            if label in dets:
                label = f"{label}-{len(dets)}"
            dets[label] = det
        bar.update(task, description="reading events", completed=0, total=None)
        bkg, sig_events = E.load_samples(background, sigs, max_events=max_events)
        result = E.compare(dets, bkg, sig_events, fprs=fprs, diagnostics=not no_plots,
                           embed=("pca", "tsne") if tsne else ("pca",), progress=_bar_callback(bar, task),
                           info={"models": list(models)})
        bar.update(task, description="writing plots")
        written = result.save(output, plots=not no_plots, report=report, experiment=style, data=open_data)
    print_table(result.table(), fprs, title=f"{len(dets)} detectors on {len(sigs)} signal(s)")
    err_console.print(f"wrote {output}/ ({len(written)} files) in {time.perf_counter() - t0:.1f} s")
    if "report.html" in written:
        console.print(f"report: {written['report.html']}")


@app.command("report")
def report_cmd(
    folder: Path = typer.Argument(..., help="Output folder of `hepad evaluate` or `hepad compare`.", show_default=False),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="HTML file to write (default FOLDER/report.html)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing report file."),
) -> None:
    """Write one self-contained HTML report (plots embedded) of an evaluation folder.

    Example: hepad report eval/ -o eval_report.html
    """
    from .._outputs import writing
    from ..report import write_report

    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder; give the output folder of `hepad evaluate` or `hepad compare`.")
    target = output if output is not None else folder / "report.html"
    inputs = [p for p in folder.rglob("*") if p.is_file() and p.suffix != ".html"]
    # The folder's own report.html is derived from its metrics and is rewritten freely; another
    # existing file given with -o is replaced only with --force.
    with writing(target, inputs=inputs, force=force or output is None, what="report file"):
        path = write_report(folder, output)
    console.print(f"report: {path}")
