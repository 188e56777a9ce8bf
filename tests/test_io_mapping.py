"""Object collections from any ROOT tree: Cartesian collections, partial NanoAOD, RNTuple, mapping files.

The trees are written with uproot's writer from the kinematics of the real CMS NanoAOD ttbar
file (the shared real data), with hard cases planted in the first events; the mapped layout is
checked against per-event computations from direct uproot reads of the written file.
"""

from __future__ import annotations

import logging

import awkward as ak
import numpy as np
import pytest
import uproot
import vector

from hepad import _layout as L
from hepad.errors import ConfigError, InputError, MissingKeyError
from hepad.io import count_events, iter_events, read_events
from hepad.io.mapping import load_mapping
from _cli import cli_run

MU_CUT = L.ADC_CUTS["muon"]


@pytest.fixture(scope="module")
def nano_kinematics(real_data):
    """Muons, electrons, jets (pt, eta, phi, mass) and MET of the 200 real-format ttbar events."""
    path = real_data / "nanoAOD_2015_CMS_Open_Data_ttbar.root"
    if not path.exists():
        pytest.skip(f"{path} not found")
    with uproot.open(path) as f:
        a = f["Events"].arrays(
            [f"{o}_{c}" for o in ("Muon", "Electron", "Jet") for c in ("pt", "eta", "phi", "mass")]
            + ["MET_pt", "MET_phi"]
        )
    return a


def _plant(a):
    """Hard cases in the first events: >4 muons, a muon failing |eta|, one below 3 GeV, none."""
    pt, eta, phi, mass = (ak.to_list(a[f"Muon_{c}"]) for c in ("pt", "eta", "phi", "mass"))
    pt[0], eta[0], phi[0], mass[0] = ([50.0, 5.0, 2.5, 30.0, 20.0, 10.0, 8.0],
                                      [0.1, 0.0, 0.0, 2.3, -1.0, 0.5, 2.0],
                                      [0.0, 1.0, 2.0, 3.0, -1.0, -2.0, 0.5], [0.105] * 7)
    pt[1], eta[1], phi[1], mass[1] = [], [], [], []
    return [ak.Array(x) for x in (pt, eta, phi, mass)]


def _cartesian(pt, eta, phi, mass):
    v = vector.zip({"pt": pt, "eta": eta, "phi": phi, "mass": mass})
    return v.px, v.py, v.pz, v.E


def _write(path, branches, *, rntuple=False, name="events"):
    with uproot.recreate(path) as f:
        if rntuple:
            f[name] = branches  # uproot >= 5.6 writes an RNTuple by plain assignment
        else:
            types = {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in branches.items()}
            f.mktree(name, types).extend(branches)


def _jag(x):
    return ak.values_astype(ak.Array(x), np.float32)


@pytest.fixture(scope="module")
def cartesian_tree(tmp_path_factory, nano_kinematics):
    """The classic uproot-tutorial shape: Muon_Px/Py/Pz/E, Electron_*, Jet_*, MET_px/MET_py."""
    a = nano_kinematics
    mu = [ak.to_list(c) for c in _cartesian(*_plant(a))]
    for comp, value in zip(mu, (0.0, 0.0, 40.0, 40.0)):  # event 1: a muon along the beam (pT 0, eta inf)
        comp[1] = [value]
    mu = [ak.Array(c) for c in mu]
    el = _cartesian(*(a[f"Electron_{c}"] for c in ("pt", "eta", "phi", "mass")))
    jet = _cartesian(*(a[f"Jet_{c}"] for c in ("pt", "eta", "phi", "mass")))
    met = vector.array({"pt": ak.to_numpy(a["MET_pt"]), "phi": ak.to_numpy(a["MET_phi"])})
    branches = {"NMuon": ak.to_numpy(ak.num(mu[0])).astype(np.int32)}
    for obj, comps in (("Muon", mu), ("Electron", el), ("Jet", jet)):
        for c, arr in zip(("Px", "Py", "Pz", "E"), comps):
            branches[f"{obj}_{c}"] = _jag(arr)
    branches["MET_px"] = np.asarray(met.px, np.float32)
    branches["MET_py"] = np.asarray(met.py, np.float32)
    path = tmp_path_factory.mktemp("cart") / "hzz_like.root"
    _write(path, branches)
    return path


