"""Deep anomaly detectors: dense autoencoder, VAE and Deep SVDD (PyTorch), and their presets.

Each estimator wraps a plain network from :mod:`hepad.detectors._nn` and trains it with
:func:`hepad.training.fit_network`. Scores live in preprocessed space (standard scaling by
default); with ``preprocessing={"mask_padding": True}`` zero-padded object slots neither count
in the reconstruction error nor can change the score.

Training parameters are constructor parameters (scikit-learn style); run options go to
``fit``: ``det.fit(X, X_val=X_val, checkpoint_dir="ckpt/", resume=True, progress=callback)``.

Reproducibility: network initialisation and training draw from torch's global RNG seeded with
``random_state`` inside :func:`torch.random.fork_rng`, so a fit never changes the caller's RNG
state and two fits with the same ``random_state`` on the same device and thread count give the
same weights.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, InputError, NotFittedError
from ..memory import chunk_rows
from ..thresholds import ThresholdRule
from ..training import ArraySource, auto_epochs, fit_network, resolve_device
from . import _nn
from .base import BaseDetector, Interval, Options, as_features

log = logging.getLogger(__name__)

__all__ = ["AutoEncoderDetector", "VAEDetector", "DeepSVDDDetector"]

def _positive_int_list(v: Any) -> bool:
    """a list of positive integers"""
    return isinstance(v, (list, tuple)) and all(
        isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h > 0 for h in v
    )


def _device_name(v: Any) -> bool:
    """'auto', 'cpu', 'cuda' or 'cuda:N'"""
    return isinstance(v, str) and (v in ("auto", "cpu") or v.startswith("cuda"))


_ACTIVATION = Options(("linear",) + tuple(_nn.ACTIVATIONS))

#: The declared constraints every torch detector shares (checked by ``_validate_params``).
DEEP_CONSTRAINTS: dict[str, list[Any]] = {
    "hidden_layers": [None, _positive_int_list],
    "latent_dim": [Interval(int, 1, None)],
    "activation": [_ACTIVATION],
    "latent_activation": [None, _ACTIVATION],
    "output_activation": [None, _ACTIVATION],
    "batch_norm": [bool],
    "dropout": [Interval(float, 0, 1, "left")],
    "epochs": [Interval(int, 1, None), Options(("auto",))],
    "batch_size": [Interval(int, 1, None)],
    "learning_rate": [Interval(float, 0, None, "neither")],
    "weight_decay": [Interval(float, 0, None)],
    "patience": [None, Interval(int, 1, None)],
    "lr_patience": [None, Interval(int, 1, None)],
    "lr_factor": [Interval(float, 0, 1, "neither")],
    "min_delta": [Interval(float, 0, None)],
    "validation_fraction": [Interval(float, 0, 1, "left")],
    "device": [_device_name],
    "n_threads": [None, Interval(int, 1, None)],
    "random_state": [Interval(int, 0, None)],
}
#: Parameters that do not change what training computes (left out of the checkpoint signature).
_RUN_PARAMS = ("epochs", "device", "n_threads", "threshold_rule")


class _DeepDetector(BaseDetector):
    """Shared machinery of the torch detectors: preprocessing, training, scoring, state."""

    #: default encoder hidden widths when ``hidden_layers`` is None
    _default_hidden: ClassVar[tuple[int, ...]] = (32,)
    #: ScoreModule kind used by score_samples and export_module
    _score_kind: ClassVar[str] = "recon"
    _parameter_constraints = DEEP_CONSTRAINTS

    # ------------------------------------------------------------------ parameters
    def _hidden(self) -> list[int]:
        hidden = self.hidden_layers
        return list(self._default_hidden if hidden is None else hidden)

    # ------------------------------------------------------------------ to implement
    def _build_net(self, n_in: int) -> nn.Module:
        raise NotImplementedError

    def _loss_fn(self) -> Callable[[nn.Module, Any], torch.Tensor]:
        raise NotImplementedError

    # ------------------------------------------------------------------ fit
    def _torch_pre(self) -> _nn.TorchPreprocess:
        pre = self.preprocessor_
        return _nn.TorchPreprocess(pre, mask_padding=bool(pre.mask_padding))

    def _prepared(self, X: np.ndarray, tp: _nn.TorchPreprocess) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            z, m = tp(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)))
        return (z, m) if tp.mask_padding else (z,)

    def _signature(self, n_train: int, n_in: int) -> dict[str, Any]:
        params = {k: v for k, v in self.get_params(deep=False).items() if k not in _RUN_PARAMS}
        return {"detector": self.name, "params": params, "n_train": n_train, "n_inputs": n_in}

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None, **run_options: Any) -> None:
        # In memory: the preprocessing is fitted on all of X, then part of it may be held out.
        X_fit = X
        if X_val is None and self.validation_fraction > 0 and len(X) >= 20:
            # Hold out part of the background to monitor early stopping and LR reduction.
            order = np.random.default_rng(self.random_state).permutation(len(X))
            n_val = max(1, int(round(self.validation_fraction * len(X))))
            X_val, X = X[order[:n_val]], X[order[n_val:]]
        self._train(ArraySource(X), None if X_val is None else ArraySource(X_val), fit_sample=X_fit, **run_options)

    def fit_source(self, source: Any, *, val_source: Any = None, **run_options: Any) -> _DeepDetector:
        """Fit from a batch source (in memory or streaming, e.g. :class:`hepad.data.FileSource`).

        A source has ``feature_names``, ``n_events``, ``sample()`` (the events the
        preprocessing is fitted on), ``batches(prepare, batch_size=, shuffle=, seed=)``,
        ``chunks()`` and ``signature()`` (see :class:`hepad.training.ArraySource`).
        ``val_source`` (optional) monitors early stopping and sets the threshold (else it is
        set on ``source.sample()``). ``run_options`` are those of :meth:`fit`.
        """
        self._validate_params()
        rule = ThresholdRule.parse(self.threshold_rule)
        self._reset_fitted()
        self.feature_names_in_ = list(source.feature_names)
        self.n_features_in_ = len(self.feature_names_in_)
        self._train(source, val_source, **run_options)
        self._threshold_on_source(source, val_source, rule)
        return self

    def _train(
        self,
        source: Any,
        val_source: Any = None,
        *,
        fit_sample: np.ndarray | None = None,
        checkpoint_dir: Any = None,
        resume: bool = False,
        progress: Callable[[int, int, dict[str, Any]], None] | None = None,
    ) -> None:
        """The one training path: preprocessing on ``fit_sample``, then the network on batches."""
        sample = source.sample()
        pre = self._make_preprocessor(sample if fit_sample is None else fit_sample)
        if (pre.log_pt and pre.pt_columns_.size == 0) or (pre.mask_padding and (pre.slot_pt_column_ < 0).all()):
            log.warning(
                "%s: preprocessing %s has no effect: no pT columns among the feature names (%s...). "
                "Pass an EventSet or (N, 19, 4) objects rather than a bare (N, F) array.",
                self.name, {k: v for k, v in pre.get_params().items() if k in ("log_pt", "mask_padding") and v},
                ", ".join(self.feature_names_in_[:3]),
            )
        tp = self._torch_pre()
        n_in = int(pre.n_features_out_)
        if self._score_kind == "recon" and int(self.latent_dim) >= n_in:
            log.warning("%s: latent_dim %d is not smaller than the %d inputs; the network can learn the "
                        "identity and reconstruct anomalies too. Use a smaller latent_dim.",
                        self.name, self.latent_dim, n_in)

        def prepare(X: np.ndarray) -> tuple[torch.Tensor, ...]:
            return self._prepared(X, tp)

        bs, seed = int(self.batch_size), int(self.random_state)
        train_batches = source.batches(prepare, batch_size=bs, shuffle=True, seed=seed)
        val_batches = None
        if val_source is not None:
            val_batches = val_source.batches(prepare, batch_size=max(bs, 8192), shuffle=False, seed=seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = self._build_net(n_in)
        if type(self)._before_training is not _DeepDetector._before_training:
            self._before_training(net, prepare(sample))
        history = fit_network(
            net,
            self._loss_fn(),
            train_batches,
            val_batches,
            epochs=self._epochs_for(source.n_events),
            lr=float(self.learning_rate),
            weight_decay=float(self.weight_decay),
            patience=self.patience,
            min_delta=float(self.min_delta),
            lr_patience=self.lr_patience,
            lr_factor=float(self.lr_factor),
            device=resolve_device(self.device),
            seed=seed,
            n_threads=self.n_threads,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            progress=progress,
            signature={**self._signature(source.n_events, n_in), **source.signature()},
        )
        self.net_ = net.to("cpu").eval()
        self.history_ = history
        self.n_inputs_ = n_in

    def _epochs_for(self, n_train: int) -> int:
        """The maximum number of epochs on ``n_train`` events (``"auto"``: :func:`hepad.training.auto_epochs`)."""
        return auto_epochs(n_train) if self.epochs == "auto" else int(self.epochs)

    def _before_training(self, net: nn.Module, train: tuple[torch.Tensor, ...]) -> None:
        """Hook run once on the initialised network (Deep SVDD fixes its centre here)."""

    # ------------------------------------------------------------------ scoring
    def _check_net(self) -> None:
        self._check_fitted()
        if not hasattr(self, "net_"):
            raise NotFittedError(f"{self.name} has no network: fit it or load a saved model with hepad.load(path).")

    def _batched(self, X: np.ndarray, fn: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
        # Blocks sized from the working-memory budget: inputs plus every layer's activations.
        # Inference leaves torch's thread count alone: it is process-wide, and the trigger
        # scores from several threads at once (``n_threads`` applies to training).
        widths = X.shape[1] * 2 + 2 * sum(self._hidden()) + int(self.latent_dim)
        rows = chunk_rows(4 * 2 * widths, max_rows=len(X))
        out = []
        with torch.inference_mode():
            for start in range(0, len(X), rows):
                out.append(fn(torch.from_numpy(X[start : start + rows])).numpy())
        return np.concatenate(out, axis=0).astype(np.float32, copy=False)

    def _score(self, X: np.ndarray) -> np.ndarray:
        self._check_net()
        module = _nn.ScoreModule(self._torch_pre(), self.net_.eval(), self._score_kind).eval()
        return self._batched(X, module)

    def _features(self, X: Any) -> np.ndarray:
        self._check_net()
        Xf = as_features(X, "X")
        if Xf.shape[1] != self.n_features_in_:
            raise InputError(f"{self.name}: got {Xf.shape[1]} features per event, the model was trained on {self.n_features_in_}.")
        return Xf

    def encode(self, X: Any) -> np.ndarray:
        """Latent representation (N, latent_dim) of each event (the mean for the VAE)."""
        Xf = self._features(X)
        tp, net = self._torch_pre(), self.net_.eval()
        return self._batched(Xf, lambda x: net.encoder(tp(x)[0]))

    def export_module(self) -> nn.Module:
        """A standalone ``nn.Module``: raw float32 (N, F_in) -> score (N,), in eval mode.

        Preprocessing (log, column selection, scaling, padding mask) is folded in as torch
        ops, so ONNX export of this module reproduces :meth:`score_samples`.
        """
        self._check_net()
        module = _nn.ScoreModule(self._torch_pre(), copy.deepcopy(self.net_), self._score_kind)
        return module.eval()

    # ------------------------------------------------------------------ state (no pickle)
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        self._check_net()
        arrays = {f"net.{k}": v.detach().cpu().numpy().copy() for k, v in self.net_.state_dict().items()}
        return {"n_inputs": int(self.n_inputs_), "torch_version": torch.__version__}, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        try:
            n_in = int(meta["n_inputs"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{self.name}: saved state lacks 'n_inputs'.") from None
        net = self._build_net(n_in)
        state = {k[4:]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("net.")}
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ConfigError(f"{self.name}: saved weights do not match the saved parameters ({exc}).") from None
        self.net_ = net.eval()
        self.n_inputs_ = n_in


class _ReconstructionMixin:
    """Per-feature reconstruction errors for the AE and VAE."""

    def feature_errors(self, X: Any) -> np.ndarray:
        """Squared reconstruction error per preprocessed feature, (N, F_out).

        Padded slots are 0 when ``preprocessing.mask_padding`` is set. The ``recon`` score is
        the mean of this over the counted features.
        """
        Xf = self._features(X)  # type: ignore[attr-defined]
        tp, net = self._torch_pre(), self.net_.eval()  # type: ignore[attr-defined]

        def fn(x: torch.Tensor) -> torch.Tensor:
            z, m = tp(x)
            return (net(z) - z) ** 2 * m

        return self._batched(Xf, fn)  # type: ignore[attr-defined]


def _recon_loss(net: nn.Module, batch: Any) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return _nn.masked_mse(batch, net(batch), None)
    z, m = batch
    return _nn.masked_mse(z, net(z), m)


class AutoEncoderDetector(_ReconstructionMixin, _DeepDetector):
    """Dense autoencoder; the anomaly score is the mean squared reconstruction error.

    The encoder maps the (preprocessed) inputs through ``hidden_layers`` to ``latent_dim``;
    the decoder mirrors it. With ``preprocessing={"mask_padding": True}`` the error averages
    over the filled object slots only.

    Parameters
    ----------
    hidden_layers : list of int, optional
        Encoder hidden widths (default [32]: a 57-32-16-32-57 network with latent_dim 16).
    latent_dim : int
        Bottleneck width.
    activation : str
        Hidden activation (relu, leaky_relu, elu, selu, gelu, tanh, sigmoid, silu).
    latent_activation, output_activation : str, optional
        Activation after the bottleneck and the output layer (None: linear).
    batch_norm : bool
        BatchNorm1d after every hidden layer.
    dropout : float
        Dropout rate after every hidden activation.
    preprocessing : dict, optional
        Options of :class:`hepad.preprocessing.Preprocessor` (scaling, log_pt, phi, mask_padding).
    epochs : int or "auto"
        The maximum number of epochs. "auto" (default): 100 up to 200,000 training events,
        fewer above so that at most 20 M events pass in all (20 at 1 M; never fewer than 3):
        as many optimiser steps as 100 epochs on 200,000 (:func:`hepad.training.auto_epochs`).
    batch_size, learning_rate, weight_decay : training
        Adam settings.
    patience, min_delta : early stopping
        Stop after ``patience`` epochs without a validation-loss improvement larger than
        ``min_delta``; the best weights are kept. None disables it.
    lr_patience, lr_factor : learning-rate reduction on plateau (None disables it).
    validation_fraction : float
        Without ``X_val``, this fraction of ``X`` is held out to monitor the loss (0: monitor
        the training loss).
    device : {"auto", "cpu", "cuda"}
        Where to train; "auto" uses a GPU when present. Scores are computed on the CPU.
    n_threads : int, optional
        torch CPU threads during fit; None keeps torch's global setting. 1 by default: these
        networks are too small to gain from intra-op threads, and on a machine shared with
        other jobs extra threads made training many times slower (see docs/detectors.md).
        Scoring leaves the process-wide setting alone (the trigger scores from several
        threads); set it once with ``torch.set_num_threads``.
    random_state : int
        Seed of initialisation, shuffling and dropout.
    """

    name = "ae"

    _default_hidden = (32,)

    def __init__(
        self,
        *,
        hidden_layers: Sequence[int] | None = None,
        latent_dim: int = 16,
        activation: str = "relu",
        latent_activation: str | None = None,
        output_activation: str | None = None,
        batch_norm: bool = False,
        dropout: float = 0.0,
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
        self.hidden_layers = hidden_layers
        self.latent_dim = latent_dim
        self.activation = activation
        self.latent_activation = latent_activation
        self.output_activation = output_activation
        self.batch_norm = batch_norm
        self.dropout = dropout
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

    def _build_net(self, n_in: int) -> nn.Module:
        return _nn.AutoEncoderNet(
            n_in, self._hidden(), int(self.latent_dim), activation=self.activation,
            latent_activation=self.latent_activation, output_activation=self.output_activation,
            batch_norm=bool(self.batch_norm), dropout=float(self.dropout),
        )

    def _loss_fn(self) -> Callable[[nn.Module, Any], torch.Tensor]:
        return _recon_loss


_VAE_SCORES = ("recon", "kl", "mu2")


class VAEDetector(_ReconstructionMixin, _DeepDetector):
    """Variational autoencoder with three anomaly scores.

    Trained on the negative ELBO: the summed squared reconstruction error (of a sample
    from the latent posterior, over the counted features) plus ``beta`` times the KL
    divergence to N(0, 1).

    Parameters
    ----------
    score : {"recon", "kl", "mu2"}
        "recon": mean squared reconstruction error from the latent mean; "kl": KL divergence
        of the posterior; "mu2": Σμ² of the latent mean, which needs only the encoder at
        inference (CMS's AXOL1TL L1 trigger).
    beta : float
        Weight of the KL term.
    hidden_layers : list of int, optional
        Encoder hidden widths (default [32]); the decoder mirrors them.
    latent_dim : int
        Latent dimension.

    The other parameters are those of :class:`AutoEncoderDetector`.
    """

    name = "vae"

    _default_hidden = (32,)
    _parameter_constraints = {
        **{k: v for k, v in DEEP_CONSTRAINTS.items() if k != "latent_activation"},
        "score": [Options(_VAE_SCORES)],
        "beta": [Interval(float, 0, None)],
    }

    def __init__(
        self,
        *,
        score: str = "recon",
        beta: float = 1.0,
        hidden_layers: Sequence[int] | None = None,
        latent_dim: int = 8,
        activation: str = "relu",
        output_activation: str | None = None,
        batch_norm: bool = False,
        dropout: float = 0.0,
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
        self.score = score
        self.beta = beta
        self.hidden_layers = hidden_layers
        self.latent_dim = latent_dim
        self.activation = activation
        self.output_activation = output_activation
        self.batch_norm = batch_norm
        self.dropout = dropout
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
    def _score_kind(self) -> str:  # type: ignore[override]
        return self.score

    def _validate_params(self) -> None:
        super()._validate_params()
        if not self._hidden():
            raise ConfigError("vae: hidden_layers needs at least one layer.")

    def _build_net(self, n_in: int) -> nn.Module:
        return _nn.VAENet(
            n_in, self._hidden(), int(self.latent_dim), activation=self.activation,
            output_activation=self.output_activation, batch_norm=bool(self.batch_norm),
            dropout=float(self.dropout),
        )

    def _loss_fn(self) -> Callable[[nn.Module, Any], torch.Tensor]:
        beta = float(self.beta)

        def loss(net: nn.Module, batch: Any) -> torch.Tensor:
            z, m = (batch, None) if isinstance(batch, torch.Tensor) else batch
            mu, logvar = net.encode_stats(z)
            # Reparameterisation; noise from the (forked, seeded) global RNG.
            sample = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            sq = (net.decoder(sample) - z) ** 2
            rec = sq.sum(dim=1) if m is None else (sq * m).sum(dim=1)
            return rec + beta * _nn.kl_divergence(mu, logvar)

        return loss


class DeepSVDDDetector(_DeepDetector):
    """Deep Support Vector Data Description (Ruff et al., ICML 2018), one-class objective.

    A bias-free dense network maps background into a small hypersphere around a centre ``c``
    fixed from the initial forward pass; the score is the squared distance to ``c``.

    Parameters
    ----------
    hidden_layers : list of int, optional
        Hidden widths (default [64, 32]).
    latent_dim : int
        Output (representation) dimension.
    activation : str
        Hidden activation (default leaky_relu, as the reference implementation).
    batch_norm : bool
        Non-affine BatchNorm1d after hidden layers.
    weight_decay : float
        L2 regularisation (default 1e-6, as the reference implementation).

    The other parameters are those of :class:`AutoEncoderDetector`.
    """

    name = "deep-svdd"

    _default_hidden = (64, 32)
    _score_kind = "svdd"
    _parameter_constraints = {
        k: v for k, v in DEEP_CONSTRAINTS.items() if k not in ("dropout", "latent_activation", "output_activation")
    }

    def __init__(
        self,
        *,
        hidden_layers: Sequence[int] | None = None,
        latent_dim: int = 16,
        activation: str = "leaky_relu",
        batch_norm: bool = False,
        preprocessing: dict[str, Any] | None = None,
        epochs: int | str = "auto",
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-6,
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
        self.hidden_layers = hidden_layers
        self.latent_dim = latent_dim
        self.activation = activation
        self.batch_norm = batch_norm
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

    def _build_net(self, n_in: int) -> nn.Module:
        return _nn.DeepSVDDNet(n_in, self._hidden(), int(self.latent_dim), activation=self.activation,
                               batch_norm=bool(self.batch_norm))

    def _before_training(self, net: nn.Module, train: tuple[torch.Tensor, ...]) -> None:
        z = train[0]
        net.init_center(z[i : i + 8192] for i in range(0, len(z), 8192))

    def _loss_fn(self) -> Callable[[nn.Module, Any], torch.Tensor]:
        def loss(net: nn.Module, batch: Any) -> torch.Tensor:
            z = batch if isinstance(batch, torch.Tensor) else batch[0]
            return ((net(z) - net.center) ** 2).sum(dim=1)

        return loss
