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
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML configuration (see examples/configs/)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Background training events; default: data.train of the config."),
    val: Optional[Path] = typer.Option(
        None, "--val", help="Held-out background: early stopping and threshold (recommended; default: data.val of the config)."
    ),
    signal: Optional[Path] = typer.Option(None, "--signal", "-s", help="Signal events, for supervised references (gbdt, mlp-classifier)."),
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
    drop_invalid: bool = typer.Option(False, "--drop-invalid", help="Drop invalid events (NaN/inf, out-of-range values) and report them, instead of failing."),
    force: bool = typer.Option(False, "--force", help="Replace an existing model folder."),
    quantize: Optional[str] = typer.Option(
        None, "--quantize", "-q",
        help="Quantisation-aware training for the FPGA trigger: weight and activation bits, e.g. w6a8 (trains ae-qat; see docs/deployment.md).",
    ),
) -> None:
    """Train a detector on background events and save it with its threshold.

    Example: hepad train --detector iforest --data sm_train.h5 --val sm_val.h5 -o model/

    Example (FPGA trigger, 6-bit weights, 8-bit activations): hepad train --quantize w6a8 --data sm_train.h5 --val sm_val.h5 -o qat/
    """
    from ..api import train
    from ..config import load_config
    from ..detectors.registry import DEFAULT_DETECTOR

    cfg = load_config(config) if config is not None else None
    name = detector or (cfg.model.detector if cfg is not None else None) or DEFAULT_DETECTOR
    params: dict[str, Any] = dict(_parse_param(p) for p in (param or []))
    if quantize is not None:
        from ..detectors.quantized import parse_quantize

        parse_quantize(quantize)
        if name not in ("ae", "ae-qat"):
            raise ConfigError(f"--quantize trains the quantisation-aware autoencoder (ae-qat); it does not apply to "
                              f"--detector {name}. Drop --detector or use --detector ae-qat.")
        name = detector = "ae-qat"
        params["quantize"] = quantize
    cols = None
    if columns is not None:
        cols = [c.strip() for c in columns.split(",") if c.strip()]
        if not cols:
            raise ConfigError("--columns is empty; give comma-separated column names.")
    default_ckpt = checkpoint_dir is None
    ckpt = checkpoint_dir if checkpoint_dir is not None else output.parent / f".{output.name}.ckpt"
    if resume and not ckpt.is_dir():
        raise ConfigError(f"--resume: no checkpoint folder {ckpt}; nothing to resume (give --checkpoint-dir).")

    from .._outputs import writing
    from ._app import set_interrupt_hint

    data_path = data if data is not None else (cfg.data.train if cfg is not None and getattr(cfg, "data", None) else None)
    val_path = val if val is not None else (cfg.data.val if cfg is not None and getattr(cfg, "data", None) else None)
    inputs = [p for p in (data_path, val_path, signal, config) if p is not None]
    if resume and checkpoint_dir is not None:
        inputs.append(checkpoint_dir)
    _check_feature_counts(data_path, val_path, signal, format=format, key=key, columns=cols)

    def hint() -> str:
        if ckpt.is_dir() and any(ckpt.iterdir()):
            return f"kept the last checkpoint in {ckpt}/; run the same command with --resume to continue."
        return "nothing was written."

    set_interrupt_hint(hint)
    show = err_console.is_terminal or verbose()
    t0 = time.perf_counter()
    with writing(output, kind="dir", model=True, inputs=inputs, force=force, what="model folder"), \
            progress(disable=not show) as bar:
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
            epochs=epochs,
            seed=seed,
            **params,
        )
    elapsed = time.perf_counter() - t0
    if default_ckpt and ckpt.is_dir():
        shutil.rmtree(ckpt, ignore_errors=True)
    _summary(det, output, elapsed)


def _check_feature_counts(data: Any, val: Any, signal: Any, **read: Any) -> None:
    """Training, validation and signal files must have the same features: checked on one event
    of each before any training, so a mismatch is one line naming the files."""
    from ..io import read_events

    files = [(what, p) for what, p in (("--data", data), ("--val", val), ("--signal", signal)) if p is not None]
    if len(files) < 2 or any(not Path(p).is_file() for _, p in files):
        return  # a missing file gets its own message from the reader
    shapes = {}
    for what, p in files:
        ev = read_events(p, entry_range=(0, 1), drop_invalid=True, **read)
        shapes[what] = (p, ev.data.shape[1:], ev.feature_names)
    (w0, (p0, s0, n0)), *rest = shapes.items()
    for w, (p, s, n) in rest:
        if s != s0 or n != n0:
            k0 = s0[0] * (s0[1] - 1) if len(s0) == 2 else s0[0]
            k = s[0] * (s[1] - 1) if len(s) == 2 else s[0]
            raise ConfigError(
                f"{p} ({w}): {k} features ({', '.join(n[:3])}...) but {p0} ({w0}) has {k0} "
                f"({', '.join(n0[:3])}...); give files with the same features."
            )


def _summary(det: Any, output: Path, elapsed: float) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("detector", det.name)
    table.add_row("features", str(det.n_features_in_))
    table.add_row("threshold", f"{det.threshold_:.6g} ({det.threshold_rule_})")
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
    """List every detector and preset, one line each; the offline and trigger defaults are marked.

    Example: hepad detectors --json
    """
    from ._listing import print_detectors

    print_detectors(as_json, console=console)
