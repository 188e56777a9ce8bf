"""hls4ml export of the torch detectors: an FPGA firmware project and its bit-accurate emulation.

What runs where
---------------
The FPGA network is a plain ``nn.Sequential`` of ``Linear`` and activation layers built from the
detector's ``export_module()``:

- batch norm (eval mode) is folded into the Linear before it, dropout is dropped;
- with ``fold_preprocessing=True`` (the default) the standard scaling ``z = (x - offset) / scale``
  (and a phi-drop column selection) is folded into the first Linear's weights and bias, so the
  FPGA takes the **raw** inputs (57 for ADC2021: pT, eta, phi of 19 slots) at
  ``input_precision`` (wide enough for pT in GeV). Non-affine preprocessing (``log_pt``) cannot be
  folded: then the inputs must arrive scaled (``fold_preprocessing=False``), as CMS's L1 trigger
  does with its own input conversion.
- the network outputs:

  ========================  ============================  ======================================
  score                     on the FPGA                   after the FPGA (here: numpy, float64)
  ========================  ============================  ======================================
  ``mu2`` (axol1tl-like)    encoder -> mu (latent)        score = sum(mu**2)
  ``recon`` (ae, vae)       encoder + decoder -> recon    score = mean((recon - z)**2) over the
                                                          (unmasked) features, z = scaled inputs
  ``svdd`` (deep-svdd)      feature map f                 score = sum((f - centre)**2)
  ========================  ============================  ======================================

  The post-processing is a handful of multiply-adds that a firmware engineer adds after the
  network (the squared sum for ``mu2`` is what AXOL1TL computes on chip); it is kept outside the
  hls4ml graph because hls4ml's PyTorch frontend converts sequential layer stacks, and the
  residual needs the inputs twice.

The emulation (``HLSModel.predict``) runs the C simulation compiled with g++ by
``hls_model.compile()``: the network outputs are bit-accurate to the firmware; the
post-processing is float64.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_dir
from ..errors import ConfigError, DependencyError, HepadError

log = logging.getLogger(__name__)

__all__ = [
    "HLSModel",
    "export_hls",
    "fpga_network",
    "precision_scan",
    "DEFAULT_PRECISION",
    "DEFAULT_INPUT_PRECISION",
    "SCAN_PRECISIONS",
]

DEFAULT_PRECISION = "ap_fixed<16,6>"
#: Raw inputs: pT up to 4095 GeV with 1/32 GeV steps (eta, phi at 0.03 resolution), the
#: input width of CMS's AXOL1TL.
DEFAULT_INPUT_PRECISION = "ap_fixed<18,13>"
#: Default precisions of :func:`precision_scan`: integer bits fixed at 6, total bits varied.
SCAN_PRECISIONS = tuple(f"ap_fixed<{w},6>" for w in (8, 10, 12, 14, 16, 18, 20, 24))
_SUPPORTED_KINDS = ("recon", "mu2", "svdd")
_PRECISION_RE = re.compile(r"^ap_(u?)fixed<\s*(\d+)\s*,\s*(-?\d+)\s*(,.*)?>$")


class HLSExportError(HepadError):
    """The hls4ml conversion or the C-simulation compile failed."""


def _parse_precision(precision: str, what: str = "precision") -> tuple[int, int]:
    m = _PRECISION_RE.match(str(precision).replace(" ", ""))
    if not m:
        raise ConfigError(
            f"{what} {precision!r} is not an hls4ml fixed-point type; write it as 'ap_fixed<W,I>' "
            "(W total bits, I integer bits incl. sign), e.g. 'ap_fixed<16,6>'."
        )
    width, integer = int(m.group(2)), int(m.group(3))
    if width < 2 or width > 64:
        raise ConfigError(f"{what} {precision!r}: total bits must be in 2..64.")
    return width, integer


def _hls4ml() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import hls4ml
    except ImportError as exc:  # pragma: no cover - pinned dependency
        raise DependencyError(f"hls export needs hls4ml ({exc}): pip install hls4ml==1.3.0") from None
    return hls4ml


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """hls4ml prints its progress to stdout; send it to our debug log instead."""
    buf = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
            warnings.simplefilter("ignore")
            yield
    finally:
        text = buf.getvalue().strip()
        if text:
            log.debug("hls4ml: %s", text)


# ---------------------------------------------------------------------- network surgery
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


def fpga_network(detector: Any, *, fold_preprocessing: bool = True) -> _Plan:
    """The plain layer stack that goes on the FPGA for a fitted torch detector, and its host steps.

    Returns a plan whose ``net`` (``nn.Sequential`` of Linear and activation layers) maps raw
    inputs (``fold_preprocessing``) or scaled inputs to the network output of the score
    (see the module docstring).
    """
    from torch import nn

    if not callable(getattr(detector, "export_module", None)):
        raise ConfigError(
            f"{getattr(detector, 'name', type(detector).__name__)}: only torch detectors export to hls4ml."
        )
    detector._check_fitted()
    module = detector.export_module().eval()
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
        layers[0] = _fold_scaling(layers[0], pre)
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


# ---------------------------------------------------------------------- the model wrapper
class HLSModel:
    """An hls4ml project of a detector with its compiled C simulation.

    Attributes
    ----------
    hls_model : hls4ml.model.ModelGraph
        The hls4ml model (``hls_model.build()`` runs Vitis HLS synthesis where installed).
    output_dir : Path
        The project directory.
    precision, input_precision : str
        Fixed-point types of the network and of its inputs.
    kind : str
        Score computed after the network: ``recon``, ``mu2`` or ``svdd``.
    folded : bool
        True when the scaling is folded into the first layer (the FPGA takes raw inputs).
    """

    def __init__(self, hls_model: Any, plan: _Plan, output_dir: Path, precision: str, input_precision: str,
                 reuse_factor: int, threshold: float | None) -> None:
        self.hls_model = hls_model
        self._plan = plan
        self.output_dir = Path(output_dir)
        self.precision = precision
        self.input_precision = input_precision
        self.reuse_factor = reuse_factor
        self.kind = plan.kind
        self.folded = plan.folded
        self.threshold = threshold

    @property
    def network(self) -> Any:
        """The float ``nn.Sequential`` that was converted (reference for the fixed-point one)."""
        return self._plan.net

    def network_outputs(self, X: Any, *, emulate: bool = True) -> np.ndarray:
        """What the FPGA outputs for raw events X: bit-accurate (``emulate``) or the float network."""
        from ..detectors.base import as_features

        fpga_in, _, _ = _host_inputs(self._plan, as_features(X))
        if not emulate:
            import torch

            with torch.inference_mode():
                return self._plan.net(torch.from_numpy(fpga_in)).numpy()
        return np.asarray(self.hls_model.predict(fpga_in)).reshape(len(fpga_in), -1)

    def predict(self, X: Any, *, emulate: bool = True) -> np.ndarray:
        """Anomaly scores (float32, (N,)) of raw events from the bit-accurate C simulation.

        With ``emulate=False`` the same pipeline runs with the float network (a check that the
        folding and post-processing reproduce ``score_samples``).
        """
        from ..detectors.base import as_features

        Xf = as_features(X)
        fpga_in, z, mask = _host_inputs(self._plan, Xf)
        if emulate:
            out = np.asarray(self.hls_model.predict(fpga_in))
        else:
            import torch

            with torch.inference_mode():
                out = self._plan.net(torch.from_numpy(fpga_in)).numpy()
        return _post(self._plan, out, z, mask)

    def __repr__(self) -> str:
        return f"HLSModel(kind={self.kind!r}, precision={self.precision!r}, folded={self.folded}, dir={str(self.output_dir)!r})"


def _saturating(precision: str) -> str:
    """``precision`` with round-to-nearest and saturation, unless it names its own modes.

    hls4ml's default ``ap_fixed`` wraps on overflow: an out-of-range activation (a hard
    signal event) would come out with the wrong sign. Saturation keeps it at the edge.
    """
    width, integer = _parse_precision(precision)
    if "," in precision.split("<", 1)[1].split(",", 2)[-1]:
        return precision
    return f"ap_fixed<{width},{integer},AP_RND_CONV,AP_SAT>"


def _hls_config(hls4ml: Any, plan: _Plan, precision: str, input_precision: str, reuse_factor: int) -> dict:
    import torch
    from torch import nn

    n_in = plan.net[0].in_features
    with _quiet():
        config = hls4ml.utils.config_from_pytorch_model(
            plan.net, input_shape=(n_in,), granularity="name", backend="Vitis",
            default_precision=precision, default_reuse_factor=int(reuse_factor),
        )
    width, integer = _parse_precision(precision)
    children = dict(plan.net.named_children())
    layers = config["LayerName"]
    for name, layer_cfg in layers.items():
        prec = layer_cfg.setdefault("Precision", {})
        if not isinstance(prec, dict):
            prec = layer_cfg["Precision"] = {"result": prec}
        # hls4ml names the children of an nn.Sequential "_0", "_1", ...; the input has no child.
        mod = children.get(name.lstrip("_"))
        if mod is None:
            prec["result"] = _saturating(input_precision)
            continue
        prec["result"] = _saturating(precision)
        if not isinstance(mod, nn.Linear):
            continue
        # Weights keep the total width but take their integer bits from their own range:
        # folding the scaling makes first-layer weights ~1/scale, which 6 integer bits waste.
        for attr in ("weight", "bias"):
            t = getattr(mod, attr)
            if t is None or not t.numel():
                continue
            amax = float(torch.max(torch.abs(t)).item())
            int_bits = max(1, int(np.ceil(np.log2(amax))) + 1) if amax > 0 else 1
            prec[attr] = f"ap_fixed<{width},{min(int_bits, width - 1)}>"
        # Sums over up to 57 products get 8 more bits, so they cannot overflow before saturation.
        prec["accum"] = f"ap_fixed<{width + 8},{integer + 8}>"
    return config


def export_hls(
    detector_or_path: Any,
    output_dir: str | os.PathLike[str],
    *,
    precision: str = DEFAULT_PRECISION,
    reuse_factor: int = 1,
    fold_preprocessing: bool = True,
    input_precision: str | None = None,
    part: str | None = None,
    clock_period: float = 5.0,
    compile: bool = True,
) -> HLSModel:
    """Write an hls4ml project (Vitis backend, io_parallel) for a torch detector and compile its C simulation.

    Parameters
    ----------
    detector_or_path : BaseDetector or path-like
        A fitted torch detector or a saved model directory.
    output_dir : path-like
        The project directory (built under a temporary name, renamed when complete).
    precision : str
        Default fixed-point type of weights, biases and results, e.g. ``"ap_fixed<16,6>"``.
        Weights and biases keep this total width but take their integer bits from their range.
    reuse_factor : int
        hls4ml reuse factor (1 = fully parallel, lowest latency, most DSPs).
    fold_preprocessing : bool
        Fold the scaling into the first Linear so the FPGA takes raw inputs (default). With
        False the inputs must arrive scaled (needed for ``log_pt`` preprocessing).
    input_precision : str, optional
        Fixed-point type of the inputs. Default: ``ap_fixed<18,13>`` for raw inputs, ``precision``
        with 2 more integer (and total) bits for scaled ones.
    part : str, optional
        FPGA part (default: hls4ml's Vitis default part).
    clock_period : float
        Target clock period in ns.
    compile : bool
        Compile the C simulation with g++ (needed for :meth:`HLSModel.predict`).

    Returns
    -------
    HLSModel
        The project and its emulator; ``predict(X_raw)`` gives bit-accurate scores.
    """
    import hepad

    detector = hepad.load(detector_or_path) if isinstance(detector_or_path, (str, os.PathLike)) else detector_or_path
    _parse_precision(precision)
    if input_precision is None:
        # Scaled inputs of rarely filled slots reach |z| ~ 100 (tiny std): 2 more integer bits.
        w, i = _parse_precision(precision)
        input_precision = DEFAULT_INPUT_PRECISION if fold_preprocessing else f"ap_fixed<{w + 2},{i + 2}>"
    _parse_precision(input_precision, "input_precision")
    if not isinstance(reuse_factor, (int, np.integer)) or reuse_factor < 1:
        raise ConfigError(f"reuse_factor must be a positive integer, got {reuse_factor!r}.")
    plan = fpga_network(detector, fold_preprocessing=fold_preprocessing)
    hls4ml = _hls4ml()
    config = _hls_config(hls4ml, plan, precision, input_precision, int(reuse_factor))
    target = Path(output_dir)
    kwargs: dict[str, Any] = dict(backend="Vitis", io_type="io_parallel", clock_period=clock_period)
    if part:
        kwargs["part"] = part
    with atomic_dir(target) as tmp:
        try:
            with _quiet():
                hls_model = hls4ml.converters.convert_from_pytorch_model(
                    plan.net, output_dir=str(tmp), project_name="hepad_trigger", hls_config=config, **kwargs
                )
        except HepadError:
            raise
        except Exception as exc:
            raise HLSExportError(f"hls4ml could not convert {detector.name}: {exc.__class__.__name__}: {exc}") from exc
        try:
            with _quiet():
                hls_model.write()
        except Exception as exc:
            raise HLSExportError(
                f"writing the hls4ml project for {detector.name} failed ({exc.__class__.__name__}: {exc})."
            ) from exc
    # The C simulation reads its weights from the project's absolute path: build it where the
    # project now lives (the sources above appeared atomically; the library is a build product).
    hls_model.config.config["OutputDir"] = str(target)
    if compile:
        try:
            with _quiet():
                hls_model._compile()
        except Exception as exc:
            raise HLSExportError(
                f"compiling the hls4ml C simulation in {target} failed ({exc.__class__.__name__}: {exc}). "
                "It needs g++ on PATH (apt-get install g++)."
            ) from exc
    model = HLSModel(hls_model, plan, target, precision, input_precision, int(reuse_factor),
                     getattr(detector, "threshold_", None))
    log.info("hls4ml project for %s in %s (%s, reuse %d)", detector.name, target, precision, reuse_factor)
    return model


# ---------------------------------------------------------------------- precision scan
def precision_scan(
    detector: Any,
    background: Any,
    signals: Mapping[str, Any],
    work_dir: str | os.PathLike[str],
    *,
    precisions: Sequence[str] = SCAN_PRECISIONS,
    reuse_factor: int = 1,
    fold_preprocessing: bool = True,
    fpr: float = 1e-4,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """Score background and signals at several fixed-point precisions and compare with float.

    For each precision and signal: ROC AUC and TPR at ``fpr`` (the float threshold recomputed
    on the emulated background scores) and their loss relative to the float model.

    Parameters
    ----------
    detector : BaseDetector
        A fitted torch detector.
    background, signals : events
        Background events and ``{name: events}`` signals (EventSet or arrays).
    work_dir : path-like
        Where the hls4ml projects are written (one sub-directory per precision).
    precisions : sequence of str
        Fixed-point types to scan (default: ap_fixed<W,6>, W = 8..24).
    progress : callable, optional
        ``progress(i, n, precision)`` after each precision.

    Returns
    -------
    list of dict
        One row per (precision, signal): ``precision``, ``total_bits``, ``signal``, ``auc``,
        ``auc_float``, ``auc_loss``, ``tpr``, ``tpr_float``, ``tpr_loss``, ``fpr``, ``corr``.
    """
    from ..detectors.base import as_features

    Xb = as_features(background, "background")
    Xs = {name: as_features(x, name) for name, x in signals.items()}
    float_b = detector.score_samples(Xb).astype(np.float64)
    float_s = {n: detector.score_samples(x).astype(np.float64) for n, x in Xs.items()}
    rows: list[dict[str, Any]] = []
    work = Path(work_dir)
    for i, prec in enumerate(precisions):
        width, _ = _parse_precision(prec)
        tag = re.sub(r"[^0-9a-z]+", "_", prec.lower()).strip("_")
        model = export_hls(detector, work / tag, precision=prec, reuse_factor=reuse_factor,
                           fold_preprocessing=fold_preprocessing)
        hb = model.predict(Xb).astype(np.float64)
        corr = float(np.corrcoef(hb, float_b)[0, 1]) if np.std(hb) > 0 else float("nan")
        for name, xs in Xs.items():
            hs = model.predict(xs).astype(np.float64)
            auc_f, tpr_f = _auc_tpr(float_b, float_s[name], fpr)
            auc_h, tpr_h = _auc_tpr(hb, hs, fpr)
            rows.append(dict(precision=prec, total_bits=width, signal=name, auc=auc_h, auc_float=auc_f,
                             auc_loss=auc_f - auc_h, tpr=tpr_h, tpr_float=tpr_f, tpr_loss=tpr_f - tpr_h,
                             fpr=fpr, corr=corr))
        if progress is not None:
            progress(i + 1, len(precisions), prec)
    return rows


def _auc_tpr(bkg: np.ndarray, sig: np.ndarray, fpr: float) -> tuple[float, float]:
    from ..metrics import roc_auc, threshold_at_fpr

    y = np.r_[np.zeros(len(bkg)), np.ones(len(sig))]
    auc = roc_auc(y, np.r_[bkg, sig])
    cut = threshold_at_fpr(bkg, fpr)[0]
    return float(auc), float((sig > cut).mean())


def plot_precision_scan(rows: Sequence[Mapping[str, Any]], ax: Any = None, metric: str = "auc_loss") -> Any:
    """Plot ``metric`` (``auc_loss`` or ``tpr_loss``) against total bits, one line per signal."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots()
    for name in sorted({r["signal"] for r in rows}):
        pts = sorted((r["total_bits"], r[metric]) for r in rows if r["signal"] == name)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("total bits (ap_fixed<W,6>)")
    ax.set_ylabel({"auc_loss": "AUC loss vs float", "tpr_loss": "TPR loss vs float"}.get(metric, metric))
    ax.legend()
    return ax
