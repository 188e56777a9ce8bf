"""hls4ml export of the torch detectors: an FPGA firmware project and its bit-accurate emulation.

What runs where
---------------
The FPGA network is a plain ``nn.Sequential`` of ``Linear`` and activation layers built from the
detector's ``export_module()``:

- batch norm (eval mode) is folded into the Linear before it, dropout is dropped;
- with ``fold_preprocessing=True`` (the default) the FPGA takes the **raw** inputs (57 for
  ADC2021: pT, eta, phi of 19 slots) and its first layer is the standard scaling
  ``z = (x - offset) / scale``, a ``BatchNorm1d`` (hls4ml ``BatchNormalization``) with its own
  fixed-point types. The scaling is *not* folded into the first Linear's weights: where a
  feature's spread is tiny that makes weights ~1/spread that no single fixed-point type holds
  (``scaling="fold"`` keeps the old behaviour for comparison). Non-affine preprocessing
  (``log_pt``) needs scaled inputs (``fold_preprocessing=False``), as CMS's L1 trigger does
  with its own input conversion.
- every layer's types come from the user's events (``data=``, :mod:`hepad.export._precision`);
  the threshold is recomputed on the C-simulated background scores; parity against float is
  :mod:`hepad.export._parity`, resources :mod:`hepad.export._resources`.
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
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_dir
from ..errors import ConfigError, DependencyError, HepadError
from ._network import _host_inputs, _Plan, _post, fpga_network

log = logging.getLogger(__name__)

__all__ = [
    "HLSModel",
    "export_hls",
    "fpga_network",
    "DEFAULT_PRECISION",
    "DEFAULT_INPUT_PRECISION",
]

DEFAULT_PRECISION = "ap_fixed<16,6>"
#: Raw inputs: pT up to 4095 GeV with 1/32 GeV steps (eta, phi at 0.03 resolution), the
#: input width of CMS's AXOL1TL.
DEFAULT_INPUT_PRECISION = "ap_fixed<18,13>"
#: Bit budget of each automatically sized type (``precision="auto"``).
DEFAULT_TOTAL_BITS = 16
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


def _check_with_hls4ml(precision: str, what: str) -> None:
    """Our syntax check, then hls4ml's own parser: a type it rejects fails here, in one line."""
    _parse_precision(precision, what)
    try:
        from hls4ml.backends.fpga.fpga_backend import FPGABackend

        FPGABackend.convert_precision_string(str(precision).replace(" ", ""))
    except ImportError:  # pragma: no cover - pinned dependency
        return
    except Exception as exc:
        raise ConfigError(
            f"{what} {precision!r} is not a type hls4ml accepts ({exc.__class__.__name__}: {exc}); write "
            "'ap_fixed<W,I>' or 'ap_fixed<W,I,Q,O>' with Q in AP_RND, AP_RND_CONV, AP_TRN and O in AP_SAT, AP_WRAP, "
            "or use precision 'auto'."
        ) from None


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
        self.target_fraction: float | None = None
        self.background_quantiles: dict | None = None
        self.types: dict[str, dict[str, str]] = {}
        self.profile: list | None = None
        self.estimate: Any = None
        self.synthesis: Any = None

    # ------------------------------------------------------------------ threshold and metadata
    def _calibrate(self, detector: Any, data: Any, target_fraction: float | None) -> None:
        """The threshold of the quantised model: its own background scores cut at the target fraction."""
        from ..detectors.base import as_features
        from ..metrics import threshold_at_fpr
        from ..thresholds import score_quantiles

        Xb = as_features(data, "data")
        emu = self.predict(Xb).astype(np.float64)
        if target_fraction is None:
            # The detector's own rule (percentile, rate_hz, fpr), else what its threshold_ accepts here.
            rule = getattr(detector, "threshold_rule_", None)
            target_fraction = getattr(rule, "background_fraction", None)
            if target_fraction is None:
                fb = detector.score_samples(Xb)
                target_fraction = max(float((fb > detector.threshold_).mean()), 1.0 / len(Xb))
        self.target_fraction = float(target_fraction)
        self.float_threshold = getattr(detector, "threshold_", None)
        self.threshold = threshold_at_fpr(emu, self.target_fraction)[0]
        self.background_quantiles = score_quantiles(emu)
        if self.target_fraction * len(Xb) < 10:
            log.warning("the quantised threshold at accept fraction %.3g rests on %.1f background events (of %d); "
                        "give more background for a stable cut", self.target_fraction,
                        self.target_fraction * len(Xb), len(Xb))

    def _write_metadata(self, detector: Any) -> None:
        """``hepad_trigger.json`` (types, threshold, quantiles, estimate) and ``firmware/hepad_threshold.h``."""
        import json

        from .._atomic import atomic_path

        doc = {
            "detector": detector.name,
            "score": self.kind,
            "inputs": "raw (scaled on the FPGA, first layer)" if self.folded else "scaled",
            "feature_names": [str(n) for n in getattr(detector, "feature_names_in_", [])],
            "precision": self.precision,
            "types": self.types,
            "reuse_factor": self.reuse_factor,
            "threshold": None if self.threshold is None else float(self.threshold),
            "threshold_source": "quantised background scores" if self.background_quantiles else "float model (threshold_)",
            "target_fraction": self.target_fraction,
            "background_quantiles": self.background_quantiles,
            "estimate": None if self.estimate is None else self.estimate.to_dict(),
            "profile": None if self.profile is None else [p.to_dict() for p in self.profile],
        }
        with atomic_path(self.output_dir / "hepad_trigger.json", suffix=".json.tmp") as tmp:
            tmp.write_text(json.dumps(doc, indent=1))
        if self.threshold is not None and (self.output_dir / "firmware").is_dir():
            with atomic_path(self.output_dir / "firmware" / "hepad_threshold.h", suffix=".h.tmp") as tmp:
                tmp.write_text(
                    "// Written by hepad: accept an event when its anomaly score (computed from the network\n"
                    f"// outputs as '{self.kind}', see hepad.export.hls) exceeds this cut.\n"
                    f"// {doc['threshold_source']}; background accept fraction {self.target_fraction}.\n"
                    "#ifndef HEPAD_THRESHOLD_H_\n#define HEPAD_THRESHOLD_H_\n"
                    f"static const double hepad_threshold = {float(self.threshold)!r};\n#endif\n"
                )

    def parity(self, detector: Any, background: Any, signals: Mapping[str, Any] | None = None, *,
               fraction: float | None = None, tpr_fraction: float | None = None) -> Any:
        """Float vs C simulation on events: a :class:`hepad.export._parity.ParityReport`."""
        from ._parity import parity_report

        return parity_report(self, detector, background, signals, fraction=fraction, tpr_fraction=tpr_fraction)

    @property
    def network(self) -> Any:
        """The float ``nn.Sequential`` that was converted (reference for the fixed-point one)."""
        return self._plan.net

    def fpga_inputs(self, X: Any) -> np.ndarray:
        """What the FPGA takes for raw events X (scaled, padding replaced; raw when folded)."""
        from ..detectors.base import as_features

        return _host_inputs(self._plan, as_features(X))[0]

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


