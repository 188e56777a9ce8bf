"""Generate the detector study's dataset: SM train/test, the ADC2021 signals, tuning and held-out cards.

Each file is one ``hepad generate`` run (Dask workers, resumable from finished chunks: rerun the
same command after an interruption), skipped when it exists. Scales:

- ``medium``: the issue's trigger-study scale, 200,000 SM training and 200,000 SM test events
  (FPR 1e-4 resolved by 20 test events) and 5,000 events per signal;
- ``dev``: what fitted the shared 2-core development machine in about 40 minutes (4,000 / 10,000
  SM events, 300 per signal): FPR 1e-3 rests on 10 test events, 1e-4 is not resolved;
- ``dev20k``: 20,000 / 40,000 SM events and 1,000 per signal (82,000 events in 59 minutes on a
  2-core machine, -j 2, partly shared with tests): FPR 1e-3 rests on 40 test events and the fusion
  calibrates on 5,000. Its files hold most of the ``dev`` events (same seeds: 3,779 of the 4,000
  SM training, 9,841 of the 10,000 SM test events). At that rate
  ``medium`` (500,000 events) takes about 6 hours.

    python benchmarks/make_study_data.py --scale medium --dir ~/.cache/hepad/datasets/medium -j 16
    python benchmarks/detectors.py --size medium
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCALES = {
    "medium": {"sm_train": 200_000, "sm_test": 200_000, "signal": 5_000},
    "dev": {"sm_train": 4_000, "sm_test": 10_000, "signal": 300},
    "dev20k": {"sm_train": 20_000, "sm_test": 40_000, "signal": 1_000},
}
ADC = {"ato4l": 11, "lq-btau": 12, "h0-tautau": 13, "hplus-taunu": 14}
#: Card folders under cards/ and their generator seeds: a table per card (with a fallback for new
#: cards), or None for consecutive seeds from the base in name order.
CARD_SEEDS: dict[str, tuple[dict[str, int] | None, int]] = {
    "tuning": ({"zprime-tt-1000": 23, "h2-zz-300": 24}, 30),
    "heldout": (None, 41),
    "heldout2": ({"zprime-tautau-1000": 61, "h-zz-4l": 62, "wz-3l": 63}, 70),
    "heldout3": ({"hpp-ll-500": 81, "wprime-wz-1500": 82, "wr-eejj-3000": 83}, 90),
}


def jobs(scale: str) -> list[tuple[str, int, int, list[str]]]:
    """(file stem, events, seed, process arguments) of every file of the study."""
    n = SCALES[scale]
    out = [("sm_train", n["sm_train"], 1, ["sm-mix"]), ("sm_test", n["sm_test"], 3, ["sm-mix"])]
    out += [(name, n["signal"], seed, [name]) for name, seed in ADC.items()]
    out += [("zprime-ll", n["signal"], 21, ["zprime-ll"]), ("wprime-lnu", n["signal"], 22, ["wprime-lnu"])]
    for folder, (seeds, base) in CARD_SEEDS.items():
        for i, card in enumerate(sorted((HERE / "cards" / folder).glob("*.cmnd"))):
            seed = base + i if seeds is None else seeds.get(card.stem, base)
            out.append((card.stem, n["signal"], seed, ["--card", str(card)]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="dev")
    ap.add_argument("--dir", type=Path, required=True, help="output folder (outside the repository)")
    ap.add_argument("-j", "--workers", type=int, default=1, help="Dask workers per file (default 1)")
    ap.add_argument("--pileup", type=float, default=None, help="passed to hepad generate when given")
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    for stem, n, seed, proc in jobs(args.scale):
        out = args.dir / f"{stem}.h5"
        if out.exists():
            continue
        cmd = [sys.executable, "-m", "hepad", "generate", *proc, "-n", str(n), "--seed", str(seed), "-o", str(out),
               "-j", str(args.workers)]
        if args.pileup is not None:
            cmd += ["--pileup", str(args.pileup)]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
