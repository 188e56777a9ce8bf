"""Tiny trained detectors shared by the deployment tests (engine, export parity, trigger).

Trained once per test session (module-level cache), on toy events, in a few epochs: the
tests check that deployment reproduces the model, not that the model is good.
"""

from __future__ import annotations

import functools

import hepad
from hepad._toy import toy_events

#: name -> (registry key or preset, parameter overrides)
TORCH_DETECTORS = {
    "ae": ("ae", {}),
    "ae-logpt-masked": ("ae", {"preprocessing": {"log_pt": True, "phi": "drop", "mask_padding": True}}),
    "ae-batchnorm": ("ae", {"batch_norm": True, "dropout": 0.1, "hidden_layers": [32, 16], "latent_dim": 8}),
    "vae-recon": ("vae", {"score": "recon"}),
    "vae-kl": ("vae", {"score": "kl"}),
    "vae-mu2": ("vae", {"score": "mu2"}),
    "axol1tl-like": ("axol1tl-like", {}),
    "deep-svdd": ("deep-svdd", {}),
}


@functools.lru_cache(maxsize=None)
def background(n: int = 2000, seed: int = 1):
    return toy_events(n, "background", seed=seed)


@functools.lru_cache(maxsize=None)
def trained(label: str, epochs: int = 3):
    """A fitted torch detector by label of :data:`TORCH_DETECTORS`."""
    name, params = TORCH_DETECTORS[label]
    det = hepad.make_detector(name, epochs=epochs, batch_size=256, n_threads=1, random_state=0, **params)
    return det.fit(background())
