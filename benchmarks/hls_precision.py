"""hls4ml precision scan: total bits vs AUC and TPR loss relative to the float model, per signal.

Trains the default autoencoder (or takes ``--model DIR``), exports it with hls4ml at each
``ap_fixed<W,6>`` precision, scores background and signals with the bit-accurate C simulation,
and prints a table (plus ``--plot FILE``) of the AUC and TPR-at-FPR loss against the float
model. Each precision compiles a C simulation (~10-30 s) and runs ~2,000 events/s, so this
stays out of ``make test``.

Usage: python benchmarks/hls_precision.py [--quick] [--model DIR] [--data-dir DIR] [--plot scan.png]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="Two precisions, 1,000 events per sample.")
    ap.add_argument("--model", help="Saved model directory (default: train the default detector).")
    ap.add_argument("--data-dir", default="/work/data/small",
                    help="Dataset with sm_test.h5 and signal files (default /work/data/small; toy events if absent).")
    ap.add_argument("--events", type=int, default=None, help="Events per sample (default 20,000; quick 1,000).")
    ap.add_argument("--fpr", type=float, default=1e-4, help="Working point of the TPR (default 1e-4).")
    ap.add_argument("--plot", help="Write the plot (AUC loss, TPR loss vs total bits) to this file.")
    args = ap.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    import hepad
    from hepad._toy import toy_events
    from hepad.detectors.base import DEFAULT_DETECTOR
    from hepad.export.hls import SCAN_PRECISIONS, plot_precision_scan, precision_scan

    n = args.events or (1000 if args.quick else 20000)
    data = Path(args.data_dir)
    signal_names = ("ato4l", "lq-btau", "h0-tautau", "hplus-taunu")
    if (data / "sm_test.h5").exists():
        bkg = hepad.read_events(data / "sm_test.h5", entry_range=(0, n))
        sigs = {s: hepad.read_events(data / f"{s}.h5", entry_range=(0, n)) for s in signal_names
                if (data / f"{s}.h5").exists()}
        origin = str(data)
    else:
        bkg = toy_events(n, "background", seed=5)
        sigs = {"toy-signal": toy_events(n, "signal", seed=6)}
        origin = "toy events"
    if args.model:
        det = hepad.load(args.model)
    else:
        train = (hepad.read_events(data / "sm_train.h5", entry_range=(0, 100_000)) if (data / "sm_train.h5").exists()
                 else toy_events(20000, "background", seed=4))
        det = hepad.make_detector(DEFAULT_DETECTOR, epochs=3 if args.quick else 20).fit(train)
    precisions = ("ap_fixed<10,6>", "ap_fixed<16,6>") if args.quick else SCAN_PRECISIONS
    print(f"hls4ml precision scan of {det!r}\n  on {origin}: {len(bkg):,} background events, signals {list(sigs)}")
    print(f"  (machine shared with other jobs; load average {os.getloadavg()[0]:.1f})")
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = precision_scan(det, bkg, sigs, tmp, precisions=precisions, fpr=args.fpr,
                              progress=lambda i, k, p: print(f"  {p} done ({i}/{k}, {time.perf_counter() - t:.0f} s)"))
    print(f"\n{'precision':22s} {'bits':>4s} {'signal':12s} {'AUC':>7s} {'dAUC':>8s} {'TPR':>7s} {'dTPR':>8s} {'corr':>8s}")
    for r in rows:
        print(f"{r['precision']:22s} {r['total_bits']:4d} {r['signal']:12s} {r['auc']:7.4f} {-r['auc_loss']:+8.4f} "
              f"{r['tpr']:7.4f} {-r['tpr_loss']:+8.4f} {r['corr']:8.5f}")
    print(f"\nfloat: " + ", ".join(f"{r['signal']} AUC {r['auc_float']:.4f} TPR@{args.fpr:g} {r['tpr_float']:.4f}"
                                 for r in rows if r["precision"] == precisions[0]))
    if len(bkg) * args.fpr < 10:
        print(f"NOTE: {len(bkg):,} background events give only {len(bkg) * args.fpr:.1f} events above the "
              f"FPR {args.fpr:g} cut: the TPR column is dominated by statistics.")
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