def _hls_config(hls4ml: Any, plan: _Plan, types: Mapping[str, Mapping[str, str]], reuse_factor: int,
                trace: bool = False) -> dict:
    """hls4ml's per-layer configuration with every precision set from ``types`` (see _precision)."""
    from ._precision import layer_names

    n_in = _n_inputs(plan.net)
    with _quiet():
        config = hls4ml.utils.config_from_pytorch_model(
            plan.net, input_shape=(n_in,), granularity="name", backend="Vitis",
            default_precision=types[layer_names(plan.net)[-1]]["result"], default_reuse_factor=int(reuse_factor),
        )
    children = set(layer_names(plan.net))
    for name, layer_cfg in config["LayerName"].items():
        prec = layer_cfg.setdefault("Precision", {})
        if not isinstance(prec, dict):
            prec = layer_cfg["Precision"] = {"result": prec}
        # hls4ml names the children of an nn.Sequential "_0", "_1", ...; the input is the other one.
        chosen = types[name] if name in children else types["input"]
        for key in list(prec):
            if key in chosen:
                prec[key] = chosen[key]
            elif prec[key] == "auto":
                prec[key] = chosen["result"]
        for key, value in chosen.items():
            prec.setdefault(key, value)
        if trace:
            layer_cfg["Trace"] = True
    return config


def _n_inputs(net: Any) -> int:
    first = net[0]
    return int(getattr(first, "in_features", None) or first.num_features)


