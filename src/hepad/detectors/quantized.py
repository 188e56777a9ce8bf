"""Quantisation-aware training (QAT) of the dense autoencoder, for the FPGA trigger.

Route: plain-PyTorch fake quantisation (not Brevitas/QONNX; see docs/deployment.md). The
network trains with the arithmetic the firmware runs, and the hls4ml export
(:func:`hepad.export.export_hls`) sets every layer's fixed-point type to exactly the format it
was trained with (:meth:`QATAutoEncoderDetector.hls_types`), so the C simulation reproduces the
training-time numbers:

- weights: per layer, ``w`` bits, symmetric, power-of-two step: ``ap_fixed<w, I>`` with ``I``
  the integer bits (incl. sign) of the layer's largest weight; every trained weight is a
  multiple of the step, hence exactly representable;
- biases: on the accumulator's grid (fraction bits of input + weight), so the sum is exact;
- activations: every Linear output is rounded (round half up, ``AP_RND``) and saturated
  (``AP_SAT``) to ``a`` bits: after ReLU unsigned ``ap_ufixed<a, I>``, the latent and the
  output signed ``ap_fixed<a, I>``; the inputs (scaled) too. ``I`` comes from the training
  events (largest value at initialisation, 1 bit headroom) and is saved with the weights;
- gradients pass the rounding straight through (STE).

``quantize="w6a8"``: 6-bit weights, 8-bit activations.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from . import _nn
from .deep import AutoEncoderDetector

__all__ = ["QATAutoEncoderDetector", "parse_quantize"]

_QUANT_RE = re.compile(r"^w(\d+)a(\d+)$")


def parse_quantize(spec: str) -> tuple[int, int]:
    """``"w6a8"`` -> (6, 8): weight and activation bits."""
    m = _QUANT_RE.match(str(spec).strip().lower())
    if not m:
        raise ConfigError(f"quantize {spec!r}: write it as 'w<weight bits>a<activation bits>', e.g. 'w6a8'.")
    w, a = int(m.group(1)), int(m.group(2))
    if not 2 <= w <= 16 or not 2 <= a <= 16:
        raise ConfigError(f"quantize {spec!r}: weight and activation bits must be in 2..16.")
    return w, a


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    # Round half up, as ap_fixed's AP_RND; the gradient passes straight through.
    return x + (torch.floor(x + 0.5) - x).detach()


def _int_bits(max_abs: float) -> int:
    """Integer bits (incl. sign) of a signed fixed-point type that holds ``max_abs``."""
    if not max_abs > 0:
        return 1
    return int(math.floor(math.log2(max_abs))) + 2


class QuantAct(nn.Module):
    """Round + saturate to ``bits``-bit fixed point (unsigned after ReLU), I from calibration."""

    def __init__(self, bits: int, *, signed: bool) -> None:
        super().__init__()
        self.bits = int(bits)
        self.signed = bool(signed)
        self.register_buffer("int_bits", torch.tensor(0, dtype=torch.int64))

    def calibrate(self, x: torch.Tensor) -> None:
        m = float(x.detach().abs().max()) if x.numel() else 0.0
        # Unsigned: I bits hold [0, 2^I); signed: I incl. sign holds [-2^(I-1), 2^(I-1)).
        i = _int_bits(m) - (0 if self.signed else 1) + 1  # one bit headroom
        self.int_bits.fill_(int(i))

    @property
    def frac_bits(self) -> int:
        return self.bits - int(self.int_bits)

    def hls_type(self) -> str:
        if self.signed:
            return f"ap_fixed<{self.bits},{int(self.int_bits)},AP_RND,AP_SAT>"
        return f"ap_ufixed<{self.bits},{int(self.int_bits)},AP_RND,AP_SAT>"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step = 2.0 ** -self.frac_bits
        if self.signed:
            lo, hi = -(2.0 ** (self.bits - 1)), 2.0 ** (self.bits - 1) - 1
        else:
            lo, hi = 0.0, 2.0**self.bits - 1
        q = torch.clamp(_round_ste(x / step), lo, hi)
        return q * step


class QuantLinear(nn.Linear):
    """Linear with ``w_bits`` symmetric power-of-two weights; bias on the accumulator grid."""

    def __init__(self, n_in: int, n_out: int, w_bits: int, in_quant: QuantAct) -> None:
        super().__init__(n_in, n_out)
        self.w_bits = int(w_bits)
        self.in_quant = [in_quant]  # a reference, not a child module (no duplicate state)

    def weight_format(self) -> tuple[int, int]:
        """(integer bits incl. sign, fraction bits) of this layer's weights."""
        i = _int_bits(float(self.weight.detach().abs().max()))
        return i, self.w_bits - i

    def quant_weight(self) -> torch.Tensor:
        _, f = self.weight_format()
        step = 2.0**-f
        n = 2.0 ** (self.w_bits - 1)
        return torch.clamp(_round_ste(self.weight / step), -n, n - 1) * step

    def bias_frac_bits(self) -> int:
        return self.weight_format()[1] + self.in_quant[0].frac_bits

    def quant_bias(self) -> torch.Tensor:
        step = 2.0 ** -self.bias_frac_bits()
        return _round_ste(self.bias / step) * step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.quant_weight(), self.quant_bias())


