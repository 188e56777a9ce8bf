"""One validated event container, :class:`EventSet`, shared by every reader, writer and model."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _layout as L
from .errors import InputError, InvalidValuesError

log = logging.getLogger(__name__)

__all__ = ["EventSet", "fill_objects"]


@dataclass(eq=False)
class EventSet:
    """Events as one float32 array plus what is known about them.

    Parameters
    ----------
    data : ndarray
        Either the ADC2021 object layout, shape ``(N, 19, 4)`` with columns (pT, eta, phi, type),
        or a flat feature matrix of shape ``(N, F)``.
    feature_names : sequence of str, optional
        Names of the F columns of a flat array. For the object layout the names of the 57 flat
        inputs are implied and this is ignored.
    labels : ndarray of int, optional
        Per-event truth label (0 = background, 1 = signal), when known.
    weights : ndarray of float, optional
        Per-event weights (default: none, i.e. all 1).
    process : ndarray of str, optional
        Per-event process name (e.g. the component of an SM mix).
    provenance : dict
        Where the events came from: ``source``, ``format``, ``process``, generator settings...
        Values must be JSON-serialisable.
    """

    data: np.ndarray
    feature_names: tuple[str, ...] = ()
    labels: np.ndarray | None = None
    weights: np.ndarray | None = None
    process: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        if data.dtype != np.float32:
            data = data.astype(np.float32)
        source = self.provenance.get("source", "<memory>")
        if data.ndim == 3:
            if data.shape[1:] != (L.N_SLOTS, L.N_COLUMNS):
                raise InputError(
                    f"{source}: object array has shape {data.shape}; the ADC2021 layout is "
                    f"(N, {L.N_SLOTS}, {L.N_COLUMNS}) = MET, 4 e, 4 mu, 10 jets x (pT, eta, phi, type)."
                )
            self.feature_names = L.FLAT57_NAMES
        elif data.ndim == 2:
            if data.shape[1] == 0:
                raise InputError(f"{source}: no feature columns.")
            names = tuple(self.feature_names) or tuple(f"f{i}" for i in range(data.shape[1]))
            if len(names) != data.shape[1]:
                raise InputError(
                    f"{source}: {len(names)} feature names for {data.shape[1]} columns."
                )
            self.feature_names = names
        else:
            raise InputError(
                f"{source}: array has shape {data.shape}; expected (N, 19, 4) objects or (N, F) features."
            )
        self.data = np.ascontiguousarray(data)
        n = data.shape[0]
        for name in ("labels", "weights", "process"):
            arr = getattr(self, name)
            if arr is None:
                continue
            arr = np.asarray(arr)
            if arr.shape != (n,):
                raise InputError(f"{source}: {name} has shape {arr.shape}, expected ({n},).")
            setattr(self, name, arr)
        if self.labels is not None:
            self.labels = self.labels.astype(np.int8)
        if self.weights is not None:
            self.weights = self.weights.astype(np.float32)
        if self.process is not None:
            self.process = self.process.astype(str)
        self.provenance = dict(self.provenance)

    # ------------------------------------------------------------------ views
    @property
    def is_objects(self) -> bool:
        """True for the ADC2021 (N, 19, 4) object layout."""
        return self.data.ndim == 3

    @property
    def layout(self) -> str:
        return "adc2021" if self.is_objects else "flat"

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_events(self) -> int:
        return len(self)

    @property
    def source(self) -> str:
        return str(self.provenance.get("source", "<memory>"))

    @property
    def flat57(self) -> np.ndarray:
        """(N, 57) float32: (pT, eta, phi) of every slot, slot-major. Object layout only."""
        if not self.is_objects:
            raise InputError(
                f"{self.source}: flat57 needs the ADC2021 object layout; these are flat features "
                f"({self.data.shape[1]} columns). Use .features instead."
            )
        return np.ascontiguousarray(self.data[:, :, :3].reshape(len(self), L.N_FLAT))

    @property
    def features(self) -> np.ndarray:
        """The model inputs: ``flat57`` for objects, the array itself for flat features."""
        return self.flat57 if self.is_objects else self.data

    @property
    def multiplicities(self) -> dict[str, np.ndarray]:
        """Per-event number of electrons, muons and jets (filled slots, pT > 0)."""
        if not self.is_objects:
            raise InputError(f"{self.source}: object multiplicities need the ADC2021 object layout.")
        pt = self.data[:, :, 0]
        return {
            "electrons": (pt[:, L.ELECTRON_SLOTS] > 0).sum(axis=1),
            "muons": (pt[:, L.MUON_SLOTS] > 0).sum(axis=1),
            "jets": (pt[:, L.JET_SLOTS] > 0).sum(axis=1),
        }

    # ------------------------------------------------------------------ operations
    def __getitem__(self, index: Any) -> EventSet:
        """Select events (slice, integer array or boolean mask); provenance is kept."""
        if isinstance(index, (int, np.integer)):
            index = slice(int(index), int(index) + 1 if index != -1 else None)
        return EventSet(
            data=self.data[index],
            feature_names=self.feature_names,
            labels=None if self.labels is None else self.labels[index],
            weights=None if self.weights is None else self.weights[index],
            process=None if self.process is None else self.process[index],
            provenance=self.provenance,
        )

    def with_labels(self, label: int) -> EventSet:
        """A copy with every event labelled ``label`` (0 background, 1 signal)."""
        out = self[:]
        out.labels = np.full(len(self), label, dtype=np.int8)
        return out

    def invalid_mask(self) -> np.ndarray:
        """Boolean mask of events holding a NaN or infinite value."""
        flat = self.data.reshape(len(self), -1)
        return ~np.isfinite(flat).all(axis=1)

    def check_finite(self, drop_invalid: bool = False) -> EventSet:
        """Raise on NaN/inf values, or with ``drop_invalid`` drop those events and log how many."""
        bad = self.invalid_mask()
        n_bad = int(bad.sum())
        if n_bad == 0:
            return self
        flat = self.data.reshape(len(self), -1)
        n_nan = int(np.isnan(flat).sum())
        n_inf = int(np.isinf(flat).sum())
        if not drop_invalid:
            raise InvalidValuesError(
                f"{self.source}: {n_bad} of {len(self)} events hold invalid values "
                f"({n_nan} NaN, {n_inf} inf). Fix the input or pass --drop-invalid to drop them."
            )
        log.warning("%s: dropped %d of %d events with NaN/inf values", self.source, n_bad, len(self))
        out = self[~bad]
        out.provenance = {**self.provenance, "dropped_invalid": n_bad}
        return out

    @staticmethod
    def concat(sets: Sequence[EventSet], provenance: Mapping[str, Any] | None = None) -> EventSet:
        """Concatenate event sets of the same layout and features, in order."""
        if not sets:
            raise InputError("No events to concatenate.")
        first = sets[0]
        for s in sets[1:]:
            if s.data.shape[1:] != first.data.shape[1:] or s.feature_names != first.feature_names:
                raise InputError(
                    f"Cannot combine {s.source} with {first.source}: different layouts or features."
                )

        def _cat(name: str) -> np.ndarray | None:
            parts = [getattr(s, name) for s in sets]
            if all(p is None for p in parts):
                return None
            if any(p is None for p in parts):
                fill = {"labels": -1, "weights": 1.0, "process": ""}[name]
                parts = [
                    np.full(len(s), fill) if p is None else p for s, p in zip(sets, parts)
                ]
            return np.concatenate(parts)

        return EventSet(
            data=np.concatenate([s.data for s in sets]),
            feature_names=first.feature_names,
            labels=_cat("labels"),
            weights=_cat("weights"),
            process=_cat("process"),
            provenance=dict(provenance) if provenance is not None else dict(first.provenance),
        )

    def __repr__(self) -> str:
        shape = "x".join(str(d) for d in self.data.shape)
        return f"EventSet({self.layout}, {shape}, source={self.source!r})"


def fill_objects(
    n_events: int,
    met: tuple[np.ndarray, np.ndarray] | None = None,
    electrons: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    muons: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    jets: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Build the (N, 19, 4) ADC2021 array from padded per-type (pt, eta, phi) arrays.

    Each object argument holds three (N, k) arrays with k >= the number of slots of that type,
    already pT-ordered (descending) and zero-padded; extra objects beyond the slots are dropped.
    MET is (pt, phi), each of shape (N,). The type column is set where pT > 0.
    """
    out = np.zeros((n_events, L.N_SLOTS, L.N_COLUMNS), dtype=np.float32)
    if met is not None:
        out[:, 0, 0], out[:, 0, 2] = met
        out[:, 0, 3] = L.TYPE_MET
    for objs, slots, code in (
        (electrons, L.ELECTRON_SLOTS, L.TYPE_ELECTRON),
        (muons, L.MUON_SLOTS, L.TYPE_MUON),
        (jets, L.JET_SLOTS, L.TYPE_JET),
    ):
        if objs is None:
            continue
        width = slots.stop - slots.start
        for col, arr in enumerate(objs):
            arr = np.asarray(arr)[:, :width]
            out[:, slots.start : slots.start + arr.shape[1], col] = arr
        filled = out[:, slots, 0] > 0
        out[:, slots, 3] = np.where(filled, code, 0)
        # Empty slots are all-zero, whatever the source padded with (NaN padding included,
        # which a multiplication by 0 would keep).
        out[:, slots, :3] = np.where(filled[..., None], out[:, slots, :3], 0.0)
    return out
