"""Scale-out benchmark of `hepad score`: events/s in-process and on 1 and 2 local Dask workers.

Writes toy ADC2021 events (hepad._toy) into several HDF5 files, trains a small model, then
scores all files:

- reference: in this process, one engine thread (the per-core baseline);
- a local Dask cluster of 1 worker process, then of 2 (one thread each).

Rates count the scoring phase only (shipping the model, reading, scoring, returning scores and
writing part files); a warm-up on every worker first pays its imports and the model
rebuild, as a long job pays them once. Scaling efficiency = rate(2 workers) / (2 x rate(1)).
The last lines give the back-of-envelope for the 4-million-event ADC2021 stream.

    python benchmarks/scale.py                    # 400k events, 4 files, the ae detector
    python benchmarks/scale.py --detector iforest --events 200000
    python benchmarks/scale.py --quick            # 20k events: a smoke run

On a shared machine the figures move with the load of other processes (printed at the start).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=400_000, help="events in all (default 400k)")
    ap.add_argument("--files", type=int, default=4, help="input files (default 4)")
    ap.add_argument("--partition-size", type=int, default=None, help="default: events / (4 x files)")
    ap.add_argument("--detector", default="ae", help="detector to train (default ae)")
    ap.add_argument("--engine", default="auto", help="scoring engine (default auto)")
    ap.add_argument("--quick", action="store_true", help="20k events, a smoke run")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import numpy as np

    import hepad
    from hepad import scoring as sc
    from hepad._toy import toy_events
    from hepad.thresholds import COLLISION_RATE_HZ
    from hepad.partitions import dask_client, warm

    n_total = 20_000 if args.quick else args.events
    n_files = max(1, args.files)
    psize = args.partition_size or max(1000, n_total // (4 * n_files))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"hepad scale benchmark: {n_total:,} toy events in {n_files} files, partitions of {psize:,}, "
          f"detector {args.detector}, engine {args.engine}; {os.cpu_count()} cores, load average {load:.1f}")

    tmp = Path(tempfile.mkdtemp(prefix="hepad-scale-"))
    try:
        files = []
        per = n_total // n_files
        for i in range(n_files):
            p = tmp / f"events_{i}.h5"
            hepad.write_events(toy_events(per, "background" if i % 2 == 0 else "signal", seed=i), p, compression=None)
            files.append(p)
        n_total = per * n_files
        params = {"epochs": 2} if args.detector in ("ae", "vae", "deep-svdd") else {}
        det = hepad.make_detector(args.detector, **params).fit(toy_events(20_000, seed=99))
        det.save(tmp / "model")

        def run(label: str, **kw) -> float:
            out = tmp / f"{label}.h5"
            rep = sc.score_files(tmp / "model", files, out, partition_size=psize, engine=args.engine,
                                 resume=False, **kw)
            rate = rep.n_events / rep.scoring_s
            print(f"  {label:<12} {rate:>12,.0f} events/s   (scoring {rep.scoring_s:6.2f} s, end to end "
                  f"{rep.elapsed_s:6.2f} s, {rep.n_partitions} partitions)")
            return rate, sc.read_scores(out)["score"]

        ref_rate, ref = run("in-process", n_workers=0, threads=1)
        rates = {}
        for k in (1, 2):
            with dask_client(n_workers=k) as client:
                # Warm-up: every worker imports hepad and rebuilds the model once, as in a long job.
                payload = sc.pack_model(tmp / "model")
                client.run(warm, payload, args.engine, 1)
                rates[k], got = run(f"{k} worker{'s' if k > 1 else ''}", client=client)
            if not np.array_equal(got, ref):
                raise SystemExit(f"{k} workers: scores differ from the in-process reference")
        eff = rates[2] / (2 * rates[1])
        print(f"  ratio 1 worker / in-process: {rates[1] / ref_rate:.2f};  2 workers / 1 worker: "
              f"{rates[2] / rates[1]:.2f};  scaling efficiency {eff:.0%}")
        core = ref_rate  # one engine thread in one process: the per-core rate
        print(f"  back-of-envelope from {core:,.0f} events/s per core: the ADC2021 stream (4M events) takes "
              f"{4e6 / core:,.0f} core-s; 1e9 events {1e9 / core / 3600:,.1f} core-hours; keeping up with "
              f"40 MHz needs {COLLISION_RATE_HZ / core:,.0f} cores (at 100 % scaling efficiency, reading included)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
