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
from ..errors import ConfigError
from ..events import fill_objects

log = logging.getLogger(__name__)

#: |PDG id| of particles a detector does not see (neutrinos, neutralino, gravitino/graviton).
INVISIBLE_IDS = np.array([12, 14, 16, 39, 1000012, 1000014, 1000016, 1000022, 1000039, 5000039])


@dataclass(frozen=True)
class Resolution:
    """Gaussian resolution model. Relative pT resolutions add in quadrature.

    electron: sigma(pT)/pT = e_stochastic / sqrt(E) (+) e_constant  (calorimeter-like, E in GeV)
    muon:     sigma(pT)/pT = mu_constant (+) mu_linear * pT           (tracker curvature)
    jet:      sigma(pT)/pT = jet_stochastic / sqrt(pT) (+) jet_constant
    jet eta and phi: absolute Gaussian jet_angle; leptons' directions are not smeared.
    MET: each of (MET_x, MET_y) gets a Gaussian of width met_stochastic * sqrt(sum ET).
    """

    e_stochastic: float = 0.05
    e_constant: float = 0.005
    mu_constant: float = 0.01
    mu_linear: float = 1e-4
    jet_stochastic: float = 1.0
    jet_constant: float = 0.05
    jet_angle: float = 0.01
    met_stochastic: float = 0.5


@dataclass(frozen=True)
class FakeModel:
    """Jet -> isolated-lepton fake model used for QCD multijets (as fast simulations do).

    In each event without a real lepton above the filter threshold, one of the ``n`` eligible
    jets (pT > ``jet_pt_min``, |eta| < ``abs_eta_max``; |eta| < 2.1 for a muon fake) is turned into
    an electron (fraction ``electron_fraction``) or a muon, carrying a fraction r of the jet pT,
    r ~ Gauss(``response_mean``, ``response_sigma``) clipped to [1 / (1 + iso_max), 1] (an
    isolated fake must carry most of the jet). The per-jet fake rate is ``probability``; the event
    is kept with probability min(1, n / ``n_jets_cap``) and weighted max(1, n / ``n_jets_cap``),
    so the sample is, to first order in ``probability``, the QCD fake-lepton distribution.
    Its cross-section is sigma_gen * probability * n_jets_cap * (accepted / generated).
    The default ``probability`` (4.4e-5, within the 1e-5..1e-4 of tight isolated-lepton fake
    rates) makes the accepted QCD / W cross-section ratio match ADC2021's 33.8 % / 59.2 %.
    It scales only the cross-section, never the events.
    """

    probability: float = 4.4e-5
    jet_pt_min: float = 25.0
    abs_eta_max: float = 2.5
    electron_fraction: float = 0.5
    response_mean: float = 0.85
    response_sigma: float = 0.10
    n_jets_cap: int = 2


