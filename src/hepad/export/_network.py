"""The network an FPGA runs, built from a detector: flat Linear/activation layers, batch norm
folded, the input scaling as its own layer (or folded), and the host-side steps around it
(the inputs the FPGA takes, the post-processing that turns its outputs into a score).

See :mod:`hepad.export.hls` for what runs where.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["fpga_network"]

_SUPPORTED_KINDS = ("recon", "mu2", "svdd")


@dataclass
class _Plan:
    """The FPGA network and what the host does before and after it."""

    net: Any  # nn.Sequential
    kind: str
    folded: bool
    preprocessor: Any  # hepad.preprocessing.Preprocessor
    mask_padding: bool
    center: np.ndarray | None = None


def _flat_layers(seq: Any) -> list[Any]:
    from torch import nn

    out: list[Any] = []
    for layer in seq:
        if isinstance(layer, nn.Sequential):
            out.extend(_flat_layers(layer))
        else:
            out.append(layer)
    return out


def _fold_batchnorm(layers: list[Any]) -> list[Any]:
    """Linear -> BatchNorm1d pairs become one Linear (eval statistics); Dropout is removed."""
    import torch
    from torch import nn

    out: list[Any] = []
    for layer in layers:
        if isinstance(layer, nn.Dropout):
            continue
        if isinstance(layer, nn.BatchNorm1d):
            if not out or not isinstance(out[-1], nn.Linear):
                raise ConfigError("hls export: a BatchNorm1d that does not follow a Linear layer cannot be folded.")
            lin = out[-1]
            std = torch.sqrt(layer.running_var + layer.eps)
            gamma = layer.weight if layer.affine else torch.ones_like(std)
            beta = layer.bias if layer.affine else torch.zeros_like(std)
            k = gamma / std
            new = nn.Linear(lin.in_features, lin.out_features, bias=True)
            with torch.no_grad():
                new.weight.copy_(lin.weight * k[:, None])
                b = lin.bias if lin.bias is not None else torch.zeros_like(std)
                new.bias.copy_((b - layer.running_mean) * k + beta)
            out[-1] = new
            continue
        out.append(layer)
    return out


def _fold_scaling(first: Any, pre: Any) -> Any:
    """A Linear on raw inputs equal to ``first(((x[:, keep]) - offset) / scale)``."""
    import torch
    from torch import nn

    keep = np.asarray(pre.keep_columns_, dtype=np.int64)
    offset = np.asarray(pre.offset_, dtype=np.float64)
    scale = np.asarray(pre.scale_, dtype=np.float64)
    w = first.weight.detach().double().numpy()  # (out, F_kept)
    b = first.bias.detach().double().numpy() if first.bias is not None else np.zeros(w.shape[0])
    w_raw = np.zeros((w.shape[0], int(pre.n_features_in_)), dtype=np.float64)
    w_raw[:, keep] = w / scale[None, :]
    b_raw = b - (w / scale[None, :]) @ offset
    new = nn.Linear(w_raw.shape[1], w_raw.shape[0], bias=True)
    with torch.no_grad():
        new.weight.copy_(torch.from_numpy(w_raw).float())
        new.bias.copy_(torch.from_numpy(b_raw).float())
    return new


def _scaling_layer(first: Any, pre: Any) -> tuple[Any, Any]:
    """The scaling as its own step: ``BatchNorm1d`` computing ``z = (x - offset) / scale`` on raw x.

    Dropped columns (phi with ``phi='drop'``) pass through the scaling unchanged and meet zero
    weights in the first Linear, which is widened to the raw inputs. The first Linear's weights
    stay what training made them (O(1) on scaled inputs), whatever the inputs' spreads.
    """
    import torch
    from torch import nn

    n_raw = int(pre.n_features_in_)
    keep = np.asarray(pre.keep_columns_, dtype=np.int64)
    mean = np.zeros(n_raw)
    std = np.ones(n_raw)
    mean[keep] = np.asarray(pre.offset_, dtype=np.float64)
    std[keep] = np.asarray(pre.scale_, dtype=np.float64)
    bn = nn.BatchNorm1d(n_raw, eps=0.0, affine=False)
    with torch.no_grad():
        bn.running_mean.copy_(torch.from_numpy(mean))
        bn.running_var.copy_(torch.from_numpy(std**2))
    w = first.weight.detach().double().numpy()
    w_raw = np.zeros((w.shape[0], n_raw))
    w_raw[:, keep] = w
    new = nn.Linear(n_raw, w.shape[0], bias=True)
    with torch.no_grad():
        new.weight.copy_(torch.from_numpy(w_raw).float())
        new.bias.copy_(first.bias.detach() if first.bias is not None else torch.zeros(w.shape[0]))
    return bn.eval(), new


def fpga_network(detector: Any, *, fold_preprocessing: bool = True, scaling: str = "layer") -> _Plan:
    """The plain layer stack that goes on the FPGA for a fitted torch detector, and its host steps.

    Returns a plan whose ``net`` (``nn.Sequential`` of Linear and activation layers) maps raw
    inputs (``fold_preprocessing``) or scaled inputs to the network output of the score
    (see the module docstring). With raw inputs the scaling is its own first layer
    (``scaling="layer"``, the default) or folded into the first Linear's weights
    (``scaling="fold"``: exact in float, but weights grow as 1/spread and one fixed-point type
    cannot hold them when the spreads differ by orders of magnitude; kept for comparison).
    """
    if scaling not in ("layer", "fold"):
        raise ConfigError(f"scaling {scaling!r}: use 'layer' (the scaling as its own step) or 'fold'.")
    from torch import nn

    if not callable(getattr(detector, "export_module", None)):
        raise ConfigError(
            f"{getattr(detector, 'name', type(detector).__name__)}: only torch detectors export to hls4ml."
        )
    detector._check_fitted()
    # A quantisation-aware detector hands over its plain Linear/ReLU network (hepad.detectors.quantized).
    module = getattr(detector, "fpga_module", detector.export_module)().eval()
    kind = getattr(module, "kind", None)
    if kind not in _SUPPORTED_KINDS:
        raise ConfigError(
            f"{detector.name}: the {kind!r} score has no hls4ml export; use one of "
            f"{', '.join(_SUPPORTED_KINDS)} (e.g. vae with score='mu2' or 'recon')."
        )
    pre_t = module.pre
    pre = detector.preprocessor_
    net = module.net
    layers = _flat_layers(net.encoder)
    if kind == "recon":
        layers += _flat_layers(net.decoder)
    layers = _fold_batchnorm(layers)
    if fold_preprocessing:
        if getattr(pre_t, "use_log", False) or getattr(pre, "log_pt", False):
            raise ConfigError(
                f"{detector.name}: log(1+pT) preprocessing is not affine and cannot be folded into the "
                "first layer; export with fold_preprocessing=False (--inputs-scaled): the inputs then "
                "arrive scaled."
            )
        if not isinstance(layers[0], nn.Linear):
            raise ConfigError(f"{detector.name}: the network does not start with a Linear layer; cannot fold the scaling.")
        if scaling == "fold":
            layers[0] = _fold_scaling(layers[0], pre)
        else:
            layers[0:1] = list(_scaling_layer(layers[0], pre))
    center = None
    if kind == "svdd":
        center = net.center.detach().double().numpy().copy()
    seq = nn.Sequential(*layers).eval()
    return _Plan(
        net=seq,
        kind=kind,
        folded=fold_preprocessing,
        preprocessor=pre,
        mask_padding=bool(getattr(pre_t, "mask_padding", False)),
        center=center,
    )


def _host_inputs(plan: _Plan, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FPGA input, scaled inputs z, padding mask) for raw events X (N, F_in)."""
    pre = plan.preprocessor
    z = pre.transform(X).astype(np.float64)
    mask = pre.padding_mask(X).astype(np.float64) if plan.mask_padding else np.ones_like(z)
    if plan.mask_padding:
        z_empty = pre.transform(np.zeros((1, X.shape[1]), dtype=np.float32))[0].astype(np.float64)
        z = np.where(mask > 0, z, z_empty)
    fpga_in = X if plan.folded else z.astype(np.float32)
    return np.ascontiguousarray(fpga_in, dtype=np.float32), z, mask


def _post(plan: _Plan, out: np.ndarray, z: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.asarray(out, dtype=np.float64).reshape(len(z), -1)
    if plan.kind == "mu2":
        s = (out**2).sum(axis=1)
    elif plan.kind == "svdd":
        s = ((out - plan.center) ** 2).sum(axis=1)
    else:
        s = (((out - z) ** 2) * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)
    return s.astype(np.float32)