def _direct_muons(path, tree, px="Muon_Px", py="Muon_Py", pz="Muon_Pz", scale=1.0):
    """Per event, by hand from a direct read: pT of muons passing the ADC2021 cut, descending."""
    with uproot.open(path) as f:
        t = f[tree]
        if "Muon_pt" in t.keys():
            a = t.arrays(["Muon_pt", "Muon_eta"], library="np")
            pts, etas = a["Muon_pt"], a["Muon_eta"]
        else:
            a = t.arrays([px, py, pz], library="np")
            pts = [np.hypot(x, y) * scale for x, y in zip(a[px], a[py])]
            with np.errstate(divide="ignore"):  # a muon along the beam: eta = +-inf
                etas = [np.arcsinh(z / np.hypot(x, y)) for x, y, z in zip(a[px], a[py], a[pz])]
    out = []
    for pt, eta in zip(pts, etas):
        keep = [p for p, e in zip(pt, eta) if p > MU_CUT["pt_min"] and abs(e) < MU_CUT["abs_eta_max"]]
        out.append(sorted(keep, reverse=True))
    return out


def test_cartesian_collections_map_into_the_layout(cartesian_tree):
    ev = read_events(cartesian_tree)
    assert ev.is_objects and len(ev) == 200
    prov = ev.provenance
    assert prov["tree_kind"] == "objects" and "missing_collections" not in prov
    assert prov["collections"]["muon"]["representation"] == "cartesian"
    assert prov["collections"]["muon"]["branches"] == {"px": "Muon_Px", "py": "Muon_Py", "pz": "Muon_Pz", "E": "Muon_E"}
    assert prov["collections"]["met"]["branches"] == {"px": "MET_px", "py": "MET_py"}
    expected = _direct_muons(cartesian_tree, "events")
    lead = np.array([m[0] if m else 0.0 for m in expected])
    count = np.array([min(len(m), 4) for m in expected])
    np.testing.assert_allclose(ev.data[:, 5, 0], lead, rtol=1e-4)
    np.testing.assert_array_equal(ev.multiplicities["muons"], count)
    # planted event 0: 7 muons, 5.0 passes, 2.5 fails pT, 30 fails |eta| < 2.1 -> 50, 20, 10, 8
    np.testing.assert_allclose(ev.data[0, 5:9, 0], [50.0, 20.0, 10.0, 8.0], rtol=1e-4)
    np.testing.assert_allclose(ev.data[0, 5:9, 1], [0.1, -1.0, 0.5, 2.0], atol=1e-4)
    assert (ev.data[1, 5:9] == 0).all() and np.isfinite(ev.data).all()
    with uproot.open(cartesian_tree) as f:
        m = f["events"].arrays(["MET_px", "MET_py"], library="np")
    np.testing.assert_allclose(ev.data[:, 0, 0], np.hypot(m["MET_px"], m["MET_py"]), rtol=1e-5)
    np.testing.assert_allclose(ev.data[:, 0, 2], np.arctan2(m["MET_py"], m["MET_px"]), atol=1e-5)
    assert ev.multiplicities["jets"].sum() > 0 and ev.multiplicities["electrons"].sum() > 0
    assert (ev.data[:, L.JET_SLOTS, 0][ev.data[:, L.JET_SLOTS, 3] == 4] > 15).all()


def _partial(nano_kinematics):
    pt, eta, phi, _ = _plant(nano_kinematics)
    return {"nMuon": ak.to_numpy(ak.num(pt)).astype(np.uint32), "Muon_pt": _jag(pt),
            "Muon_eta": _jag(eta), "Muon_phi": _jag(phi),
            "Muon_charge": ak.values_astype(ak.ones_like(pt), np.int32)}


@pytest.mark.parametrize("rntuple", [False, True], ids=["ttree", "rntuple"])
def test_partial_nanoaod_muons_only(tmp_path, nano_kinematics, rntuple, caplog):
    path = tmp_path / "muons.root"
    _write(path, _partial(nano_kinematics), rntuple=rntuple, name="Events")
    with uproot.open(path) as f:
        assert f.classnames()["Events;1"] == ("ROOT::RNTuple" if rntuple else "TTree")
    with caplog.at_level(logging.WARNING, logger="hepad.io.root"):
        ev = read_events(path)
    assert ev.is_objects and ev.provenance["tree_kind"] == "nanoaod"
    assert ev.provenance["missing_collections"] == ["met", "electron", "jet"]
    notes = [r.getMessage() for r in caplog.records if "slots stay empty" in r.getMessage()]
    assert len(notes) == 1 and "\n" not in notes[0]
    expected = _direct_muons(path, "Events")
    np.testing.assert_allclose(ev.data[:, 5, 0], [m[0] if m else 0.0 for m in expected], rtol=1e-6)
    np.testing.assert_array_equal(ev.multiplicities["muons"], [min(len(m), 4) for m in expected])
    assert (ev.data[:, 0] == 0).all() and (ev.data[:, 1:5] == 0).all() and (ev.data[:, 9:] == 0).all()
    chunks = list(iter_events(path, chunk_size=64))
    assert [len(c) for c in chunks] == [64, 64, 64, 8]
    np.testing.assert_array_equal(np.concatenate([c.data for c in chunks]), ev.data)


