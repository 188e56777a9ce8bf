"""What the diagnostic plots need beyond the scores: latent views, per-object errors, inputs, training."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..events import EventSet
from .samples import BACKGROUND_NAME

log = logging.getLogger(__name__)

__all__ = ["N_EMBED", "N_CONTRIB", "embedding", "slot_errors", "summary_features", "training_history",
           "detector_params", "convergence"]

#: Events per process used for the 2-D latent views (PCA, t-SNE) and the slot contributions.
N_EMBED = 2000
N_CONTRIB = 20000


def _model_inputs(detector: Any, events: EventSet) -> np.ndarray:
    """What the detector sees: its latent code, else its preprocessed inputs, else standardised features."""
    if hasattr(detector, "encode"):
        try:
            return np.asarray(detector.encode(events), dtype=np.float32)
        except NotImplementedError:
            pass
    X = events.features
    pre = getattr(detector, "preprocessor_", None)
    if pre is not None and hasattr(pre, "transform"):
        return np.asarray(pre.transform(X), dtype=np.float32)
    sd = X.std(axis=0)
    return ((X - X.mean(axis=0)) / np.where(sd > 0, sd, 1)).astype(np.float32)


def subsample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``k`` of ``n`` events drawn without replacement (all when ``n <= k``)."""
    return np.sort(rng.choice(n, k, replace=False)) if n > k else np.arange(n)


def embedding(
    detector: Any, bkg: EventSet, signals: Mapping[str, EventSet], n_total: int, methods: Sequence[str], seed: int
) -> dict[str, Any]:
    """2-D views (``"pca"``, ``"tsne"``) of the detector's latent space (or preprocessed inputs)."""
    rng = np.random.default_rng(seed)
    per_sig = max(1, n_total // (2 * max(1, len(signals))))
    parts, labels = [], []
    idx = subsample(len(bkg), n_total // 2, rng)
    parts.append(_model_inputs(detector, bkg[idx]))
    labels += [BACKGROUND_NAME] * len(idx)
    for name, ev in signals.items():
        idx = subsample(len(ev), per_sig, rng)
        parts.append(_model_inputs(detector, ev[idx]))
        labels += [name] * len(idx)
    Z = np.concatenate(parts).astype(np.float64)
    space = "latent space" if hasattr(detector, "encode") else "preprocessed inputs"
    out: dict[str, Any] = {"labels": labels, "space": space}
    Zc = Z - Z.mean(axis=0)
    if "pca" in methods:
        # Principal axes from the SVD: no sklearn needed, deterministic up to sign.
        _, _, vt = np.linalg.svd(Zc, full_matrices=False)
        out["pca"] = Zc @ vt[:2].T if vt.shape[0] >= 2 else np.c_[Zc[:, :1], np.zeros(len(Zc))]
    if "tsne" in methods and len(Z) > 10:
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits

        perplexity = float(min(30, max(5, (len(Z) - 1) // 4)))
        # One thread: t-SNE's OpenMP workers spin-wait and run many times slower on a busy machine.
        with threadpool_limits(1):
            out["tsne"] = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed,
                               max_iter=500).fit_transform(Zc.astype(np.float32))
    return out


def _error_names(detector: Any, n_cols: int) -> list[str] | None:
    names = list(getattr(detector, "feature_names_in_", []) or [])
    pre = getattr(detector, "preprocessor_", None)
    keep = getattr(pre, "keep_columns_", None)
    if keep is not None and len(keep) == n_cols and names:
        return [names[int(i)] for i in keep]
    if len(names) == n_cols:
        return names
    return None


def slot_errors(
    detector: Any, bkg: EventSet, signals: Mapping[str, EventSet], n_max: int, seed: int
) -> dict[str, Any] | None:
    """Mean reconstruction error per object slot and process (None for non-reconstruction detectors)."""
    if not hasattr(detector, "feature_errors"):
        return None
    from ..plotting import slot_contributions

    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    slots: list[str] = []
    for name, ev in {BACKGROUND_NAME: bkg, **signals}.items():
        fe = np.asarray(detector.feature_errors(ev[subsample(len(ev), n_max, rng)]))
        names = _error_names(detector, fe.shape[1])
        if names is None:
            log.info("feature_errors has %d columns that match no input names; no slot plot.", fe.shape[1])
            return None
        slots, contrib = slot_contributions(fe, names)
        out[name] = contrib.tolist()
    return {"slots": slots, "mean_error": out}


def summary_features(bkg: EventSet, sigs: Mapping[str, EventSet], seed: int, n_max: int = 200_000
                     ) -> dict[str, dict[str, np.ndarray]]:
    """Per-process physics summaries (MET, leading pTs, HT, multiplicities) for the input plots."""
    from ..plotting import physics_features

    rng = np.random.default_rng(seed)
    out = {}
    for n, ev in {BACKGROUND_NAME: bkg, **sigs}.items():
        idx = subsample(len(ev), n_max, rng)
        out[n] = {k: np.asarray(v) for k, v in physics_features(ev.data[idx], ev.feature_names).items()}
    return out


def training_history(detector: Any) -> dict[str, Any] | None:
    """The detector's ``history_`` as plain lists (None when it has none)."""
    h = getattr(detector, "history_", None)
    if not h:
        return None
    try:
        return {str(k): list(v) for k, v in dict(h).items()}
    except (TypeError, ValueError):
        return None


def convergence(history: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Best validation epoch and whether training had stopped improving before its last epoch.

    ``converged`` is False when the best validation loss (training loss without validation) is
    at the last epoch: the loss was still falling, and more epochs would change the model.
    """
    if not history:
        return None
    loss = [v for v in (history.get("val_loss") or []) if v is not None] or list(
        history.get("train_loss") or history.get("loss") or [])
    if len(loss) < 2:
        return None
    best = int(np.nanargmin(np.asarray(loss, dtype=float)))
    return {"epochs": len(loss), "best_epoch": best + 1, "converged": best < len(loss) - 1,
            "monitored": "val_loss" if history.get("val_loss") else "train_loss"}


def detector_params(detector: Any) -> dict[str, Any]:
    """The detector's parameters as plain JSON values (its repr for a foreign estimator)."""
    try:
        params = detector.get_params()
    except Exception:  # a foreign estimator without get_params: its repr will do
        return {"repr": repr(detector)}
    return json.loads(json.dumps(params, default=str))
