"""hls4ml parity and precision scan: the trigger models on the FPGA against float, per signal.

Part 1 (issue 15's acceptance table): the trigger default (``hepad.detectors.TRIGGER_DETECTOR``)
and the quantisation-aware ``ae-qat`` (6-bit weights, 8-bit activations) are trained on
``sm_train`` and exported with the default settings (``export_hls(det, dir, data=sm_val)``: per-layer
types sized on the background). Printed per model and signal: the score correlation on the
``sm_test`` background, TPR at background efficiency ``--fpr`` of float and of the C simulation
(each cut on its own background scores) and their relative difference, against the goals
(correlation >= 0.999, |relative TPR change| <= 2 %).

Part 2: the precision scan. The trigger default is, for each bit
budget W, exported with per-layer types sized on ``sm_val`` (``precision="auto"``, what
``hepad export hls --data`` does), scores the held-out ``sm_test`` background and every signal with
the bit-accurate C simulation, and prints per design and signal: score correlation with float,
AUC and TPR at background efficiency ``--fpr`` (each model cut on its own background scores)
next to the float model's, and the analytic resource estimate. Each design compiles a C
simulation (30-60 s on 2 cores) and runs ~2,000 events/s, so this stays out of ``make test``.

Usage: python benchmarks/hls_precision.py [--quick] [--model DIR] [--data-dir DIR] [--plot scan.png] [--no-scan]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def parity_table(models, bkg, val, sigs, fpr: float) -> None:
    """Part 1: each model exported at the default settings, C simulation against float."""
    import numpy as np

    from hepad.export import export_hls
    from hepad.metrics import threshold_at_fpr

    print(f"\n== part 1: default export (precision='auto', types sized on sm_val), TPR at FPR {fpr:g}")
    print(f"{'model':12s} {'signal':12s} {'corr':>9s} {'TPR float':>10s} {'TPR FPGA':>9s} {'rel.chg':>8s}  goal")
    ok_all = True
    for name, det in models.items():
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            hm = export_hls(det, Path(tmp) / "prj", data=val)
            fb = det.score_samples(bkg).astype(np.float64)
            hb = hm.predict(bkg).astype(np.float64)
            corr = float(np.corrcoef(fb, hb)[0, 1])
            for sname, sig in sigs.items():
                fs, hs = det.score_samples(sig), hm.predict(sig)
                cells = []
                for f in (fpr, 10 * fpr):  # the goal's working point, and one 10x looser as a cross-check
                    cut_f, cut_h = threshold_at_fpr(fb, f)[0], threshold_at_fpr(hb, f)[0]
                    tf, th = float((fs > cut_f).mean()), float((hs > cut_h).mean())
                    rel = (th - tf) / tf if tf > 0 else (0.0 if th == 0 else float("inf"))
                    cells.append((tf, th, rel))
                (tf, th, rel), (tf10, th10, rel10) = cells
                ok = corr >= 0.999 and abs(rel) <= 0.02
                ok_all &= ok
                note = " (no signal event above the cut in either)" if tf == th == 0 else ""
                print(f"{name:12s} {sname:12s} {corr:9.6f} {tf:10.4f} {th:9.4f} {100 * rel:+7.2f}%  "
                      f"{'met' if ok else 'NOT MET'}{note}; at FPR {10 * fpr:g}: {tf10:.4f} vs {th10:.4f} "
                      f"({100 * rel10:+.2f}%)")
            print(f"{'':12s} (export + C simulation {time.perf_counter() - t:.0f} s; weights of {name}: "
                  f"{getattr(det, 'quantize', 'float32')})")
    k = len(bkg) * fpr
    print(f"goals (correlation >= 0.999, |TPR change| <= 2 %): {'all met' if ok_all else 'NOT all met'}; "
          f"{len(bkg):,} background events put {k:.0f} above the cut"
          + (" (below 10: the TPR columns are statistics-limited)" if k < 10 else ""))


def main() -> None:
    from hepad.generate import default_dataset_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="Two bit budgets (8, 16), 2,000 events per sample.")
    ap.add_argument("--model", help="Saved model directory for the scan (default: train the trigger default).")
    ap.add_argument("--no-scan", action="store_true", help="Only part 1 (the parity table at the default settings).")
    ap.add_argument("--data-dir", default=str(default_dataset_dir("small")),
                    help="Dataset with sm_train/sm_val/sm_test.h5 and the signal files (default: the small dataset's cache).")
    ap.add_argument("--events", type=int, default=None, help="Events per sample (default all; quick 2,000).")
    ap.add_argument("--bits", default="8,10,12,14,16,18", help="Comma-separated bit budgets.")
    ap.add_argument("--fpr", type=float, default=1e-3, help="Background efficiency of the TPR working point (default 1e-3).")
    ap.add_argument("--epochs", type=int, default=None, help="Training epochs (default: each detector's own; quick 3).")
    ap.add_argument("--plot", help="Write the plot (AUC loss, TPR loss vs total bits) to this file.")
    args = ap.parse_args()

    import logging

    logging.basicConfig(level=logging.ERROR)
    import hepad
    from hepad.detectors import TRIGGER_DETECTOR
    from hepad.export.scan import plot_precision_scan, precision_scan

    data = Path(args.data_dir)
    if not (data / "sm_test.h5").exists():
        raise SystemExit(f"{data}: no sm_test.h5; build it first (hepad dataset build --size small) or give --data-dir.")
    n = args.events or (2000 if args.quick else None)
    rng = (0, n) if n else None
    read = (lambda f: hepad.read_events(data / f, entry_range=rng)) if rng else (lambda f: hepad.read_events(data / f))
    signal_names = ("ato4l", "lq-btau", "h0-tautau", "hplus-taunu")
    bkg, val = read("sm_test.h5"), read("sm_val.h5")
    sigs = {s: read(f"{s}.h5") for s in signal_names if (data / f"{s}.h5").exists()}
    epochs = 3 if args.quick else args.epochs
    fit_kw = {} if epochs is None else {"epochs": epochs}
    train = read("sm_train.h5")
    print(f"on {data}: trained on {len(train):,} sm_train events, types sized on {len(val):,} sm_val events, "
          f"checked on {len(bkg):,} sm_test events; signals " + ", ".join(f"{k} ({len(v):,})" for k, v in sigs.items()))
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    models = {}
    for name, kw in ((TRIGGER_DETECTOR, {}), ("ae-qat", {"quantize": "w6a8"})):
        t = time.perf_counter()
        models[name] = hepad.make_detector(name, random_state=0, **kw, **fit_kw).fit(train, X_val=val)
        print(f"  trained {name} in {time.perf_counter() - t:.0f} s")
    parity_table(models, bkg, val, sigs, args.fpr)
    if args.no_scan:
        return
    det = hepad.load(args.model) if args.model else models[TRIGGER_DETECTOR]
    bits = (8, 16) if args.quick else tuple(int(b) for b in args.bits.split(","))
    print(f"\n== part 2: precision scan of {det!r} (types sized on sm_val at each bit budget)")
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = precision_scan(det, bkg, sigs, tmp, total_bits=bits, data=val, fpr=args.fpr,
                              progress=lambda i, k, p: print(f"  {p} done ({i}/{k}, {time.perf_counter() - t:.0f} s)"))
    print(f"\nTPR at background efficiency {args.fpr:g} (each model cut on its own sm_test scores); "
          "DSP and cycles: estimate (analytic)")
    print(f"{'design':10s} {'signal':12s} {'corr':>9s} {'AUC':>7s} {'float':>7s} {'TPR':>7s} {'float':>7s} "
          f"{'rel.chg':>8s} {'DSP':>6s} {'cycles':>6s}")
    for r in rows:
        rel = (r["tpr"] - r["tpr_float"]) / r["tpr_float"] if r["tpr_float"] > 0 else float("nan")
        print(f"{r['precision']:10s} {r['signal']:12s} {r['corr']:9.6f} {r['auc']:7.4f} {r['auc_float']:7.4f} "
              f"{r['tpr']:7.4f} {r['tpr_float']:7.4f} {100 * rel:+7.2f}% {r['dsp']:6d} {r['latency_cycles']:6d}")
    k = len(bkg) * args.fpr
    print(f"\n{len(bkg):,} background events put {k:.1f} events above the FPR {args.fpr:g} cut"
          + (": the TPR column is dominated by statistics." if k < 10 else "."))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        plot_precision_scan(rows, axes[0], "auc_loss")
        plot_precision_scan(rows, axes[1], "tpr_loss")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
