"""`make demo`: the main job end to end.

Use the shipped ``demo`` dataset (``examples/demo-data/``, made by hepad's own default simulation:
Pythia 8, Delphes-CMS-like response, pileup 20), generate a fresh SM sample with the same
simulation on all cores and check it against the shipped one (KS tests), train the default
detectors on SM background, evaluate them on the four BSM signals, and write an HTML report::

    python -m hepad.demo                       # --size demo, writes ./demo-output/
    python -m hepad.demo --size tiny --out /tmp/demo --detectors ae,iforest

The shipped data is rebuilt by ``hepad dataset build --size demo --dir examples/demo-data``.
Other sizes are built into the cache (``$HEPAD_DATA_DIR`` or ``~/.cache/hepad/datasets/<size>``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = ("ato4l", "lq-btau", "h0-tautau", "hplus-taunu")
#: The shipped demo dataset (in a source checkout).
DEMO_DATA = Path(__file__).resolve().parents[2] / "examples" / "demo-data"
#: Accepted SM events generated afresh by the demo, to check the shipped sample.
FRESH_EVENTS = 300
#: Columns compared between the fresh and the shipped SM sample.
CHECK_COLUMNS = ("MET", "leading lepton pT", "leading jet pT", "number of jets", "HT")


def _columns(data) -> dict[str, Any]:
    import numpy as np

    from . import _layout as L

    lep = np.maximum(data[:, L.ELECTRON_SLOTS, 0].max(1), data[:, L.MUON_SLOTS, 0].max(1))
    jets = data[:, L.JET_SLOTS, 0]
    return {"MET": data[:, 0, 0], "leading lepton pT": lep, "leading jet pT": jets[:, 0],
            "number of jets": (jets > 0).sum(1), "HT": jets.sum(1)}


def check_fresh_sample(fresh, shipped) -> list[tuple[str, float, float, float]]:
    """(column, fresh mean, shipped mean, KS p-value) for :data:`CHECK_COLUMNS`."""
    from scipy import stats

    a, b = _columns(fresh.data), _columns(shipped.data)
    return [(c, float(a[c].mean()), float(b[c].mean()), float(stats.ks_2samp(a[c], b[c]).pvalue))
            for c in CHECK_COLUMNS]


def pythia_message_summary(paths: Sequence[Path]) -> str:
    """One line: how many Pythia errors/warnings the generation of these files produced."""
    from .io import read_events

    counts: dict[str, int] = {}
    for p in paths:
        prov = read_events(p).provenance or {}
        for comp in (prov.get("components") or {}).values():
            for msg, n in (comp.get("pythia_errors") or {}).items():
                counts[msg] = counts.get(msg, 0) + int(n)
    total = sum(counts.values())
    if not total:
        return "Pythia: no error messages while generating these samples."
    top = max(counts, key=counts.get)
    return (f"Pythia: {total} messages of {len(counts)} kinds while generating these samples (per-event, "
            f"recoverable; counted in each file's provenance). Most frequent: {top!r} x{counts[top]}.")
#: The default autoencoder plus a VAE, the AXOL1TL-like trigger VAE and an isolation forest.
EXTRA_DETECTORS = ("vae", "axol1tl-like", "iforest")


def default_detectors() -> list[str]:
    from .detectors.base import DEFAULT_DETECTOR

    return [DEFAULT_DETECTOR] + [d for d in EXTRA_DETECTORS if d != DEFAULT_DETECTOR]


def run_demo(
    size: str = "demo",
    out: str | Path = "demo-output",
    *,
    detectors: Sequence[str] | None = None,
    data_dir: str | Path | None = None,
    epochs: int | None = None,
    tsne: bool = True,
    fresh_events: int = FRESH_EVENTS,
    on_stage: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> tuple[Any, dict[str, Path]]:
    """Run the demo; returns the :class:`~hepad.evaluation.ComparisonResult` and the written files.

    ``on_stage(text)`` is called when a stage starts and ``on_progress(done, total)`` inside it,
    for a progress display.
    """
    import hepad
    from .evaluation import compare
    from .generate import build_dataset

    stage = on_stage or (lambda text: log.info(text))
    tick = on_progress or (lambda done, total: None)
    out = Path(out)
    names = list(detectors or default_detectors())

    fresh_check = None
    if size == "adc2021":  # the challenge's own files, from `hepad dataset download adc2021`
        from .download import adc2021_paths
        from .generate import default_dataset_dir

        stage("Using the downloaded ADC2021 dataset")
        paths = adc2021_paths(data_dir if data_dir is not None else default_dataset_dir("adc2021"))
    else:
        if data_dir is None and size == "demo" and (DEMO_DATA / "sm_test.h5").is_file():
            data_dir = DEMO_DATA
        stage(f"Loading the '{size}' dataset"
              + (" (shipped)" if data_dir == DEMO_DATA else " (cached after the first run)"))
        paths = build_dataset(size, data_dir, progress=lambda done, total: tick(done, total))
    if fresh_events > 0 and size != "adc2021":
        from .generate import generate
        from .io import read_events

        stage(f"Generating {fresh_events} fresh SM events (same simulation) to check the dataset")
        (out / "fresh-sm.h5").unlink(missing_ok=True)  # the demo's own output of an earlier run
        fresh_path = generate("sm-mix", fresh_events, out / "fresh-sm.h5", seed=20260,
                              progress=lambda done, total: tick(done, total), chunk_size=max(1, fresh_events // 2))
        fresh_check = check_fresh_sample(read_events(fresh_path), read_events(paths["sm_test"]))
        paths = {**paths, "fresh_sm": fresh_path}
    missing = [s for s in ("sm_train", "sm_val", "sm_test", *SIGNALS) if s not in paths]
    if missing:
        raise hepad.HepadError(f"The dataset lacks {', '.join(missing)}; delete {paths and next(iter(paths.values())).parent} and rerun.")

    fitted: dict[str, Any] = {}
    for name in names:
        stage(f"Training {name}")
        params = {}
        if epochs is not None and "epochs" in hepad.make_detector(name).get_params():
            params["epochs"] = epochs
        t0 = time.perf_counter()
        fitted[name] = hepad.train(
            name, paths["sm_train"], paths["sm_val"], output=out / "models" / name,
            progress=lambda epoch, n, logs: tick(epoch, n), **params,
        )
        log.info("%s trained in %.1f s", name, time.perf_counter() - t0)

    stage(f"Evaluating {len(fitted)} detectors on {len(SIGNALS)} signals")
    result = compare(
        fitted, paths["sm_test"], {s: paths[s] for s in SIGNALS},
        embed=("pca", "tsne") if tsne else ("pca",),
        progress=lambda what, done, total: tick(done, total),
        info={"demo": {"size": size, "detectors": names, "dataset": str(paths["sm_test"].parent),
                       "fresh_check": fresh_check}},
    )
    stage("Writing plots and the HTML report")
    written = result.save(out, report=True)
    written["_fresh_check"] = fresh_check  # type: ignore[assignment]
    written["_generated"] = [p for k, p in paths.items()]  # type: ignore[assignment]
    return result, written


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point of ``python -m hepad.demo``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .cli import print_table
    from .errors import HepadError

    parser = argparse.ArgumentParser(prog="python -m hepad.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="demo", choices=["demo", "tiny", "small", "medium", "large", "adc2021"],
                        help="benchmark size (default demo: the shipped dataset); adc2021: the downloaded challenge files")
    parser.add_argument("--fresh-events", type=int, default=FRESH_EVENTS,
                        help=f"fresh SM events generated to check the dataset (default {FRESH_EVENTS}; 0: skip)")
    parser.add_argument("--out", default="demo-output", help="output folder (default ./demo-output)")
    parser.add_argument("--detectors", default=None,
                        help=f"comma-separated detectors (default {','.join(default_detectors())})")
    parser.add_argument("--data-dir", default=None, help="dataset folder (default $HEPAD_DATA_DIR or the cache)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs of the deep detectors")
    parser.add_argument("--no-tsne", action="store_true", help="skip the t-SNE view (saves a few seconds)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (Dask, Pythia) as well")
    args = parser.parse_args(argv)

    from ._logging import setup_logging

    setup_logging(verbose=args.verbose)
    if not args.verbose:  # Pythia's per-event messages are counted and summarised at the end
        logging.getLogger("hepad.generate").setLevel(logging.ERROR)
    console = Console()
    err = Console(stderr=True)
    t0 = time.perf_counter()
    dets = [d.strip() for d in args.detectors.split(",") if d.strip()] if args.detectors else None
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, transient=False) as bar:
            task = None

            def on_stage(text: str) -> None:
                nonlocal task
                if task is not None:
                    bar.update(task, completed=bar.tasks[task].total or 1, total=bar.tasks[task].total or 1)
                task = bar.add_task(text, total=None)

            def on_progress(done: int, total: int | None) -> None:
                if task is not None:
                    bar.update(task, completed=done, total=total)

            result, written = run_demo(args.size, args.out, detectors=dets, data_dir=args.data_dir,
                                       epochs=args.epochs, tsne=not args.no_tsne, fresh_events=args.fresh_events,
                                       on_stage=on_stage, on_progress=on_progress)
            if task is not None:
                bar.update(task, completed=1, total=1)
    except HepadError as exc:
        err.print(f"hepad demo: error: {exc}")
        return 1
    fresh = written.pop("_fresh_check", None)
    generated = written.pop("_generated", [])
    if fresh:
        console.print(f"\nFresh {args.fresh_events} SM events vs the dataset's SM test sample (two-sample KS test):")
        for col, a, b, p in fresh:
            console.print(f"  {col:<20} fresh mean {a:8.2f}   dataset mean {b:8.2f}   KS p = {p:.3f}")
    first = next(iter(result.results.values()))
    print_table(result.table(), first.fprs, title=f"hepad demo ({args.size} dataset)")
    console.print(f"\nReport: [bold]{written['report.html'].resolve()}[/]  (open it in a browser)")
    console.print(f"Metrics: {written['metrics.csv']}   models: {Path(args.out) / 'models'}")
    console.print(pythia_message_summary(generated))
    console.print(f"Done in {time.perf_counter() - t0:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
