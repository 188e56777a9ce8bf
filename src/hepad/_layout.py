"""The ADC2021 object layout: 19 slots x (pT, eta, phi, type).

Row 0 is MET (pT, 0, phi, type 1); rows 1-4 electrons (type 2); rows 5-8 muons (type 3);
rows 9-18 jets (type 4). Objects are pT-ordered within their type and zero-padded.
"""

from __future__ import annotations

N_SLOTS = 19
N_COLUMNS = 4  # pT, eta, phi, type
N_FLAT = N_SLOTS * 3  # the 57 model inputs

MET_SLOT = 0
ELECTRON_SLOTS = slice(1, 5)
MUON_SLOTS = slice(5, 9)
JET_SLOTS = slice(9, 19)
N_ELECTRONS, N_MUONS, N_JETS = 4, 4, 10

TYPE_MET, TYPE_ELECTRON, TYPE_MUON, TYPE_JET = 1, 2, 3, 4

#: Type code expected in every slot when the slot is filled.
SLOT_TYPES = (TYPE_MET,) + (TYPE_ELECTRON,) * 4 + (TYPE_MUON,) * 4 + (TYPE_JET,) * 10

SLOT_NAMES = (
    ("MET",)
    + tuple(f"e{i}" for i in range(1, 5))
    + tuple(f"mu{i}" for i in range(1, 5))
    + tuple(f"j{i}" for i in range(1, 11))
)

#: Names of the 57 flat inputs, slot-major: MET_pt, MET_eta, MET_phi, e1_pt, ...
FLAT57_NAMES = tuple(f"{s}_{v}" for s in SLOT_NAMES for v in ("pt", "eta", "phi"))

#: Object selection of ADC2021 (and of hepad's simulation and ROOT mapping).
ADC_CUTS = {
    "electron": {"pt_min": 3.0, "abs_eta_max": 3.0},
    "muon": {"pt_min": 3.0, "abs_eta_max": 2.1},
    "jet": {"pt_min": 15.0, "abs_eta_max": 4.0},
}
#: ADC2021 lepton filter: at least one e or mu above this pT (GeV).
LEPTON_FILTER_PT = 23.0