def _uniform_types(plan: _Plan, precision: str, input_precision: str) -> dict[str, dict[str, str]]:
    """One result type for every layer (``precision``); coefficients keep its width, own integer bits."""
    from ._precision import _coef_type, _coefficients, layer_names

    width, integer = _parse_precision(precision)
    types: dict[str, dict[str, str]] = {"input": {"result": _saturating(input_precision)}}
    for name, child in zip(layer_names(plan.net), plan.net.children()):
        t = {"result": _saturating(precision)}
        for attr, c in _coefficients(child).items():
            a = np.abs(c.ravel())
            nz = a[a > 0]
            t[attr] = _coef_type(float(a.max()) if a.size else 0.0, float(nz.min()) if nz.size else 0.0, width,
                                 relative=attr == "scale")
        if "weight" in t:
            # Sums over up to 57 products get 8 more bits, so they cannot overflow before saturation.
            t["accum"] = f"ap_fixed<{width + 8},{integer + 8}>"
        types[name] = t
    return types


def _profile_inputs(plan: _Plan, events: Any, what: str) -> np.ndarray:
    from ..detectors.base import as_features

    return _host_inputs(plan, as_features(events, what))[0]


def export_hls(
    detector_or_path: Any,
    output_dir: str | os.PathLike[str],
    *,
    data: Any = None,
    signals: Mapping[str, Any] | None = None,
    precision: str = "auto",
    total_bits: int = DEFAULT_TOTAL_BITS,
    headroom_bits: int = 1,
    reuse_factor: int = 1,
    fold_preprocessing: bool = True,
    input_precision: str | None = None,
    target_fraction: float | None = None,
    part: str | None = None,
    clock_period: float = 5.0,
    compile: bool = True,
    scaling: str = "layer",
) -> HLSModel:
    """Write an hls4ml project (Vitis backend, io_parallel) for a torch detector and compile its C simulation.

    Parameters
    ----------
    detector_or_path : BaseDetector or path-like
        A fitted torch detector or a saved model directory.
    output_dir : path-like
        The project directory (built under a temporary name, renamed when complete).
    data : events, optional
        The user's background events. They size every layer's fixed-point type
        (``precision="auto"``), and on them the threshold of the *quantised* model is computed
        (``HLSModel.threshold``, stored in ``hepad_trigger.json`` and ``firmware/hepad_threshold.h``).
    signals : {name: events}, optional
        Signal events: their 99.9th percentile of every layer's values is covered too.
    precision : str
        ``"auto"`` (default): per-layer types from ``data`` (see :mod:`hepad.export._precision`),
        ``total_bits`` wide. Or one type for every layer's results, e.g. ``"ap_fixed<16,6>"``
        (weights keep its total width and take their integer bits from their range).
        Without ``data``, ``"auto"`` falls back to ``ap_fixed<16,6>`` (with a warning).
    total_bits, headroom_bits : int
        Bit budget of each automatic type and the integer bits added above the measured range.
    reuse_factor : int
        hls4ml reuse factor (1 = fully parallel, lowest latency, most DSPs).
    fold_preprocessing : bool
        The FPGA takes raw inputs and scales them in its first layer (default). With False the
        inputs must arrive scaled (needed for ``log_pt`` preprocessing).
    input_precision : str, optional
        Fixed-point type of the inputs (default: from ``data``; without it ``ap_fixed<18,13>``
        for raw inputs, ``precision`` with 2 more integer bits for scaled ones).
    target_fraction : float, optional
        Background accept fraction of the exported threshold (default: the fraction the
        detector's own ``threshold_`` accepts on ``data``).
    part : str, optional
        FPGA part (default: hls4ml's Vitis default part).
    clock_period : float
        Target clock period in ns.
    compile : bool
        Compile the C simulation with g++ (needed for :meth:`HLSModel.predict`).
    scaling : {"layer", "fold"}
        The raw-input scaling as its own layer (default) or folded into the first Linear.

    Returns
    -------
    HLSModel
        The project and its emulator; ``predict(X_raw)`` gives bit-accurate scores.
    """
    import shutil

    import hepad
    from ._precision import choose_types, profile_network
    from ._resources import estimate_resources

    detector = hepad.load(detector_or_path) if isinstance(detector_or_path, (str, os.PathLike)) else detector_or_path
    auto = str(precision).strip().lower() == "auto"
    if not auto:
        _check_with_hls4ml(precision, "precision")
    if not isinstance(total_bits, (int, np.integer)) or not 4 <= total_bits <= 32:
        raise ConfigError(f"total_bits must be an integer in 4..32, got {total_bits!r}.")
    if not isinstance(headroom_bits, (int, np.integer)) or not 0 <= headroom_bits <= 8:
        raise ConfigError(f"headroom_bits must be an integer in 0..8, got {headroom_bits!r}.")
    if not isinstance(reuse_factor, (int, np.integer)) or reuse_factor < 1:
        raise ConfigError(f"reuse_factor must be a positive integer, got {reuse_factor!r}.")
    if input_precision is not None:
        _check_with_hls4ml(input_precision, "input_precision")
    if target_fraction is not None and not 0.0 < float(target_fraction) < 1.0:
        raise ConfigError(f"target_fraction must be in (0, 1), got {target_fraction!r}.")
    if compile and shutil.which("g++") is None:  # hls4ml's build_lib.sh calls g++ by name
        raise DependencyError(
            "the hls4ml C simulation needs the C++ compiler g++, which is not on PATH: install it "
            "(apt-get install g++) or export with compile=False (--no-compile) and build the project elsewhere."
        )
    plan = fpga_network(detector, fold_preprocessing=fold_preprocessing, scaling=scaling)
    profile = None
    if data is not None:
        bkg_in = _profile_inputs(plan, data, "data")
        sig_in = {n: _profile_inputs(plan, x, n) for n, x in (signals or {}).items()}
        profile = profile_network(plan.net, bkg_in, sig_in)
    if auto and profile is not None:
        types = choose_types(profile, total_bits=int(total_bits), headroom_bits=int(headroom_bits))
        if input_precision is not None:
            types["input"] = {"result": _saturating(input_precision)}
        precision_label = f"auto ({int(total_bits)} bits, {int(headroom_bits)} headroom)"
        w_in, _ = _parse_precision(types["input"]["result"])
        if fold_preprocessing and w_in > 24:
            log.warning("the raw inputs need %s: their spreads differ by orders of magnitude. The scaling "
                        "multipliers grow with it; feed scaled inputs (fold_preprocessing=False, "
                        "--inputs-scaled) to keep them narrow", types["input"]["result"])
    else:
        if auto:
            log.warning("hls export without background data: one type (%s) for every layer; pass data= "
                        "(--data) to size each layer from the events", DEFAULT_PRECISION)
            precision = DEFAULT_PRECISION
        if input_precision is None:
            # Scaled inputs of rarely filled slots reach |z| ~ 100 (tiny std): 2 more integer bits.
            w, i = _parse_precision(precision)
            input_precision = DEFAULT_INPUT_PRECISION if fold_preprocessing else f"ap_fixed<{w + 2},{i + 2}>"
        types = _uniform_types(plan, precision, input_precision)
        precision_label = precision
    if callable(getattr(detector, "hls_types", None)):
        # Quantisation-aware training: every layer gets exactly the format it was trained with.
        types = detector.hls_types(plan, types)
        precision_label = f"trained ({detector.get_params().get('quantize')})"
    hls4ml = _hls4ml()
    config = _hls_config(hls4ml, plan, types, int(reuse_factor))
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
            raise HLSExportError(_conversion_hint(detector.name, exc)) from exc
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
    model = HLSModel(hls_model, plan, target, precision_label, types["input"]["result"], int(reuse_factor),
                     getattr(detector, "threshold_", None))
    model.types = types
    model.profile = profile
    model.estimate = estimate_resources(plan.net, types, reuse_factor=int(reuse_factor), clock_period=clock_period)
    model.synthesis = None
    if compile and data is not None:
        model._calibrate(detector, data, target_fraction)
    model._write_metadata(detector)
    log.info("hls4ml project for %s in %s (%s, reuse %d)", detector.name, target, precision_label, reuse_factor)
    return model


def _conversion_hint(name: str, exc: Exception) -> str:
    text = f"{exc.__class__.__name__}: {exc}".splitlines()[0]
    if "precision" in text.lower() or "fixed" in text.lower() or "type" in text.lower():
        return (f"hls4ml rejected a fixed-point type while converting {name} ({text}); write types as "
                "'ap_fixed<W,I>' with 2 <= W <= 64, or use --precision auto.")
    return f"hls4ml could not convert {name} ({text}); only Linear/ReLU stacks of ae, vae, axol1tl-like and deep-svdd export."


# ---------------------------------------------------------------------- precision scan
