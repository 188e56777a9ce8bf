"""Preprocessing fitted on background only and saved with the model (as JSON, no pickle).

The transform is: optional log(1 + pT) on pT columns -> optional dropping of phi columns ->
scaling (standard by default). Every step but the log is affine, so exporters can fold it into
the first layer of a network. For the ADC2021 object layout, :meth:`Preprocessor.padding_mask`
says which transformed features belong to a filled (non-padded) slot, so losses can ignore the
zero padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from .errors import ConfigError, InputError, NotFittedError

__all__ = ["Preprocessor"]

_SCALINGS = ("standard", "minmax", "none")
_PHI = ("keep", "drop")


def _is_pt(name: str) -> bool:
    n = name.lower()
    return n.endswith("_pt") or n == "pt" or n.endswith("_et") or n in ("met",)


def _is_phi(name: str) -> bool:
    return name.lower().endswith("phi")


class Preprocessor:
    """Feature transform fitted on background events.

    Parameters
    ----------
    scaling : {"standard", "minmax", "none"}
        Standard scaling (zero mean, unit variance, as the seeds use) is the default.
    log_pt : bool
        Apply log(1 + pT) to pT columns before scaling (tames the pT tails).
    phi : {"keep", "drop"}
        Keep the azimuthal angles, or drop them (physics is symmetric in phi, so they carry
        little information for most signals).
    mask_padding : bool
        Whether detectors that support it should exclude zero-padded object slots from their
        reconstruction loss (object layout only).
    """

    def __init__(
        self,
        *,
        scaling: Literal["standard", "minmax", "none"] = "standard",
        log_pt: bool = False,
        phi: Literal["keep", "drop"] = "keep",
        mask_padding: bool = False,
    ) -> None:
        self.scaling = scaling
        self.log_pt = log_pt
        self.phi = phi
        self.mask_padding = mask_padding

    def get_params(self) -> dict[str, Any]:
        return {"scaling": self.scaling, "log_pt": self.log_pt, "phi": self.phi, "mask_padding": self.mask_padding}

    def _validate(self) -> None:
        if self.scaling not in _SCALINGS:
            raise ConfigError(f"preprocessing.scaling must be one of {', '.join(_SCALINGS)}, got {self.scaling!r}.")
        if self.phi not in _PHI:
            raise ConfigError(f"preprocessing.phi must be one of {', '.join(_PHI)}, got {self.phi!r}.")

    def fit(self, X: np.ndarray, feature_names: Sequence[str] | None = None) -> Preprocessor:
        """Learn the column roles and scaling constants from background ``X`` (N, F)."""
        self._validate()
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[0] == 0:
            raise InputError(f"Preprocessor.fit needs a non-empty (N, F) array, got shape {X.shape}.")
        n_features = X.shape[1]
        names = list(feature_names) if feature_names is not None else [f"f{i}" for i in range(n_features)]
        if len(names) != n_features:
            raise InputError(f"{len(names)} feature names for {n_features} columns.")
        self.feature_names_in_ = names
        self.n_features_in_ = n_features
        self.pt_columns_ = np.array([i for i, n in enumerate(names) if _is_pt(n)], dtype=np.int64)
        keep = [i for i, n in enumerate(names) if not (self.phi == "drop" and _is_phi(n))]
        self.keep_columns_ = np.array(keep, dtype=np.int64)
        # Which raw pT column says whether the slot of each kept feature is filled (-1: always).
        slot_pt = []
        name_index = {n: i for i, n in enumerate(names)}
        for i in keep:
            stem = names[i].rsplit("_", 1)[0] if "_" in names[i] else None
            j = name_index.get(f"{stem}_pt", -1) if stem else -1
            if stem == "MET":
                j = -1  # MET is always present
            slot_pt.append(j)
        self.slot_pt_column_ = np.array(slot_pt, dtype=np.int64)
        Z = self._pre_scale(X)
        if self.scaling == "standard":
            mean = Z.mean(axis=0, dtype=np.float64)
            scale = Z.std(axis=0, dtype=np.float64)
        elif self.scaling == "minmax":
            lo, hi = Z.min(axis=0), Z.max(axis=0)
            mean, scale = lo.astype(np.float64), (hi - lo).astype(np.float64)
        else:
            mean, scale = np.zeros(Z.shape[1]), np.ones(Z.shape[1])
        scale = np.where(scale > 1e-12, scale, 1.0)  # constant columns (e.g. MET eta) pass through
        self.offset_ = mean.astype(np.float32)
        self.scale_ = scale.astype(np.float32)
        return self

    def _check(self) -> None:
        if not hasattr(self, "scale_"):
            raise NotFittedError("Preprocessor is not fitted: call fit(X) on background first.")

    def _pre_scale(self, X: np.ndarray) -> np.ndarray:
        Z = np.array(X, dtype=np.float32, copy=True)
        if self.log_pt and self.pt_columns_.size:
            Z[:, self.pt_columns_] = np.log1p(np.maximum(Z[:, self.pt_columns_], 0.0))
        return Z[:, self.keep_columns_]

    @property
    def n_features_out_(self) -> int:
        self._check()
        return int(self.keep_columns_.size)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Apply the fitted transform; returns float32 (N, F_out)."""
        self._check()
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise InputError(
                f"Preprocessor expects (N, {self.n_features_in_}) inputs, got shape {X.shape}."
            )
        return ((self._pre_scale(X) - self.offset_) / self.scale_).astype(np.float32, copy=False)

    def fit_transform(self, X: np.ndarray, feature_names: Sequence[str] | None = None) -> np.ndarray:
        return self.fit(X, feature_names).transform(X)

    def padding_mask(self, X: np.ndarray) -> np.ndarray:
        """(N, F_out) float32: 1 where the feature belongs to a filled slot (or has no slot), else 0.

        Returns all ones unless ``mask_padding`` is set.
        """
        self._check()
        X = np.asarray(X, dtype=np.float32)
        mask = np.ones((X.shape[0], self.keep_columns_.size), dtype=np.float32)
        if not self.mask_padding:
            return mask
        has_slot = self.slot_pt_column_ >= 0
        if has_slot.any():
            mask[:, has_slot] = (X[:, self.slot_pt_column_[has_slot]] > 0).astype(np.float32)
        return mask

    # ------------------------------------------------------------------ JSON state
    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the fitted transform, JSON-serialisable."""
        self._check()
        return {
            "params": self.get_params(),
            "feature_names_in": list(self.feature_names_in_),
            "pt_columns": self.pt_columns_.tolist(),
            "keep_columns": self.keep_columns_.tolist(),
            "slot_pt_column": self.slot_pt_column_.tolist(),
            "offset": self.offset_.tolist(),
            "scale": self.scale_.tolist(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Preprocessor:
        try:
            pre = cls(**state["params"])
            pre._validate()
            pre.feature_names_in_ = list(state["feature_names_in"])
            pre.n_features_in_ = len(pre.feature_names_in_)
            pre.pt_columns_ = np.asarray(state["pt_columns"], dtype=np.int64)
            pre.keep_columns_ = np.asarray(state["keep_columns"], dtype=np.int64)
            pre.slot_pt_column_ = np.asarray(state["slot_pt_column"], dtype=np.int64)
            pre.offset_ = np.asarray(state["offset"], dtype=np.float32)
            pre.scale_ = np.asarray(state["scale"], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"Invalid preprocessing state: {exc}.") from None
        if pre.offset_.shape != pre.keep_columns_.shape or pre.scale_.shape != pre.keep_columns_.shape:
            raise ConfigError("Invalid preprocessing state: constants do not match the kept columns.")
        return pre

    def __repr__(self) -> str:
        return f"Preprocessor(scaling={self.scaling!r}, log_pt={self.log_pt}, phi={self.phi!r}, mask_padding={self.mask_padding})"