def test_rntuple_cartesian_with_the_same_detection(tmp_path, nano_kinematics):
    px, py, pz, e = _cartesian(*_plant(nano_kinematics))
    met = vector.array({"pt": ak.to_numpy(nano_kinematics["MET_pt"]), "phi": ak.to_numpy(nano_kinematics["MET_phi"])})
    path = tmp_path / "cart_rntuple.root"
    _write(path, {"Muon_Px": _jag(px), "Muon_Py": _jag(py), "Muon_Pz": _jag(pz), "Muon_E": _jag(e),
                  "MET_px": np.asarray(met.px), "MET_py": np.asarray(met.py)}, rntuple=True)
    ev = read_events(path)
    assert ev.provenance["missing_collections"] == ["electron", "jet"]
    np.testing.assert_allclose(ev.data[:, 0, 0], ak.to_numpy(nano_kinematics["MET_pt"]), rtol=1e-5)
    expected = _direct_muons(path, "events")
    np.testing.assert_allclose(ev.data[:, 5, 0], [m[0] if m else 0.0 for m in expected], rtol=1e-4)


def test_mapping_file_for_what_detection_cannot_decide(tmp_path, nano_kinematics, monkeypatch, capsys):
    """Odd prefixes, MeV, a lepton collection split by a type branch, an extra cut, no electrons."""
    pt, eta, phi, _ = _plant(nano_kinematics)
    jpt, jeta, jphi = (nano_kinematics[f"Jet_{c}"] for c in ("pt", "eta", "phi"))
    typ = ak.values_astype(ak.ones_like(pt) * 13, np.int32)
    path = tmp_path / "odd.root"
    _write(path, {"lepton_pT": _jag(pt * 1000), "lepton_Eta": _jag(eta), "lepton_Phi": _jag(phi),
                  "lepton_flavour": typ, "AntiKt4_pt": _jag(jpt * 1000), "AntiKt4_eta": _jag(jeta),
                  "AntiKt4_phi": _jag(jphi), "etmiss": ak.to_numpy(nano_kinematics["MET_pt"] * 1000),
                  "etmiss_phi": ak.to_numpy(nano_kinematics["MET_phi"])}, name="nominal")
    flat = read_events(path)  # nothing to detect: flat, with the jagged branches reported
    assert not flat.is_objects and "lepton_pT" in flat.provenance["dropped_columns"]
    mapping = tmp_path / "odd.yaml"
    mapping.write_text(
        "tree: nominal\n"
        "muon:\n  prefix: lepton\n  units: MeV\n  pt_min: 9\n  select: {branch: lepton_flavour, values: [13]}\n"
        "electron: none\n"
        "jet:\n  branches: {pt: AntiKt4_pt, eta: AntiKt4_eta, phi: AntiKt4_phi}\n  units: MeV\n"
        "met:\n  branches: {pt: etmiss, phi: etmiss_phi}\n  units: MeV\n"
    )
    ev = read_events(path, mapping=mapping)
    assert count_events(path, mapping=mapping) == 200
    assert ev.provenance["missing_collections"] == ["electron"]
    assert "absent by the mapping file" in ev.provenance["collections"]["electron"]["missing"]
    with uproot.open(path) as f:
        a = f["nominal"].arrays(["lepton_pT", "lepton_Eta"], library="np")
    expected = [sorted([p / 1000 for p, e in zip(pp, ee) if p / 1000 > 9 and abs(e) < 2.1], reverse=True)
                for pp, ee in zip(a["lepton_pT"], a["lepton_Eta"])]
    np.testing.assert_allclose(ev.data[:, 5, 0], [m[0] if m else 0.0 for m in expected], rtol=1e-5)
    np.testing.assert_array_equal(ev.multiplicities["muons"], [min(len(m), 4) for m in expected])
    np.testing.assert_allclose(ev.data[0, 5:9, 0], [50.0, 20.0, 10.0, 0.0], rtol=1e-5)  # 8 < pt_min 9
    np.testing.assert_allclose(ev.data[:, 0, 0], ak.to_numpy(nano_kinematics["MET_pt"]), rtol=1e-5)
    assert ev.multiplicities["jets"].sum() > 0
    code, out, err = cli_run(monkeypatch, capsys, "convert", path, tmp_path / "odd.h5", "--mapping", mapping)
    assert code == 0, err
    np.testing.assert_array_equal(read_events(tmp_path / "odd.h5").data, ev.data)


