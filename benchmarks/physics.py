"""Physics validation of hepad's simulation at pileup 0 and 20, beside the Delphes-CMS expectation.

    python benchmarks/physics.py --quick          # ~150 accepted events per process (a few min)
    python benchmarks/physics.py -n 1000          # the size quoted in docs/generation.md
    python benchmarks/physics.py --plots docs/figures   # also write the figures (mplhep, units)

For Z -> ee/mumu, W -> l nu, ttbar, QCD and A -> 4l it prints: the Z peak position and width, the
W transverse-mass edge, the MET resolution against the scalar sum ET, the jet multiplicity, the
lepton efficiency against pT and eta (generator-level e/mu matched to reconstructed ones), the
filter efficiency and the SM-mix composition. Every figure is measured in this run; the
"expected" column comes from hepad's detector table (the numbers of the Delphes CMS card).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np

from hepad import _layout as L
from hepad.generate import SimulationConfig, derive_seed
from hepad.generate._catalogue import CATALOGUE, SM_MIX
from hepad.generate._engine import MINBIAS_CARD, FakeModel
from hepad.generate._pythia import PythiaRun, read_card
from hepad.generate._simulation import (
    DETECTOR, PileupSource, _pt_eta_phi, final_state, lepton_efficiency, simulate_batch, track_resolution,
    ecal_sigma,
)

PROCESSES = ("z", "w", "ttbar", "qcd", "ato4l")
PT_BINS = np.array([5.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0])
ETA_BINS = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])


def run(process: str, n_accept: int, pileup: float, seed: int = 1):
    """Generate until ``n_accept`` events pass; keep objects, truth leptons and counts."""
    p = CATALOGUE[process]
    sim = SimulationConfig()
    fake = FakeModel() if p.fake_model else None
    s = derive_seed(seed, "physics", process)
    pythia = PythiaRun(tuple(read_card(p.card_path)), process, s)
    source = PileupSource(PythiaRun(MINBIAS_CARD, "pileup", derive_seed(s, "pileup")), int(sim.pileup_max_reuse)) \
        if pileup > 0 else None
    rng = np.random.default_rng([s, 20210])
    objs, passed, truth = [], [], []
    n_gen = n_acc = 0
    c0 = time.process_time()
    while n_acc < n_accept:
        batch = pythia.next_batch(200)
        res = simulate_batch(batch, pythia.particle_info, sim, rng, fake_model=fake,
                             pileup=(source, pileup) if source else None)
        n, ev, pid, px, py, pz, e = final_state(batch)
        pt, eta, phi = _pt_eta_phi(px, py, pz)
        lep = ((np.abs(pid) == 11) | (np.abs(pid) == 13)) & (pt > 3)
        near = lep & (pt > 0.7 * sim.lepton_filter_pt) & (np.abs(eta) < 2.5)
        presel = np.bincount(ev[near], minlength=n) > 0
        ok = lep & presel[ev]
        truth.append(np.stack([ev[ok] + n_gen, np.abs(pid[ok]), pt[ok], eta[ok], phi[ok]], axis=1))
        objs.append(res.objects)
        passed.append(res.passed)
        n_gen += n
        n_acc += int(res.passed.sum())
    return {"objects": np.concatenate(objs), "passed": np.concatenate(passed), "truth": np.concatenate(truth),
            "n_gen": n_gen, "n_acc": n_acc, "cpu_s": time.process_time() - c0,
            "sigma_pb": pythia.cross_section()[0], "fake": fake}


def _pairs_mass(obj, slots):
    pt, eta, phi = (obj[:, slots, i].astype(float) for i in range(3))
    ok = pt[:, 1] > 0
    m2 = 2 * pt[:, 0] * pt[:, 1] * (np.cosh(eta[:, 0] - eta[:, 1]) - np.cos(phi[:, 0] - phi[:, 1]))
    return np.sqrt(m2[ok])


def z_peak(obj):
    m = np.concatenate([_pairs_mass(obj, L.ELECTRON_SLOTS), _pairs_mass(obj, L.MUON_SLOTS)])
    win = m[(m > 70) & (m < 110)]
    q16, q50, q84 = np.percentile(win, [16, 50, 84]) if len(win) > 5 else (np.nan,) * 3
    return q50, 0.5 * (q84 - q16), len(win), m


def w_mt(obj):
    lep_e, lep_m = obj[:, L.ELECTRON_SLOTS.start], obj[:, L.MUON_SLOTS.start]
    lead = np.where((lep_e[:, 0] >= lep_m[:, 0])[:, None], lep_e, lep_m)
    mt = np.sqrt(2 * lead[:, 0] * obj[:, 0, 0] * (1 - np.cos(lead[:, 2] - obj[:, 0, 2])))
    hist, edges = np.histogram(mt, bins=np.arange(0, 150, 5))
    peak = hist.argmax()
    above = np.flatnonzero(hist[peak:] < 0.5 * hist[peak])
    edge = edges[peak + above[0]] if len(above) else np.nan
    return edge, mt


def met_resolution(obj):
    """sigma(MET_x) in bins of the scalar sum of the visible objects' pT (HT + leptons)."""
    sum_et = obj[:, 1:, 0].sum(1)
    metx = obj[:, 0, 0] * np.cos(obj[:, 0, 2])
    out = []
    for lo, hi in ((0, 100), (100, 200), (200, 400), (400, 2000)):
        sel = (sum_et >= lo) & (sum_et < hi)
        if sel.sum() >= 10:
            out.append((lo, hi, int(sel.sum()), float(np.std(metx[sel]))))
    return out, sum_et, metx


