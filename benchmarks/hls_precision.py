"""hls4ml precision scan: TPR at the target rate and AUC per signal against total bits, float as reference.

Trains the trigger default (``ae``) on ``sm_train`` (or takes ``--model DIR``), and for each bit
budget W exports it with per-layer types sized on ``sm_val`` (``precision="auto"``, what
``hepad export hls --data`` does), scores the held-out ``sm_test`` background and every signal with
the bit-accurate C simulation, and prints per design and signal: score correlation with float,
AUC and TPR at background efficiency ``--fpr`` (each model cut on its own background scores)
next to the float model's, and the analytic resource estimate. Each design compiles a C
simulation (30-60 s on 2 cores) and runs ~2,000 events/s, so this stays out of ``make test``.

Usage: python benchmarks/hls_precision.py [--quick] [--model DIR] [--data-dir DIR] [--plot scan.png]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    from hepad.generate import default_dataset_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="Two bit budgets (8, 16), 2,000 events per sample.")
    ap.add_argument("--model", help="Saved model directory (default: train the trigger default, ae).")
    ap.add_argument("--data-dir", default=str(default_dataset_dir("small")),
                    help="Dataset with sm_train/sm_val/sm_test.h5 and the signal files (default: the small dataset's cache).")
    ap.add_argument("--events", type=int, default=None, help="Events per sample (default all; quick 2,000).")
    ap.add_argument("--bits", default="8,10,12,14,16,18", help="Comma-separated bit budgets.")
    ap.add_argument("--fpr", type=float, default=1e-3, help="Background efficiency of the TPR working point (default 1e-3).")
    ap.add_argument("--epochs", type=int, default=30, help="Training epochs of the default detector.")
    ap.add_argument("--plot", help="Write the plot (AUC loss, TPR loss vs total bits) to this file.")
    args = ap.parse_args()

    import logging

    logging.basicConfig(level=logging.ERROR)
    import hepad
    from hepad.export.hls import plot_precision_scan, precision_scan

    data = Path(args.data_dir)
    if not (data / "sm_test.h5").exists():
        raise SystemExit(f"{data}: no sm_test.h5; build the dataset first (hepad generate dataset small) or give --data-dir.")
    n = args.events or (2000 if args.quick else None)
    rng = (0, n) if n else None
    read = (lambda f: hepad.read_events(data / f, entry_range=rng)) if rng else (lambda f: hepad.read_events(data / f))
    signal_names = ("ato4l", "lq-btau", "h0-tautau", "hplus-taunu")
    bkg, val = read("sm_test.h5"), read("sm_val.h5")
    sigs = {s: read(f"{s}.h5") for s in signal_names if (data / f"{s}.h5").exists()}
    if args.model:
        det = hepad.load(args.model)
    else:
        det = hepad.make_detector("ae", epochs=3 if args.quick else args.epochs, random_state=0)
        det.fit(read("sm_train.h5"), X_val=val)
    bits = (8, 16) if args.quick else tuple(int(b) for b in args.bits.split(","))
    print(f"hls4ml precision scan of {det!r}\n  on {data}: types sized on {len(val):,} sm_val events; "
          f"checked on {len(bkg):,} sm_test events; signals " + ", ".join(f"{k} ({len(v):,})" for k, v in sigs.items()))
    print(f"  (machine shared with other jobs; load average {os.getloadavg()[0]:.1f})")
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
