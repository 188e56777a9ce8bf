"""Dilepton physics features and pair masses, against hand-computed kinematics."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import hepad
from hepad.errors import InputError, MissingKeyError
from hepad.features import DILEPTON_FEATURES, ELECTRON_MASS, MUON_MASS, dilepton_features, pair_mass

REAL = Path(os.environ.get("HEPAD_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "real"))


def _event(met=(0.0, 0.0), electrons=(), muons=(), jets=()):
    d = np.zeros((19, 4), np.float32)
    d[0] = (met[0], 0, met[1], 1)
    for slot0, objs, code in ((1, electrons, 2), (5, muons, 3), (9, jets, 4)):
        for k, (pt, eta, phi) in enumerate(objs):
            d[slot0 + k] = (pt, eta, phi, code)
    return d


def _mass(p1, p2, m1, m2):
    def four(pt, eta, phi, m):
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        return np.array([np.sqrt(px**2 + py**2 + pz**2 + m**2), px, py, pz])

    s = four(*p1, m1) + four(*p2, m2)
    return np.sqrt(s[0] ** 2 - (s[1:] ** 2).sum())


def test_dilepton_features_by_hand():
    events = hepad.EventSet(
        np.stack([
            # back-to-back muons of 45 GeV at eta 0: m = 90 GeV, dR = pi
            _event(met=(20, 1.0), muons=[(45, 0, 0), (45, 0, np.pi)], jets=[(30, 1, 0), (20, -1, 2)]),
            # electron leads, muon second, third lepton ignored for the pair
            _event(met=(5, 0.0), electrons=[(60, 0.5, 0.1)], muons=[(40, -0.3, 2.0), (10, 0, 0)]),
            # one lepton only: dropped by default
            _event(met=(50, 0.0), electrons=[(30, 0, 0)], jets=[(100, 0, 0)]),
        ]),
        labels=[0, 1, 1],
    )
    out = dilepton_features(events)
    assert out.feature_names == DILEPTON_FEATURES and len(out) == 2
    assert out.provenance["dropped_fewer_than_2_leptons"] == 1
    np.testing.assert_array_equal(out.labels, [0, 1])
    f = dict(zip(DILEPTON_FEATURES, out.data.T))
    np.testing.assert_allclose(f["lep1_pt"], [45, 60])
    np.testing.assert_allclose(f["lep2_pt"], [45, 40])
    np.testing.assert_allclose(f["mll"][0], _mass((45, 0, 0), (45, 0, np.pi), MUON_MASS, MUON_MASS), rtol=1e-5)
    np.testing.assert_allclose(f["mll"][1], _mass((60, 0.5, 0.1), (40, -0.3, 2.0), ELECTRON_MASS, MUON_MASS), rtol=1e-5)
    np.testing.assert_allclose(f["lep_deltaR"], [np.pi, np.hypot(0.8, 1.9)], rtol=1e-5)
    np.testing.assert_allclose(f["met_et"], [20, 5])
    np.testing.assert_array_equal(f["jet_n"], [2, 0])
    np.testing.assert_allclose(f["jet_ht"], [50, 0])
    np.testing.assert_allclose(f["centrality"], [(90 + 20) / (90 + 20 + 50), 1.0], rtol=1e-6)


def test_keep_all_zero_fills_and_empty_event():
    events = hepad.EventSet(np.stack([_event(electrons=[(30, 0, 0)]), _event()]))
    out = dilepton_features(events, keep_all=True)
    assert len(out) == 2
    f = dict(zip(DILEPTON_FEATURES, out.data.T))
    np.testing.assert_allclose(f["lep1_pt"], [30, 0])
    np.testing.assert_allclose(f["mll"], [0, 0])
    np.testing.assert_allclose(f["centrality"], [1, 0])
    assert np.isfinite(out.data).all()


def test_dilepton_needs_objects():
    with pytest.raises(InputError, match="object layout"):
        dilepton_features(hepad.EventSet(np.ones((3, 8), np.float32)))


def test_pair_mass_checks_columns():
    ev = hepad.EventSet(np.array([[50, 0, 0, 50, 0, np.pi]], np.float32),
                        feature_names=("pt1", "eta1", "phi1", "pt2", "eta2", "phi2"))
    m = pair_mass(ev, {"pt": "pt1", "eta": "eta1", "phi": "phi1", "mass": 0.0},
                  {"pt": "pt2", "eta": "eta2", "phi": "phi2", "mass": 0.0})
    np.testing.assert_allclose(m, [100.0], rtol=1e-6)
    with pytest.raises(MissingKeyError, match="Did you mean 'pt1'"):
        pair_mass(ev, {"pt": "pt_1", "eta": "eta1", "phi": "phi1", "mass": 0.0},
                  {"pt": "pt2", "eta": "eta2", "phi": "phi2", "mass": 0.0})


@pytest.mark.skipif(not (REAL / "data_B.4lep.root").exists(), reason=f"real ATLAS files not found in {REAL}")
def test_atlas_4lepton_features():
    ev = hepad.read_events(REAL / "data_B.4lep.root")
    out = dilepton_features(ev)
    f = dict(zip(DILEPTON_FEATURES, out.data.T))
    assert len(out) > 0.9 * len(ev) and np.isfinite(out.data).all()
    assert (f["lep1_pt"] >= f["lep2_pt"]).all()
    assert ((f["centrality"] >= 0) & (f["centrality"] <= 1)).all()
    # Leading pairs in a 4-lepton skim are mostly Z candidates: median mll within 60-120 GeV.
    assert 60 < np.median(f["mll"]) < 120


@pytest.mark.skipif(not (REAL / "Zmumu_Run2011A.csv").exists(), reason=f"real CMS CSVs not found in {REAL}")
def test_zmumu_csv_mass_matches_stored_mass():
    ev = hepad.read_events(REAL / "Zmumu_Run2011A_masses.csv")
    m = pair_mass(ev, {"E": "E1", "px": "px1", "py": "py1", "pz": "pz1"},
                  {"E": "E2", "px": "px2", "py": "py2", "pz": "pz2"})
    stored = ev.data[:, ev.feature_names.index("M")]
    assert np.median(np.abs(m - stored)) < 0.05
