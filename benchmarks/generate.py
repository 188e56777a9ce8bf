"""Benchmark of hepad.generate: accepted events/s per process and core, the cost of our processing
relative to Pythia's own ``next()`` loop, and the speed-up of 2 Dask workers over 1.

    python benchmarks/generate.py            # full (~10 min on a free 2-core machine)
    python benchmarks/generate.py --quick    # smoke run (~1-2 min)

Every figure is measured in this run; ratios compare runs made here, on the same settings.
The machine load (1-minute load average) is printed, since other jobs slow Pythia down.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# Dask's spawned workers inherit sys.path; with this folder first, sibling benchmark scripts
# (io.py, scale.py, ...) would shadow modules of the same name in the workers.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np

from hepad.generate import SimulationConfig, generate
from hepad.generate._catalogue import CATALOGUE
from hepad.generate._engine import plan_chunks, resolve_components, run_chunk
from hepad.generate._pythia import PythiaRun, quiet_stdout, read_card
from hepad.generate._simulation import FakeModel, simulate_batch


def load() -> str:
    return "load avg %.2f %.2f %.2f" % os.getloadavg()


def _one(proc, n, pileup, early_veto):
    _, comps = resolve_components(proc, n, None)
    sim = SimulationConfig(early_veto=early_veto).to_dict()
    spec = plan_chunks(comps, 1, 10**6, sim, pileup, Path("unused"))[0]
    t0, c0 = time.perf_counter(), time.process_time()
    res = run_chunk(spec)
    return res, time.perf_counter() - t0, time.process_time() - c0


def rates(processes, n_events, pileup=20.0):
    """Accepted events per CPU-second with and without the early veto (same seeds), and a KS
    test of MET and the leading-lepton pT between the two (they must agree)."""
    from scipy import stats

    print(f"\n== accepted events per CPU-second at pileup {pileup:g} ({n_events} accepted each, one core, "
          "incl. init), with and without the early veto (same seeds)")
    print("   early veto: events without a generator e/mu above 0.7 x 23 GeV in the tracker skip pileup and "
          "the detector simulation")
    print(f"{'process':<13}{'filter eff':>11}{'acc/cpu-s veto':>16}{'no veto':>9}{'gain':>7}"
          f"{'KS p MET':>10}{'KS p lead lep':>15}{'wall s':>8}")
    for proc in processes:
        n = max(10, n_events // 4) if proc in ("h0-tautau", "hplus-taunu") else n_events
        a, wa, ca = _one(proc, n, pileup, True)
        b, wb, cb = _one(proc, n, pileup, False)
        lead = lambda o: np.maximum(o[:, 1:5, 0].max(1), o[:, 5:9, 0].max(1))  # noqa: E731
        p_met = stats.ks_2samp(a.objects[:, 0, 0], b.objects[:, 0, 0]).pvalue
        p_lep = stats.ks_2samp(lead(a.objects), lead(b.objects)).pvalue
        st = a.stats
        print(f"{proc:<13}{st['n_accepted'] / st['n_generated']:11.3f}{st['n_accepted'] / ca:16.2f}"
              f"{b.stats['n_accepted'] / cb:9.2f}{cb / ca:6.2f}x{p_met:10.3f}{p_lep:15.3f}{wa + wb:8.0f}", flush=True)


def overhead(process, n):
    """Pythia next() loop vs nextBatch + our simulation, same card and seed.

    The two are interleaved in blocks of 50 events and timed in CPU time, so that changes of the
    machine load during the run hit both sides alike.
    """
    p = CATALOGUE[process]
    card = read_card(p.card_path)
    ref = PythiaRun(card, process, 11)
    ours = PythiaRun(card, process, 11)
    rng = np.random.default_rng(0)
    fake = FakeModel() if p.fake_model else None
    t_next = t_gen = t_sim = 0.0
    done = 0
    while done < n:
        k = min(50, n - done)
        t0 = time.process_time()
        with quiet_stdout():
            for _ in range(k):
                ref.pythia.next()
        t1 = time.process_time()
        batch = ours.next_batch(k)
        t2 = time.process_time()
        simulate_batch(batch, ours.particle_info, SimulationConfig(), rng, fake_model=fake, jets_of_rejected=False)
        t3 = time.process_time()
        t_next += t1 - t0
        t_gen += t2 - t1
        t_sim += t3 - t2
        done += k
    t_ours = t_gen + t_sim
    print(f"{process:<8} [cpu] next() loop {1000 * t_next / n:6.2f} ms/ev | nextBatch {1000 * t_gen / n:6.2f} ms/ev "
          f"+ simulation {1000 * t_sim / n:5.2f} ms/ev = {1000 * t_ours / n:6.2f} ms/ev | "
          f"overhead vs next() {100 * (t_ours / t_next - 1):+5.1f} % (goal < 25 %)", flush=True)


def speedup(n, chunk):
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        generate("w", n, Path(d) / "one.h5", seed=3, workers=1, chunk_size=chunk)
        t1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        generate("w", n, Path(d) / "two.h5", seed=3, workers=2, chunk_size=chunk)
        t2 = time.perf_counter() - t0
        import h5py

        with h5py.File(Path(d) / "one.h5") as f1, h5py.File(Path(d) / "two.h5") as f2:
            same = np.array_equal(f1["Particles"][:], f2["Particles"][:])
    print(f"W, {n} events in chunks of {chunk}: 1 worker (in-process) {t1:.1f} s, 2 Dask workers {t2:.1f} s "
          f"(incl. cluster start) -> speed-up {t1 / t2:.2f}x (goal >= 1.7x); identical events: {same}",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run with tiny samples")
    ap.add_argument("--events", type=int, default=200, help="accepted events per process in the rates section")
    ap.add_argument("--only", choices=("rates", "overhead", "speedup"), action="append",
                    help="run only these sections (repeatable; default: all)")
    args = ap.parse_args()
    sections = set(args.only or ("rates", "overhead", "speedup"))
    print(f"hepad generate benchmark ({'quick' if args.quick else 'full'}), {os.cpu_count()} cores, {load()}")
    if "rates" in sections:
        if args.quick:
            rates(["w", "z"], 30)
            rates(["w"], 30, pileup=0.0)
        else:
            rates(["w", "z", "ttbar", "qcd", "ato4l", "lq-btau", "h0-tautau", "hplus-taunu", "zprime-ll",
                   "wprime-lnu"], args.events)
    if "overhead" in sections:
        print(f"\n== processing overhead relative to Pythia's next() loop ({load()})")
        for proc in (["w"] if args.quick else ["w", "ttbar", "qcd"]):
            overhead(proc, 60 if args.quick else 400)
    if "speedup" in sections:
        print(f"\n== parallel speed-up ({load()})")
        if args.quick:
            speedup(40, 10)
        else:
            speedup(600, 75)
    print(f"\ndone, {load()}")


if __name__ == "__main__":
    main()
