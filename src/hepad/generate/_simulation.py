"""Parameterised detector simulation: Pythia final state -> ADC2021 objects, vectorised per batch.

Everything works on flat numpy arrays of particles with an event index (sorted by event), so one
batch of a few hundred events costs a handful of numpy calls and one fastjet call.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import awkward as ak
import numpy as np

from .. import _layout as L
from ..errors import ConfigError, GenerationError
from ..events import fill_objects

log = logging.getLogger(__name__)

#: Bumped whenever the simulation changes what events look like; cached datasets of another
#: version are rebuilt. 2: Delphes-CMS response, pileup 20 by default, visibility from particle data.
SIMULATION_VERSION = 2

# --------------------------------------------------------------------------- the detector table
_CMS = "Delphes cards/delphes_card_CMS.tcl"
_CMS_PU = "Delphes cards/delphes_card_CMS_PileUp.tcl"


@dataclass(frozen=True)
class Param:
    """One number of the detector response, with where it comes from."""

    value: Any
    source: str


#: Every number of the detector response, each with its source (module of the Delphes CMS card,
#: commit 0ee14ba of github.com/delphes/delphes, unless stated). Efficiencies are (|eta| bin edges,
#: pT threshold, values); resolutions per |eta| bin. ``docs/generation.md`` prints this table.
DETECTOR: dict[str, Param] = {
    "tracker_abs_eta_max": Param(2.5, f"{_CMS}: tracking efficiencies are 0 for |eta| > 2.5"),
    "calorimeter_abs_eta_max": Param(5.0, f"{_CMS}: ParticlePropagator / HCal towers end at |eta| = 5"),
    # tracking efficiency: (eta edges), (low-pT (0.1-1 GeV), high-pT) per eta bin
    "track_eff_hadron": Param({"eta": (0.0, 1.5, 2.5), "low": (0.70, 0.60), "high": (0.95, 0.85)},
                              f"{_CMS}: ChargedHadronTrackingEfficiency"),
    "track_eff_electron": Param({"eta": (0.0, 1.5, 2.5), "low": (0.73, 0.50), "high": (0.95, 0.83),
                                 "above_100": (0.99, 0.90)}, f"{_CMS}: ElectronTrackingEfficiency"),
    "track_eff_muon": Param({"eta": (0.0, 1.5, 2.5), "low": (0.75, 0.70), "high": (0.99, 0.98)},
                            f"{_CMS}: MuonTrackingEfficiency (the exp(0.5 - pT 5e-4) fall above 1 TeV kept)"),
    # identification efficiency (after tracking): 0 at pT <= 10 GeV
    "id_eff_electron": Param({"eta": (0.0, 1.5, 2.5), "pt_min": 10.0, "values": (0.95, 0.85)},
                             f"{_CMS}: ElectronEfficiency"),
    "id_eff_muon": Param({"eta": (0.0, 1.5, 2.4), "pt_min": 10.0, "values": (0.95, 0.95)},
                         f"{_CMS}: MuonEfficiency"),
    # momentum resolution sigma(pT)/pT = sqrt(a^2 + (b pT)^2) per eta bin (0-0.5, 0.5-1.5, 1.5-2.5)
    "track_res_hadron": Param({"eta": (0.0, 0.5, 1.5, 2.5), "a": (0.06, 0.10, 0.25), "b": (1.3e-3, 1.7e-3, 3.1e-3)},
                              f"{_CMS}: ChargedHadronMomentumSmearing (arXiv:1405.6569)"),
    "track_res_electron": Param({"eta": (0.0, 0.5, 1.5, 2.5), "a": (0.03, 0.05, 0.15), "b": (1.3e-3, 1.7e-3, 3.1e-3)},
                                f"{_CMS}: ElectronMomentumSmearing (arXiv:1502.02701)"),
    "track_res_muon": Param({"eta": (0.0, 0.5, 1.5, 2.5), "a": (0.01, 0.015, 0.025), "b": (1.0e-4, 1.5e-4, 3.5e-4)},
                            f"{_CMS}: MuonMomentumSmearing"),
    # ECAL: sigma(E) = f(eta) sqrt((0.008 E)^2 + 0.11^2 E + 0.40^2), f = 1 + 0.64 eta^2 (|eta| <= 1.5),
    # 2.16 + 5.6 (|eta| - 2)^2 (1.5-2.5); forward (2.5-5): sqrt((0.107 E)^2 + 2.08^2 E)
    "ecal": Param({"c": 0.008, "s": 0.11, "n": 0.40, "fwd_c": 0.107, "fwd_s": 2.08},
                  f"{_CMS}: ECal ResolutionFormula (arXiv:1306.2016, 1502.02701)"),
    # HCAL: sigma(E) = sqrt((0.050 E)^2 + 1.50^2 E) (|eta| <= 3), sqrt((0.130 E)^2 + 2.70^2 E) (3-5)
    "hcal": Param({"c": 0.050, "s": 1.50, "fwd_c": 0.130, "fwd_s": 2.70, "fwd_eta": 3.0},
                  f"{_CMS}: HCal ResolutionFormula"),
    "ecal_energy_min": Param(0.5, f"{_CMS}: ECal EnergyMin (GeV), applied per deposit"),
    "hcal_energy_min": Param(1.0, f"{_CMS}: HCal EnergyMin (GeV), applied per deposit"),
    "iso_delta_r": Param(0.5, f"{_CMS}: ElectronIsolation / MuonIsolation DeltaRMax"),
    "iso_pt_min": Param(0.5, f"{_CMS}: Isolation PTMin (GeV)"),
    "iso_ratio_electron": Param(0.12, f"{_CMS}: ElectronIsolation PTRatioMax"),
    "iso_ratio_muon": Param(0.25, f"{_CMS}: MuonIsolation PTRatioMax"),
    "iso_rho_correction": Param(True, f"{_CMS_PU}: Isolation RhoInputArray Rho/rho: "
                                "sum = charged(no PU) + max(neutral - rho pi R^2, 0) (modules/Isolation.cc)"),
    "chs": Param(True, f"{_CMS_PU}: TrackPileUpSubtractor removes pileup tracks from jets, rho and isolation; "
                 "MissingET uses EFlowMergerAllTracks (pileup tracks kept)"),
    "rho_grid": Param({"eta_ranges": ((0.0, 2.5), (2.5, 5.0)), "cell": 1.0},
                      f"{_CMS_PU}: Rho (FastJetGridMedianEstimator, GridRange -5..-2.5, -2.5..2.5, 2.5..5, cells 1 x 1)"),
    "jet_area": Param("pi R^2", f"{_CMS_PU}: JetPileUpSubtractor (pT -= rho A); A = pi R^2, the active area of "
                      "a hard anti-kT jet (Cacciari, Salam, Soyez, JHEP 04 (2008) 005)"),
    "pu_jet_id": Param({"beta_min": 0.1, "pt_max": 50.0, "abs_eta_max": 2.5},
                       "Delphes modules/PileUpJetID.cc (BetaMinBarrel/Endcap = 0.1: fraction of the jet's track pT "
                       "from the hard vertex); applied as a cut to jets below 50 GeV inside the tracker, as CMS's "
                       "pileup jet ID does (CMS-PAS-JME-13-005)"),
    "pileup_mu": Param(20.0, "ADC2021 (Govorkova et al., Sci. Data 9 (2022) 118): <mu> = 20; "
                       f"{_CMS_PU} uses 50 (MeanPileUp)"),
    "pileup_process": Param("SoftQCD:nonDiffractive", f"{_CMS_PU}: PileUpMerger reads pre-generated minimum bias "
                            "(MinBias.pileup); each event rotated by a random phi"),
}


def detector_table() -> dict[str, dict[str, Any]]:
    """:data:`DETECTOR` as plain JSON-ready data (for provenance and the docs)."""
    return {k: {"value": p.value, "source": p.source} for k, p in DETECTOR.items()}


def _bin_index(abs_eta: np.ndarray, edges) -> np.ndarray:
    """Index i with edges[i] <= |eta| < edges[i+1]; len(edges) - 1 beyond the last edge."""
    edges = np.asarray(edges, dtype=float)
    idx = np.clip(np.searchsorted(edges, abs_eta, side="right") - 1, 0, len(edges) - 1)
    return np.where(abs_eta > edges[-1], len(edges) - 1, idx)


def _binned(abs_eta: np.ndarray, edges, values, idx: np.ndarray | None = None) -> np.ndarray:
    """values[i] for edges[i] <= |eta| < edges[i+1] (0 outside the last edge); ``idx``: the
    :func:`_bin_index` of ``abs_eta``, when the caller looks up several tables on one binning."""
    vals = np.concatenate([np.asarray(values, dtype=float), [0.0]])
    return vals[_bin_index(abs_eta, edges) if idx is None else idx]


def tracking_efficiency(kind: str, pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Delphes CMS tracking efficiency of ``kind`` ("hadron", "electron", "muon")."""
    t = DETECTOR[f"track_eff_{kind}"].value
    a = np.abs(eta)
    idx = _bin_index(a, t["eta"])
    eff = np.where(pt > 1.0, _binned(a, t["eta"], t["high"], idx), _binned(a, t["eta"], t["low"], idx))
    if "above_100" in t:
        eff = np.where(pt > 100.0, _binned(a, t["eta"], t["above_100"], idx), eff)
    if kind == "muon":
        eff = np.where(pt > 1000.0, eff * np.exp(0.5 - pt * 5.0e-4), eff)
    return np.where(pt > 0.1, eff, 0.0)


