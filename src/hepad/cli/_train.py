"""``hepad train`` and ``hepad detectors``: a thin layer over :func:`hepad.api.train`."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from ..errors import ConfigError
from ._app import app, console, err_console, progress, verbose

log = logging.getLogger("hepad.cli")

_FORMAT_HELP = "File format (hdf5, csv, parquet, root); default: from the suffix."
_KEY_HELP = "HDF5 dataset or ROOT tree (default: Particles/data, or the only/Events/mini/events tree)."
_COLUMNS_HELP = "Comma-separated columns/branches to read as flat features, in this order."


def _parse_param(text: str) -> tuple[str, Any]:
    import yaml

    if "=" not in text:
        raise ConfigError(f"--param {text!r}: expected KEY=VALUE (VALUE in YAML, e.g. latent_dim=8 or hidden_layers=[32,16]).")
    k, v = text.split("=", 1)
    k = k.strip()
    if not k:
        raise ConfigError(f"--param {text!r}: empty parameter name.")
    try:
        return k, yaml.safe_load(v)
    except yaml.YAMLError:
        raise ConfigError(f"--param {k}: cannot parse value {v!r} (YAML syntax).") from None


@app.command("train")
def train_cmd(
    output: Path = typer.Option(..., "--output", "-o", help="Model directory to write (atomically).", show_default=False),
    detector: Optional[str] = typer.Option(
        None, "--detector", "-d", help="Registry key or preset (see `hepad detectors`); default: the config's, else the default detector."
    ),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML configuration (see examples/configs/)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Background training events; default: data.train of the config."),
    val: Optional[Path] = typer.Option(
        None, "--val", help="Held-out background: early stopping and threshold (recommended; default: data.val of the config)."
    ),
    signal: Optional[Path] = typer.Option(None, "--signal", help="Signal events, for supervised references (gbdt, mlp-classifier)."),
    percentile: Optional[float] = typer.Option(None, "--percentile", help="Threshold at this background percentile (default 95)."),
    sigma: Optional[float] = typer.Option(None, "--sigma", help="Threshold at background mean + SIGMA x std."),
    rate_hz: Optional[float] = typer.Option(None, "--rate-hz", help="Threshold accepting this background rate, in Hz."),
    collision_rate_hz: Optional[float] = typer.Option(None, "--collision-rate-hz", help="Input rate for --rate-hz (default 4e7 Hz)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Training epochs (deep detectors)."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Random seed (random_state) of the detector."),
    param: Optional[list[str]] = typer.Option(None, "--param", "-p", help="Detector parameter KEY=VALUE (YAML value); repeatable."),
    checkpoint_dir: Optional[Path] = typer.Option(
        None, "--checkpoint-dir", help="Checkpoint deep models here every epoch (default: a hidden folder beside the output, removed on success)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Resume an interrupted training from its last checkpoint."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help=_FORMAT_HELP),
    key: Optional[str] = typer.Option(None, "--key", "-k", help=_KEY_HELP),
    columns: Optional[str] = typer.Option(None, "--columns", help=_COLUMNS_HELP),
    drop_invalid: bool = typer.Option(False, "--drop-invalid", help="Drop events holding NaN/inf values instead of failing."),
) -> None:
    """Train a detector on background events and save it with its threshold.

    Example: hepad train --detector iforest --data sm_train.h5 --val sm_val.h5 -o model/
    """
    from ..api import train
    from ..config import load_config
    from ..detectors.base import DEFAULT_DETECTOR, get_detector_class

    cfg = load_config(config) if config is not None else None
    name = detector or (cfg.model.detector if cfg is not None else None) or DEFAULT_DETECTOR
    cls = get_detector_class(name)
    names = cls._param_names()
    params: dict[str, Any] = dict(_parse_param(p) for p in (param or []))
    if epochs is not None:
        if "epochs" in names:
            params["epochs"] = epochs
        else:
            err_console.print(f"[yellow]note:[/] --epochs ignored: {name} is not trained in epochs.")
    if seed is not None:
        if "random_state" in names:
            params["random_state"] = seed
        else:
            err_console.print(f"[yellow]note:[/] --seed ignored: {name} has no random_state.")
    cols = None
    if columns is not None:
        cols = [c.strip() for c in columns.split(",") if c.strip()]
        if not cols:
            raise ConfigError("--columns is empty; give comma-separated column names.")
    default_ckpt = checkpoint_dir is None
    ckpt = checkpoint_dir if checkpoint_dir is not None else output.parent / f".{output.name}.ckpt"
    if resume and not ckpt.is_dir():
        raise ConfigError(f"--resume: no checkpoint folder {ckpt}; nothing to resume (give --checkpoint-dir).")

    show = err_console.is_terminal or verbose()
    t0 = time.perf_counter()
    with progress(disable=not show) as bar:
        task = bar.add_task(f"training {name}", total=None)

        def on_epoch(epoch: int, n_epochs: int, logs: dict[str, Any]) -> None:
            who = logs.get("member", name)
            loss = logs.get("val_loss", logs.get("train_loss"))
            desc = f"training {who}" + (f" loss {loss:.4g}" if isinstance(loss, (int, float)) else "")
            bar.update(task, completed=epoch, total=n_epochs, description=desc)

        det = train(
            detector or (None if cfg is not None else name),
            data,
            val,
            signal=signal,
            config=cfg,
            output=output,
            percentile=percentile,
            sigma=sigma,
            rate_hz=rate_hz,
            collision_rate_hz=collision_rate_hz,
            checkpoint_dir=ckpt,
            resume=resume,
            progress=on_epoch,
            format=format,
            key=key,
            columns=cols,
            drop_invalid=drop_invalid,
            **params,
        )
    elapsed = time.perf_counter() - t0
    if default_ckpt and ckpt.is_dir():
        shutil.rmtree(ckpt, ignore_errors=True)
    _summary(det, output, elapsed)


def _summary(det: Any, output: Path, elapsed: float) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("detector", det.name)
    table.add_row("features", str(det.n_features_in_))
    rule = ", ".join(f"{k}={v:g}" for k, v in det.threshold_rule_.items())
    table.add_row("threshold", f"{det.threshold_:.6g} ({rule})")
    hist = getattr(det, "history_", None) or {}
    if hist.get("epoch"):
        vl = [v for v in hist.get("val_loss", []) if isinstance(v, (int, float))]
        best = f", best val loss {min(vl):.4g}" if vl else ""
        table.add_row("epochs", f"{len(hist['epoch'])}{best}")
    table.add_row("time", f"{elapsed:.1f} s")
    table.add_row("saved to", str(output))
    console.print(table)


@app.command("detectors")
def detectors_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print {name: summary} as JSON."),
) -> None:
    """List every detector and preset, one line each."""
    import json

    from ..detectors.base import DEFAULT_DETECTOR, PRESETS, available_detectors, get_detector_class

    found = available_detectors()
    if as_json:
        console.print_json(json.dumps(found))
        return
    rows = []
    for name, summary in found.items():
        if name in PRESETS:
            kind = f"preset of {PRESETS[name][0]}"
        else:
            kind = "supervised" if get_detector_class(name).supervised else "unsupervised"
        if name == DEFAULT_DETECTOR:
            kind += " (default)"
        rows.append((name, kind, summary))
    table = Table(title=None, show_lines=False)
    # Names and kinds are never cut (they are what users type); long summaries are.
    table.add_column("name", no_wrap=True, style="bold", min_width=max(len(r[0]) for r in rows))
    table.add_column("kind", no_wrap=True, min_width=max(len(r[1]) for r in rows))
    table.add_column("summary", no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(*row)
    console.print(table)
