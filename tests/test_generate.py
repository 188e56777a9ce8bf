"""Tests of hepad.generate: physics sanity, layout invariants, seeding, resume, Dask parity, CLI.

Samples are tiny (tens to ~150 accepted events) and run in-process; one test starts a LocalCluster.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from hepad import _layout as L
from hepad.errors import ConfigError, GenerationError
from hepad.generate import FakeModel, SimulationConfig, build_dataset, generate
from hepad.generate import _engine
from hepad.generate._engine import plan_chunks, resolve_components, run_chunk
from hepad.generate._simulation import PileupPool, _apply_fakes, _pad, overlay_pileup
from hepad.io import read_events


def _sample(process: str, n: int, seed: int = 3, pileup: float = 0.0):
    """Run one in-memory chunk (objects + lepton charges), without files."""
    _, comps = resolve_components(process, n, None)
    specs = plan_chunks(comps, seed, 10**6, SimulationConfig().to_dict(), pileup, Path("unused"))
    return run_chunk(specs[0])


@pytest.fixture(scope="module")
def samples():
    return {
        "z": _sample("z", 80),
        "w": _sample("w", 60),
        "ttbar": _sample("ttbar", 30),
        "ato4l": _sample("ato4l", 30),
    }


def _n(obj, slots):
    return (obj[:, slots, 0] > 0).sum(axis=1)


# ------------------------------------------------------------------ physics sanity
def test_z_peak(samples):
    """Leading same-flavour opposite-sign pair mass peaks at the Z mass."""
    obj, q = samples["z"].objects, samples["z"].charges
    masses = []
    for slots, qs in ((L.ELECTRON_SLOTS, q[:, :4]), (L.MUON_SLOTS, q[:, 4:])):
        pt, eta, phi = (obj[:, slots, i].astype(float) for i in range(3))
        ok = (pt[:, 1] > 0) & (qs[:, 0] * qs[:, 1] < 0)
        m2 = 2 * pt[:, 0] * pt[:, 1] * (np.cosh(eta[:, 0] - eta[:, 1]) - np.cos(phi[:, 0] - phi[:, 1]))
        masses.append(np.sqrt(m2[ok]))
    m = np.concatenate(masses)
    assert len(m) > 30
    hist, edges = np.histogram(m, bins=np.arange(41, 141, 6))
    peak = 0.5 * (edges[hist.argmax()] + edges[hist.argmax() + 1])
    assert abs(peak - 91.2) < 5, peak
    assert abs(np.median(m[(m > 70) & (m < 110)]) - 91.2) < 5


def test_w_has_more_met_than_z(samples):
    assert samples["w"].objects[:, 0, 0].mean() > samples["z"].objects[:, 0, 0].mean() + 5


def test_ttbar_has_more_jets_than_w(samples):
    assert _n(samples["ttbar"].objects, L.JET_SLOTS).mean() > _n(samples["w"].objects, L.JET_SLOTS).mean() + 1


def test_ato4l_has_more_leptons_than_w(samples):
    def leptons(o):
        return _n(o, L.ELECTRON_SLOTS) + _n(o, L.MUON_SLOTS)

    # With the Delphes-CMS efficiencies (none below 10 GeV) the soft A -> 4l leptons are often lost.
    assert leptons(samples["ato4l"].objects).mean() > leptons(samples["w"].objects).mean() + 0.5


@pytest.mark.parametrize("name", ["z", "w", "ttbar", "ato4l"])
def test_layout_invariants(samples, name):
    obj = samples[name].objects
    assert obj.shape[1:] == (19, 4) and obj.dtype == np.float32
    # The ADC2021 lepton filter.
    lead = np.maximum(obj[:, L.ELECTRON_SLOTS, 0].max(1), obj[:, L.MUON_SLOTS, 0].max(1))
    assert (lead > L.LEPTON_FILTER_PT).all()
    # MET slot: type 1, eta 0.
    assert (obj[:, 0, 3] == L.TYPE_MET).all() and (obj[:, 0, 1] == 0).all()
    for slots, code, cut in (
        (L.ELECTRON_SLOTS, L.TYPE_ELECTRON, L.ADC_CUTS["electron"]),
        (L.MUON_SLOTS, L.TYPE_MUON, L.ADC_CUTS["muon"]),
        (L.JET_SLOTS, L.TYPE_JET, L.ADC_CUTS["jet"]),
    ):
        block = obj[:, slots]
        filled = block[..., 0] > 0
        # pT ordering, and every empty slot after the filled ones is all zero.
        assert (np.diff(block[..., 0], axis=1) <= 0).all()
        assert (block[~filled] == 0).all()
        assert (block[filled][:, 3] == code).all()
        assert (block[filled][:, 0] > cut["pt_min"]).all()
        assert (np.abs(block[filled][:, 1]) < cut["abs_eta_max"] + 0.1).all()
        assert (np.abs(block[filled][:, 2]) <= np.pi + 1e-5).all()
    assert np.isfinite(obj).all()


# ------------------------------------------------------------------ fake model and pileup (no Pythia)
def test_fake_model_promotes_one_eligible_jet():
    rng = np.random.default_rng(0)
    n = 400
    jev = np.repeat(np.arange(n), 3)
    jpt = np.tile([60.0, 40.0, 20.0], n)
    jeta = np.tile([0.5, 1.0, 0.2], n)
    jphi = np.tile([0.1, 2.0, -1.0], n)
    empty = np.zeros(0)
    out = _apply_fakes(FakeModel(n_jets_cap=4), SimulationConfig(), rng, n, empty.astype(int), empty,
                       empty, empty, empty, empty.astype(bool), jev, jpt, jeta, jphi)
    lev, lpt, *_, new_jev, new_jpt, _, _, faked, accept, weights = out
    # Two eligible jets, cap 4: about half the events are kept, each with one fake and unit weight.
    assert 0.35 < accept.mean() < 0.65
    assert (faked == accept).all() and (weights == 1).all()
    assert len(lev) == faked.sum() and len(new_jev) == 3 * n - faked.sum()
    # The fake carries a fraction of a 60 or 40 GeV jet, at least 1/(1 + iso_max) of it.
    assert (lpt <= 60 + 1e-9).all() and (lpt >= 40 / 1.45 - 1e-9).all()
    # The 20 GeV jet is never eligible.
    assert (new_jpt == 20).sum() == n


def test_pileup_overlay_rotates_and_counts():
    rng = np.random.default_rng(1)
    pool = PileupPool(px=np.array([3.0, 0.0, 1.0]), py=np.array([4.0, 2.0, 0.0]), pz=np.array([1.0, 1.0, 1.0]),
                      e=np.array([6.0, 3.0, 2.0]), charge=np.array([1.0, 0.0, -1.0]), offsets=np.array([0, 2, 3]))
    ev, px, py, pz, e, q, _pid = overlay_pileup(pool, 20.0, 200, rng)
    counts = np.bincount(ev, minlength=200)
    assert 20 * 1.5 * 0.9 < counts.mean() < 20 * 1.5 * 1.1  # pool events hold 1.5 particles on average
    pt = np.hypot(px, py)
    assert set(np.round(pt, 6)) <= {5.0, 2.0, 1.0}  # rotations keep pT
    assert len(np.unique(np.round(np.arctan2(py, px), 3))) > 100  # ... and spread phi


def test_pad_orders_and_truncates():
    ev = np.array([0, 0, 0, 0, 0, 2])
    pt = np.array([50.0, 40, 30, 20, 10, 7])
    (p,) = _pad(ev, 3, 4, pt)
    assert p.tolist() == [[50, 40, 30, 20], [0, 0, 0, 0], [7, 0, 0, 0]]


def test_simulation_config_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="muon_isolation_max"):
        SimulationConfig.from_dict({"muon_isolation_maxx": 0.3})
    assert SimulationConfig.from_dict({"muon_isolation_max": 0.2}).muon_isolation_max == 0.2
    with pytest.raises(ConfigError, match="jet_radius must be a number"):
        SimulationConfig.from_dict({"jet_radius": "wide"})


def test_pileup_adds_activity():
    base = _sample("z", 12, seed=5)
    pu = _sample("z", 12, seed=5, pileup=40.0)
    ht = lambda o: o[:, L.JET_SLOTS, 0].sum(1).mean()  # noqa: E731
    assert ht(pu.objects) > ht(base.objects)


# ------------------------------------------------------------------ files, seeds, resume, Dask
def _arrays(path):
    with h5py.File(path, "r") as f:
        return f["Particles"][:], f["process"][:].astype("U"), f["weights"][:]


@pytest.fixture(scope="module")
def z_file(tmp_path_factory):
    return generate("z", 10, tmp_path_factory.mktemp("z") / "z.h5", seed=4, workers=0, chunk_size=5)


def test_same_seed_identical_other_seed_differs_and_resume(z_file, tmp_path, monkeypatch):
    # Interrupt a run after its first chunk; the rerun must redo only the missing chunk.
    calls = []

    def stop(done, total):
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate("z", 10, tmp_path / "b.h5", seed=4, workers=0, chunk_size=5, progress=stop)
    parts = tmp_path / ".b.h5.parts"
    assert len(list(parts.glob("*.h5"))) == 1 and not (tmp_path / "b.h5").exists()
    real_run = _engine.run_chunk
    ran = []
    monkeypatch.setattr(_engine, "run_chunk", lambda spec: ran.append(spec.index) or real_run(spec))
    b = generate("z", 10, tmp_path / "b.h5", seed=4, workers=0, chunk_size=5)
    assert ran == [1] and not parts.exists()
    for x, y in zip(_arrays(z_file), _arrays(b)):
        assert np.array_equal(x, y) and x.tobytes() == y.tobytes()
    c = generate("z", 10, tmp_path / "c.h5", seed=5, workers=0, chunk_size=5)
    assert not np.array_equal(_arrays(z_file)[0], _arrays(c)[0])
    prov = read_events(z_file).provenance
    assert prov["process"] == "z" and prov["seed"] == 4 and prov["chunk_size"] == 5
    assert len(prov["components"]["z"]["chunk_seeds"]) == 2


def test_dask_matches_inline(z_file, tmp_path):
    dask = generate("z", 10, tmp_path / "d.h5", seed=4, workers=2, chunk_size=5)
    for x, y in zip(_arrays(z_file), _arrays(dask)):
        assert np.array_equal(x, y) and x.tobytes() == y.tobytes()


# ------------------------------------------------------------------ errors
def test_bad_card_line_names_file_and_line(tmp_path):
    card = tmp_path / "mine.cmnd"
    card.write_text("! my model\nWeakSingleBoson:ffbar2W = on\nNotA:setting = 3\n")
    with pytest.raises(GenerationError, match=r"mine\.cmnd, line 3.*NotA:setting"):
        generate(None, 5, tmp_path / "x.h5", card=card, workers=0)
    assert not (tmp_path / "x.h5").exists()


def test_init_failure_carries_pythia_message(tmp_path):
    card = tmp_path / "empty.cmnd"
    card.write_text("SoftQCD:all = off\n")  # valid line, but no process switched on
    with pytest.raises(GenerationError, match=r"empty\.cmnd.*failed to initialise.*PYTHIA"):
        generate(None, 5, tmp_path / "x.h5", card=card, workers=0)


def test_unknown_process_suggests(tmp_path):
    with pytest.raises(GenerationError, match="ttbar"):
        generate("tbar", 5, tmp_path / "x.h5")
    with pytest.raises(GenerationError, match="one of them"):
        generate("w", 5, tmp_path / "x.h5", card=tmp_path / "x.cmnd")


def test_user_card_runs_through_same_simulation(tmp_path):
    card = tmp_path / "zp.cmnd"
    card.write_text("NewGaugeBoson:ffbar2gmZZprime = on\nZprime:gmZmode = 3\n32:m0 = 300.\n"
                    "32:onMode = off\n32:onIfAny = 13\n")
    out = generate("zp300", 10, tmp_path / "zp.h5", card=card, workers=0, seed=1)
    ev = read_events(out)
    assert (ev.process == "zp300").all() and ev.labels is None
    assert ev.provenance["components"]["zp300"]["card_lines"][2] == "32:m0 = 300."
    mu = ev.data[:, L.MUON_SLOTS, 0]
    assert (mu[:, 0] > 50).mean() > 0.8  # muons from a 300 GeV resonance are hard


# ------------------------------------------------------------------ dataset
def test_build_dataset_tiny_and_reuse(tmp_path, monkeypatch):
    sizes = {"sm_train.h5": 8, "sm_val.h5": 3, "sm_test.h5": 3, "ato4l.h5": 3, "lq-btau.h5": 3,
             "h0-tautau.h5": 2, "hplus-taunu.h5": 2}
    paths = build_dataset("tiny", tmp_path, workers=0, sizes=sizes, pileup=0)
    expected = {"sm_train", "sm_val", "sm_test", "ato4l", "lq-btau", "h0-tautau", "hplus-taunu"}
    assert set(paths) == expected
    for stem, path in paths.items():
        ev = read_events(path)
        assert len(ev) == sizes[f"{stem}.h5"]
        assert (ev.labels == (0 if stem.startswith("sm_") else 1)).all()
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["files"]["sm_val.h5"]["n_events"] == 3 and meta["wall_s"] > 0
    # Different seeds per file: validation and test are independent samples.
    assert not np.array_equal(read_events(paths["sm_val"]).data, read_events(paths["sm_test"]).data)

    # The SM mix: components in the ADC2021 proportions, recorded per event and in provenance.
    ev = read_events(paths["sm_train"])
    assert sorted(ev.process.tolist()) == ["qcd"] * 3 + ["w"] * 5
    comps = ev.provenance["components"]
    assert ev.provenance["process"] == "sm-mix" and set(comps) == {"w", "qcd"}
    for c in comps.values():
        assert c["n_generated"] >= c["n_accepted"] > 0 and c["sigma_gen_pb"] > 0 and c["card_lines"]
    assert "fake_model" in comps["qcd"] and comps["qcd"]["n_faked"] > 0
    assert ev.provenance["pythia_version"] and ev.provenance["simulation"]["electron_isolation_max"] == 0.12

    def boom(spec):
        raise AssertionError("a valid file was regenerated")

    monkeypatch.setattr(_engine, "run_chunk", boom)
    again = build_dataset("tiny", tmp_path, workers=0, sizes=sizes, pileup=0)
    assert again == paths
    with pytest.raises(ConfigError, match="tiny"):
        build_dataset("tinny", tmp_path)


def test_cli_generate(tmp_path):
    from typer.testing import CliRunner

    from hepad.cli import app

    out = tmp_path / "w.h5"
    res = CliRunner().invoke(app, ["generate", "w", "-n", "5", "-o", str(out), "--workers", "0", "--seed", "2"])
    assert res.exit_code == 0, res.output
    assert len(read_events(out)) == 5
    res = CliRunner().invoke(app, ["generate", "--list"])
    assert "hplus-taunu" in res.output and "zprime-ll" in res.output
