"""``hepad export onnx|hls|hls-scan``, ``hepad trigger`` and ``hepad stream``: deployment commands."""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import typer

from .._outputs import writing
from ..errors import ConfigError, InputError
from ..rates import COLLISION_RATE_HZ
from ._app import app, console, err_console

log = logging.getLogger("hepad.cli")

export_app = typer.Typer(
    help="Export a trained torch detector: ONNX (any runtime) or an hls4ml FPGA project.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(export_app, name="export")

_MODEL_HELP = "Model directory written by `hepad train`."


def _check_events(n_features: int, n: int = 2000):
    """Inputs to compare an export with its model: toy ADC2021 events, or Gaussian noise."""
    import numpy as np

    if n_features == 57:
        from .._toy import toy_events

        return np.concatenate([toy_events(n // 2, "background", seed=101).features,
                               toy_events(n - n // 2, "signal", seed=102).features])
    return np.random.default_rng(0).standard_normal((n, n_features)).astype(np.float32)


@export_app.command("onnx")
def export_onnx_cmd(
    model: Path = typer.Argument(..., help=_MODEL_HELP, show_default=False),
    output: Path = typer.Option(..., "--output", "-o", help="ONNX file to write (atomically).", show_default=False),
    opset: int = typer.Option(17, "--opset", min=9, help="ONNX opset version."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
) -> None:
    """Export a model to ONNX: raw inputs in (preprocessing folded in), anomaly score out.

    The threshold and feature names are stored in the file's metadata. The export is checked
    against PyTorch on 2,000 events before the command returns.

    Example: hepad export onnx model/ -o model.onnx
    """
    import numpy as np

    import hepad
    from ..engine import make_scorer
    from ..export.onnx import export_onnx

    with writing(output, inputs=[model], force=force, what="ONNX file"):
        det = hepad.load(model)
        path = export_onnx(det, output, opset=opset)
    X = _check_events(det.n_features_in_)
    ref = det.score_samples(X)
    got = make_scorer(path, threads=1)(X)
    rel = float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-6)))
    console.print(
        f"wrote {path} ({path.stat().st_size / 1024:.1f} kB): input 'input' (batch, {det.n_features_in_}) raw float32 -> "
        f"'score' (batch,); threshold {det.threshold_:.6g}; max relative difference to PyTorch {rel:.2e}",
        soft_wrap=True,
    )


def _estimate_table(est, title: str):
    from rich.table import Table

    table = Table(title=title)
    table.add_column("quantity", no_wrap=True)
    table.add_column("value", no_wrap=True)
    for k, v in (("DSP", f"{est.dsp:,}"), ("LUT", f"{est.lut:,}"), ("FF", f"{est.ff:,}"), ("BRAM (18k)", f"{est.bram:,}"),
                 ("latency", f"{est.latency_cycles} cycles = {est.latency_ns:g} ns at {est.clock_period_ns:g} ns"),
                 ("reuse factor", str(est.reuse_factor)), ("source", est.source)):
        table.add_row(k, v)
    return table


@export_app.command("hls")
def export_hls_cmd(
    model: Path = typer.Argument(..., help=_MODEL_HELP, show_default=False),
    output: Path = typer.Option(..., "--output", "-o", help="hls4ml project directory.", show_default=False),
    data: Optional[Path] = typer.Option(
        None, "--data", help="Your background events: they size every layer's type and set the quantised threshold.",
        show_default=False,
    ),
    signal_files: Optional[list[str]] = typer.Option(
        None, "--signal", "-s", help="Signal events as NAME=FILE, or just FILE (named by its stem): their 99.9th percentile is covered, their TPR checked; repeatable.",
        show_default=False,
    ),
    precision: str = typer.Option(
        "auto", "--precision", help="'auto' (per-layer types from --data) or one type for all layers, e.g. 'ap_fixed<16,6>'."
    ),
    total_bits: int = typer.Option(16, "--total-bits", min=4, max=32, help="Bits of each automatic type."),
    headroom_bits: int = typer.Option(1, "--headroom-bits", min=0, max=8, help="Integer bits above the measured range."),
    reuse_factor: int = typer.Option(1, "--reuse-factor", min=1, help="hls4ml reuse factor (1: fully parallel)."),
    inputs_scaled: bool = typer.Option(
        False, "--inputs-scaled", help="The FPGA receives scaled inputs (default: raw inputs, scaled in its first layer)."
    ),
    input_precision: Optional[str] = typer.Option(
        None, "--input-precision", help="Fixed-point type of the inputs (default: from --data)."
    ),
    target_rate_hz: Optional[float] = typer.Option(
        None, "--target-rate-hz", help="Accept rate of the exported threshold (default: the model's threshold rule)."
    ),
    collision_rate_hz: float = typer.Option(COLLISION_RATE_HZ, "--collision-rate-hz", help="Input rate the target is a fraction of."),
    min_correlation: float = typer.Option(
        0.999, "--min-correlation", help="Fail when the C simulation's score correlation with float on --data is lower."
    ),
    max_tpr_change: Optional[float] = typer.Option(
        None, "--max-tpr-change", help="Fail when a signal's TPR changes by more than this (relative, e.g. 0.02)."
    ),
    max_events: int = typer.Option(20_000, "--max-events", min=100, help="Events read per file (C simulation: ~2k events/s)."),
    part: Optional[str] = typer.Option(None, "--part", help="FPGA part (default: hls4ml's Vitis default)."),
    compile: bool = typer.Option(True, "--compile/--no-compile", help="Compile the C simulation (g++) and check it."),
    force: bool = typer.Option(False, "--force", help="Replace an existing project folder."),
) -> None:
    """Write an hls4ml project (Vitis, io_parallel), check its bit-accurate C simulation on your events.

    With --data, every layer's fixed-point type is sized on your background (and --signal
    events), the threshold is recomputed on the quantised model's background scores, and the
    command reports score correlation, largest deviation, accept-rate change and TPR change per
    signal, float against C simulation; below --min-correlation it fails naming the saturating
    layer. It prints a resource and latency estimate (analytic unless vitis_hls is on PATH).

    Example: hepad export hls model/ -o hls_prj --data sm_val.h5 --signal ato4l=ato4l.h5 --target-rate-hz 1000
    """
    import numpy as np

    import hepad
    from ..export import hls_tool, synthesis_report
    from ..export.hls import export_hls
    from ._evaluate import _signals

    named = _signals(signal_files or [])
    sig_paths = list(named.values())
    if named and data is None:
        raise ConfigError("--signal needs --data (the background the signal efficiency is measured against).")
    fraction = None if target_rate_hz is None else target_rate_hz / collision_rate_hz
    with writing(output, kind="dir", inputs=[model, *([data] if data else []), *sig_paths], force=force,
                 what="hls4ml project folder"):
        det = hepad.load(model)
        bkg = hepad.read_events(data, entry_range=(0, max_events)) if data is not None else None
        sigs = {name: hepad.read_events(path, entry_range=(0, max_events)) for name, path in named.items()}
        with err_console.status("converting with hls4ml and compiling the C simulation (g++)..."):
            hm = export_hls(det, output, data=bkg, signals=sigs, precision=precision, total_bits=total_bits,
                            headroom_bits=headroom_bits, reuse_factor=reuse_factor,
                            fold_preprocessing=not inputs_scaled, input_precision=input_precision,
                            target_fraction=fraction, part=part, compile=compile)
    console.print(f"wrote hls4ml project {hm.output_dir} ({hm.precision}, inputs {hm.input_precision}, "
                  f"{'raw: scaled in layer 1' if hm.folded else 'scaled'}; score after the FPGA: {hm.kind})", soft_wrap=True)
    est = hm.estimate
    if compile and hls_tool() is not None:
        with err_console.status(f"C synthesis with {hls_tool()}..."):
            hm.synthesis = synthesis_report(hm.hls_model, est.clock_period_ns, reuse_factor) or None
        if hm.synthesis is not None:
            est = hm.synthesis
    console.print(_estimate_table(est, f"resources and latency: {est.source}"))
    if not compile:
        return
    if bkg is None:
        X = _check_events(det.n_features_in_, 1000)
        ref = det.score_samples(X).astype(np.float64)
        got = hm.predict(X).astype(np.float64)
        corr = float(np.corrcoef(ref, got)[0, 1])
        console.print(f"C simulation vs PyTorch on 1,000 toy events: score correlation {corr:.5f} "
                      "(give --data for per-layer types, the quantised threshold and a check on your events)")
        return
    with err_console.status("comparing float and C simulation on your events..."):
        rep = hm.parity(det, bkg, sigs, fraction=hm.target_fraction)
    console.print(
        f"C simulation vs float on {rep.n_background:,} background events of {data}: score correlation "
        f"{rep.correlation:.6f}, max deviation {rep.max_abs_deviation:.3g} ({rep.max_rel_deviation:.2g} of the score spread)\n"
        f"threshold at accept fraction {rep.target_fraction:.3g}: float {rep.threshold_float:.6g}, quantised "
        f"{rep.threshold_quantised:.6g} (exported); the float cut on the FPGA would accept "
        f"{rep.accept_fraction_float_cut:.4g} ({100 * rep.accept_change:+.1f}%)", soft_wrap=True)
    if rep.tpr:
        from rich.table import Table

        table = Table(title=f"TPR at background efficiency {rep.target_fraction:.3g}, each model cut on its own scores")
        for col in ("signal", "events", "TPR float", "TPR FPGA", "change", "score corr"):
            table.add_column(col, no_wrap=True)
        for name, t in rep.tpr.items():
            table.add_row(name, f"{t['n']:,}", f"{t['float']:.4f}", f"{t['fpga']:.4f}", f"{100 * t['rel_change']:+.2f}%",
                          f"{rep.signal_correlation[name]:.5f}")
        console.print(table)
    rep.check(min_correlation=min_correlation, max_tpr_change=max_tpr_change, precision=hm.precision,
              total_bits=total_bits)


@export_app.command("hls-scan")
def export_hls_scan_cmd(
    model: Path = typer.Argument(..., help=_MODEL_HELP, show_default=False),
    background: Path = typer.Option(..., "--background", "-b", help="Background events (held out).", show_default=False),
    signal_files: list[str] = typer.Option(..., "--signal", "-s", help="Signal events as NAME=FILE, or just FILE (named by its stem); repeatable.", show_default=False),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for scan.json, scan.csv, scan.png and the projects.", show_default=False),
    total_bits: str = typer.Option(
        "8,10,12,14,16,18,20", "--total-bits", help="Comma-separated bit budgets of the per-layer types sized on --background."
    ),
    precisions: Optional[str] = typer.Option(
        None, "--precisions", help="Scan uniform types instead, e.g. 'ap_fixed<10,6>,ap_fixed<16,6>'."
    ),
    max_events: int = typer.Option(5000, "--max-events", min=100, help="Events per file (the C simulation runs ~2k events/s)."),
    fpr: float = typer.Option(1e-4, "--fpr", help="Background efficiency of the TPR working point."),
    force: bool = typer.Option(False, "--force", help="Write into an existing non-empty output folder."),
) -> None:
    """Precision scan: total bits vs AUC and TPR at --fpr per signal, float as reference; table + plot.

    Each design's per-layer types are sized on the background (as `hepad export hls --data`);
    the table also lists the resource estimate of each design.

    Example: hepad export hls-scan model/ -b sm_test.h5 -s ato4l=ato4l.h5 -o scan/ --total-bits 8,12,16 --fpr 1e-3
    """
    from ._evaluate import _signals

    named = _signals(signal_files)
    with writing(output, kind="dir", inputs=[model, background, *named.values()], force=force,
                 what="scan folder"):
        _hls_scan(model, background, named, output, precisions, total_bits, max_events, fpr)


def _hls_scan(model, background, named, output, precisions, total_bits, max_events, fpr):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import hepad
    from .._atomic import atomic_path
    from ..export.scan import plot_precision_scan, precision_scan

    det = hepad.load(model)
    sigs = {name: hepad.read_events(path, entry_range=(0, max_events)) for name, path in named.items()}
    bkg = hepad.read_events(background, entry_range=(0, max_events))
    precs = tuple(re.findall(r"ap_u?fixed<[^>]*>", precisions.replace(" ", ""))) if precisions else None
    if precisions and not precs:
        raise ConfigError(f"--precisions {precisions!r}: list types like 'ap_fixed<10,6>,ap_fixed<16,6>'.")
    try:
        bits = tuple(int(b) for b in total_bits.replace(" ", "").split(",") if b)
    except ValueError:
        raise ConfigError(f"--total-bits {total_bits!r}: list integers like 8,12,16.") from None
    if not bits or any(not 4 <= b <= 32 for b in bits):
        raise ConfigError(f"--total-bits {total_bits!r}: list integers in 4..32, like 8,12,16.")
    with err_console.status("scanning precisions...") as status:
        rows = precision_scan(det, bkg, sigs, output / "projects", precisions=precs, total_bits=bits, fpr=fpr,
                              progress=lambda i, n, p: status.update(f"scanned {p} ({i}/{n})"))
    output.mkdir(parents=True, exist_ok=True)
    with atomic_path(output / "scan.json") as tmp:
        tmp.write_text(json.dumps(rows, indent=1))
    with atomic_path(output / "scan.csv") as tmp:
        keys = list(rows[0])
        tmp.write_text("\n".join([",".join(keys)] + [",".join(str(r[k]) for k in keys) for r in rows]) + "\n")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    plot_precision_scan(rows, axes[0], "auc_loss")
    plot_precision_scan(rows, axes[1], "tpr_loss")
    fig.tight_layout()
    with atomic_path(output / "scan.png", suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    from rich.table import Table

    table = Table(title=f"hls4ml precision scan (TPR at FPR {fpr:g})")
    for col in ("precision", "signal", "AUC", "float", "TPR", "float", "corr", "DSP", "cycles"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        table.add_row(r["precision"], r["signal"], f"{r['auc']:.4f}", f"{r['auc_float']:.4f}", f"{r['tpr']:.4f}",
                      f"{r['tpr_float']:.4f}", f"{r['corr']:.5f}", f"{r['dsp']:,}", str(r["latency_cycles"]))
    console.print(table)
    console.print(f"DSP and cycles: estimate (analytic); wrote {output / 'scan.json'}, scan.csv, scan.png", soft_wrap=True)


# ---------------------------------------------------------------------- trigger
def _status_line(st) -> str:
    return (
        f"{st.elapsed_s:7.1f}s  in {st.input_rate_hz / 1e3:8.1f} kHz  processed {st.processed:,}  "
        f"accepted {st.accepted:,} ({st.accept_rate_hz:,.0f}/s, frac {st.accept_fraction:.3g} / target {st.target_fraction:.3g})  "
        f"cut {st.threshold:.4g}{'' if st.warm else ' (warm-up)'}  latency p50 {st.latency_p50_ms:.2f} ms p99 "
        f"{st.latency_p99_ms:.2f} ms  alerts {st.alerts}"
    )


@app.command("trigger")
def trigger_cmd(
    model: Path = typer.Argument(..., help="Model directory (or an exported .onnx file).", show_default=False),
    source: str = typer.Option(
        ..., "--source", help="replay:FILE, replay:FILE@RATE_HZ (paced) or zmq:tcp://HOST:PORT[?producers=N&idle_timeout=S] (bound; producers connect; ends after every producer's end-of-stream, or N of them).", show_default=False
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for accepted_*.h5 files and summary.json.", show_default=False),
    target_rate_hz: float = typer.Option(1000.0, "--target-rate-hz", help="Accept rate to hold, in Hz."),
    collision_rate_hz: float = typer.Option(COLLISION_RATE_HZ, "--collision-rate-hz", help="Input rate the target is a fraction of."),
    max_events: Optional[int] = typer.Option(None, "--max-events", min=1, help="Stop after this many events."),
    batch_size: int = typer.Option(4096, "--batch-size", min=1, help="Largest micro-batch."),
    max_latency_ms: float = typer.Option(10.0, "--max-latency-ms", min=0.0, help="Longest wait for a micro-batch to fill."),
    engine: str = typer.Option("auto", "--engine", help="Scoring engine: auto, onnx, torch, native."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Scoring threads (default: available cores)."),
    window_events: Optional[int] = typer.Option(None, "--window-events", min=100, help="Threshold-tracker window (default 400/fraction)."),
    rotate_events: int = typer.Option(10_000, "--rotate-events", min=1, help="Accepted events per output file."),
    rotate_seconds: float = typer.Option(60.0, "--rotate-seconds", help="Write a file at least this often."),
    status_interval: float = typer.Option(1.0, "--status-interval", help="Seconds between status updates."),
    force: bool = typer.Option(False, "--force", help="Write into an existing non-empty output folder."),
) -> None:
    """Streaming trigger emulator: score arriving events, hold a target accept rate, write accepted events.

    Stops at the end of the stream, after --max-events, or on Ctrl-C / SIGTERM, after draining
    the events already received and flushing the output. Counts: processed = accepted + rejected.

    Example: hepad trigger model/ --source zmq:tcp://127.0.0.1:5555 --target-rate-hz 1000 -o accepted/
    """
    from ..trigger import run_trigger

    inputs = [model]
    if source.startswith("replay:"):
        replay = source[len("replay:"):]
        inputs.append(replay.rsplit("@", 1)[0] if "@" in replay and not Path(replay).exists() else replay)
    with writing(output, kind="dir", inputs=inputs, force=force, what="trigger output folder", keep_partial=True):
        summary = _trigger(model, source, output, target_rate_hz, collision_rate_hz, batch_size, max_latency_ms,
                           max_events, engine, threads, window_events, rotate_events, rotate_seconds, status_interval)
    _print_trigger_summary(summary, output)


def _trigger(model, source, output, target_rate_hz, collision_rate_hz, batch_size, max_latency_ms, max_events,
             engine, threads, window_events, rotate_events, rotate_seconds, status_interval):
    from ..trigger import run_trigger

    tty = err_console.is_terminal
    last = [0.0]
    live = None
    if tty:
        from rich.live import Live
        from rich.text import Text

        live = Live(Text("starting..."), console=err_console, refresh_per_second=4, transient=False)
        live.start()

    def on_status(st) -> None:
        line = _status_line(st)
        if live is not None:
            from rich.text import Text

            live.update(Text(line))
        elif st.elapsed_s - last[0] >= 10.0:  # logs: one line per 10 s is enough
            last[0] = st.elapsed_s
            print(line, file=sys.stderr, flush=True)

    try:
        summary = run_trigger(
            model, source, output, target_rate_hz=target_rate_hz, collision_rate_hz=collision_rate_hz,
            batch_size=batch_size, max_latency_ms=max_latency_ms, max_events=max_events, engine=engine,
            threads=threads, window_events=window_events, rotate_events=rotate_events,
            rotate_seconds=rotate_seconds, status_interval_s=status_interval, status_callback=on_status,
            handle_signals=True,
        )
    finally:
        if live is not None:
            live.stop()
    return summary


def _print_trigger_summary(s, output) -> None:
    n_cal = (s.extra or {}).get("calibration_events")
    if n_cal:
        after = f"calibrated start from {n_cal:,} background scores (no warm-up)"
    elif s.processed_after_warmup:
        after = f"{s.accept_fraction_after_warmup:.4g} after warm-up"
    else:
        after = f"n/a after warm-up (fewer events than the {s.window_events:,}-event window)"
    console.print(
        f"processed {s.processed:,} = accepted {s.accepted:,} + rejected {s.rejected:,} "
        f"(stopped by {s.stopped_by}; drained {s.drained:,} on shutdown)\n"
        f"accept fraction {s.accept_fraction:.4g} overall, {after} "
        f"(target {s.target_fraction:.4g}); final cut {s.threshold_final:.5g} (initial {s.threshold_initial:.5g})\n"
        f"{s.events_per_s:,.0f} events/s, latency p50 {s.latency_ms['p50']:.2f} ms p99 {s.latency_ms['p99']:.2f} ms; "
        f"alerts: {s.alerts}\n"
        f"wrote {len(s.accepted_files)} file(s) and summary.json to {output}",
        soft_wrap=True,  # one line per fact, for logs and scripts
    )
    wire = s.extra.get("source") or {}
    if wire.get("producers") is not None:
        rej = wire.get("rejected_messages") or {}
        console.print(
            f"wire: {len(wire['producers'])} producer(s), received {wire['received_events']:,} events; rejected "
            f"{sum(rej.values()):,} message(s) ({wire['rejected_events']:,} events)"
            + (": " + ", ".join(f"{k} {v:,}" for k, v in rej.items()) if rej else ""),
            soft_wrap=True,
        )


@app.command("stream")
def stream_cmd(
    file: Path = typer.Argument(..., help="Events to send (any format hepad reads).", show_default=False),
    to: str = typer.Option(..., "--to", help="zmq:tcp://HOST:PORT of the trigger.", show_default=False),
    rate_hz: Optional[float] = typer.Option(None, "--rate-hz", help="Events per second (default: as fast as possible)."),
    batch_size: int = typer.Option(1000, "--batch-size", min=1, help="Events per message."),
    max_events: Optional[int] = typer.Option(None, "--max-events", min=1, help="Send at most this many events."),
    bind: bool = typer.Option(False, "--bind", help="Bind the endpoint (for a trigger using zmq+connect:)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Give up when the trigger takes nothing for this many seconds."),
    first_id: int = typer.Option(0, "--first-id", min=0, help="Id of the first event (several producers need disjoint ids)."),
    ack_timeout: float = typer.Option(5.0, "--ack-timeout", min=0.0, help="Seconds to wait for the trigger to confirm the end-of-stream."),
) -> None:
    """Send a file's events to a trigger over ZeroMQ (wire format v2), then an end-of-stream message.

    Reports what the trigger acknowledged; exits 1 when it did not acknowledge every event sent.

    Example: hepad stream sm_test.h5 --to zmq:tcp://127.0.0.1:5555 --rate-hz 1e6 --batch-size 1000
    """
    from ..trigger import stream_events

    scheme, _, endpoint = to.partition(":")
    if scheme != "zmq" or not endpoint:
        raise ConfigError(f"--to {to!r}: write zmq:tcp://HOST:PORT.")
    if not file.exists():
        raise ConfigError(f"{file}: no such file.")
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *a: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.monotonic()
    try:
        res = stream_events(file, endpoint, rate_hz=rate_hz, batch_size=batch_size, max_events=max_events, bind=bind,
                            stop_event=stop, timeout_s=timeout, first_id=first_id, ack_timeout_s=ack_timeout)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    dt = time.monotonic() - t0
    rejected = sum(res.rejected.values())
    console.print(
        f"the trigger acknowledged {res.acknowledged:,} of {res.sent:,} events sent to {endpoint} in {dt:.2f} s "
        f"({res.acknowledged / max(dt, 1e-9):,.0f} events/s)"
        + (f"; it rejected {rejected:,} ({', '.join(f'{k} {v:,}' for k, v in res.rejected.items())})" if rejected else "")
        + (" (stopped early)" if stop.is_set() else ""),
        soft_wrap=True,
    )
    if res.acknowledged < res.sent and not stop.is_set():
        raise InputError(
            f"{file}: the trigger at {endpoint} acknowledged {res.acknowledged:,} of {res.sent:,} events "
            f"({rejected:,} rejected, {res.unacknowledged:,} never confirmed: it stopped or did not answer "
            f"within --ack-timeout {ack_timeout:g} s); see its summary.json."
        )
