"""A fast toy sampler of ADC2021-layout events, for tests, docs and smoke runs.

Not physics: a few exponential spectra shaped like the SM mix (one hard lepton, MET, a few
jets) and a toy "signal" with more leptons and harder MET. Real samples come from
:mod:`hepad.generate` (Pythia 8).
"""

from __future__ import annotations

import numpy as np

from . import _layout as L
from .events import EventSet, fill_objects


def _objects(rng: np.random.Generator, n: int, counts: np.ndarray, width: int, pt_min: float,
             pt_scale: float, eta_max: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pt = pt_min + rng.exponential(pt_scale, size=(n, width))
    pt = -np.sort(-pt, axis=1)
    filled = np.arange(width)[None, :] < counts[:, None]
    pt = np.where(filled, pt, 0.0)
    eta = np.where(filled, rng.uniform(-eta_max, eta_max, size=(n, width)), 0.0)
    phi = np.where(filled, rng.uniform(-np.pi, np.pi, size=(n, width)), 0.0)
    return pt, eta, phi


def toy_events(n: int, kind: str = "background", seed: int = 0) -> EventSet:
    """``n`` toy events of ``kind`` 'background' or 'signal' in the (N, 19, 4) layout."""
    rng = np.random.default_rng(seed)
    sig = kind == "signal"
    n_lep = rng.integers(2, 5, size=n) if sig else 1 + (rng.random(n) < 0.1)
    is_e = rng.random(n) < 0.5
    n_e = np.where(is_e, np.minimum(n_lep, 4), np.maximum(n_lep - 2, 0) * sig)
    n_mu = np.minimum(np.maximum(n_lep - n_e, 0), 4)
    e = _objects(rng, n, n_e, 4, 23.0 if not sig else 10.0, 20.0, 2.5)
    mu = _objects(rng, n, n_mu, 4, 23.0 if not sig else 10.0, 20.0, 2.1)
    n_jet = np.minimum(rng.poisson(2.5 if sig else 1.5, size=n), 10)
    jets = _objects(rng, n, n_jet, 10, 15.0, 40.0 if sig else 25.0, 4.0)
    met_pt = rng.exponential(60.0 if sig else 25.0, size=n)
    met_phi = rng.uniform(-np.pi, np.pi, size=n)
    data = fill_objects(n, met=(met_pt, met_phi), electrons=e, muons=mu, jets=jets)
    return EventSet(
        data=data,
        labels=np.full(n, 1 if sig else 0),
        provenance={"source": f"<toy {kind} seed={seed}>", "process": f"toy-{kind}"},
    )


__all__ = ["toy_events", "L"]
