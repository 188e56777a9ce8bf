"""The networks behind the deep detectors: plain ``nn.Module``s, nothing else.

Each network is built from ``nn.Sequential`` blocks named ``encoder`` (and ``decoder``) that
hold only standard layers (``Linear``, ``BatchNorm1d``, activations, ``Dropout``), so hls4ml
and ONNX can convert them. The estimators in :mod:`hepad.detectors.deep` wrap them
(PyOD style: the module is the network, the estimator owns preprocessing, training and scores).

The module also holds the torch form of the preprocessing and of the scores, used both by
``score_samples`` and by ``export_module()``, so the two agree to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, closest

__all__ = [
    "ACTIVATIONS",
    "make_activation",
    "dense_block",
    "AutoEncoderNet",
    "VAENet",
    "DeepSVDDNet",
    "TorchPreprocess",
    "masked_mse",
    "kl_divergence",
    "ScoreModule",
]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
}


def make_activation(name: str | None) -> nn.Module | None:
    """An activation layer by name; ``None``/"linear" gives no layer."""
    if name is None or name == "linear":
        return None
    if name not in ACTIVATIONS:
        raise ConfigError(
            f"Unknown activation {name!r}.{closest(name, ACTIVATIONS)} Valid: linear, {', '.join(ACTIVATIONS)}."
        )
    return ACTIVATIONS[name]()


def dense_block(
    sizes: Sequence[int],
    *,
    activation: str | None,
    batch_norm: bool = False,
    dropout: float = 0.0,
    bias: bool = True,
    last_activation: str | None = None,
) -> list[nn.Module]:
    """Layers for a dense stack ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    Hidden layers are Linear [-> BatchNorm1d] -> activation [-> Dropout]; the last layer is a
    Linear followed by ``last_activation`` only (a bottleneck or output is never normalised
    or dropped out). ``bias=False`` also makes batch norm non-affine (Deep SVDD).
    """
    layers: list[nn.Module] = []
    n = len(sizes) - 1
    for i in range(n):
        layers.append(nn.Linear(int(sizes[i]), int(sizes[i + 1]), bias=bias))
        if i == n - 1:
            act = make_activation(last_activation)
            if act is not None:
                layers.append(act)
            break
        if batch_norm:
            layers.append(nn.BatchNorm1d(int(sizes[i + 1]), affine=bias))
        act = make_activation(activation)
        if act is not None:
            layers.append(act)
        if dropout > 0:
            layers.append(nn.Dropout(float(dropout)))
    return layers


class AutoEncoderNet(nn.Module):
    """Dense autoencoder: ``encoder`` (n_in -> hidden... -> latent), ``decoder`` mirrored back.

    Parameters
    ----------
    n_in : int
        Input (and output) width, in preprocessed space.
    hidden : sequence of int
        Encoder hidden widths; the decoder uses them reversed.
    latent : int
        Bottleneck width.
    activation, latent_activation, output_activation : str or None
        Activation names (see :data:`ACTIVATIONS`); None is linear.
    batch_norm : bool
        BatchNorm1d after every hidden Linear.
    dropout : float
        Dropout after every hidden activation.
    """

    def __init__(
        self,
        n_in: int,
        hidden: Sequence[int],
        latent: int,
        *,
        activation: str | None = "relu",
        latent_activation: str | None = None,
        output_activation: str | None = None,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        enc_sizes = [n_in, *hidden, latent]
        dec_sizes = [latent, *reversed(list(hidden)), n_in]
        self.encoder = nn.Sequential(
            *dense_block(enc_sizes, activation=activation, batch_norm=batch_norm, dropout=dropout,
                         last_activation=latent_activation)
        )
        self.decoder = nn.Sequential(
            *dense_block(dec_sizes, activation=activation, batch_norm=batch_norm, dropout=dropout,
                         last_activation=output_activation)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class VAENet(nn.Module):
    """Variational autoencoder with a Gaussian latent.

    ``encoder`` maps the input to the latent mean mu (it ends with the mu Linear), so the
    encoder alone is the whole trigger-side network for the Σμ² score (as CMS's AXOL1TL
    deploys). The log-variance head ``logvar`` branches off the last hidden layer
    (``encoder[:-1]``) and is only needed for training and the KL score.
    """

    def __init__(
        self,
        n_in: int,
        hidden: Sequence[int],
        latent: int,
        *,
        activation: str | None = "relu",
        output_activation: str | None = None,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not hidden:
            raise ConfigError("vae: hidden_layers needs at least one layer (the mu and logvar heads share it).")
        # The last Linear of the encoder is the mu head (no activation).
        self.encoder = nn.Sequential(
            *dense_block([n_in, *hidden, latent], activation=activation, batch_norm=batch_norm, dropout=dropout)
        )
        self.logvar = nn.Linear(int(hidden[-1]), int(latent))
        dec_sizes = [latent, *reversed(list(hidden)), n_in]
        self.decoder = nn.Sequential(
            *dense_block(dec_sizes, activation=activation, batch_norm=batch_norm, dropout=dropout,
                         last_activation=output_activation)
        )

    def encode_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of the latent Gaussian."""
        h = self.encoder[:-1](x)
        mu = self.encoder[-1](h)
        # Clamped so exp() cannot overflow early in training.
        return mu, torch.clamp(self.logvar(h), -20.0, 20.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Deterministic reconstruction from the mean: what the recon score uses.
        return self.decoder(self.encoder(x))


class DeepSVDDNet(nn.Module):
    """Deep SVDD feature map (Ruff et al. 2018): bias-free dense layers, a fixed centre.

    No bias terms and no affine batch norm, so the network cannot map every input onto the
    centre with all-zero weights (the "hypersphere collapse"). The centre ``center`` is a
    buffer set once from the initial forward pass (:meth:`init_center`) and saved with the
    weights.
    """

    def __init__(
        self,
        n_in: int,
        hidden: Sequence[int],
        latent: int,
        *,
        activation: str | None = "leaky_relu",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            *dense_block([n_in, *hidden, latent], activation=activation, batch_norm=batch_norm,
                         bias=False, last_activation=None)
        )
        self.register_buffer("center", torch.zeros(int(latent)))

    @torch.no_grad()
    def init_center(self, batches: Any, eps: float = 0.1) -> None:
        """Set the centre to the mean feature of ``batches`` (an iterable of input tensors).

        Coordinates closer to zero than ``eps`` are pushed to ±eps, as in the reference
        implementation: a zero coordinate is trivially matched by zero weights.
        """
        was_training = self.training
        self.eval()
        total, n = None, 0
        for xb in batches:
            z = self.encoder(xb).double().sum(dim=0)
            total = z if total is None else total + z
            n += xb.shape[0]
        c = (total / max(n, 1)).float()
        c = torch.where(c.abs() < eps, torch.where(c < 0, -eps, eps), c)
        self.center.copy_(c)
        self.train(was_training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


# ---------------------------------------------------------------------- losses and scores
def masked_mse(x: torch.Tensor, recon: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-event mean squared error over the counted features (mask 1), shape (N,)."""
    sq = (recon - x) ** 2
    if mask is None:
        return sq.mean(dim=1)
    return (sq * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-event KL(N(mu, exp(logvar)) || N(0, 1)), shape (N,)."""
    return 0.5 * (mu**2 + torch.exp(logvar) - 1.0 - logvar).sum(dim=1)


# ---------------------------------------------------------------------- preprocessing in torch
class TorchPreprocess(nn.Module):
    """A fitted :class:`hepad.preprocessing.Preprocessor` as torch ops.

    ``forward(x_raw)`` returns ``(z, mask)``: the scaled features (with padded slots set to
    the value an all-zero slot takes, when masking) and the (N, F_out) padding mask (all
    ones without masking). Only elementwise ops, one gather and a where, so ONNX exports it.
    """

    def __init__(self, pre: Any, *, mask_padding: bool) -> None:
        super().__init__()
        pt_cols = np.asarray(pre.pt_columns_, dtype=np.int64)
        log_mask = np.zeros(pre.n_features_in_, dtype=bool)
        if pre.log_pt and pt_cols.size:
            log_mask[pt_cols] = True
        keep = np.asarray(pre.keep_columns_, dtype=np.int64)
        slot = np.asarray(pre.slot_pt_column_, dtype=np.int64)
        self.use_log = bool(log_mask.any())
        self.use_keep = keep.size != pre.n_features_in_ or not np.array_equal(keep, np.arange(keep.size))
        self.mask_padding = bool(mask_padding and (slot >= 0).any())
        self.register_buffer("log_mask", torch.from_numpy(log_mask))
        self.register_buffer("keep", torch.from_numpy(keep))
        self.register_buffer("offset", torch.from_numpy(np.asarray(pre.offset_, dtype=np.float32).copy()))
        self.register_buffer("scale", torch.from_numpy(np.asarray(pre.scale_, dtype=np.float32).copy()))
        self.register_buffer("slot_col", torch.from_numpy(np.where(slot >= 0, slot, 0)))
        self.register_buffer("has_slot", torch.from_numpy(slot >= 0))
        zero = pre.transform(np.zeros((1, pre.n_features_in_), dtype=np.float32))[0]
        self.register_buffer("z_empty", torch.from_numpy(zero.astype(np.float32)))

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        if not self.mask_padding:
            return torch.ones(x.shape[0], self.keep.shape[0], dtype=x.dtype, device=x.device)
        # Float where (not bool): ONNX Runtime has no bool Where kernel.
        filled = (x.index_select(1, self.slot_col) > 0).to(x.dtype)
        return torch.where(self.has_slot, filled, torch.ones_like(filled))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.mask(x)
        if self.use_log:
            x = torch.where(self.log_mask, torch.log1p(torch.clamp(x, min=0.0)), x)
        if self.use_keep:
            x = x.index_select(1, self.keep)
        z = (x - self.offset) / self.scale
        if self.mask_padding:
            z = torch.where(m > 0, z, self.z_empty)
        return z, m


class ScoreModule(nn.Module):
    """Raw float32 inputs (N, F_in) -> anomaly score (N,): preprocessing + network + score.

    ``kind`` is "recon" (masked MSE of the reconstruction), "kl", "mu2" (VAE) or
    "svdd" (squared distance to the centre).
    """

    def __init__(self, pre: TorchPreprocess, net: nn.Module, kind: str) -> None:
        super().__init__()
        self.pre = pre
        self.net = net
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, m = self.pre(x)
        if self.kind == "mu2":
            mu = self.net.encoder(z)
            return (mu**2).sum(dim=1)
        if self.kind == "kl":
            mu, logvar = self.net.encode_stats(z)
            return kl_divergence(mu, logvar)
        if self.kind == "svdd":
            return ((self.net.encoder(z) - self.net.center) ** 2).sum(dim=1)
        recon = self.net(z)
        if self.pre.mask_padding:
            return masked_mse(z, recon, m)
        return masked_mse(z, recon, None)