@dataclass(frozen=True)
class SimulationConfig:
    """Object definitions and detector response of the simulation (ADC2021 defaults).

    Parameters
    ----------
    jet_radius, jet_pt_min, jet_abs_eta_max : anti-kT R and jet selection (after smearing).
    electron_pt_min, electron_abs_eta_max, muon_pt_min, muon_abs_eta_max : lepton selection.
    isolation_cone : cone radius for the relative isolation of leptons.
    isolation_max : leptons with (sum pT of other visible particles in the cone) / pT below this
        are isolated (ADC2021 used a loose 0.45). Isolated leptons are removed from the jet inputs.
    isolation_particle_pt_min : particles below this pT do not enter the isolation sum.
    visible_abs_eta_max : acceptance of visible particles for jets and MET.
    lepton_filter_pt : at least one e or mu above this pT (the ADC2021 filter).
    resolution : the Gaussian resolution model.
    chs_abs_eta_max : charged pileup particles within this |eta| are removed (charged-hadron
        subtraction with the tracker); neutral pileup stays.
    """

    jet_radius: float = 0.4
    jet_pt_min: float = L.ADC_CUTS["jet"]["pt_min"]
    jet_abs_eta_max: float = L.ADC_CUTS["jet"]["abs_eta_max"]
    electron_pt_min: float = L.ADC_CUTS["electron"]["pt_min"]
    electron_abs_eta_max: float = L.ADC_CUTS["electron"]["abs_eta_max"]
    muon_pt_min: float = L.ADC_CUTS["muon"]["pt_min"]
    muon_abs_eta_max: float = L.ADC_CUTS["muon"]["abs_eta_max"]
    isolation_cone: float = 0.3
    isolation_max: float = 0.45
    isolation_particle_pt_min: float = 0.5
    visible_abs_eta_max: float = 5.0
    lepton_filter_pt: float = L.LEPTON_FILTER_PT
    chs_abs_eta_max: float = 2.5
    resolution: Resolution = field(default_factory=Resolution)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> SimulationConfig:
        """Build from a (possibly partial) dict; unknown keys are errors naming the key."""
        values = dict(values or {})
        res = values.pop("resolution", None)
        known = {f.name for f in fields(cls)} - {"resolution"}
        for key in values:
            if key not in known:
                from ..errors import closest

                raise ConfigError(
                    f"simulation: unknown setting {key!r}.{closest(key, known)} "
                    f"Valid: {', '.join(sorted(known | {'resolution'}))}."
                )
        resolution = Resolution()
        if res is not None:
            rknown = {f.name for f in fields(Resolution)}
            bad = [k for k in res if k not in rknown]
            if bad:
                raise ConfigError(
                    f"simulation.resolution: unknown setting {bad[0]!r}. Valid: {', '.join(sorted(rknown))}."
                )
            resolution = Resolution(**{k: float(v) for k, v in res.items()})
        return cls(**{k: float(v) for k, v in values.items()}, resolution=resolution)


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
    """Final-state visible particles of pre-generated minimum-bias events (flat, with offsets)."""

    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    charge: np.ndarray
    offsets: np.ndarray  # len = n_pool + 1

    @property
    def size(self) -> int:
        return len(self.offsets) - 1


def overlay_pileup(pool: PileupPool, mu: float, n_events: int, rng: np.random.Generator):
    """Sample Poisson(mu) pool events per hard event, each rotated by a random phi (as Delphes'
    PileUpMerger does). Returns flat (ev, px, py, pz, e, charge)."""
    n_pu = rng.poisson(mu, size=n_events)
    total = int(n_pu.sum())
    picks = rng.integers(0, pool.size, size=total)
    angle = rng.uniform(0.0, 2.0 * np.pi, size=total)
    lengths = np.diff(pool.offsets)[picks]
    idx = _ragged_arange(pool.offsets[picks], lengths)
    rot = np.repeat(angle, lengths)
    ev = np.repeat(np.repeat(np.arange(n_events), n_pu), lengths)
    c, s = np.cos(rot), np.sin(rot)
    px, py = pool.px[idx], pool.py[idx]
    return ev, px * c - py * s, px * s + py * c, pool.pz[idx], pool.e[idx], pool.charge[idx]


# --------------------------------------------------------------------------- main entry
def final_state(batch):
    """Flat arrays (ev, id, px, py, pz, e) of the final-state particles of an awkward batch."""
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


