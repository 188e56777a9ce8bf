"""Fixed-point types from data: profile every layer of the FPGA network, then size its types.

Why per layer, from data
------------------------
One ``ap_fixed<16,6>`` for everything overflows wherever a layer's values exceed 32 and wastes
bits wherever they stay below 1. The ranges depend on the user's events, so they are measured
there: the float network runs on the background (and on signal events, when given) and every
layer's output (the input and the scaling step included) is recorded. This is what hls4ml's
numerical profiling (``hls4ml.model.profiling``) plots as per-layer boxplots of ``|value|``;
here the same numbers are reduced to the two that size a type:

- **integer bits** (sign included) cover ``max |value|`` on the background and the 99.9th
  percentile of ``|value|`` on each signal, times ``2**headroom_bits``; values beyond saturate
  (``AP_SAT``), never wrap;
- **fractional bits** are what the total budget ``total_bits`` leaves.

The raw input type is the exception: it resolves the smallest feature spread to 1/64 of it and
covers 8x the largest background value (raw pT is heavy-tailed), so its width follows the data:
when the spreads differ by orders of magnitude it grows wide (a warning names the width; then
feed scaled inputs, ``fold_preprocessing=False``).

Coefficients (weights, biases, the scaling step's factors) take their integer bits from their
own largest magnitude. The scaling step's factors ``1/scale`` span orders of magnitude when the
inputs' spreads do; they get enough fractional bits to hold the *smallest* one to
``total_bits - 2`` significant bits, which is what keeps a feature with a tiny spread exact.
The raw input type resolves the smallest spread of a feature's filled (nonzero) values to 1/64 of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["LayerProfile", "profile_network", "choose_types", "fixed"]

#: No type grows beyond this many bits (hls4ml's ap_fixed allows more, but a 40-bit multiplier is
#: a design error, not a precision choice).
MAX_BITS = 40


def fixed(width: int, integer: int, *, saturate: bool = True) -> str:
    """An ``ap_fixed`` type string (round to nearest + saturation unless ``saturate=False``)."""
    width = int(min(max(width, 2), MAX_BITS))
    integer = int(min(integer, width))
    return f"ap_fixed<{width},{integer},AP_RND_CONV,AP_SAT>" if saturate else f"ap_fixed<{width},{integer}>"


def int_bits(amax: float, headroom_bits: int = 0) -> int:
    """Integer bits (sign included) of a signed type holding ``|x| <= amax * 2**headroom_bits``."""
    if not math.isfinite(amax) or amax <= 0:
        return 1 + headroom_bits
    # ap_fixed<W,I> holds [-2**(I-1), 2**(I-1)): I - 1 >= log2(amax), strictly above amax.
    return max(1, int(math.floor(math.log2(amax))) + 2) + int(headroom_bits)


@dataclass
class LayerProfile:
    """The measured range of one layer's output (``name`` as hls4ml names it)."""

    name: str
    kind: str  # "input", "scaling", "linear", "activation"
    n_out: int
    bkg_max: float  # max |value| on the background
    bkg_p999: float
    sig_p999: dict[str, float] = field(default_factory=dict)  # signal name -> 99.9th percentile |value|
    coef_max: dict[str, float] = field(default_factory=dict)  # weight/bias/scale -> max |coef|
    coef_min: dict[str, float] = field(default_factory=dict)  # smallest nonzero |coef|
    min_spread: float | None = None  # input only: smallest nonzero feature std on the background

    @property
    def range_max(self) -> float:
        return max([self.bkg_max, *self.sig_p999.values()])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _abs_stats(a: np.ndarray) -> tuple[float, float]:
    a = np.abs(np.asarray(a, dtype=np.float64)).ravel()
    a = a[np.isfinite(a)]
    if not a.size:
        return 0.0, 0.0
    return float(a.max()), float(np.quantile(a, 0.999))


def layer_names(net: Any) -> list[str]:
    """hls4ml's names of the children of an ``nn.Sequential``: ``_0``, ``_1``, ..."""
    return [f"_{name}" for name, _ in net.named_children()]


def layer_outputs(net: Any, X: np.ndarray) -> list[np.ndarray]:
    """The float output of every child of ``net`` for inputs X (one forward pass)."""
    import torch

    outs: list[np.ndarray] = []
    h = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    with torch.inference_mode():
        for child in net.children():
            h = child(h)
            outs.append(h.double().numpy().copy())
    return outs