class QATAutoEncoderNet(nn.Module):
    """Autoencoder ``n_in -> hidden... -> latent -> ...hidden -> n_in`` with fake quantisation.

    ``encoder`` and ``decoder`` are Sequentials of QuantAct / QuantLinear / ReLU; the first
    QuantAct quantises the (scaled) inputs.
    """

    def __init__(self, n_in: int, hidden: Sequence[int], latent: int, *, w_bits: int, a_bits: int) -> None:
        super().__init__()
        sizes = [n_in, *hidden, latent, *reversed(list(hidden)), n_in]
        n_enc = len(hidden) + 1
        q_in = QuantAct(a_bits, signed=True)
        enc: list[nn.Module] = [q_in]
        dec: list[nn.Module] = []
        prev = q_in
        for i in range(len(sizes) - 1):
            target = enc if i < n_enc else dec
            target.append(QuantLinear(sizes[i], sizes[i + 1], w_bits, prev))
            hidden_layer = i != n_enc - 1 and i != len(sizes) - 2
            if hidden_layer:
                target.append(nn.ReLU())
            prev = QuantAct(a_bits, signed=not hidden_layer)
            target.append(prev)
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def calibrate(self, z: torch.Tensor) -> None:
        """Integer bits of every activation from a float pass over training inputs ``z``."""
        with torch.no_grad():
            x = z
            for layer in [*self.encoder, *self.decoder]:
                if isinstance(layer, QuantAct):
                    layer.calibrate(x)
                    x = layer(x)
                elif isinstance(layer, QuantLinear):
                    x = nn.functional.linear(x, layer.weight, layer.bias)
                else:
                    x = layer(x)

    def plain(self) -> _nn.AutoEncoderNet:
        """The exported float network: Linear (quantised weights) and ReLU, quantisers dropped."""

        def convert(seq: nn.Sequential) -> nn.Sequential:
            out: list[nn.Module] = []
            for layer in seq:
                if isinstance(layer, QuantLinear):
                    lin = nn.Linear(layer.in_features, layer.out_features)
                    with torch.no_grad():
                        lin.weight.copy_(layer.quant_weight())
                        lin.bias.copy_(layer.quant_bias())
                    out.append(lin)
                elif isinstance(layer, nn.ReLU):
                    out.append(nn.ReLU())
            return nn.Sequential(*out)

        net = _nn.AutoEncoderNet.__new__(_nn.AutoEncoderNet)
        nn.Module.__init__(net)
        net.encoder = convert(self.encoder)
        net.decoder = convert(self.decoder)
        return net.eval()

    def formats(self) -> list[dict[str, str]]:
        """Per exported layer (Linear, ReLU in order): the hls4ml types it was trained with."""
        out: list[dict[str, str]] = []
        layers = [*self.encoder, *self.decoder]
        for k, layer in enumerate(layers):
            if isinstance(layer, QuantLinear):
                wi, wf = layer.weight_format()
                fin = layer.in_quant[0]
                frac = wf + fin.frac_bits
                b = layer.bias.detach()
                b_int = _int_bits(float(b.abs().max())) + 1
                # Exact accumulator: |sum| <= n_in * 2^(I_in) * 2^(I_w - 1) + |bias|.
                acc_int = max(int(fin.int_bits) + wi + int(math.ceil(math.log2(layer.in_features))) + 1, b_int)
                nxt = layers[k + 1]
                relu_next = isinstance(nxt, nn.ReLU)
                q_out = layers[k + 2] if relu_next else nxt
                assert isinstance(q_out, QuantAct)
                # Before a ReLU: the signed type one bit wider, so ReLU(round(x)) == round(ReLU(x)).
                res = (f"ap_fixed<{q_out.bits + 1},{int(q_out.int_bits) + 1},AP_RND,AP_SAT>" if relu_next
                       else q_out.hls_type())
                out.append({
                    "weight": f"ap_fixed<{layer.w_bits},{wi}>",
                    "bias": f"ap_fixed<{b_int + frac},{b_int}>",
                    "accum": f"ap_fixed<{acc_int + frac},{acc_int}>",
                    "result": res,
                })
            elif isinstance(layer, nn.ReLU):
                q_out = layers[k + 1]
                out.append({"result": q_out.hls_type()})
        return out