def simulate_batch(
    batch,
    charge_of,
    config: SimulationConfig,
    rng: np.random.Generator,
    fake_model: FakeModel | None = None,
    pileup: tuple[PileupPool, float] | None = None,
) -> BatchResult:
    """Turn one awkward batch of Pythia events into ADC2021 objects.

    ``charge_of`` maps an int array of PDG ids to charges. Random numbers come from ``rng`` in a
    fixed order, so a batch and a seed give the same objects every time.
    """
    cfg, res = config, config.resolution
    n, ev, pid, px, py, pz, e = final_state(batch)
    charge = charge_of(pid)
    aid = np.abs(pid)
    pt, eta, phi = _pt_eta_phi(px, py, pz)
    visible = ~np.isin(aid, INVISIBLE_IDS) & (np.abs(eta) < cfg.visible_abs_eta_max)
    is_pu = np.zeros(len(ev), dtype=bool)

    if pileup is not None and pileup[1] > 0:
        pool, mu = pileup
        pev, ppx, ppy, ppz, pe, pq = overlay_pileup(pool, mu, n, rng)
        ppt, peta, pphi = _pt_eta_phi(ppx, ppy, ppz)
        pkeep = (np.abs(peta) < cfg.visible_abs_eta_max) & ~(
            (pq != 0) & (np.abs(peta) < cfg.chs_abs_eta_max)
        )
        cat = lambda a, b: np.concatenate([a, b[pkeep]])  # noqa: E731
        ev, px, py, pz, e = cat(ev, pev), cat(px, ppx), cat(py, ppy), cat(pz, ppz), cat(e, pe)
        pt, eta, phi, charge = cat(pt, ppt), cat(eta, peta), cat(phi, pphi), cat(charge, pq)
        aid = np.concatenate([aid, np.zeros(int(pkeep.sum()), dtype=aid.dtype)])
        visible = np.concatenate([visible, np.ones(int(pkeep.sum()), dtype=bool)])
        is_pu = np.concatenate([is_pu, np.ones(int(pkeep.sum()), dtype=bool)])
        order = np.argsort(ev, kind="stable")
        ev, px, py, pz, e, pt, eta, phi, charge, aid, visible, is_pu = (
            a[order] for a in (ev, px, py, pz, e, pt, eta, phi, charge, aid, visible, is_pu)
        )

    # Keep only what the detector sees from here on.
    ev, px, py, pz, e, pt, eta, phi, charge, aid, is_pu = (
        a[visible] for a in (ev, px, py, pz, e, pt, eta, phi, charge, aid, is_pu)
    )
    n_part = np.bincount(ev, minlength=n)
    start = np.cumsum(n_part) - n_part

    # ---- leptons: candidates, isolation, smearing
    is_e = (aid == 11) & (np.abs(eta) < cfg.electron_abs_eta_max)
    is_mu = (aid == 13) & (np.abs(eta) < cfg.muon_abs_eta_max)
    cand = np.flatnonzero((is_e | is_mu) & ~is_pu & (pt > min(cfg.electron_pt_min, cfg.muon_pt_min)))
    cev = ev[cand]
    pair_c = np.repeat(np.arange(len(cand)), n_part[cev])
    pair_p = _ragged_arange(start[cev], n_part[cev])
    dphi = (phi[pair_p] - phi[cand][pair_c] + np.pi) % (2 * np.pi) - np.pi
    dr2 = (eta[pair_p] - eta[cand][pair_c]) ** 2 + dphi**2
    in_cone = (dr2 < cfg.isolation_cone**2) & (pt[pair_p] > cfg.isolation_particle_pt_min)
    cone_sum = np.bincount(pair_c, weights=pt[pair_p] * in_cone, minlength=len(cand))
    rel_iso = (cone_sum - pt[cand]) / pt[cand]  # the lepton sits in its own cone
    iso = cand[rel_iso < cfg.isolation_max]

    lep_e = is_e[iso]
    lpt = pt[iso]
    sigma = np.where(
        lep_e,
        np.hypot(res.e_stochastic / np.sqrt(np.maximum(e[iso], 1e-9)), res.e_constant),
        np.hypot(res.mu_constant, res.mu_linear * lpt),
    )
    lpt = lpt * np.maximum(1.0 + sigma * rng.standard_normal(len(iso)), 0.0)
    lev, leta, lphi, lq = ev[iso], eta[iso], phi[iso], charge[iso]
    lsel = lpt > np.where(lep_e, cfg.electron_pt_min, cfg.muon_pt_min)

    # ---- jets from everything visible except the isolated leptons
    jet_in = np.ones(len(ev), dtype=bool)
    jet_in[iso] = False
    # Cluster a little below the cut so smearing can move jets across it in both directions.
    jev, jpx, jpy, jpz, _je = cluster_jets(
        ev[jet_in], px[jet_in], py[jet_in], pz[jet_in], e[jet_in], n,
        cfg.jet_radius, 0.5 * cfg.jet_pt_min,
    )
    jpt, jeta, jphi = _pt_eta_phi(jpx, jpy, jpz)
    jsig = np.hypot(res.jet_stochastic / np.sqrt(np.maximum(jpt, 1e-9)), res.jet_constant)
    jpt = jpt * np.maximum(1.0 + jsig * rng.standard_normal(len(jpt)), 0.0)
    jeta = jeta + res.jet_angle * rng.standard_normal(len(jpt))
    jphi = (jphi + res.jet_angle * rng.standard_normal(len(jpt)) + np.pi) % (2 * np.pi) - np.pi
    jsel = (jpt > cfg.jet_pt_min) & (np.abs(jeta) < cfg.jet_abs_eta_max)
    jev, jpt, jeta, jphi = jev[jsel], jpt[jsel], jeta[jsel], jphi[jsel]

    # ---- MET from the visible final state (smeared with sqrt(sum ET))
    mex = -np.bincount(ev, weights=px, minlength=n)
    mey = -np.bincount(ev, weights=py, minlength=n)
    sum_et = np.bincount(ev, weights=pt, minlength=n)
    msig = res.met_stochastic * np.sqrt(sum_et)
    mex = mex + msig * rng.standard_normal(n)
    mey = mey + msig * rng.standard_normal(n)

    lev, lpt, leta, lphi, lq, lep_e = (a[lsel] for a in (lev, lpt, leta, lphi, lq, lep_e))
    weights = np.ones(n, dtype=np.float32)
    faked = np.zeros(n, dtype=bool)
    accept = np.ones(n, dtype=bool)
    if fake_model is not None:
        lev, lpt, leta, lphi, lq, lep_e, jev, jpt, jeta, jphi, faked, accept, weights = _apply_fakes(
            fake_model, cfg, rng, n, lev, lpt, leta, lphi, lq, lep_e, jev, jpt, jeta, jphi
        )

    # ---- layout
    out_e, out_mu = [], []
    for mask, store in ((lep_e, out_e), (~lep_e, out_mu)):
        sev, spt, seta, sphi, sq = _sort_objects(lev[mask], lpt[mask], leta[mask], lphi[mask], lq[mask])
        store.extend(_pad(sev, n, 4, spt, seta, sphi, sq))
    sjev, sjpt, sjeta, sjphi = _sort_objects(jev, jpt, jeta, jphi)
    jets = _pad(sjev, n, L.N_JETS, sjpt, sjeta, sjphi)
    objects = fill_objects(
        n,
        met=(np.hypot(mex, mey), np.arctan2(mey, mex)),
        electrons=tuple(out_e[:3]),
        muons=tuple(out_mu[:3]),
        jets=tuple(jets),
    )
    lead_lep = np.maximum(objects[:, L.ELECTRON_SLOTS, 0].max(axis=1), objects[:, L.MUON_SLOTS, 0].max(axis=1))
    passed = (lead_lep > cfg.lepton_filter_pt) & accept
    charges = np.concatenate([out_e[3], out_mu[3]], axis=1)
    return BatchResult(objects=objects, passed=passed, weights=weights, charges=charges, faked=faked)


def _apply_fakes(fm: FakeModel, cfg, rng, n, lev, lpt, leta, lphi, lq, lep_e, jev, jpt, jeta, jphi):
    """Promote one eligible jet per lepton-less event to a lepton (see :class:`FakeModel`)."""
    real_lead = np.zeros(n)
    np.maximum.at(real_lead, lev, lpt)
    needs = real_lead <= cfg.lepton_filter_pt
    # Draw every random number for every event, so the stream does not depend on the selection.
    u_flavour = rng.random(n)
    u_keep = rng.random(n)
    u_pick = rng.random(n)
    response = np.clip(
        fm.response_mean + fm.response_sigma * rng.standard_normal(n),
        1.0 / (1.0 + cfg.isolation_max),
        1.0,
    )
    charge = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)
    as_electron = u_flavour < fm.electron_fraction
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
