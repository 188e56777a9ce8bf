"""Probes of the offline default's fusion on a study's saved models (research, not a benchmark).

Reads the models that ``benchmarks/detectors.py --models-dir DIR`` saved (``ae-fusion-s0`` ..)
and the study's dataset, and prints TPR at FPR 1e-3 (cut on ``sm_test``) per signal:

1. ``--calibration``: the fusion's members re-calibrated on the first half of ``sm_test`` with
   several tail settings and measured on the second half, beside the better member alone (the
   diagnosis behind ``tail_events=5``; it looks at held-out signals too, so it must not be used
   to choose anything else);
2. default: hepad's ``multiplicity`` detector (-log of the background frequency of
   (n_e, n_mu, n_jets)), fitted on the fusion's own training split and calibrated on its
   calibration split, alone and as an extra member of the fusion (``--model-label`` names a
   fusion without it, e.g. ``fusion_trigger_adc_``).

    python benchmarks/fusion_probe.py --data-dir ~/.cache/hepad/datasets/dev-v2 --models-dir MODELS
    python benchmarks/fusion_probe.py --data-dir ... --models-dir MODELS --calibration --model-label fusion_tail-50_
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import hepad
from hepad.detectors.fusion import TailCalibration

FPR = 1e-3


def tpr(bkg: np.ndarray, sig: np.ndarray, fpr: float = FPR) -> float:
    return float((sig > np.quantile(bkg, 1 - fpr)).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--models-dir", type=Path, required=True)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--model-label", default="ae-fusion",
                    help="saved model folders LABEL-s0 .. (e.g. fusion_tail-50_ for the fusion[tail-50] column)")
    ap.add_argument("--calibration", action="store_true", help="the calibration diagnosis instead")
    args = ap.parse_args(argv)
    train = hepad.read_events(args.data_dir / "sm_train.h5")
    test = hepad.read_events(args.data_dir / "sm_test.h5")
    signals = sorted(p.stem for p in args.data_dir.glob("*.h5") if not p.stem.startswith("sm_"))
    S = {s: hepad.read_events(args.data_dir / f"{s}.h5") for s in signals}
    cols = (["best member", "as trained", "auto,50", "auto,5", "exponential,5"] if args.calibration
            else ["ae-fusion", "+ multiplicity", "multiplicity alone"])
    res = {c: {s: [] for s in signals} for c in cols}
    rng = np.random.default_rng(0)
    for seed in range(args.seeds):
        det = hepad.load(args.models_dir / f"{args.model_label}-s{seed}")
        mb = [m.score_samples(test) for m in det.members_]
        ms = {s: [m.score_samples(S[s]) for m in det.members_] for s in signals}
        if args.calibration:
            half = len(test) // 2
            for s in signals:
                res["best member"][s].append(max(tpr(b[half:], x) for b, x in zip(mb, ms[s])))
            for col, opt in (("as trained", None), ("auto,50", ("auto", 50)), ("auto,5", ("auto", 5)),
                             ("exponential,5", ("exponential", 5))):
                cals = det.calibrations_ if opt is None else [
                    TailCalibration.fit(b[:half], tail=opt[0], tail_events=opt[1]) for b in mb]
                fb = np.vstack([c.surprisal(b[half:]) for c, b in zip(cals, mb)]).max(0)
                for s in signals:
                    fs = np.vstack([c.surprisal(x) for c, x in zip(cals, ms[s])]).max(0)
                    res[col][s].append(tpr(fb, fs))
            continue
        # The fusion's own split: the same permutation as FusionDetector._fit.
        order = np.random.default_rng(det.random_state).permutation(len(train))
        n_cal = int(round(det.calibration_fraction * len(train)))
        cal, fit = train[order[:n_cal]], train[order[n_cal:]]
        mult = hepad.make_detector("multiplicity").fit(fit).score_samples
        mcal = TailCalibration.fit(mult(cal), tail_events=det.tail_events, tail="exponential")
        t_b = [c.surprisal(b) for c, b in zip(det.calibrations_, mb)]
        mult_b = mult(test)
        fb2, fb3 = np.vstack(t_b).max(0), np.vstack(t_b + [mcal.surprisal(mult_b)]).max(0)
        mult_b_ties = mult_b + rng.uniform(0, 1e-9, len(mult_b))  # discrete score: a cut between ties
        for s in signals:
            t_s = [c.surprisal(x) for c, x in zip(det.calibrations_, ms[s])]
            mult_s = mult(S[s])
            res["ae-fusion"][s].append(tpr(fb2, np.vstack(t_s).max(0)))
            res["+ multiplicity"][s].append(tpr(fb3, np.vstack(t_s + [mcal.surprisal(mult_s)]).max(0)))
            res["multiplicity alone"][s].append(tpr(mult_b_ties, mult_s))
    print(f"TPR at FPR {FPR:g} (cut on sm_test{', second half' if args.calibration else ''}), "
          f"mean of {args.seeds} seeds")
    print(f"{'signal':18s} " + " ".join(f"{c:>18s}" for c in cols))
    for s in signals:
        print(f"{s:18s} " + " ".join(f"{np.mean(res[c][s]):18.3f}" for c in cols))
    print(f"{'mean':18s} " + " ".join(f"{np.mean([np.mean(res[c][s]) for s in signals]):18.3f}" for c in cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