def test_mapping_file_errors_name_the_key(tmp_path, cartesian_tree):
    bad = tmp_path / "bad.yaml"
    bad.write_text("muon:\n  prefix: Muon\n  unit: MeV\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: muon.*unit"):
        load_mapping(bad)
    bad.write_text("moun:\n  prefix: Muon\n")
    with pytest.raises(ConfigError, match=r"moun.*Did you mean 'muon'"):
        load_mapping(bad)
    bad.write_text("jet:\n  branches: {pt: a, eta: b}\n")
    with pytest.raises(ConfigError, match="give pt, eta, phi"):
        load_mapping(bad)
    bad.write_text("jet:\n  prefix: Jet\n  units: keV\n")
    with pytest.raises(ConfigError, match="units"):
        load_mapping(bad)
    bad.write_text("muon:\n  prefix: Muonn\n")
    with pytest.raises(MissingKeyError, match=r"muon\.prefix 'Muonn'.*Did you mean 'muon'"):
        read_events(cartesian_tree, mapping=bad)
    bad.write_text("met:\n  branches: {px: MET_px, py: MET_pyy}\n")
    with pytest.raises(MissingKeyError, match=r"met\.branches\.py = 'MET_pyy'.*Did you mean 'MET_py'"):
        read_events(cartesian_tree, mapping=bad)
    with pytest.raises(InputError, match="mapping file applies to ROOT trees only"):
        csv = tmp_path / "x.csv"
        csv.write_text("a,b\n1,2\n")
        read_events(csv, mapping=bad)


def test_inspect_reports_layout_and_collections(monkeypatch, capsys, cartesian_tree, tmp_path, nano_kinematics):
    code, out, err = cli_run(monkeypatch, capsys, "inspect", cartesian_tree)
    assert code == 0, err
    assert "layout=adc2021" in out and "tree=objects" in out
    assert "collections found: met, electron, muon, jet" in out
    assert "Muon_Px, Muon_Py, Muon_Pz, Muon_E  <- prefix 'Muon'" in out
    part = tmp_path / "muons.root"
    _write(part, _partial(nano_kinematics), rntuple=True, name="Events")
    code, out, err = cli_run(monkeypatch, capsys, "inspect", part, "--json")
    assert code == 0, err
    import json

    s = json.loads(out)[0]
    assert s["layout"] == "adc2021" and s["missing_collections"] == ["met", "electron", "jet"]
    assert s["collections"]["muon"]["branches"]["pt"] == "Muon_pt"
    m = tmp_path / "m.yaml"
    m.write_text("muon:\n  prefix: Muon\n  pt_min: 25\n")
    code, out, err = cli_run(monkeypatch, capsys, "inspect", part, "--mapping", m)
    assert code == 0, err
    assert f"mapping file {m}: prefix 'Muon'" in out


def test_real_files_keep_their_mapping(real_data):
    """The shared real files: NanoAOD and ATLAS map as before, the flat Z->mumu tree stays flat."""
    nano = read_events(real_data / "nanoAOD_2015_CMS_Open_Data_ttbar.root")
    assert nano.provenance["tree_kind"] == "nanoaod" and "missing_collections" not in nano.provenance
    atlas = read_events(real_data / "data_B.4lep.root")
    assert atlas.provenance["tree_kind"] == "atlas"
    assert atlas.provenance["collections"]["muon"]["select"] == {"branch": "lep_type", "values": [13]}
    assert (atlas.multiplicities["electrons"] + atlas.multiplicities["muons"] >= 3).mean() > 0.9
    z = read_events(real_data / "uproot-Zmumu.root")
    assert not z.is_objects and z.provenance["tree_kind"] == "flat"


def test_rntuple_record_collection(tmp_path, nano_kinematics):
    """An RNTuple whose muons are one record field (Muon.pt, Muon.eta, ...), as RNTuple NanoAODs store them."""
    pt, eta, phi, _ = _plant(nano_kinematics)
    path = tmp_path / "records.root"
    _write(path, {"Muon": ak.zip({"pt": _jag(pt), "eta": _jag(eta), "phi": _jag(phi)}),
                  "MET_pt": ak.to_numpy(nano_kinematics["MET_pt"]), "MET_phi": ak.to_numpy(nano_kinematics["MET_phi"])},
           rntuple=True, name="Events")
    ev = read_events(path)
    assert ev.provenance["collections"]["muon"]["branches"] == {"pt": "Muon.pt", "eta": "Muon.eta", "phi": "Muon.phi"}
    with uproot.open(path) as f:
        a = f["Events"].arrays(["Muon.pt", "Muon.eta", "MET_pt"])
    expected = [sorted([p for p, e in zip(pp, ee) if p > 3 and abs(e) < 2.1], reverse=True)
                for pp, ee in zip(ak.to_list(a["Muon"]["pt"]), ak.to_list(a["Muon"]["eta"]))]
    np.testing.assert_allclose(ev.data[:, 5, 0], [m[0] if m else 0.0 for m in expected], rtol=1e-6)
    np.testing.assert_array_equal(ev.multiplicities["muons"], [min(len(m), 4) for m in expected])
    np.testing.assert_allclose(ev.data[:, 0, 0], ak.to_numpy(a["MET_pt"]), rtol=1e-6)
