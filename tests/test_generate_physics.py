"""Physics of the Delphes-CMS-like response: visibility from particle data, pileup correction,
lepton efficiencies from the table, card errors, and the dataset cache rules.

Samples are small (100-200 accepted events) so each test runs in seconds on one core.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pytest
from scipy import stats

from hepad import _layout as L
from hepad.errors import GenerationError
from hepad.generate import SimulationConfig, build_dataset, generate, lepton_efficiency
from hepad.generate import _engine
from hepad.generate._engine import plan_chunks, resolve_components, run_chunk
from hepad.generate._simulation import DETECTOR, SIMULATION_VERSION, simulate_batch


def _chunk(process, n, seed, pileup=0.0, card=None):
    _, comps = resolve_components(process, n, card)
    spec = plan_chunks(comps, seed, 10**6, SimulationConfig().to_dict(), pileup, Path("unused"))[0]
    return run_chunk(spec)


def _n_jets(obj):
    return (obj[:, L.JET_SLOTS, 0] > 0).sum(axis=1)


ZH_CARD = """! Z(-> e e / mu mu) H, H -> {a} {b}
HiggsSM:ffbar2HZ = on
23:onMode = off
23:onIfAny = 11 13
25:onMode = off
25:addChannel = 1 1.0 100 {a} {b}
"""


def test_dark_matter_is_invisible_like_neutrinos(tmp_path):
    """H -> chi chi (Pythia id 52, 10 GeV, stable) looks like H -> nu nubar: same MET, same jets."""
    dm = tmp_path / "zh-dm.cmnd"
    dm.write_text(ZH_CARD.format(a=52, b=-52) + "52:m0 = 10.\n52:mayDecay = off\n")
    nu = tmp_path / "zh-nu.cmnd"
    nu.write_text(ZH_CARD.format(a=12, b=-12))
    a = _chunk("zh-dm", 150, 7, card=dm).objects
    b = _chunk("zh-nu", 150, 8, card=nu).objects
    met_a, met_b = a[:, 0, 0], b[:, 0, 0]
    # Sensitive: a visible chi pair would leave MET ~ 10 GeV (its pT would be measured).
    assert np.median(met_a) > 40 and np.median(met_b) > 40
    assert stats.ks_2samp(met_a, met_b).pvalue > 0.001
    ja, jb = _n_jets(a), _n_jets(b)
    err = np.sqrt(ja.var() / len(ja) + jb.var() / len(jb))
    assert abs(ja.mean() - jb.mean()) < 3.5 * err + 0.05


def test_pileup_20_adds_at_most_one_jet():
    """After charged-hadron subtraction and rho x area, PU20 Z events gain < 1 jet on average."""
    pu0 = _chunk("z", 100, 11, pileup=0.0)
    pu20 = _chunk("z", 100, 11, pileup=20.0)
    j0, j20 = _n_jets(pu0.objects), _n_jets(pu20.objects)
    assert j20.mean() - j0.mean() <= 1.0, (j0.mean(), j20.mean())
    assert (j20 == L.N_JETS).mean() < 0.05
    # Fresh minimum-bias events: each overlaid at most max_reuse times, none shared with PU0.
    st = pu20.stats
    assert st["pileup_minbias_generated"] * SimulationConfig().pileup_max_reuse >= st["pileup_overlaid"]
    assert st["pileup_overlaid"] > 15 * st["n_generated"] * 0.3  # mu = 20 on the events simulated
    # Isolation is rho-corrected: PU20 keeps the lepton count of PU0.
    nl = lambda o: ((o[:, L.ELECTRON_SLOTS, 0] > 0).sum(1) + (o[:, L.MUON_SLOTS, 0] > 0).sum(1)).mean()  # noqa: E731
    assert abs(nl(pu20.objects) - nl(pu0.objects)) < 0.25


def test_early_veto_changes_nothing_but_the_cost():
    """Same seeds with and without the early veto: KS-compatible columns, same filter rate."""
    a = _chunk("w", 80, 21, pileup=0.0)
    _, comps = resolve_components("w", 80, None)
    sim = SimulationConfig(early_veto=False).to_dict()
    b = run_chunk(plan_chunks(comps, 21, 10**6, sim, 0.0, Path("unused"))[0])
    assert len(a.objects) == len(b.objects) == 80
    lead = lambda o: np.maximum(o[:, L.ELECTRON_SLOTS, 0].max(1), o[:, L.MUON_SLOTS, 0].max(1))  # noqa: E731
    for f in (lambda o: o[:, 0, 0], lead, lambda o: _n_jets(o).astype(float)):
        assert stats.ks_2samp(f(a.objects), f(b.objects)).pvalue > 0.001
    ea = a.stats["n_accepted"] / a.stats["n_generated"]
    eb = b.stats["n_accepted"] / b.stats["n_generated"]
    assert abs(ea - eb) < 4 * np.sqrt(ea * (1 - ea) / a.stats["n_generated"] + eb * (1 - eb) / b.stats["n_generated"])


def _gun_batch(n, probe_id, probe_pt, probe_eta):
    """n events: a 60 GeV muon at phi = 0 (passes the early veto) and a probe lepton at phi = 2."""
    def p4(pt, eta, phi, m):
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        return px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + m**2)

    tag = p4(60.0, 0.2, 0.0, 0.105)
    probe = p4(probe_pt, probe_eta, 2.0, 0.105 if abs(probe_id) == 13 else 0.000511)
    cols = {k: np.tile([tag[i], probe[i]], n) for i, k in enumerate(("px", "py", "pz", "e"))}
    prt = ak.zip({"id": np.tile([13, probe_id], n), "status": np.ones(2 * n, dtype=np.int64),
                  "p": ak.zip(cols)}, depth_limit=1)
    return ak.Array({"prt": ak.unflatten(prt, np.full(n, 2))})


def _info(ids):
    return np.where(ids > 0, -1.0, 1.0).astype(np.float32), np.ones(len(ids), dtype=bool)


@pytest.mark.parametrize("kind,pid,eta", [("electron", 11, 0.3), ("electron", 11, 2.0),
                                          ("muon", 13, 0.3), ("muon", 13, 1.9)])
@pytest.mark.parametrize("pt", [5.0, 15.0, 50.0])
def test_lepton_efficiency_matches_table(kind, pid, eta, pt):
    n = 3000
    res = simulate_batch(_gun_batch(n, pid, pt, eta), _info, SimulationConfig(), np.random.default_rng(1))
    slots = L.ELECTRON_SLOTS if kind == "electron" else L.MUON_SLOTS
    block = res.objects[:, slots]
    found = ((block[..., 0] > 0) & (np.abs(block[..., 2] - 2.0) < 0.1)).any(axis=1)
    expected = float(lepton_efficiency(kind, pt, eta))
    tab_t = DETECTOR[f"track_eff_{kind}"].value
    tab_i = DETECTOR[f"id_eff_{kind}"].value
    region = 0 if eta < 1.5 else 1
    by_hand = tab_t["high"][region] * (tab_i["values"][region] if pt > tab_i["pt_min"] else 0.0)
    assert expected == pytest.approx(by_hand)
    err = np.sqrt(max(expected * (1 - expected), 1e-4) / n)
    assert abs(found.mean() - expected) < 4 * err, (found.mean(), expected)


# ------------------------------------------------------------------ card errors
def test_non_numeric_value_names_file_and_line(tmp_path):
    card = tmp_path / "bad.cmnd"
    card.write_text("! a scalar\nHiggs:useBSM = on\nHiggsBSM:gg2H2 = on\n35:m0 = fifty\n")
    with pytest.raises(GenerationError) as exc:
        generate(None, 5, tmp_path / "x.h5", card=card, workers=0)
    msg = str(exc.value)
    assert "\n" not in msg and "bad.cmnd, line 4" in msg and "'fifty'" in msg
    assert not list(tmp_path.glob(".x.h5*")) and not (tmp_path / "x.h5").exists()


def test_card_that_never_passes_the_filter_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(_engine, "ZERO_ACCEPT_LIMIT", 200)
    card = tmp_path / "wjj.cmnd"
    card.write_text("WeakSingleBoson:ffbar2W = on\n24:onMode = off\n24:onIfAny = 1 2\n")
    with pytest.raises(GenerationError, match="none of .* passed the lepton filter"):
        generate("wjj", 5, tmp_path / "wjj.h5", card=card, workers=0, pileup=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wjj.cmnd"]


# ------------------------------------------------------------------ dataset cache
SIZES = {"sm_train.h5": 4, "sm_val.h5": 2, "sm_test.h5": 2, "ato4l.h5": 2, "lq-btau.h5": 2,
         "h0-tautau.h5": 1, "hplus-taunu.h5": 1}


@pytest.mark.slow
def test_stale_simulation_version_is_rebuilt_and_builders_share_a_lock(tmp_path, monkeypatch):
    paths = build_dataset("tiny", tmp_path, workers=0, sizes=SIZES, pileup=0)
    prov = json.loads(h5py.File(paths["sm_val"], "r").attrs["hepad_provenance"])
    assert prov["simulation_version"] == SIMULATION_VERSION and prov["detector"]["iso_delta_r"]["value"] == 0.5
    assert "source" in prov["detector"]["id_eff_electron"]
    with h5py.File(paths["sm_val"], "r+") as f:  # pretend sm_val came from the old simulation
        prov["simulation_version"] = SIMULATION_VERSION - 1
        f.attrs["hepad_provenance"] = json.dumps(prov)
    built = []
    real = _engine.run_chunk
    monkeypatch.setattr(_engine, "run_chunk", lambda spec: built.append(spec.component) or real(spec))
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        build_dataset("tiny", tmp_path, workers=0, sizes=SIZES, pileup=0))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Only the stale file was regenerated, and only once although two builders ran.
    assert len(results) == 2 and results[0] == results[1] == paths
    assert sorted(built) == ["w", "w"] or sorted(built) == ["qcd", "w"], built
    again = json.loads(h5py.File(paths["sm_val"], "r").attrs["hepad_provenance"])
    assert again["simulation_version"] == SIMULATION_VERSION


# ------------------------------------------------------------------ fast paths = reference paths
def test_detector_response_matches_every_table_on_every_particle():
    """The response evaluates each table only on the particles it applies to; that must give the
    same numbers, bit for bit, as evaluating every table on every particle and picking with
    np.where (the formulation of the Delphes card, kept here as the reference)."""
    from hepad.generate._simulation import (_detector_response, ecal_sigma, hcal_sigma, track_resolution,
                                            tracking_efficiency)

    rng = np.random.default_rng(4)
    n = 20000
    pid = rng.choice([11, -11, 13, -13, 22, 211, -211, 321, 130, 2112, 2212], size=n)
    charge = np.where(np.isin(np.abs(pid), [22, 130, 2112]), 0.0, np.sign(pid) * 1.0)
    pt = np.exp(rng.uniform(np.log(0.05), np.log(3000.0), n))
    eta = rng.uniform(-5.5, 5.5, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + np.where(np.abs(pid) == 13, 0.105**2, 0.0))

    def reference(rng):
        aid = np.abs(pid)
        is_e, is_mu = aid == 11, aid == 13
        eff = np.where(is_mu, tracking_efficiency("muon", pt, eta),
                       np.where(is_e, tracking_efficiency("electron", pt, eta), tracking_efficiency("hadron", pt, eta)))
        u, g = rng.random(n), rng.standard_normal(n)
        tracked = (charge != 0) & (np.abs(eta) < 2.5) & (u < eff)
        rel_t = np.where(is_mu, track_resolution("muon", pt, eta),
                         np.where(is_e, track_resolution("electron", pt, eta), track_resolution("hadron", pt, eta)))
        to_ecal = (~tracked & (is_e | (aid == 22))) | (tracked & is_e)
        to_hcal = ~tracked & ~is_mu & ~is_e & (aid != 22)
        ecal_rel = ecal_sigma(e, eta) / np.maximum(e, 1e-9)
        hcal_rel = hcal_sigma(e, eta) / np.maximum(e, 1e-9)
        comb = 1.0 / np.sqrt(1.0 / np.maximum(rel_t, 1e-9) ** 2 + 1.0 / np.maximum(ecal_rel, 1e-9) ** 2)
        rel = np.where(tracked & is_e, comb, np.where(tracked, rel_t, np.where(to_ecal, ecal_rel, hcal_rel)))
        s2 = np.log1p(rel**2)
        scale = np.exp(np.sqrt(s2) * g - 0.5 * s2)
        kept = tracked | (to_ecal & ~tracked & (e * scale > 0.5)) | (to_hcal & (e * scale > 1.0))
        return scale, tracked, kept & (np.abs(eta) < 5.0)

    want = reference(np.random.default_rng(9))
    got = _detector_response(np.random.default_rng(9), pid, charge, px, py, pz, e, pt, eta)
    for w, g in zip(want, got):
        assert np.array_equal(w, g)
    assert 0.1 < got[1].mean() < 0.9 and 0.1 < got[2].mean() < 1.0  # both branches exercised


def test_jets_of_rejected_events_are_skipped_and_nothing_else_changes():
    """run_chunk clusters jets only for events that pass the lepton filter; the passing events
    must be the same, bit for bit, as with the jets of every event (W, pileup 20)."""
    from hepad.generate._pythia import PythiaRun, read_card
    from hepad.generate._catalogue import CATALOGUE
    from hepad.generate._simulation import PileupSource

    batch = PythiaRun(read_card(CATALOGUE["w"].card_path), "w", 31).next_batch(120)
    sim = SimulationConfig()
    out = {}
    for full in (True, False):
        run = PythiaRun(_engine.MINBIAS_CARD, "pileup", 32)  # the same minimum-bias events both times
        out[full] = simulate_batch(batch, run.particle_info, sim, np.random.default_rng(33),
                                   pileup=(PileupSource(run, 4), 20.0), jets_of_rejected=full)
    full, fast = out[True], out[False]
    assert np.array_equal(full.passed, fast.passed) and full.passed.sum() >= 15
    for name in ("objects", "charges", "weights", "faked"):
        assert np.array_equal(getattr(full, name)[full.passed], getattr(fast, name)[full.passed]), name
    rejected = ~full.passed
    # the rejected events had jets, and the fast path left them out (but kept their MET and leptons)
    assert _n_jets(full.objects[rejected]).sum() > 0 and _n_jets(fast.objects[rejected]).sum() == 0
    assert np.array_equal(full.objects[rejected][:, :L.JET_SLOTS.start], fast.objects[rejected][:, :L.JET_SLOTS.start])