def lepton_eff(r, flavour):
    obj, truth = r["objects"], r["truth"]
    slots = L.ELECTRON_SLOTS if flavour == 11 else L.MUON_SLOTS
    t = truth[truth[:, 1] == flavour]
    rec = obj[t[:, 0].astype(int)][:, slots]
    dphi = (rec[..., 2] - t[:, 4:5] + np.pi) % (2 * np.pi) - np.pi
    dr = np.hypot(rec[..., 1] - t[:, 3:4], dphi)
    found = ((rec[..., 0] > 0) & (dr < 0.1)).any(axis=1)
    return t, found


def table_eff(kind, pt_lo, pt_hi, eta_lo, eta_hi):
    pt = np.linspace(pt_lo, pt_hi, 21)[1:-1] if np.isfinite(pt_hi) else np.array([pt_lo * 1.5])
    eta = np.linspace(eta_lo, eta_hi, 11)[1:-1]
    return float(lepton_efficiency(kind, pt[:, None], eta[None, :]).mean())


def expected_z_width() -> str:
    """Resolution part of the Z width from the table: sigma(m)/m = sigma(pT)/pT / sqrt(2)."""
    e45 = np.array([45.0])
    rel_mu = track_resolution("muon", e45, np.array([0.8]))[0]
    rel_e_trk = track_resolution("electron", e45, np.array([0.8]))[0]
    rel_e_cal = ecal_sigma(e45 * np.cosh(0.8), np.array([0.8]))[0] / (45 * np.cosh(0.8))
    rel_e = 1 / np.sqrt(1 / rel_e_trk**2 + 1 / rel_e_cal**2)
    gamma_hwhm = 2.495 / 2
    w_mu = np.hypot(91.19 * rel_mu / np.sqrt(2), gamma_hwhm)
    w_e = np.hypot(91.19 * rel_e / np.sqrt(2), gamma_hwhm)
    return f"~{w_mu:.1f} (mu) / {w_e:.1f} (e) GeV: Gamma_Z/2 (+) m sigma(pT)/pT/sqrt2 at |eta| 0.8"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=600, help="accepted events per process and pileup")
    ap.add_argument("--quick", action="store_true", help="150 accepted events per process")
    ap.add_argument("--plots", type=Path, default=None, help="write the figures (PNG) into this folder")
    args = ap.parse_args(argv)
    n = 150 if args.quick else args.n
    print(f"hepad physics benchmark: {n} accepted events per process and pileup; "
          "load avg %.2f %.2f %.2f" % os.getloadavg(), flush=True)
    results = {}
    for pu in (0.0, 20.0):
        for proc in PROCESSES:
            nn = max(50, n // 3) if proc in ("ttbar",) else n
            results[(proc, pu)] = r = run(proc, nn, pu)
            print(f"  generated {proc:6s} PU{pu:2.0f}: {r['n_acc']} accepted of {r['n_gen']} "
                  f"in {r['cpu_s']:.0f} CPU s", flush=True)

    def acc(proc, pu):
        r = results[(proc, pu)]
        return r["objects"][r["passed"]]

    print("\n== Z -> ee/mumu: leading same-flavour pair, 70 < m < 110 GeV")
    print(f"   expected: peak 91.2 GeV, half-width (16-84 %) {expected_z_width()}")
    for pu in (0.0, 20.0):
        q50, w, k, _ = z_peak(acc("z", pu))
        print(f"   PU{pu:2.0f}: peak (median) {q50:6.2f} GeV, half-width {w:5.2f} GeV  ({k} pairs)")

    print("\n== W -> l nu: transverse mass of the leading lepton and MET")
    print("   expected: Jacobian edge just below m_W = 80.4 GeV, smeared by the MET resolution")
    for pu in (0.0, 20.0):
        edge, mt = w_mt(acc("w", pu))
        print(f"   PU{pu:2.0f}: edge (half maximum above the peak) {edge:5.1f} GeV, median mT {np.median(mt):5.1f} GeV")

    print("\n== MET resolution, Z -> ll (no real MET): sigma(MET_x) vs scalar sum pT of the objects")
    print("   expected: grows like sqrt(sum ET) (calorimeter stochastic terms, table 'ecal'/'hcal'),")
    print("   and with pileup (MET uses all particle-flow candidates, pileup tracks included, as Delphes)")
    for pu in (0.0, 20.0):
        rows, _, _ = met_resolution(acc("z", pu))
        print(f"   PU{pu:2.0f}: " + "; ".join(f"[{lo},{hi}) GeV: {s:5.1f} GeV (n={k})" for lo, hi, k, s in rows))

    print("\n== jet multiplicity (pT > 15 GeV, |eta| < 4), mean and fraction with all 10 slots filled")
    print(f"   {'process':8s}{'PU0':>8s}{'PU20':>8s}{'PU20-PU0':>10s}{'10 jets PU20':>14s}")
    for proc in PROCESSES:
        j0 = (acc(proc, 0.0)[:, L.JET_SLOTS, 0] > 0).sum(1)
        j20 = (acc(proc, 20.0)[:, L.JET_SLOTS, 0] > 0).sum(1)
        print(f"   {proc:8s}{j0.mean():8.2f}{j20.mean():8.2f}{j20.mean() - j0.mean():10.2f}{(j20 == 10).mean():14.3f}")

    print("\n== lepton efficiency (generator e/mu -> reconstructed, isolated, dR < 0.1), Z events")
    print("   expected = tracking x identification efficiency of the table (no isolation)")
    for flavour, kind in ((11, "electron"), (13, "muon")):
        for pu in (0.0, 20.0):
            t, found = lepton_eff(results[("z", pu)], flavour)
            row = []
            for lo, hi in zip(PT_BINS, list(PT_BINS[1:]) + [np.inf]):
                sel = (t[:, 2] >= lo) & (t[:, 2] < hi) & (np.abs(t[:, 3]) < 2.5)
                if sel.sum() >= 5:
                    row.append(f"{lo:.0f}-{hi:.0f}: {found[sel].mean():.2f}/{table_eff(kind, lo, hi, 0, 2.5 if kind == 'electron' else 2.1):.2f}")
            print(f"   {kind:8s} PU{pu:2.0f} pT bins (measured/expected): " + ", ".join(row))
            row = []
            for lo, hi in zip(ETA_BINS[:-1], ETA_BINS[1:]):
                sel = (np.abs(t[:, 3]) >= lo) & (np.abs(t[:, 3]) < hi) & (t[:, 2] > 20)
                if sel.sum() >= 5:
                    row.append(f"{lo:.1f}-{hi:.1f}: {found[sel].mean():.2f}/{table_eff(kind, 20, 100, lo, hi):.2f}")
            print(f"   {kind:8s} PU{pu:2.0f} |eta| bins, pT > 20 (measured/expected): " + ", ".join(row))

    print("\n== filter efficiency (accepted / generated) and SM-mix composition")
    print(f"   {'process':8s}{'PU0':>9s}{'PU20':>9s}{'sigma_acc PU20 [pb]':>22s}")
    sig_acc = {}
    for proc in PROCESSES:
        effs = [results[(proc, pu)]["n_acc"] / results[(proc, pu)]["n_gen"] for pu in (0.0, 20.0)]
        r = results[(proc, 20.0)]
        s = r["sigma_pb"] * effs[1]
        if r["fake"] is not None:
            s *= r["fake"].probability * r["fake"].n_jets_cap
        sig_acc[proc] = s
        print(f"   {proc:8s}{effs[0]:9.4f}{effs[1]:9.4f}{s:22.4g}")
    sm = {k: sig_acc[k] for k in SM_MIX}
    tot = sum(sm.values())
    print("   SM mix (hepad files use the ADC2021 fractions; here the fractions our cross-sections imply):")
    for k in SM_MIX:
        print(f"     {k:6s} ADC2021 {SM_MIX[k]:.3f}   from sigma x filter (x fake rate for qcd) {sm[k] / tot:.3f}")

    if args.plots is not None:
        plots(results, args.plots)
    return 0


def plots(results, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep as hep

    folder.mkdir(parents=True, exist_ok=True)
    hep.style.use("CMS")

    def acc(proc, pu):
        r = results[(proc, pu)]
        return r["objects"][r["passed"]]

    fig, axes = plt.subplots(2, 3, figsize=(21, 12))
    ax = axes[0, 0]
    for pu in (0.0, 20.0):
        m = z_peak(acc("z", pu))[3]
        ax.hist(m, bins=np.arange(60, 121, 2), histtype="step", density=True, lw=2, label=f"PU{pu:.0f}")
    ax.axvline(91.19, color="k", ls=":", label="$m_Z$")
    ax.set(xlabel=r"$m_{\ell\ell}$ [GeV]", ylabel="Events / 2 GeV (normalised)", title=r"Z $\to \ell\ell$")
    ax.legend()
    ax = axes[0, 1]
    for pu in (0.0, 20.0):
        mt = w_mt(acc("w", pu))[1]
        ax.hist(mt, bins=np.arange(0, 150, 5), histtype="step", density=True, lw=2, label=f"PU{pu:.0f}")
    ax.axvline(80.4, color="k", ls=":", label="$m_W$")
    ax.set(xlabel=r"$m_T(\ell, E_T^{miss})$ [GeV]", ylabel="Events / 5 GeV (normalised)", title=r"W $\to \ell\nu$")
    ax.legend()
    ax = axes[0, 2]
    for pu in (0.0, 20.0):
        rows = met_resolution(acc("z", pu))[0]
        x = [0.5 * (lo + min(hi, 600)) for lo, hi, _, _ in rows]
        ax.plot(x, [s for *_, s in rows], "o-", label=f"PU{pu:.0f}")
    ax.set(xlabel=r"$\sum p_T$ of the objects [GeV]", ylabel=r"$\sigma(E_x^{miss})$ [GeV]", title="MET resolution, Z")
    ax.legend()
    ax = axes[1, 0]
    for i, pu in enumerate((0.0, 20.0)):
        for j, proc in enumerate(PROCESSES):
            nj = (acc(proc, pu)[:, L.JET_SLOTS, 0] > 0).sum(1)
            ax.bar(j + 0.4 * i - 0.2, nj.mean(), width=0.4, color=f"C{i}", label=f"PU{pu:.0f}" if j == 0 else None)
    ax.set_xticks(range(len(PROCESSES)), PROCESSES)
    ax.set(ylabel="Mean number of jets per event", title=r"Jets, $p_T > 15$ GeV")
    ax.legend()
    for k, (flavour, kind) in enumerate(((11, "electron"), (13, "muon"))):
        ax = axes[1, 1 + k]
        for pu in (0.0, 20.0):
            t, found = lepton_eff(results[("z", pu)], flavour)
            c = 0.5 * (PT_BINS[:-1] + PT_BINS[1:])
            eff = [found[(t[:, 2] >= lo) & (t[:, 2] < hi)].mean() if ((t[:, 2] >= lo) & (t[:, 2] < hi)).sum() else np.nan
                   for lo, hi in zip(PT_BINS[:-1], PT_BINS[1:])]
            ax.plot(c, eff, "o", label=f"measured PU{pu:.0f}")
        grid = np.linspace(3, 100, 200)
        ax.plot(grid, lepton_efficiency(kind, grid, np.full_like(grid, 0.5)), "k-", label=r"table, $|\eta|=0.5$")
        ax.set(xlabel=rf"generator {kind} $p_T$ [GeV]", ylabel="Efficiency", ylim=(0, 1.05), title=f"{kind}s in Z events")
        ax.legend()
    fig.tight_layout()
    out = folder / "physics.png"
    fig.savefig(out, dpi=60)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    sys.exit(main())