class QATAutoEncoderDetector(AutoEncoderDetector):
    """Dense autoencoder trained quantisation-aware for the FPGA trigger (score: reconstruction MSE).

    Same parameters as ``ae`` (ReLU hidden activations, no batch norm) plus ``quantize``
    ("w<weight bits>a<activation bits>", default "w6a8"). Its hls4ml export uses exactly the
    trained fixed-point formats (see :mod:`hepad.detectors.quantized`).
    """

    name = "ae-qat"
    _default_hidden = (32,)

    def __init__(
        self,
        *,
        quantize: str = "w6a8",
        hidden_layers: Sequence[int] | None = None,
        latent_dim: int = 8,
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
        super().__init__(
            hidden_layers=hidden_layers, latent_dim=latent_dim, activation=activation,
            latent_activation=latent_activation, output_activation=output_activation, batch_norm=batch_norm,
            dropout=dropout, preprocessing=preprocessing, epochs=epochs, batch_size=batch_size,
            learning_rate=learning_rate, weight_decay=weight_decay, patience=patience, lr_patience=lr_patience,
            lr_factor=lr_factor, min_delta=min_delta, validation_fraction=validation_fraction, device=device,
            n_threads=n_threads, random_state=random_state, threshold_rule=threshold_rule,
        )
        self.quantize = quantize

    _parameter_constraints = {**AutoEncoderDetector._parameter_constraints, "quantize": [str]}

    def _validate_params(self) -> None:
        super()._validate_params()
        parse_quantize(self.quantize)
        if self.activation != "relu" or self.batch_norm or self.latent_activation or self.output_activation:
            raise ConfigError(
                f"{self.name}: quantisation-aware training supports ReLU hidden layers with linear latent and "
                "output, without batch norm (activation='relu', batch_norm=False, latent/output_activation=None)."
            )

    def _build_net(self, n_in: int) -> nn.Module:
        w, a = parse_quantize(self.quantize)
        return QATAutoEncoderNet(n_in, self._hidden(), int(self.latent_dim), w_bits=w, a_bits=a)

    def _before_training(self, net: nn.Module, train: tuple[torch.Tensor, ...]) -> None:
        net.calibrate(train[0])  # type: ignore[operator]

    def export_module(self) -> nn.Module:
        """Raw inputs -> score with the quantised network (quantisers in place, eval mode).

        The hls4ml and ONNX exports see :meth:`plain` layers through ``fpga_network``; the
        ScoreModule here keeps the quantisers so ``score_samples`` and ONNX agree.
        """
        self._check_net()
        module = _nn.ScoreModule(self._torch_pre(), copy.deepcopy(self.net_), self._score_kind)
        return module.eval()

    def fpga_module(self) -> nn.Module:
        """What goes to hls4ml: the plain Linear/ReLU network with the quantised weights."""
        self._check_net()
        return _nn.ScoreModule(self._torch_pre(), self.net_.plain(), self._score_kind).eval()

    def hls_types(self, plan: Any, types: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
        """``types`` (sized on data) with every network layer set to its trained format."""
        from ..export import layer_names

        fmts = self.net_.formats()
        names = layer_names(plan.net)
        out = {k: dict(v) for k, v in types.items()}
        q_in = self.net_.encoder[0].hls_type()
        if plan.folded:
            # The scaling layer (BatchNorm) outputs the quantised inputs.
            out[names[0]] = {**out[names[0]], "result": q_in}
            names = names[1:]
        else:
            out["input"] = {"result": q_in}
        if len(names) != len(fmts):
            raise ConfigError(f"{self.name}: the exported network has {len(names)} layers, the trained one {len(fmts)}.")
        for name, fmt in zip(names, fmts):
            out[name] = dict(fmt)
        return out