def profile_network(net: Any, background: np.ndarray, signals: Mapping[str, np.ndarray] | None = None) -> list[LayerProfile]:
    """Per-layer ranges of ``net`` (input first) on background and signal FPGA inputs."""
    from torch import nn

    signals = dict(signals or {})
    b_outs = layer_outputs(net, background)
    s_outs = {n: layer_outputs(net, x) for n, x in signals.items() if len(x)}
    bmax, bp = _abs_stats(background)
    spread = _filled_spreads(np.asarray(background, dtype=np.float64))
    prof = [LayerProfile("input", "input", int(background.shape[1]), bmax, bp,
                         {n: _abs_stats(x)[1] for n, x in signals.items() if len(x)},
                         min_spread=float(spread.min()) if spread.size else None)]
    for i, (name, child) in enumerate(zip(layer_names(net), net.children())):
        if isinstance(child, nn.BatchNorm1d):
            kind = "scaling"
        elif isinstance(child, nn.Linear):
            kind = "linear"
        else:
            kind = "activation"
        bmax, bp = _abs_stats(b_outs[i])
        p = LayerProfile(name, kind, int(b_outs[i].shape[1]), bmax, bp,
                         {n: _abs_stats(o[i])[1] for n, o in s_outs.items()})
        for attr, t in _coefficients(child).items():
            a = np.abs(t.ravel())
            nz = a[a > 0]
            p.coef_max[attr] = float(a.max()) if a.size else 0.0
            p.coef_min[attr] = float(nz.min()) if nz.size else 0.0
        prof.append(p)
    return prof


def _filled_spreads(X: np.ndarray) -> np.ndarray:
    """Per-feature std of the nonzero (filled) entries: zero padding of a rarely filled slot
    shrinks its overall std, but not the step its values need."""
    out = []
    for col in X.T:
        v = col[col != 0]
        if v.size >= 2 and np.std(v) > 0:
            out.append(float(np.std(v)))
    return np.asarray(out)


def _coefficients(child: Any) -> dict[str, np.ndarray]:
    """The constants hls4ml stores for a layer, under hls4ml's precision keys."""
    import torch
    from torch import nn

    if isinstance(child, nn.Linear):
        out = {"weight": child.weight.detach().double().numpy()}
        if child.bias is not None:
            out["bias"] = child.bias.detach().double().numpy()
        return out
    if isinstance(child, nn.BatchNorm1d):
        std = torch.sqrt(child.running_var + child.eps).double()
        gamma = child.weight.detach().double() if child.affine else torch.ones_like(std)
        beta = child.bias.detach().double() if child.affine else torch.zeros_like(std)
        scale = gamma / std
        return {"scale": scale.numpy(), "bias": (beta - child.running_mean.double() * scale).numpy()}
    return {}


def _coef_type(amax: float, amin: float, total_bits: int, *, relative: bool) -> str:
    i = int_bits(amax)
    if relative and amin > 0:
        # Hold the smallest coefficient to total_bits - 2 significant bits (see the module docstring).
        f = max(total_bits - i, int(math.ceil(-math.log2(amin))) + total_bits - 2)
    else:
        f = total_bits - i
    f = max(f, 1)
    return fixed(i + f, i)


def choose_types(profile: list[LayerProfile], *, total_bits: int = 16, headroom_bits: int = 1,
                 input_resolution: float = 1.0 / 64) -> dict[str, dict[str, str]]:
    """hls4ml precision per layer name (``{"result": ..., "weight": ..., ...}``) from a profile.

    ``input_resolution`` is the raw input step relative to the smallest feature spread.
    """
    types: dict[str, dict[str, str]] = {}
    prev_frac = total_bits
    for p in profile:
        i = int_bits(p.range_max, headroom_bits)
        if p.kind == "input":
            # Raw inputs are heavy-tailed (pT): the sample's maximum is no bound for the next
            # events, so the input type gets 2 more bits (8x the largest background value).
            i += 2
            f = total_bits - i
            if p.min_spread:
                f = max(f, int(math.ceil(-math.log2(p.min_spread * input_resolution))))
            f = max(f, 1)
            types[p.name] = {"result": fixed(i + f, i)}
            prev_frac = f
            continue
        f = max(total_bits - i, 1)
        t: dict[str, str] = {"result": fixed(i + f, i)}
        for attr in p.coef_max:
            t[attr] = _coef_type(p.coef_max[attr], p.coef_min.get(attr, 0.0), total_bits,
                                 relative=p.kind == "scaling")
        if p.kind == "linear":
            # The accumulator holds partial sums (which can overshoot the final value) at the
            # resolution of its products: 4 more integer bits, the finer fractional part.
            fa = min(max(f, prev_frac) + 2, MAX_BITS - i - 4)
            t["accum"] = fixed(i + 4 + fa, i + 4)
        types[p.name] = t
        prev_frac = f
    return types


def type_range(type_str: str) -> float:
    """Largest value a signed ``ap_fixed<W,I>`` holds (``2**(I-1)``)."""
    import re

    m = re.match(r"ap_u?fixed<\s*(\d+)\s*,\s*(-?\d+)", type_str.replace(" ", ""))
    if not m:
        return float("inf")
    return 2.0 ** (int(m.group(2)) - 1)
