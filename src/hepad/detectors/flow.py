"""Normalising-flow density of the background (zuko); score = -log p(x).

A masked autoregressive flow (``zuko.flows.MAF``, or a neural spline flow ``NSF``) learns the
density of the preprocessed inputs; an event's anomaly score is its negative log-likelihood.
Unlike an autoencoder it needs no bottleneck and reads every feature's joint distribution.

The ADC2021 inputs are zero-padded: an empty slot puts a point mass at one value, which a
density model can make arbitrarily sharp (the likelihood diverges during training). Gaussian
noise of width ``noise`` (in scaled units) is added to the training inputs, so the flow learns
the smoothed density; scores are computed on the inputs without noise.

zuko is pinned in the project's dependencies and imported (through :mod:`hepad.extras`) when the
detector is fitted or loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .base import Interval, Options
from .deep import DEEP_CONSTRAINTS, _DeepDetector

log = logging.getLogger(__name__)

__all__ = ["FlowDetector"]

_KINDS = ("maf", "nsf")


def _zuko() -> Any:
    from .. import extras

    return extras.require("zuko", "the flow detector")


class _FlowNet(nn.Module):
    """Wraps a zuko flow: ``log_prob(z)`` of preprocessed inputs."""

    def __init__(self, n_in: int, kind: str, transforms: int, hidden: Sequence[int]) -> None:
        super().__init__()
        zuko = _zuko()
        cls = {"maf": zuko.flows.MAF, "nsf": zuko.flows.NSF}[kind]
        self.flow = cls(features=n_in, context=0, transforms=int(transforms), hidden_features=[int(h) for h in hidden])

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return self.flow().log_prob(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return -self.log_prob(z)


class _FlowScore(nn.Module):
    def __init__(self, pre: nn.Module, net: _FlowNet) -> None:
        super().__init__()
        self.pre, self.net = pre, net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, _ = self.pre(x)
        return -self.net.log_prob(z)


class FlowDetector(_DeepDetector):
    """Masked autoregressive (or neural spline) flow on the preprocessed inputs.

    Parameters
    ----------
    kind : {"maf", "nsf"}
        zuko's ``MAF`` (affine autoregressive transforms) or ``NSF`` (rational-quadratic splines).
    transforms : int
        Number of autoregressive transforms.
    hidden_layers : list of int, optional
        Hidden widths of each transform's MADE network (default [64, 64]).
    noise : float
        Standard deviation of the Gaussian noise added to the (scaled) training inputs.
    preprocessing : dict, optional
        Options of :class:`hepad.preprocessing.Preprocessor` (default: standard scaling).

    The training parameters are those of :class:`hepad.detectors.deep.AutoEncoderDetector`.
    """

    name = "flow"

    _default_hidden = (64, 64)
    _score_kind = "flow"
    _parameter_constraints = {
        **{k: v for k, v in DEEP_CONSTRAINTS.items() if k not in (
            "latent_dim", "activation", "latent_activation", "output_activation", "batch_norm", "dropout")},
        "kind": [Options(_KINDS)],
        "transforms": [Interval(int, 1, None)],
        "noise": [Interval(float, 0, None)],
    }

    def __init__(
        self,
        *,
        kind: str = "maf",
        transforms: int = 3,
        hidden_layers: Sequence[int] | None = None,
        noise: float = 0.1,
        preprocessing: dict[str, Any] | None = None,
        epochs: int | str = "auto",
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        patience: int | None = 10,
        lr_patience: int | None = 5,
        lr_factor: float = 0.5,
        min_delta: float = 0.0,
        validation_fraction: float = 0.1,
        device: str = "auto",
        n_threads: int | None = 1,
        random_state: int = 0,
        threshold_rule: Any = None,
    ) -> None:
        self.kind = kind
        self.transforms = transforms
        self.hidden_layers = hidden_layers
        self.noise = noise
        self.preprocessing = preprocessing
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.lr_patience = lr_patience
        self.lr_factor = lr_factor
        self.min_delta = min_delta
        self.validation_fraction = validation_fraction
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.threshold_rule = threshold_rule

    @property
    def latent_dim(self) -> int:  # the flow has no bottleneck; _DeepDetector checks this name
        return 1

    def _build_net(self, n_in: int) -> nn.Module:
        return _FlowNet(n_in, self.kind, int(self.transforms), self._hidden())

    def _loss_fn(self) -> Callable[[nn.Module, Any], torch.Tensor]:
        noise = float(self.noise)

        def loss(net: nn.Module, batch: Any) -> torch.Tensor:
            z = batch if isinstance(batch, torch.Tensor) else batch[0]
            if net.training and noise > 0:
                z = z + noise * torch.randn_like(z)
            return -net.log_prob(z)

        return loss

    def _score(self, X: np.ndarray) -> np.ndarray:
        self._check_net()
        module = _FlowScore(self._torch_pre(), self.net_.eval()).eval()
        return self._batched(X, module)

    def export_module(self) -> nn.Module:
        raise ConfigError(
            "flow: a normalising flow has no ONNX/hls4ml export in hepad; score it in Python (hepad score), "
            "or export an autoencoder (e.g. the trigger default ae-trigger)."
        )
