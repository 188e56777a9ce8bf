"""One streaming pass over a file: counts, object multiplicities, per-feature statistics.

Backs ``hepad inspect``. Memory is bounded by one chunk plus a uniform random sample of at most
``sample_size`` events, from which the quantiles are computed (exact when the file is smaller
than the sample). Count, mean, min and max are exact.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import _layout as L
from ._dispatch import _check_exists, count_events, detect_format, iter_events

QUANTILES = (0.01, 0.25, 0.5, 0.75, 0.99)
_MULT_MAX = {"electrons": L.N_ELECTRONS, "muons": L.N_MUONS, "jets": L.N_JETS}


def summarize(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    key: str | None = None,
    columns: Sequence[str] | None = None,
    drop_invalid: bool = False,
    chunk_size: int = 100_000,
    sample_size: int = 100_000,
    seed: int = 0,
    on_progress: Callable[[int, int | None], None] | None = None,
    mapping: Any = None,
) -> dict[str, Any]:
    """Describe a file in one streaming pass.

    Parameters
    ----------
    path, format, key, columns, drop_invalid, chunk_size
        As for :func:`hepad.iter_events`.
    sample_size : int
        Events kept (uniformly at random, seeded) for the quantiles.
    seed : int
        Seed of that sample, so repeated runs print the same numbers.
    on_progress : callable, optional
        Called as ``on_progress(events_done, events_total_or_None)`` after each chunk.
    mapping : path or dict, optional
        ROOT mapping file (see :mod:`hepad.io.mapping`).

    Returns
    -------
    dict
        JSON-serialisable: ``file``, ``format``, ``key``, ``layout``, ``n_events``,
        ``dropped_invalid``, ``dropped_columns``, ``multiplicities`` (object layout: mean and
        distribution of electrons/muons/jets per event) and ``features`` (per feature:
        ``filled`` fraction, ``mean``, ``min``, quantiles ``q01`` ... ``q99``, ``max``; for the
        object layout over events where the slot is filled), ``quantiles_from`` (events used);
        for ROOT object trees ``collections`` (per object kind: branches, units and why, or
        why it is missing) and ``missing_collections``.
    """
    p = _check_exists(path)
    fmt = detect_format(p, format)
    extra = {} if mapping is None else {"mapping": mapping}
    total = None if fmt == "csv" else count_events(p, format=fmt, key=key, **extra)
    rng = np.random.default_rng(seed)
    n_events = 0
    dropped_invalid = 0
    names: tuple[str, ...] = ()
    objects = False
    stats: dict[str, np.ndarray] = {}
    mult: dict[str, np.ndarray] = {}
    sample = sample_keys = None
    first = None
    for chunk in iter_events(p, chunk_size=chunk_size, format=fmt, key=key, columns=columns,
                             drop_invalid=drop_invalid, **extra):
        if first is None:
            first = chunk
            names, objects = chunk.feature_names, chunk.is_objects
            f = len(names)
            stats = {"n": np.zeros(f), "sum": np.zeros(f), "min": np.full(f, np.inf),
                     "max": np.full(f, -np.inf)}
            mult = {k: np.zeros(v + 1, dtype=np.int64) for k, v in _MULT_MAX.items()}
        dropped_invalid += int(chunk.provenance.get("dropped_invalid", 0))
        n_events += len(chunk)
        if len(chunk):
            x = chunk.features.astype(np.float64)
            if objects:
                filled = np.repeat(chunk.data[:, :, 0] > 0, 3, axis=1)
                filled[:, :3] = True  # MET is always present, even when 0
                for k, v in chunk.multiplicities.items():
                    mult[k] += np.bincount(v, minlength=len(mult[k]))[: len(mult[k])]
                x = np.where(filled, x, np.nan)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                ok = ~np.isnan(x)
                stats["n"] += ok.sum(axis=0)
                stats["sum"] += np.nansum(x, axis=0)
                stats["min"] = np.fmin(stats["min"], np.nanmin(x, axis=0))
                stats["max"] = np.fmax(stats["max"], np.nanmax(x, axis=0))
            # Uniform sample: keep the events with the smallest random keys seen so far.
            keys = rng.random(len(x))
            if sample is None:
                sample, sample_keys = x, keys
            else:
                sample = np.concatenate([sample, x])
                sample_keys = np.concatenate([sample_keys, keys])
            if len(sample) > sample_size:
                keep = np.argpartition(sample_keys, sample_size)[:sample_size]
                sample, sample_keys = sample[keep], sample_keys[keep]
        if on_progress is not None:
            on_progress(n_events + dropped_invalid, total)
    assert first is not None  # iter_events yields at least one chunk or raises
    prov = first.provenance
    out: dict[str, Any] = {
        "file": str(p),
        "format": fmt,
        "key": prov.get("key"),
        "layout": first.layout,
        "tree_kind": prov.get("tree_kind"),
        "n_events": n_events,
        "n_features": len(names),
        "dropped_invalid": dropped_invalid,
        "dropped_columns": list(prov.get("dropped_columns", [])),
        "quantiles_from": 0 if sample is None else int(len(sample)),
    }
    if prov.get("collections") is not None:
        out["collections"] = prov["collections"]
        out["missing_collections"] = list(prov.get("missing_collections", []))
    for name in ("particles_names", "particles_classes"):
        if name in prov:
            out[name] = prov[name]
    if objects:
        out["multiplicities"] = {
            k: {
                "mean": float((np.arange(len(v)) * v).sum() / max(1, v.sum())),
                "distribution": {str(i): int(c) for i, c in enumerate(v)},
            }
            for k, v in mult.items()
        }
    feats = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        qs = (np.nanquantile(sample, QUANTILES, axis=0) if sample is not None and len(sample)
              else np.full((len(QUANTILES), len(names)), np.nan))
    for j, name in enumerate(names):
        n = stats["n"][j] if stats else 0
        row: dict[str, Any] = {"name": name, "filled": float(n / n_events) if n_events else 0.0}
        if n:
            row.update(mean=float(stats["sum"][j] / n), min=float(stats["min"][j]))
            row.update({f"q{int(round(q * 100)):02d}": _num(qs[i, j]) for i, q in enumerate(QUANTILES)})
            row["max"] = float(stats["max"][j])
        feats.append(row)
    out["features"] = feats
    return out


def _num(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def hdf5_keys_to_inspect(path: str | os.PathLike[str], format: str | None) -> list[str | None]:
    """The datasets ``hepad inspect`` should describe when no key is given.

    The default dataset when there is one; else every 2-D/3-D dataset (e.g. X_train, X_val,
    X_test of a split file), so the user sees what is there instead of an error.
    """
    p = Path(path)
    if detect_format(p, format) != "hdf5":
        return [None]
    from . import hdf5
    from ._dispatch import _guarded

    _check_exists(p)
    if _guarded(p, "hdf5", lambda: hdf5.default_key(p)) is not None:
        return [None]
    keys = _guarded(p, "hdf5", lambda: hdf5.list_keys(p))
    cands = [k for k, s in keys.items() if len(s) in (2, 3) and k not in ("labels", "weights", "process")]
    return cands or [None]