def identification_efficiency(kind: str, pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Delphes CMS identification efficiency of ``kind`` ("electron", "muon") after tracking."""
    t = DETECTOR[f"id_eff_{kind}"].value
    return np.where(pt > t["pt_min"], _binned(np.abs(eta), t["eta"], t["values"]), 0.0)


def lepton_efficiency(kind: str, pt, eta) -> np.ndarray:
    """Total reconstruction x identification efficiency of an e or mu (before isolation)."""
    pt, eta = np.asarray(pt, dtype=float), np.asarray(eta, dtype=float)
    return tracking_efficiency(kind, pt, eta) * identification_efficiency(kind, pt, eta)


def track_resolution(kind: str, pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Relative track pT resolution sigma(pT)/pT of ``kind`` ("hadron", "electron", "muon")."""
    t = DETECTOR[f"track_res_{kind}"].value
    a = np.abs(eta)
    idx = _bin_index(a, t["eta"])
    return np.hypot(_binned(a, t["eta"], t["a"], idx), pt * _binned(a, t["eta"], t["b"], idx))


def ecal_sigma(e: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Absolute ECAL energy resolution (GeV)."""
    t = DETECTOR["ecal"].value
    a = np.abs(eta)
    core = np.sqrt((t["c"] * e) ** 2 + t["s"] ** 2 * e + t["n"] ** 2)
    shape = np.where(a <= 1.5, 1.0 + 0.64 * a**2, 2.16 + 5.6 * (a - 2.0) ** 2)
    fwd = np.sqrt((t["fwd_c"] * e) ** 2 + t["fwd_s"] ** 2 * e)
    return np.where(a <= 2.5, shape * core, fwd)


def hcal_sigma(e: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Absolute HCAL energy resolution (GeV)."""
    t = DETECTOR["hcal"].value
    central = np.abs(eta) <= t["fwd_eta"]
    c = np.where(central, t["c"], t["fwd_c"])
    s = np.where(central, t["s"], t["fwd_s"])
    return np.sqrt((c * e) ** 2 + s**2 * e)


def _lognormal(rng: np.random.Generator, mean: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Log-normal numbers of the given mean and width, as Delphes smears (never negative)."""
    mean = np.maximum(mean, 1e-12)
    s2 = np.log1p((sigma / mean) ** 2)
    return mean * np.exp(np.sqrt(s2) * rng.standard_normal(len(mean)) - 0.5 * s2)


@dataclass(frozen=True)
class FakeModel:
    """Jet -> isolated-lepton fakes for QCD multijets (as fast simulations do).

    In each event without a real lepton above the filter threshold, one of the ``n`` eligible
    jets (pT > ``jet_pt_min``, inside the lepton's acceptance) is turned into an electron
    (fraction ``electron_fraction``) or a muon carrying a fraction r of the jet pT,
    r ~ Gauss(``response_mean``, ``response_sigma``) clipped to [1 / (1 + iso), 1] (an isolated
    fake must carry most of the jet). The event is kept with probability min(1, n / ``n_jets_cap``)
    and weighted max(1, n / ``n_jets_cap``), so the sample is, to first order in ``probability``,
    the QCD fake-lepton distribution. Its cross-section is
    sigma_gen * probability * n_jets_cap * (accepted / generated); events with a real (heavy-flavour)
    lepton are kept with weight 1 / (probability * n_jets_cap) relative to the fakes.

    ``probability`` is the per-jet rate for a jet to be reconstructed as a tight isolated lepton,
    1e-5: ATLAS's jet rejection of about 1e5 for tight electrons with E_T > 20 GeV (ATLAS
    Collaboration, "Expected performance of the ATLAS experiment", CERN-OPEN-2008-020,
    arXiv:0901.0512, electron identification chapter). It scales only the cross-section and the
    relative weight of real heavy-flavour leptons, never the fake events themselves.
    """

    probability: float = 1.0e-5
    jet_pt_min: float = 25.0
    abs_eta_max: float = 2.5
    electron_fraction: float = 0.5
    response_mean: float = 0.85
    response_sigma: float = 0.10
    n_jets_cap: int = 2


@dataclass(frozen=True)
class SimulationConfig:
    """Object definitions of the simulation (ADC2021 selection) over the Delphes-CMS response.

    Parameters
    ----------
    jet_radius, jet_pt_min, jet_abs_eta_max : anti-kT R and jet selection.
    electron_pt_min, electron_abs_eta_max, muon_pt_min, muon_abs_eta_max : lepton selection
        (ADC2021); the identification efficiencies of :data:`DETECTOR` apply on top.
    isolation_cone, electron_isolation_max, muon_isolation_max, isolation_particle_pt_min :
        relative isolation as the Delphes CMS card defines it (rho-corrected with pileup).
    lepton_filter_pt : at least one e or mu above this pT (the ADC2021 filter).
    pileup_max_reuse : a minimum-bias event is overlaid at most this many times (fresh ones are
        generated as needed).
    early_veto : skip pileup and detector simulation of events without a generator-level e/mu
        above 0.7 x the filter pT in the tracker (they cannot pass the filter).
    """

    jet_radius: float = 0.4
    jet_pt_min: float = L.ADC_CUTS["jet"]["pt_min"]
    jet_abs_eta_max: float = L.ADC_CUTS["jet"]["abs_eta_max"]
    electron_pt_min: float = L.ADC_CUTS["electron"]["pt_min"]
    electron_abs_eta_max: float = L.ADC_CUTS["electron"]["abs_eta_max"]
    muon_pt_min: float = L.ADC_CUTS["muon"]["pt_min"]
    muon_abs_eta_max: float = L.ADC_CUTS["muon"]["abs_eta_max"]
    isolation_cone: float = DETECTOR["iso_delta_r"].value
    electron_isolation_max: float = DETECTOR["iso_ratio_electron"].value
    muon_isolation_max: float = DETECTOR["iso_ratio_muon"].value
    isolation_particle_pt_min: float = DETECTOR["iso_pt_min"].value
    lepton_filter_pt: float = L.LEPTON_FILTER_PT
    pileup_max_reuse: float = 4.0
    early_veto: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> SimulationConfig:
        """Build from a (possibly partial) dict; unknown keys are errors naming the key."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                from ..errors import closest

                raise ConfigError(
                    f"simulation: unknown setting {key!r}.{closest(key, known)} Valid: {', '.join(sorted(known))}."
                )
        out: dict[str, Any] = {}
        for k, v in values.items():
            if k == "early_veto":
                out[k] = bool(v)
                continue
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                raise ConfigError(f"simulation: {k} must be a number, got {v!r}.") from None
        return cls(**out)


@dataclass
class BatchResult:
    """Simulated objects of the events of one batch (all events, before the filter)."""

    objects: np.ndarray  # (n, 19, 4) float32
    passed: np.ndarray  # (n,) bool: lepton filter (and fake-model acceptance)
    weights: np.ndarray  # (n,) float32
    charges: np.ndarray  # (n, 8) float32: charges of the 4 e and 4 mu slots (0 when empty)
    faked: np.ndarray  # (n,) bool: a jet was promoted to a lepton


# --------------------------------------------------------------------------- helpers
def _ragged_arange(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each (s, n)."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(total)


def _pt_eta_phi(px, py, pz):
    pt = np.hypot(px, py)
    eta = np.arcsinh(pz / np.maximum(pt, 1e-9))
    phi = np.arctan2(py, px)
    return pt, eta, phi


def _pad(ev: np.ndarray, n_events: int, width: int, *cols: np.ndarray) -> list[np.ndarray]:
    """Scatter flat objects (sorted by event, then pT descending) into (n_events, width) arrays."""
    out = [np.zeros((n_events, width), dtype=np.float32) for _ in cols]
    if len(ev) == 0:
        return out
    first = np.searchsorted(ev, np.arange(n_events))
    rank = np.arange(len(ev)) - first[ev]
    keep = rank < width
    for o, c in zip(out, cols):
        o[ev[keep], rank[keep]] = c[keep]
    return out


def _sort_objects(ev, pt, *cols):
    order = np.lexsort((-pt, ev))
    return (ev[order], pt[order]) + tuple(c[order] for c in cols)


_CLUSTER_STATE = {"banner_done": False}


def _jet_definition(radius: float):
    import fastjet

    if not _CLUSTER_STATE["banner_done"]:
        # fastjet prints its banner once per process on first clustering; send it nowhere.
        from ._pythia import quiet_stdout

        with quiet_stdout("fastjet"), contextlib.redirect_stdout(io.StringIO()):
            import fastjet._swig as swig

            with contextlib.suppress(AttributeError):
                swig.ClusterSequence.print_banner()
        _CLUSTER_STATE["banner_done"] = True
    return fastjet.JetDefinition(fastjet.antikt_algorithm, radius)


def cluster_jets(ev, px, py, pz, e, n_events: int, radius: float, pt_min: float):
    """anti-kT jets of all events at once with fastjet's awkward interface.

    Returns flat (ev, px, py, pz, E) of the jets above ``pt_min``, grouped by event.
    """
    import fastjet

    jetdef = _jet_definition(radius)
    counts = np.bincount(ev, minlength=n_events)
    parts = ak.unflatten(
        ak.zip({"px": px, "py": py, "pz": pz, "E": e}, with_name="Momentum4D"), counts
    )
    jets = fastjet.ClusterSequence(parts, jetdef).inclusive_jets(min_pt=pt_min)
    njet = ak.to_numpy(ak.num(jets))
    flat = ak.flatten(jets)
    jev = np.repeat(np.arange(n_events), njet)
    return (jev,) + tuple(ak.to_numpy(flat[c]).astype(np.float64) for c in ("px", "py", "pz", "E"))


# --------------------------------------------------------------------------- pileup
@dataclass
class PileupPool:
    """Final-state visible particles of minimum-bias events (flat, with offsets)."""

    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    charge: np.ndarray
    offsets: np.ndarray  # len = n_pool + 1
    pid: np.ndarray | None = None  # PDG ids (None: charged = hadron, neutral = hadron)

    @property
    def size(self) -> int:
        return len(self.offsets) - 1


def overlay_pileup(pool: PileupPool, mu: float, n_events: int, rng: np.random.Generator,
                   max_reuse: int | None = None):
    """Poisson(mu) pool events per hard event, each rotated by a random phi (as Delphes'
    PileUpMerger does). With ``max_reuse``, no pool event is used more than that many times
    (the pool must hold enough events). Returns flat (ev, px, py, pz, e, charge, pid)."""
    n_pu = rng.poisson(mu, size=n_events)
    total = int(n_pu.sum())
    if max_reuse is None:
        picks = rng.integers(0, pool.size, size=total)
    else:
        if pool.size * max_reuse < total:
            raise ValueError(f"pileup pool of {pool.size} events cannot give {total} overlays "
                             f"at most {max_reuse} times each")
        picks = rng.permutation(np.repeat(np.arange(pool.size), int(max_reuse)))[:total]
    angle = rng.uniform(0.0, 2.0 * np.pi, size=total)
    lengths = np.diff(pool.offsets)[picks]
    idx = _ragged_arange(pool.offsets[picks], lengths)
    rot = np.repeat(angle, lengths)
    ev = np.repeat(np.repeat(np.arange(n_events), n_pu), lengths)
    c, s = np.cos(rot), np.sin(rot)
    px, py = pool.px[idx], pool.py[idx]
    pid = pool.pid[idx] if pool.pid is not None else np.where(pool.charge[idx] != 0, 211, 130)
    return ev, px * c - py * s, px * s + py * c, pool.pz[idx], pool.e[idx], pool.charge[idx], pid


class PileupSource:
    """Fresh minimum-bias events for each batch: ``next_batch(n)`` gives an awkward batch.

    ``draw`` generates ceil(overlays / max_reuse) new events per call, so no minimum-bias
    event is overlaid more than ``max_reuse`` times, and none is shared between batches.
    """

    def __init__(self, run, max_reuse: int) -> None:
        self.run = run
        self.max_reuse = max(1, int(max_reuse))
        self.n_generated = 0
        self.n_overlaid = 0

    def pool(self, n: int) -> PileupPool:
        parts = []
        got = 0
        while got < n:
            batch = self.run.next_batch(n - got)
            if len(batch) == 0:
                raise GenerationError("pileup: Pythia returned no minimum-bias events.")
            parts.append(batch)
            got += len(batch)
        px_l, py_l, pz_l, e_l, q_l, id_l, cnt_l = [], [], [], [], [], [], []
        for batch in parts:
            nb, ev, pid, px, py, pz, e = final_state(batch)
            q, vis = self.run.particle_info(pid)
            ev, pid, px, py, pz, e, q = (a[vis] for a in (ev, pid, px, py, pz, e, q))
            cnt_l.append(np.bincount(ev, minlength=nb))
            px_l.append(px), py_l.append(py), pz_l.append(pz), e_l.append(e), q_l.append(q), id_l.append(pid)
        self.n_generated += got
        cat = np.concatenate
        return PileupPool(px=cat(px_l), py=cat(py_l), pz=cat(pz_l), e=cat(e_l), charge=cat(q_l),
                          offsets=np.concatenate([[0], np.cumsum(cat(cnt_l))]), pid=cat(id_l))

    def draw(self, n_events: int, mu: float, rng: np.random.Generator):
        n_pu = rng.poisson(mu, size=n_events)  # drawn again inside overlay_pileup from a child rng
        child = np.random.default_rng(rng.integers(0, 2**63))
        total = int(n_pu.sum())
        need = max(1, -(-total // self.max_reuse))
        pool = self.pool(need)
        self.n_overlaid += total
        return _overlay_counts(pool, n_pu, child, self.max_reuse)


def _overlay_counts(pool: PileupPool, n_pu: np.ndarray, rng, max_reuse: int):
    total = int(n_pu.sum())
    picks = rng.permutation(np.repeat(np.arange(pool.size), max_reuse))[:total]
    angle = rng.uniform(0.0, 2.0 * np.pi, size=total)
    lengths = np.diff(pool.offsets)[picks]
    idx = _ragged_arange(pool.offsets[picks], lengths)
    rot = np.repeat(angle, lengths)
    ev = np.repeat(np.repeat(np.arange(len(n_pu)), n_pu), lengths)
    c, s = np.cos(rot), np.sin(rot)
    px, py = pool.px[idx], pool.py[idx]
    return ev, px * c - py * s, px * s + py * c, pool.pz[idx], pool.e[idx], pool.charge[idx], pool.pid[idx]


# --------------------------------------------------------------------------- main entry
def final_state(batch):
    """Flat arrays (n_events, ev, id, px, py, pz, e) of the final-state particles of a batch."""
    prt = batch.prt
    n_events = len(prt)
    counts = ak.to_numpy(ak.num(prt))
    status = ak.to_numpy(ak.flatten(prt.status))
    keep = status > 0
    ev = np.repeat(np.arange(n_events), counts)[keep]
    pid = ak.to_numpy(ak.flatten(prt.id))[keep]
    p = prt.p
    cols = [ak.to_numpy(ak.flatten(p[c]))[keep] for c in ("px", "py", "pz", "e")]
    return n_events, ev, pid, *cols


#: rho grid (Delphes CMS PileUp card, Rho module): |eta| < 2.5 in cells of 1 x 2pi/6, and the two
#: forward ranges 2.5-5 in cells of 1.25 x 2pi/6 (fastjet rounds the card's 1.0 to fit 2.5).
_RHO_ETA_EDGES = np.array([-5.0, -3.75, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.75, 5.0])
_RHO_N_PHI = 6
_RHO_CENTRAL = np.array([2, 3, 4, 5, 6])
_RHO_FORWARD = np.array([0, 1, 7, 8])


def rho_median(ev, pt, eta, phi, n_events: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-event median pT density (GeV per unit area) in the central and the forward grid."""
    ie = np.clip(np.searchsorted(_RHO_ETA_EDGES, eta, side="right") - 1, 0, len(_RHO_ETA_EDGES) - 2)
    ip = np.clip(((phi + np.pi) / (2 * np.pi) * _RHO_N_PHI).astype(np.int64), 0, _RHO_N_PHI - 1)
    n_cells = (len(_RHO_ETA_EDGES) - 1) * _RHO_N_PHI
    inside = np.abs(eta) < 5.0
    cell = ev * n_cells + ie * _RHO_N_PHI + ip
    sums = np.bincount(cell[inside], weights=pt[inside], minlength=n_events * n_cells)
    sums = sums.reshape(n_events, len(_RHO_ETA_EDGES) - 1, _RHO_N_PHI)
    area = np.diff(_RHO_ETA_EDGES) * (2 * np.pi / _RHO_N_PHI)
    dens = sums / area[None, :, None]
    central = np.median(dens[:, _RHO_CENTRAL].reshape(n_events, -1), axis=1)
    forward = np.median(dens[:, _RHO_FORWARD].reshape(n_events, -1), axis=1)
    return central, forward


def _rho_at(rho: tuple[np.ndarray, np.ndarray], ev: np.ndarray, eta: np.ndarray) -> np.ndarray:
    return np.where(np.abs(eta) < 2.5, rho[0][ev], rho[1][ev])


def _detector_response(rng, pid, charge, px, py, pz, e, pt, eta):
    """Delphes-CMS-like particle flow: tracks (tracking efficiency, momentum smearing), ECAL and
    HCAL deposits (energy smearing, thresholds). Returns (scale, tracked, kept): each particle's
    momentum is multiplied by ``scale``; ``kept`` False means not seen."""
    # Every formula is elementwise, so each is evaluated only on the particles it applies to
    # (e.g. the muon table on muons): the same numbers as evaluating all tables on all particles
    # and picking with np.where, at a third of the cost.
    n = len(pid)
    aid = np.abs(pid)
    is_e, is_mu = aid == 11, aid == 13
    charged = charge != 0
    a_eta = np.abs(eta)
    kinds = (("muon", np.flatnonzero(is_mu)), ("electron", np.flatnonzero(is_e)),
             ("hadron", np.flatnonzero(~is_mu & ~is_e)))
    kind_eff = np.empty(n)
    rel_t = np.empty(n)
    for kind, i in kinds:
        kind_eff[i] = tracking_efficiency(kind, pt[i], eta[i])
        rel_t[i] = track_resolution(kind, pt[i], eta[i])  # relative track resolution
    u_track = rng.random(n)
    g = rng.standard_normal(n)
    tracked = charged & (a_eta < DETECTOR["tracker_abs_eta_max"].value) & (u_track < kind_eff)
    to_ecal = (~tracked & (is_e | (aid == 22))) | (tracked & is_e)
    to_hcal = ~tracked & ~is_mu & ~is_e & (aid != 22)
    rel = rel_t.copy()  # tracked, not electrons: the track alone
    i = np.flatnonzero(to_ecal)
    ecal_rel = ecal_sigma(e[i], eta[i]) / np.maximum(e[i], 1e-9)
    # electrons with a track: inverse-variance combination of track and ECAL measurements
    comb = tracked[i]
    ecal_rel[comb] = 1.0 / np.sqrt(1.0 / np.maximum(rel_t[i[comb]], 1e-9) ** 2
                                   + 1.0 / np.maximum(ecal_rel[comb], 1e-9) ** 2)
    rel[i] = ecal_rel
    i = np.flatnonzero(~tracked & ~to_ecal)  # to the HCAL, or muons without a track
    rel[i] = hcal_sigma(e[i], eta[i]) / np.maximum(e[i], 1e-9)
    s2 = np.log1p(rel**2)
    scale = np.exp(np.sqrt(s2) * g - 0.5 * s2)
    e_new = e * scale
    kept = tracked.copy()
    kept |= to_ecal & ~tracked & (e_new > DETECTOR["ecal_energy_min"].value)
    kept |= to_hcal & (e_new > DETECTOR["hcal_energy_min"].value)
    kept &= a_eta < DETECTOR["calorimeter_abs_eta_max"].value
    return scale, tracked, kept


def _pileup_jet_id(jev, jpt, jeta, jphi, ev, pt, eta, phi, tracked, is_pu, start, n_part, radius):
    """Keep a jet unless it is a low-pT jet in the tracker whose tracks come mostly from pileup:
    beta = (track pT from the hard vertex) / (all track pT) within dR < R, below ``beta_min``."""
    t = DETECTOR["pu_jet_id"].value
    test = (jpt < t["pt_max"]) & (np.abs(jeta) < t["abs_eta_max"])
    idx = np.flatnonzero(test)
    keep = np.ones(len(jev), dtype=bool)
    if len(idx) == 0:
        return keep
    e = jev[idx]
    pair_j = np.repeat(np.arange(len(idx)), n_part[e])
    pair_p = _ragged_arange(start[e], n_part[e])
    trk = tracked[pair_p]
    pair_j, pair_p = pair_j[trk], pair_p[trk]
    dphi = (phi[pair_p] - jphi[idx][pair_j] + np.pi) % (2 * np.pi) - np.pi
    inside = (eta[pair_p] - jeta[idx][pair_j]) ** 2 + dphi**2 < radius**2
    w = pt[pair_p] * inside
    all_trk = np.bincount(pair_j, weights=w, minlength=len(idx))
    hard = np.bincount(pair_j, weights=w * ~is_pu[pair_p], minlength=len(idx))
    beta = np.where(all_trk > 0, hard / np.maximum(all_trk, 1e-12), 1.0)
    keep[idx] = beta >= t["beta_min"]
    return keep


def simulate_batch(
    batch,
    particle_info,
    config: SimulationConfig,
    rng: np.random.Generator,
    fake_model: FakeModel | None = None,
    pileup: tuple[PileupSource, float] | None = None,
    *,
    jets_of_rejected: bool = True,
) -> BatchResult:
    """Turn one awkward batch of Pythia events into ADC2021 objects.

    ``particle_info`` maps an int array of PDG ids to (charge, visible) arrays (visibility from
    the particle data: Pythia's ``isVisible()``). Random numbers come from ``rng`` in a fixed
    order, so a batch and a seed give the same objects every time.

    ``jets_of_rejected=False`` skips the jets (fastjet, the pileup jet ID) of events that fail
    the lepton filter, whose objects then hold only MET and leptons; the events that pass are
    the same either way (no random number is drawn for jets). With a fake model every event's
    jets are needed, and this is ignored.
    """
    cfg = config
    n, ev, pid, px, py, pz, e = final_state(batch)

    # Early veto: an event without a generator-level e/mu near the filter threshold inside the
    # tracker cannot pass the filter (resolutions are a few %), unless a jet may fake one.
    # Decided from the e/mu alone (|eta| < 2.5 is inside the calorimeter; a card may make them
    # invisible), so the particle data and kinematics below are computed only for the events
    # that go on.
    if fake_model is None and cfg.early_veto:
        lep = np.flatnonzero((np.abs(pid) == 11) | (np.abs(pid) == 13))
        lpt, leta, _ = _pt_eta_phi(px[lep], py[lep], pz[lep])
        near = (lpt > 0.7 * cfg.lepton_filter_pt) & (np.abs(leta) < 2.5) & particle_info(pid[lep])[1]
        presel = np.bincount(ev[lep[near]], minlength=n) > 0
        inside = presel[ev]
        ev, pid, px, py, pz, e = (a[inside] for a in (ev, pid, px, py, pz, e))
    else:
        presel = np.ones(n, dtype=bool)
    sel = np.flatnonzero(presel)
    m = len(sel)
    remap = np.full(n, -1)
    remap[sel] = np.arange(m)
    ev = remap[ev]
    charge, visible = particle_info(pid)
    pt, eta, phi = _pt_eta_phi(px, py, pz)
    keep = visible & (np.abs(eta) < DETECTOR["calorimeter_abs_eta_max"].value)
    ev, pid, px, py, pz, e, charge, pt, eta, phi = (
        a[keep] for a in (ev, pid, px, py, pz, e, charge, pt, eta, phi))
    is_pu = np.zeros(len(ev), dtype=bool)

    with_pu = pileup is not None and pileup[1] > 0 and m > 0
    if with_pu:
        source, mu = pileup
        pev, ppx, ppy, ppz, pe, pq, ppid = source.draw(m, mu, rng)
        ppt, peta, pphi = _pt_eta_phi(ppx, ppy, ppz)
        pin = np.abs(peta) < DETECTOR["calorimeter_abs_eta_max"].value
        cat = lambda a, b: np.concatenate([a, b[pin]])  # noqa: E731
        ev, px, py, pz, e = cat(ev, pev), cat(px, ppx), cat(py, ppy), cat(pz, ppz), cat(e, pe)
        pt, eta, phi, charge, pid = cat(pt, ppt), cat(eta, peta), cat(phi, pphi), cat(charge, pq), cat(pid, ppid)
        is_pu = np.concatenate([is_pu, np.ones(int(pin.sum()), dtype=bool)])
        order = np.argsort(ev, kind="stable")
        ev, px, py, pz, e, pt, eta, phi, charge, pid, is_pu = (
            a[order] for a in (ev, px, py, pz, e, pt, eta, phi, charge, pid, is_pu))

    # ---- particle flow
    scale, tracked, seen = _detector_response(rng, pid, charge, px, py, pz, e, pt, eta)
    ev, pid, charge, tracked, is_pu, eta, phi = (a[seen] for a in (ev, pid, charge, tracked, is_pu, eta, phi))
    s = scale[seen]
    px, py, pz, e, pt = px[seen] * s, py[seen] * s, pz[seen] * s, e[seen] * s, pt[seen] * s
    aid = np.abs(pid)
    chs_removed = tracked & is_pu  # charged-hadron subtraction: pileup tracks (jets, rho, isolation)
    if with_pu:
        nochs = ~chs_removed
        rho = rho_median(ev[nochs], pt[nochs], eta[nochs], phi[nochs], m)
    else:
        rho = (np.zeros(m), np.zeros(m))
    n_part = np.bincount(ev, minlength=m)
    start = np.cumsum(n_part) - n_part

    # ---- leptons: tracked e/mu of the hard event, identification efficiency, isolation
    is_e = tracked & (aid == 11) & (np.abs(eta) < cfg.electron_abs_eta_max)
    is_mu = tracked & (aid == 13) & (np.abs(eta) < cfg.muon_abs_eta_max)
    u_id = rng.random(len(ev))
    lep_eff = np.where(is_e, identification_efficiency("electron", pt, eta),
                       identification_efficiency("muon", pt, eta))
    cand = np.flatnonzero((is_e | is_mu) & ~is_pu & (u_id < lep_eff)
                          & (pt > min(cfg.electron_pt_min, cfg.muon_pt_min)))
    cev = ev[cand]
    pair_c = np.repeat(np.arange(len(cand)), n_part[cev])
    pair_p = _ragged_arange(start[cev], n_part[cev])
    dphi = (phi[pair_p] - phi[cand][pair_c] + np.pi) % (2 * np.pi) - np.pi
    dr2 = (eta[pair_p] - eta[cand][pair_c]) ** 2 + dphi**2
    in_cone = ((dr2 <= cfg.isolation_cone**2) & (pt[pair_p] > cfg.isolation_particle_pt_min)
               & (pair_p != cand[pair_c]) & ~chs_removed[pair_p])
    ch = in_cone & (charge[pair_p] != 0) & tracked[pair_p]
    sum_ch = np.bincount(pair_c, weights=pt[pair_p] * ch, minlength=len(cand))
    sum_ne = np.bincount(pair_c, weights=pt[pair_p] * (in_cone & ~ch), minlength=len(cand))
    rho_c = _rho_at(rho, cev, eta[cand])
    iso_sum = sum_ch + np.maximum(sum_ne - rho_c * np.pi * cfg.isolation_cone**2, 0.0)
    rel_iso = iso_sum / pt[cand]
    lep_e = is_e[cand]
    iso_ok = rel_iso < np.where(lep_e, cfg.electron_isolation_max, cfg.muon_isolation_max)
    lsel_pt = pt[cand] > np.where(lep_e, cfg.electron_pt_min, cfg.muon_pt_min)
    good = iso_ok & lsel_pt
    iso = cand[good]
    lep_e = lep_e[good]
    lev, lpt, leta, lphi, lq = ev[iso], pt[iso], eta[iso], phi[iso], charge[iso]

    # ---- jets: particle flow without pileup tracks and the isolated leptons, rho x area corrected
    jet_in = ~chs_removed
    jet_in[iso] = False
    lead = None
    if fake_model is None:  # the leptons are final: who passes the filter is known before the jets
        out_e, out_mu, lead = _lepton_slots(m, lev, lpt, leta, lphi, lq, lep_e)
        if not jets_of_rejected:
            jet_in &= (lead > cfg.lepton_filter_pt)[ev]
    jev, jpx, jpy, jpz, _je = cluster_jets(
        ev[jet_in], px[jet_in], py[jet_in], pz[jet_in], e[jet_in], m, cfg.jet_radius, 5.0)
    jpt, jeta, jphi = _pt_eta_phi(jpx, jpy, jpz)
    if with_pu:
        jpt = jpt - _rho_at(rho, jev, jeta) * np.pi * cfg.jet_radius**2
    jsel = (jpt > cfg.jet_pt_min) & (np.abs(jeta) < cfg.jet_abs_eta_max)
    jev, jpt, jeta, jphi = jev[jsel], jpt[jsel], jeta[jsel], jphi[jsel]
    if with_pu:
        keep_j = _pileup_jet_id(jev, jpt, jeta, jphi, ev, pt, eta, phi, tracked, is_pu, start, n_part,
                                cfg.jet_radius)
        jev, jpt, jeta, jphi = jev[keep_j], jpt[keep_j], jeta[keep_j], jphi[keep_j]

    # ---- MET: all particle-flow candidates, pileup tracks included (Delphes EFlowMergerAllTracks)
    mex = -np.bincount(ev, weights=px, minlength=m)
    mey = -np.bincount(ev, weights=py, minlength=m)

    weights = np.ones(m, dtype=np.float32)
    faked = np.zeros(m, dtype=bool)
    accept = np.ones(m, dtype=bool)
    if fake_model is not None:
        lev, lpt, leta, lphi, lq, lep_e, jev, jpt, jeta, jphi, faked, accept, weights = _apply_fakes(
            fake_model, cfg, rng, m, lev, lpt, leta, lphi, lq, lep_e, jev, jpt, jeta, jphi
        )

    # ---- layout (selected events), then scattered back over the whole batch
    if lead is None:
        out_e, out_mu, lead = _lepton_slots(m, lev, lpt, leta, lphi, lq, lep_e)
    sjev, sjpt, sjeta, sjphi = _sort_objects(jev, jpt, jeta, jphi)
    jets = _pad(sjev, m, L.N_JETS, sjpt, sjeta, sjphi)
    objects_m = fill_objects(
        m,
        met=(np.hypot(mex, mey), np.arctan2(mey, mex)),
        electrons=tuple(out_e[:3]),
        muons=tuple(out_mu[:3]),
        jets=tuple(jets),
    )
    objects = np.zeros((n, objects_m.shape[1], objects_m.shape[2]), dtype=objects_m.dtype)
    objects[sel] = objects_m
    passed = np.zeros(n, dtype=bool)
    passed[sel] = (lead > cfg.lepton_filter_pt) & accept
    w = np.ones(n, dtype=np.float32)
    w[sel] = weights
    fk = np.zeros(n, dtype=bool)
    fk[sel] = faked
    charges = np.zeros((n, 8), dtype=np.float32)
    charges[sel] = np.concatenate([out_e[3], out_mu[3]], axis=1)
    return BatchResult(objects=objects, passed=passed, weights=w, charges=charges, faked=fk)


def _lepton_slots(m, lev, lpt, leta, lphi, lq, lep_e):
    """(pt, eta, phi, charge) of the 4 electron and the 4 muon slots, each (m, 4), pT-ordered,
    and each event's leading lepton pT as the layout stores it (float32, what the filter cuts)."""
    out_e, out_mu = [], []
    for mask, store in ((lep_e, out_e), (~lep_e, out_mu)):
        sev, spt, seta, sphi, sq = _sort_objects(lev[mask], lpt[mask], leta[mask], lphi[mask], lq[mask])
        store.extend(_pad(sev, m, 4, spt, seta, sphi, sq))
    return out_e, out_mu, np.maximum(out_e[0].max(axis=1), out_mu[0].max(axis=1))


def _apply_fakes(fm: FakeModel, cfg, rng, n, lev, lpt, leta, lphi, lq, lep_e, jev, jpt, jeta, jphi):
    """Promote one eligible jet per lepton-less event to a lepton (see :class:`FakeModel`)."""
    real_lead = np.zeros(n)
    np.maximum.at(real_lead, lev, lpt)
    needs = real_lead <= cfg.lepton_filter_pt
    # Draw every random number for every event, so the stream does not depend on the selection.
    u_flavour = rng.random(n)
    u_keep = rng.random(n)
    u_pick = rng.random(n)
    as_electron = u_flavour < fm.electron_fraction
    iso_max = np.where(as_electron, cfg.electron_isolation_max, cfg.muon_isolation_max)
    response = np.clip(fm.response_mean + fm.response_sigma * rng.standard_normal(n), 1.0 / (1.0 + iso_max), 1.0)
    charge = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)
    eta_max = np.where(as_electron, min(fm.abs_eta_max, cfg.electron_abs_eta_max),
                       min(fm.abs_eta_max, cfg.muon_abs_eta_max))
    eligible = (jpt > fm.jet_pt_min) & (np.abs(jeta) < eta_max[jev]) & needs[jev]
    n_elig = np.bincount(jev[eligible], minlength=n)
    cap = float(fm.n_jets_cap)
    keep = (n_elig > 0) & (u_keep < np.minimum(1.0, n_elig / cap))
    weights = np.where(needs, np.maximum(1.0, n_elig / cap), 1.0).astype(np.float32)
    accept = ~needs | keep

    elig_idx = np.flatnonzero(eligible)  # sorted by event, since jets are grouped by event
    first = np.searchsorted(jev[elig_idx], np.arange(n))
    k = np.minimum((u_pick * n_elig).astype(np.int64), np.maximum(n_elig - 1, 0))
    fev = np.flatnonzero(keep)
    chosen = elig_idx[first[fev] + k[fev]]

    new_pt = jpt[chosen] * response[fev]
    drop = np.ones(len(jpt), dtype=bool)
    drop[chosen] = False
    faked = np.zeros(n, dtype=bool)
    faked[fev] = True
    lev = np.concatenate([lev, fev])
    lpt = np.concatenate([lpt, new_pt])
    leta = np.concatenate([leta, jeta[chosen]])
    lphi = np.concatenate([lphi, jphi[chosen]])
    lq = np.concatenate([lq, charge[fev]])
    lep_e = np.concatenate([lep_e, as_electron[fev]])
    return (lev, lpt, leta, lphi, lq, lep_e, jev[drop], jpt[drop], jeta[drop], jphi[drop],
            faked, accept, weights)
