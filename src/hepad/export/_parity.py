"""Float against C simulation on the user's events: the numbers a trigger engineer signs off on.

:func:`parity_report` compares the detector's float scores with the bit-accurate C simulation
of its hls4ml project on background (and signal) events: score correlation, largest deviation,
the accept fraction the *float* cut gives on the FPGA scores (what goes wrong when a float
threshold is loaded into firmware), and the TPR at the working point per signal, each model
cut on its own background scores. :meth:`ParityReport.check` turns a tolerance into a one-line
error that names the saturating layer and what to change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import HepadError

__all__ = ["ParityReport", "HLSParityError", "parity_report"]


class HLSParityError(HepadError):
    """The C simulation departs from the float model by more than the tolerance."""


@dataclass
class LayerRange:
    name: str
    kind: str
    type: str
    limit: float  # largest magnitude the type holds
    max_abs: float  # float network, on these events
    saturated_fraction: float  # of the layer's values beyond ``limit``
    frac_bits: int


@dataclass
class ParityReport:
    """Float (PyTorch) against C simulation; see the module docstring."""

    n_background: int
    correlation: float
    max_abs_deviation: float
    max_rel_deviation: float  # relative to the background score spread (std)
    target_fraction: float
    threshold_float: float
    threshold_quantised: float
    accept_fraction_float_cut: float  # C-simulated background above the float cut
    tpr: dict[str, dict[str, float]] = field(default_factory=dict)  # signal -> float, fpga, rel_change, n
    layers: list[LayerRange] = field(default_factory=list)
    signal_correlation: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def accept_change(self) -> float:
        """Relative change of the accept fraction when the float cut is applied to FPGA scores."""
        return self.accept_fraction_float_cut / self.target_fraction - 1.0

    def worst_layer(self) -> LayerRange | None:
        """The first layer whose values saturate its type, else the one with the fewest fractional bits."""
        sat = [layer for layer in self.layers if layer.saturated_fraction > 0]
        if sat:
            return sat[0]
        return min(self.layers, key=lambda layer: layer.frac_bits) if self.layers else None

    def check(self, *, min_correlation: float = 0.999, max_tpr_change: float | None = None,
              precision: str = "", total_bits: int | None = None) -> None:
        """Raise :class:`HLSParityError` (one line) when the parity is outside the tolerance."""
        problems = []
        if not self.correlation >= min_correlation:
            problems.append(f"score correlation {self.correlation:.5f} < {min_correlation:g} on "
                            f"{self.n_background:,} background events")
        if max_tpr_change is not None:
            for name, t in self.tpr.items():
                if abs(t["rel_change"]) > max_tpr_change:
                    problems.append(f"TPR of {name} {t['fpga']:.4g} vs float {t['float']:.4g} "
                                    f"({100 * t['rel_change']:+.1f}% > {100 * max_tpr_change:g}%)")
        if not problems:
            return
        worst = self.worst_layer()
        if worst is not None and worst.saturated_fraction > 0:
            where = (f"layer {worst.name} ({worst.kind}) saturates: {100 * worst.saturated_fraction:.2g}% of its "
                     f"values exceed +-{worst.limit:g} of {worst.type} (max {worst.max_abs:.3g}); give it "
                     f"{max(1, math.ceil(math.log2(worst.max_abs / worst.limit)) + 1)} more integer bits: "
                     "export with --precision auto --data BKG.h5 (types sized on the events; precision='auto', "
                     "data= in Python) or --headroom-bits 2")
        elif worst is not None:
            where = (f"no layer saturates, so rounding dominates, coarsest at layer {worst.name} ({worst.kind}, "
                     f"{worst.type}, {worst.frac_bits} fractional bits): raise --total-bits (total_bits= in Python)"
                     + (f" above {total_bits}" if total_bits else ""))
        else:
            where = "raise --total-bits (total_bits= in Python)"
        raise HLSParityError(f"hls export{' at ' + precision if precision else ''}: " + "; ".join(problems)
                             + f"; {where}.")


def _tpr(bkg: np.ndarray, sig: np.ndarray, fraction: float) -> float:
    from ..metrics import threshold_at_fpr

    return float((sig > threshold_at_fpr(bkg, fraction)[0]).mean())


def _frac_bits(type_str: str) -> int:
    import re

    m = re.match(r"ap_u?fixed<\s*(\d+)\s*,\s*(-?\d+)", type_str.replace(" ", ""))
    return int(m.group(1)) - int(m.group(2)) if m else 0


def parity_report(model: Any, detector: Any, background: Any, signals: Mapping[str, Any] | None = None, *,
                  fraction: float | None = None, tpr_fraction: float | None = None) -> ParityReport:
    """Compare ``detector`` (float) with ``model`` (:class:`HLSModel`, C simulation) on events.

    ``fraction`` is the target accept fraction (default: the model's); ``tpr_fraction`` the
    background efficiency of the TPR working point (default: ``fraction``).
    """
    from ..detectors.base import as_features
    from ..metrics import threshold_at_fpr
    from ._precision import layer_names, layer_outputs, type_range

    Xb = as_features(background, "background")
    fb = detector.score_samples(Xb).astype(np.float64)
    hb = model.predict(Xb).astype(np.float64)
    f = float(fraction if fraction is not None else (model.target_fraction or 1e-2))
    ft = float(tpr_fraction if tpr_fraction is not None else f)
    cut_f = threshold_at_fpr(fb, f)[0]
    cut_h = threshold_at_fpr(hb, f)[0]
    corr = float(np.corrcoef(fb, hb)[0, 1]) if np.std(fb) > 0 and np.std(hb) > 0 else float("nan")
    dev = np.abs(hb - fb)
    rep = ParityReport(
        n_background=len(Xb), correlation=corr, max_abs_deviation=float(dev.max()),
        max_rel_deviation=float(dev.max() / max(np.std(fb), 1e-30)), target_fraction=f,
        threshold_float=float(cut_f), threshold_quantised=float(cut_h),
        accept_fraction_float_cut=float((hb > cut_f).mean()),
    )
    for name, x in (signals or {}).items():
        Xs = as_features(x, name)
        fs = detector.score_samples(Xs).astype(np.float64)
        hs = model.predict(Xs).astype(np.float64)
        t_f, t_h = _tpr(fb, fs, ft), _tpr(hb, hs, ft)
        rep.tpr[name] = {"float": t_f, "fpga": t_h, "rel_change": (t_h - t_f) / t_f if t_f > 0 else 0.0,
                         "n": int(len(Xs)), "fpr": ft}
        rep.signal_correlation[name] = float(np.corrcoef(fs, hs)[0, 1]) if np.std(fs) > 0 and np.std(hs) > 0 else float("nan")
    net = model.network
    fin = model.fpga_inputs(Xb)
    outs = [fin.astype(np.float64)] + layer_outputs(net, fin)
    names = ["input"] + layer_names(net)
    kinds = ["input"] + [type(c).__name__ for c in net.children()]
    for name, kind, out in zip(names, kinds, outs):
        t = model.types.get(name, {}).get("result") if model.types else None
        if not t:
            continue
        limit = type_range(t)
        a = np.abs(out)
        rep.layers.append(LayerRange(name=name, kind=kind, type=t, limit=limit, max_abs=float(a.max()),
                                     saturated_fraction=float((a >= limit).mean()), frac_bits=_frac_bits(t)))
    return rep
