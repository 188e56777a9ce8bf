"""The detector registry: names -> ``"module:Class"`` strings, imported on first use.

Listing detectors (``hepad detectors``, :func:`available_detectors`) reads this table and
imports nothing, so it never pays for torch or scikit-learn; :func:`get_detector_class`
imports only the module of the class asked for, so ``make_detector("iforest")`` never imports
torch.

A new detector is one line in :data:`DETECTORS` (or a :func:`register` call from a plugin),
and is then covered by the contract suite ``tests/test_detectors_contract.py``.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, closest

if TYPE_CHECKING:
    from .base import BaseDetector

__all__ = [
    "DEFAULT_DETECTOR",
    "TRIGGER_DETECTOR",
    "DetectorEntry",
    "Preset",
    "DETECTORS",
    "PRESETS",
    "register",
    "register_preset",
    "available_detectors",
    "describe_detectors",
    "get_detector_class",
    "make_detector",
    "detector_from_state",
]

#: The detector ``hepad.train`` and ``hepad train`` use when none is named (the offline default).
DEFAULT_DETECTOR = "ae-fusion"

#: The trigger default: at most 20,000 FLOP per event, exports to ONNX and hls4ml.
TRIGGER_DETECTOR = "ae-trigger"


@dataclass(frozen=True)
class DetectorEntry:
    """A registered detector class, by import path, with what listing it needs."""

    target: str  # "package.module:ClassName"
    summary: str
    supervised: bool = False

    @property
    def kind(self) -> str:
        return "supervised" if self.supervised else "unsupervised"


@dataclass(frozen=True)
class Preset:
    """A registered detector with fixed parameter overrides."""

    detector: str
    params: dict[str, Any] = field(default_factory=dict)
    summary: str = ""

    @property
    def kind(self) -> str:
        return f"preset of {self.detector}"


_C = "hepad.detectors.classical"
_D = "hepad.detectors.deep"
_S = "hepad.detectors.supervised"

#: registry key -> entry. Keep summaries to one line: ``hepad detectors`` prints them.
DETECTORS: dict[str, DetectorEntry] = {
    "iforest": DetectorEntry(f"{_C}:IsolationForestDetector", "Isolation forest (scikit-learn): fast, assumption-free; score = isolation depth."),
    "ocsvm": DetectorEntry(f"{_C}:OneClassSVMDetector", "One-class SVM, kernel-approximated (Nystroem/RBF features + SGD): scales past 1M events."),
    "mahalanobis": DetectorEntry(f"{_C}:MahalanobisDetector", "Mahalanobis distance to the background (elliptic envelope); score = squared distance."),
    "gmm": DetectorEntry(f"{_C}:GaussianMixtureDetector", "Gaussian mixture density of the background; score = -log likelihood."),
    "knn": DetectorEntry(f"{_C}:KNNDetector", "k-nearest-neighbour distance to a background reference sample."),
    "multiplicity": DetectorEntry(f"{_C}:MultiplicityDetector",
                                  "Rarity of the event's electron, muon and jet counts in the background; score = -log P."),
    "ae": DetectorEntry(f"{_D}:AutoEncoderDetector", "Dense autoencoder, score = mean squared reconstruction error (PyTorch)."),
    "vae": DetectorEntry(f"{_D}:VAEDetector", "Variational autoencoder; score = reconstruction error, KL divergence or Σμ² (PyTorch)."),
    "deep-svdd": DetectorEntry(f"{_D}:DeepSVDDDetector", "Deep SVDD: one-class hypersphere, score = squared distance to the centre (PyTorch)."),
    "ae-qat": DetectorEntry("hepad.detectors.quantized:QATAutoEncoderDetector", "Quantisation-aware dense autoencoder for the FPGA trigger (quantize='w6a8'); hls4ml export in the trained formats."),
    "ensemble": DetectorEntry("hepad.detectors.ensemble:EnsembleDetector", "Ensemble of detectors: rank/z-score normalised, mean/max or any/majority/unanimous vote."),
    "fusion": DetectorEntry("hepad.detectors.fusion:FusionDetector", "Members fused on tail-calibrated background p-values (max = OR of members, or Fisher)."),
    "flow": DetectorEntry("hepad.detectors.flow:FlowDetector", "Normalising-flow density (zuko MAF/NSF) of the background; score = -log p (PyTorch)."),
    "gbdt": DetectorEntry(f"{_S}:GradientBoostingReference", "Supervised reference: gradient-boosted trees (needs signal labels); score = P(signal).", supervised=True),
    "mlp-classifier": DetectorEntry(f"{_S}:MLPClassifierReference", "Supervised reference: multilayer perceptron classifier (needs signal labels); score = P(signal).", supervised=True),
}

#: preset name -> preset (a registered detector with parameter overrides)
PRESETS: dict[str, Preset] = {
    "ae-keras-seed": Preset(
        "ae",
        dict(hidden_layers=[32, 16, 8], latent_dim=4, activation="relu", batch_norm=True, dropout=0.2,
             epochs=100, batch_size=256, learning_rate=1e-3, patience=15),
        "Keras seed AE: 57-32-16-8-4 mirrored, batch norm + dropout 0.2, early stopping 15.",
    ),
    "ae-torch-seed": Preset(
        "ae",
        dict(hidden_layers=[128, 64], latent_dim=32, activation="relu", output_activation="sigmoid",
             epochs=100, batch_size=64, learning_rate=1e-3, patience=10, validation_fraction=0.2,
             preprocessing={"scaling": "standard"}),
        "PyTorch seed AE: 57-128-64-32 mirrored, sigmoid output, standard scaling, early stopping.",
    ),
    "ae-adc-trivial": Preset(
        "ae",
        dict(hidden_layers=[], latent_dim=8, latent_activation="relu", output_activation="relu",
             epochs=10, batch_size=1024, patience=None, lr_patience=None, validation_fraction=0.0,
             preprocessing={"scaling": "none"}),
        "ADC2021 tutorial AE: 57 -> 8 (ReLU) -> 57 (ReLU) on raw inputs, 10 epochs.",
    ),
    "axol1tl-like": Preset(
        "vae",
        dict(hidden_layers=[28, 15], latent_dim=8, score="mu2"),
        "AXOL1TL-like VAE (CMS L1 trigger): encoder 57-28-15-8, score Σμ², encoder-only inference.",
    ),
    "atlas-ensemble": Preset(
        "ensemble",
        {
            "members": [
                {"detector": "ae"},
                {"detector": "iforest", "params": {"n_estimators": 200}},
                {"detector": "ocsvm", "params": {"nu": 0.05}},
                {"detector": "mahalanobis"},
            ],
            "combine": "majority",
        },
        "The ATLAS seed's ensemble: ae + iforest(200 trees) + ocsvm + mahalanobis, majority (>=2) vote.",
    ),
    # The two defaults of the detector study (benchmarks/detectors.py, docs/detectors.md).
    "ae-fusion": Preset(
        "fusion",
        {"members": [{"detector": "ae-trigger"}, {"detector": "ae-adc-trivial"}, {"detector": "multiplicity"}],
         "combine": "max", "tail_events": 5},
        "Offline default: standardised-pT/eta AE + raw-pT AE + object-multiplicity rarity, OR-fused on p-values.",
    ),
    "ae-trigger": Preset(
        "ae",
        {"preprocessing": {"phi": "drop"}},
        "Trigger default: AE 38-32-16-32-38 on standardised pT/eta (phi dropped), ~7,000 FLOP/event; ONNX + hls4ml.",
    ),
}

_LOADED: dict[str, type] = {}


def register(name: str, target: str, summary: str, *, supervised: bool = False) -> None:
    """Add a detector class under ``name``, given as ``"module:Class"`` (imported on first use)."""
    if (name in DETECTORS and DETECTORS[name].target != target) or name in PRESETS:
        raise ConfigError(f"Detector name {name!r} is registered twice.")
    if ":" not in target:
        raise ConfigError(f"register({name!r}): target must be 'module:Class', got {target!r}.")
    DETECTORS[name] = DetectorEntry(target, summary, supervised)


def register_preset(name: str, detector: str, params: dict[str, Any], summary: str) -> None:
    """Add a named preset: a registered detector with fixed parameter overrides."""
    if name in DETECTORS:
        raise ConfigError(f"Preset name {name!r} is a detector name.")
    if detector not in DETECTORS:
        raise ConfigError(f"register_preset({name!r}): unknown detector {detector!r}.")
    PRESETS[name] = Preset(detector, copy.deepcopy(dict(params)), summary)


def available_detectors() -> dict[str, str]:
    """Every registry key and preset with its one-line summary (imports no detector module)."""
    out = {k: e.summary for k, e in sorted(DETECTORS.items())}
    out.update({k: p.summary for k, p in sorted(PRESETS.items())})
    return out


def describe_detectors() -> dict[str, DetectorEntry | Preset]:
    """Every registry key and preset with its entry (kind, summary), imports nothing."""
    out: dict[str, DetectorEntry | Preset] = dict(sorted(DETECTORS.items()))
    out.update(sorted(PRESETS.items()))
    return out


def _unknown(name: str) -> ConfigError:
    choices = list(DETECTORS) + list(PRESETS)
    return ConfigError(f"Unknown detector {name!r}.{closest(str(name), choices)} Run `hepad detectors` to list them.")


def get_detector_class(name: str) -> type[BaseDetector]:
    """The class of a registry key or preset, importing its module on first use."""
    if name in PRESETS:
        name = PRESETS[name].detector
    if name not in DETECTORS:
        raise _unknown(name)
    if name not in _LOADED:
        module, _, attr = DETECTORS[name].target.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        if getattr(cls, "name", None) != name:
            raise ConfigError(f"{DETECTORS[name].target} declares name {getattr(cls, 'name', None)!r}, registered as {name!r}.")
        _LOADED[name] = cls
    return _LOADED[name]


def make_detector(name: str, **params: Any) -> BaseDetector:
    """An unfitted detector by registry key or preset name, with parameter overrides."""
    cls = get_detector_class(name)
    base = copy.deepcopy(PRESETS[name].params) if name in PRESETS else {}
    base.update(params)
    det = cls()
    det.set_params(**base)
    return det


def detector_from_state(doc: dict[str, Any], arrays: dict[str, Any]) -> BaseDetector:
    """Rebuild a fitted detector from :meth:`hepad.detectors.base.BaseDetector._export_state` output.

    Only registered detector classes can be built, with JSON parameters: nothing is executed
    that is not hepad's own code.
    """
    name = doc["name"]
    cls = get_detector_class(name)  # an unknown name: "Unknown detector ... Did you mean"
    if name not in DETECTORS:
        raise ConfigError(f"{name!r} is a preset, not a detector class.")
    params = doc.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{name}: params must be a mapping.")
    det = cls()
    det.set_params(**params)
    det._validate_params()  # a forged parameter gets the same error as in fit
    det._set_common_state(doc["fitted"])
    det._set_state(doc.get("meta") or {}, arrays)
    return det
