"""ROOT reader: NanoAOD and ATLAS mapping into the ADC2021 layout, flat trees, bad input.

The mapping is checked against an independent per-event computation from direct uproot reads.
"""

from __future__ import annotations

import os
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hepad import _layout as L
from hepad.errors import FormatError, InputError, MissingKeyError
from hepad.features import pair_mass
from hepad.io import count_events, iter_events, list_keys, read_events

REAL = Path(os.environ.get("HEPAD_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "real"))
NANO = REAL / "nanoAOD_2015_CMS_Open_Data_ttbar.root"
ZMUMU = REAL / "uproot-Zmumu.root"
ATLAS = [REAL / "data_A.4lep.root", REAL / "data_B.4lep.root"]
needs_real = pytest.mark.skipif(
    not NANO.exists(), reason=f"real CMS/ATLAS ROOT files not found in {REAL} (set HEPAD_REAL_DATA)"
)


def _expected(pts, etas, phis, kind):
    """Per event, by hand: objects passing the ADC2021 cut of ``kind``, pT-descending."""
    cut = L.ADC_CUTS[kind]
    out = []
    for pt, eta, phi in zip(pts, etas, phis):
        objs = [(p, e, f) for p, e, f in zip(pt, eta, phi) if p > cut["pt_min"] and abs(e) < cut["abs_eta_max"]]
        out.append(sorted(objs, key=lambda o: -o[0]))
    return out


def _check_slots(data, expected, slots, code):
    width = slots.stop - slots.start
    for i, objs in enumerate(expected):
        n = min(len(objs), width)
        assert (data[i, slots, 0] > 0).sum() == n
        for j in range(n):
            np.testing.assert_allclose(data[i, slots.start + j, :3], objs[j], rtol=1e-5)
            assert data[i, slots.start + j, 3] == code
        assert (data[i, slots.start + n : slots.stop] == 0).all()


@pytest.fixture(scope="module")
def nano():
    if not NANO.exists():
        pytest.skip(f"real CMS NanoAOD file not found in {REAL} (set HEPAD_REAL_DATA)")
    return read_events(NANO)


@needs_real
def test_nanoaod_mapping_matches_direct_uproot(nano):
    ev = nano
    assert ev.is_objects and len(ev) == 200 and ev.provenance["tree_kind"] == "nanoaod"
    t = uproot.open(NANO)["Events"]
    a = t.arrays(["MET_pt", "MET_phi", "Muon_pt", "Muon_eta", "Muon_phi", "Electron_pt",
                  "Electron_eta", "Electron_phi", "Jet_pt", "Jet_eta", "Jet_phi"], library="np")
    np.testing.assert_allclose(ev.data[:, 0, 0], a["MET_pt"], rtol=1e-6)
    np.testing.assert_allclose(ev.data[:, 0, 2], a["MET_phi"], rtol=1e-6)
    mu = _expected(a["Muon_pt"], a["Muon_eta"], a["Muon_phi"], "muon")
    el = _expected(a["Electron_pt"], a["Electron_eta"], a["Electron_phi"], "electron")
    jets = _expected(a["Jet_pt"], a["Jet_eta"], a["Jet_phi"], "jet")
    np.testing.assert_array_equal(ev.multiplicities["muons"], [min(4, len(m)) for m in mu])
    _check_slots(ev.data, mu, L.MUON_SLOTS, 3)
    _check_slots(ev.data, el, L.ELECTRON_SLOTS, 2)
    _check_slots(ev.data, jets, L.JET_SLOTS, 4)
    lead = [max([o[0] for o in m + e], default=0.0) for m, e in zip(mu, el)]
    got = np.maximum(ev.data[:, 1, 0], ev.data[:, 5, 0])
    np.testing.assert_allclose(got, lead, rtol=1e-6)
    assert ev.multiplicities["jets"].max() > 0


@needs_real
@pytest.mark.parametrize("path", ATLAS, ids=lambda p: p.name)
def test_atlas_mapping_matches_direct_uproot(path):
    ev = read_events(path)
    assert ev.provenance["tree_kind"] == "atlas" and ev.provenance["key"] == "mini"
    a = uproot.open(path)["mini"].arrays(
        ["lep_pt", "lep_eta", "lep_phi", "lep_type", "met_et", "met_phi", "jet_pt", "jet_eta", "jet_phi"],
        library="np",
    )
    assert len(ev) == len(a["met_et"])
    np.testing.assert_allclose(ev.data[:, 0, 0], a["met_et"] / 1000, rtol=1e-6)  # MeV -> GeV
    sel = {13: [], 11: []}
    for pt, eta, phi, typ in zip(a["lep_pt"], a["lep_eta"], a["lep_phi"], a["lep_type"]):
        for code in sel:
            m = typ == code
            sel[code].append((pt[m] / 1000, eta[m], phi[m]))
    mu = _expected(*zip(*sel[13]), "muon")
    el = _expected(*zip(*sel[11]), "electron")
    _check_slots(ev.data, mu, L.MUON_SLOTS, 3)
    _check_slots(ev.data, el, L.ELECTRON_SLOTS, 2)
    jets = _expected([p / 1000 for p in a["jet_pt"]], a["jet_eta"], a["jet_phi"], "jet")
    _check_slots(ev.data, jets, L.JET_SLOTS, 4)
    # A 4-lepton skim: most events keep >= 2 leptons after the cuts, and lepton pT are GeV-scale.
    n_lep = ev.multiplicities["electrons"] + ev.multiplicities["muons"]
    assert (n_lep >= 2).mean() > 0.9
    lead = np.maximum(ev.data[:, 1, 0], ev.data[:, 5, 0])
    assert 10 < np.median(lead) < 200


@needs_real
def test_zmumu_flat_tree_mass_peak():
    ev = read_events(ZMUMU)
    assert not ev.is_objects and ev.provenance["tree_kind"] == "flat"
    assert ev.provenance["dropped_columns"] == ["Type"]  # a string branch
    m = pair_mass(ev, {"E": "E1", "px": "px1", "py": "py1", "pz": "pz1"},
                  {"E": "E2", "px": "px2", "py": "py2", "pz": "pz2"})
    hist, edges = np.histogram(m, bins=np.arange(60, 120.5, 1.0))
    peak = 0.5 * (edges[hist.argmax()] + edges[hist.argmax() + 1])
    assert abs(peak - 91.19) < 3, peak
    # Same mass from (pt, eta, phi) with the muon mass.
    m2 = pair_mass(ev, {"pt": "pt1", "eta": "eta1", "phi": "phi1", "mass": 0.105658},
                   {"pt": "pt2", "eta": "eta2", "phi": "phi2", "mass": 0.105658})
    assert np.median(np.abs(m2 - m) / m) < 1e-3
    sel = read_events(ZMUMU, columns=["pt1", "pt2"], entry_range=(10, 20))
    assert sel.feature_names == ("pt1", "pt2") and len(sel) == 10


@needs_real
def test_iterate_and_entry_range_agree_with_read(nano, tmp_path):
    whole = nano
    chunks = list(iter_events(NANO, chunk_size=120))
    assert [len(c) for c in chunks] == [120, 80]
    np.testing.assert_array_equal(np.concatenate([c.data for c in chunks]), whole.data)
    part = read_events(NANO, entry_range=(50, 75))
    np.testing.assert_array_equal(part.data, whole.data[50:75])
    # Damaged basket bytes in the middle of a real file: a FormatError naming the file.
    raw = bytearray(NANO.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 4096] = bytes(4096)
    (tmp_path / "damaged.root").write_bytes(bytes(raw))
    try:
        read_events(tmp_path / "damaged.root")
    except FormatError as exc:
        assert "damaged.root" in str(exc)


@needs_real
def test_root_key_errors():
    with pytest.raises(MissingKeyError, match=r"no TTree 'Event'.*Did you mean 'Events'"):
        read_events(NANO, key="Event")
    with pytest.raises(MissingKeyError, match=r"no branch 'Muon_ptt'.*Did you mean 'Muon_pt'"):
        read_events(NANO, columns=["Muon_ptt"])


def _write_nano(path, muon_pt, muon_eta, n_events):
    counts = [len(x) for x in muon_pt]
    pt = ak.unflatten(np.concatenate(muon_pt).astype(np.float32), counts)
    eta = ak.unflatten(np.concatenate(muon_eta).astype(np.float32), counts)
    _write_ttree(path, {
        "MET_pt": np.full(n_events, 10.0, np.float32),
        "MET_phi": np.zeros(n_events, np.float32),
        "Muon": ak.zip({"pt": pt, "eta": eta, "phi": eta * 0 + 1.0}),
    }, other={"x": np.arange(3, dtype=np.float64)})


def _write_ttree(path, data, other=None):
    """A TTree (uproot's plain assignment writes an RNTuple); records become Muon_pt, nMuon..."""
    with uproot.recreate(path) as f:
        for name, d in (("Events", data), ("Other", other)):
            if d is None:
                continue
            types = {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in d.items()}
            f.mktree(name, types).extend(d)


def test_cuts_ordering_truncation_on_a_synthetic_tree(tmp_path):
    muon_pt = [[5.0, 40.0, 2.0, 20.0, 7.0, 6.0, 30.0], [50.0], []]
    muon_eta = [[0.0, 0.5, 0.0, 2.5, -2.0, 0.1, 1.0], [0.0], []]
    _write_nano(tmp_path / "n.root", muon_pt, muon_eta, 3)
    ev = read_events(tmp_path / "n.root")  # two trees: "Events" is the default
    # event 0: 2.0 fails pT, 20.0 fails |eta| < 2.1; five pass, four slots kept, ordered.
    np.testing.assert_allclose(ev.data[0, 5:9, 0], [40.0, 30.0, 7.0, 6.0])
    np.testing.assert_allclose(ev.data[0, 5:9, 3], [3, 3, 3, 3])
    np.testing.assert_array_equal(ev.multiplicities["muons"], [4, 1, 0])
    assert (ev.data[2, 1:, :] == 0).all()
    assert list_keys(tmp_path / "n.root") == {"Events": (3,), "Other": (3,)}
    assert count_events(tmp_path / "n.root") == 3
    with pytest.raises(FormatError, match="not a numeric scalar"):
        read_events(tmp_path / "n.root", columns=["Muon_pt"])
    flat = read_events(tmp_path / "n.root", key="Other")
    np.testing.assert_array_equal(flat.data[:, 0], [0, 1, 2])


def test_corrupt_and_truncated_root(tmp_path):
    _write_nano(tmp_path / "ok.root", [[30.0]] * 50, [[0.0]] * 50, 50)
    raw = (tmp_path / "ok.root").read_bytes()
    (tmp_path / "trunc.root").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FormatError, match=r"trunc\.root: truncated ROOT file.*header says"):
        read_events(tmp_path / "trunc.root")
    (tmp_path / "junk.root").write_bytes(b"not a root file at all" * 10)
    with pytest.raises(FormatError, match=r"junk\.root: not a ROOT file"):
        read_events(tmp_path / "junk.root")
    with uproot.recreate(tmp_path / "notree.root") as f:
        f["h"] = np.histogram(np.arange(5), bins=2)
    with pytest.raises(FormatError, match="holds no TTree or RNTuple"):
        read_events(tmp_path / "notree.root")


def test_empty_tree_is_an_error(tmp_path):
    with uproot.recreate(tmp_path / "e.root") as f:
        f.mktree("events", {"x": np.float64})
    with pytest.raises(InputError, match="holds no events"):
        read_events(tmp_path / "e.root")


def test_rntuple_reads_as_flat(tmp_path):
    with uproot.recreate(tmp_path / "r.root") as f:
        f["ntuple"] = {"x": np.arange(5, dtype=np.float64), "n": np.arange(5, dtype=np.int32),
                       "jag": ak.Array([[1.0], [], [2.0, 3.0], [], []])}
    ev = read_events(tmp_path / "r.root")
    assert ev.feature_names == ("n", "x") or ev.feature_names == ("x", "n")
    np.testing.assert_array_equal(ev.data[:, ev.feature_names.index("x")], np.arange(5))
    assert ev.provenance["dropped_columns"] == ["jag"]
    part = list(iter_events(tmp_path / "r.root", chunk_size=2))
    assert [len(c) for c in part] == [2, 2, 1]
