"""Physics features computed from events with the ``vector`` package.

:func:`dilepton_features` turns the ADC2021 object layout into the eight high-level variables
of dilepton analyses (as in ATLAS open-data anomaly searches): ``lep1_pt``, ``lep2_pt``,
``lep_deltaR``, ``mll``, ``met_et``, ``jet_n``, ``jet_ht``, ``centrality``.
:func:`pair_mass` is the invariant mass of two objects stored in flat columns (e.g. the two
muons of a CMS dimuon CSV or flat ROOT tree).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from . import _layout as L
from .errors import InputError, MissingKeyError, closest
from .events import EventSet

log = logging.getLogger(__name__)

__all__ = ["DILEPTON_FEATURES", "dilepton_features", "pair_mass"]

DILEPTON_FEATURES = (
    "lep1_pt", "lep2_pt", "lep_deltaR", "mll", "met_et", "jet_n", "jet_ht", "centrality",
)
ELECTRON_MASS = 0.000511  # GeV
MUON_MASS = 0.105658  # GeV


def _vector():
    import vector

    return vector


def dilepton_features(events: EventSet, *, keep_all: bool = False) -> EventSet:
    """Dilepton analysis variables from an object-layout EventSet.

    The two leptons are the two highest-pT objects among the electron and muon slots
    (electron and muon masses are used for the four-vectors).

    Parameters
    ----------
    events : EventSet
        ADC2021 object layout (N, 19, 4), e.g. from a NanoAOD or ATLAS ROOT file.
    keep_all : bool
        By default events with fewer than two leptons are dropped (the variables are
        undefined; the count is logged and stored in ``provenance["dropped_fewer_than_2_leptons"]``).
        With ``keep_all=True`` they are kept, with the missing lepton's pT, ``lep_deltaR``
        and ``mll`` set to 0.

    Returns
    -------
    EventSet
        Flat (M, 8) with feature names :data:`DILEPTON_FEATURES`; labels, weights and process
        follow the kept events. Definitions (GeV): ``met_et`` the MET slot pT; ``jet_n`` the
        number of filled jet slots (at most 10, jets passing pT > 15, \\|eta\\| < 4); ``jet_ht``
        their scalar pT sum; ``centrality`` = (sum of all lepton pT + MET) /
        (sum of all lepton pT + MET + jet_ht), 0 for an empty event.
    """
    if not isinstance(events, EventSet) or not events.is_objects:
        src = events.source if isinstance(events, EventSet) else "<input>"
        raise InputError(
            f"{src}: dilepton_features needs the ADC2021 object layout (N, 19, 4); got "
            f"{'flat features' if isinstance(events, EventSet) else type(events).__name__}."
        )
    vector = _vector()
    d = events.data
    n = len(events)
    lep_slots = np.r_[L.ELECTRON_SLOTS.start:L.ELECTRON_SLOTS.stop, L.MUON_SLOTS.start:L.MUON_SLOTS.stop]
    lep = d[:, lep_slots, :]  # (N, 8, 4)
    lep_pt = lep[:, :, 0]
    n_lep = (lep_pt > 0).sum(axis=1)
    # Two leading leptons across flavours: a stable sort keeps electrons first on exact ties.
    order = np.argsort(-lep_pt, axis=1, kind="stable")[:, :2]
    two = np.take_along_axis(lep, order[:, :, None], axis=1)  # (N, 2, 4)
    mass = np.where(two[:, :, 3] == L.TYPE_MUON, MUON_MASS, ELECTRON_MASS)
    mass = np.where(two[:, :, 0] > 0, mass, 0.0)
    l1 = vector.array({"pt": two[:, 0, 0], "eta": two[:, 0, 1], "phi": two[:, 0, 2], "mass": mass[:, 0]})
    l2 = vector.array({"pt": two[:, 1, 0], "eta": two[:, 1, 1], "phi": two[:, 1, 2], "mass": mass[:, 1]})
    has2 = n_lep >= 2
    mll = np.where(has2, (l1 + l2).mass, 0.0)
    dr = np.where(has2, l1.deltaR(l2), 0.0)
    met = d[:, L.MET_SLOT, 0]
    jet_pt = d[:, L.JET_SLOTS, 0]
    jet_n = (jet_pt > 0).sum(axis=1)
    ht = jet_pt.sum(axis=1)
    lep_sum = lep_pt.sum(axis=1)
    total = lep_sum + met + ht
    with np.errstate(invalid="ignore", divide="ignore"):
        centrality = np.where(total > 0, (lep_sum + met) / np.where(total > 0, total, 1.0), 0.0)
    out = np.column_stack(
        [two[:, 0, 0], two[:, 1, 0], dr, mll, met, jet_n, ht, centrality]
    ).astype(np.float32)
    prov = {**events.provenance, "features": "dilepton"}
    result = EventSet(
        out, feature_names=DILEPTON_FEATURES, labels=events.labels, weights=events.weights,
        process=events.process, provenance=prov,
    )
    if keep_all:
        return result
    n_drop = int(n - has2.sum())
    if n_drop:
        log.info("%s: dropped %d of %d events with fewer than two leptons", events.source, n_drop, n)
    kept = result[has2]
    kept.provenance = {**prov, "dropped_fewer_than_2_leptons": n_drop}
    return kept


def pair_mass(events: EventSet, first: Mapping[str, str | float], second: Mapping[str, str | float]) -> np.ndarray:
    """Invariant mass of two objects whose components are flat columns of ``events``.

    Parameters
    ----------
    events : EventSet
        Flat features.
    first, second : mapping
        ``vector`` coordinate name -> column name (or a constant), e.g.
        ``{"E": "E1", "px": "px1", "py": "py1", "pz": "pz1"}`` or
        ``{"pt": "pt1", "eta": "eta1", "phi": "phi1", "mass": 0.105658}``.

    Returns
    -------
    ndarray of float64, shape (N,)
        The pair mass in the units of the inputs.

    Examples
    --------
    >>> ev = hepad.read_events("uproot-Zmumu.root")                       # doctest: +SKIP
    >>> m = pair_mass(ev, {"E": "E1", "px": "px1", "py": "py1", "pz": "pz1"},
    ...               {"E": "E2", "px": "px2", "py": "py2", "pz": "pz2"})   # doctest: +SKIP
    """
    if events.is_objects:
        raise InputError(f"{events.source}: pair_mass reads flat columns; these are objects.")
    vector = _vector()
    names = list(events.feature_names)

    def _leg(spec: Mapping[str, str | float]):
        comps = {}
        for coord, col in spec.items():
            if isinstance(col, str):
                if col not in names:
                    raise MissingKeyError(
                        f"{events.source}: no column {col!r}.{closest(col, names)}"
                    )
                comps[coord] = events.data[:, names.index(col)].astype(np.float64)
            else:
                comps[coord] = np.full(len(events), float(col))
        try:
            return vector.array(comps)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"{events.source}: cannot build a four-vector from {dict(spec)!r} ({exc}); use "
                "E/px/py/pz or pt/eta/phi/mass."
            ) from None

    p = _leg(first) + _leg(second)
    if not hasattr(p, "mass"):
        raise InputError(
            f"{events.source}: the legs are not four-vectors; add 'mass' (or 'E') to each leg."
        )
    return np.asarray(p.mass, dtype=np.float64)
