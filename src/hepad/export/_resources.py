"""Resource and latency of an hls4ml design: an analytic estimate, or the synthesis report.

Which tool
----------
- **Synthesis** (``source="vitis_hls"``/``"vivado_hls"``): when ``vitis_hls`` or ``vivado_hls`` is
  on PATH, :func:`synthesis_report` runs hls4ml's ``build(csim=False, synth=True)`` and reads the
  report with ``hls4ml.report``: the numbers to trust.
- **Analytic** (``source="estimate (analytic)"``), otherwise. ``rule4ml`` (a learned estimator) was
  considered; rule4ml 0.2.0 installs TensorFlow 2.21, Keras 3, torch-geometric and another h5py
  beside hepad's pinned torch, so it is not a dependency. The analytic model counts, per
  ``Linear`` with ``n_in x n_out`` nonzero weights at reuse factor ``R``:

  * multipliers ``ceil(nonzero / R)``; one goes to DSP48 slices (27x18) when both operands
    are wider than 10 bits (``ceil(w/27) * ceil(a/18)`` slices), else to LUTs
    (``w * a / 2`` LUTs, the size of an array multiplier after Vivado's trimming);
  * adders ``ceil((n_in - 1) * n_out / R)``, each as wide as the accumulator, one LUT per bit;
  * flip-flops: every layer's outputs registered at its result width, plus the accumulators
    when ``R > 1``;
  * BRAM: 0 (io_parallel with the latency strategy keeps weights in registers; hls4ml moves
    them to BRAM only for the resource strategy of large layers);
  * latency: ``R + 1 + ceil(log2(n_in) / 3)`` cycles per Linear (multiply, a 3-level-per-cycle
    adder tree, the output register), 1 per scaling step, 1 per activation.

  It is a first-order estimate (within a factor of ~2 of synthesis for small dense networks);
  use it to compare designs, and synthesis to sign off.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["ResourceEstimate", "estimate_resources", "synthesis_report", "hls_tool"]

ANALYTIC = "estimate (analytic)"


@dataclass
class ResourceEstimate:
    source: str
    dsp: int
    lut: int
    ff: int
    bram: int
    latency_cycles: int
    clock_period_ns: float
    reuse_factor: int
    per_layer: list[dict[str, Any]] = field(default_factory=list)

    @property
    def latency_ns(self) -> float:
        return self.latency_cycles * self.clock_period_ns

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bits(type_str: str) -> int:
    m = re.match(r"ap_u?fixed<\s*(\d+)", str(type_str).replace(" ", ""))
    return int(m.group(1)) if m else 16


def estimate_resources(net: Any, types: Mapping[str, Mapping[str, str]], *, reuse_factor: int = 1,
                       clock_period: float = 5.0) -> ResourceEstimate:
    """The analytic estimate (see the module docstring) of the hls4ml design of ``net``."""
    from torch import nn

    from ._precision import layer_names

    R = int(reuse_factor)
    rows = []
    prev = types.get("input", {}).get("result", "ap_fixed<16,6>")
    for name, child in zip(layer_names(net), net.children()):
        t = types.get(name, {})
        res_bits = _bits(t.get("result", prev))
        row = {"layer": name, "kind": type(child).__name__, "dsp": 0, "lut": 0, "ff": 0, "latency": 1}
        if isinstance(child, nn.Linear):
            w = child.weight.detach().numpy()
            nonzero = int(np.count_nonzero(w))
            wb, ab, acc = _bits(t.get("weight")), _bits(prev), _bits(t.get("accum", t.get("result")))
            mults = math.ceil(nonzero / R)
            if min(wb, ab) > 10:
                row["dsp"] = mults * math.ceil(wb / 27) * math.ceil(ab / 18)
            else:
                row["lut"] += mults * math.ceil(wb * ab / 2)
            row["lut"] += math.ceil(max(child.in_features - 1, 0) * child.out_features / R) * acc
            row["ff"] = child.out_features * res_bits + (child.out_features * acc if R > 1 else 0)
            row["latency"] = R + 1 + math.ceil(math.log2(max(child.in_features, 2)) / 3)
            row["multipliers"] = mults
        elif isinstance(child, nn.BatchNorm1d):
            sb, ab = _bits(t.get("scale")), _bits(prev)
            n = child.num_features
            if min(sb, ab) > 10:
                row["dsp"] = n * math.ceil(sb / 27) * math.ceil(ab / 18)
            else:
                row["lut"] += n * math.ceil(sb * ab / 2)
            row["lut"] += n * res_bits  # the bias add
            row["ff"] = n * res_bits
            row["multipliers"] = n
        rows.append(row)
        prev = t.get("result", prev)
    # Activations: one comparator + mux per output, one LUT per bit; their width is the previous result's.
    for i, (row, child) in enumerate(zip(rows, net.children())):
        if not isinstance(child, (nn.Linear, nn.BatchNorm1d)) and i > 0:
            n_out = getattr(list(net.children())[i - 1], "out_features", None) or getattr(
                list(net.children())[i - 1], "num_features", 0)
            bits = _bits(types.get(row["layer"], {}).get("result", "ap_fixed<16,6>"))
            row["lut"] = int(n_out) * bits
            row["ff"] = int(n_out) * bits
    return ResourceEstimate(
        source=ANALYTIC, dsp=sum(r["dsp"] for r in rows), lut=sum(r["lut"] for r in rows),
        ff=sum(r["ff"] for r in rows), bram=0, latency_cycles=sum(r["latency"] for r in rows),
        clock_period_ns=float(clock_period), reuse_factor=R, per_layer=rows,
    )


def hls_tool() -> str | None:
    """``vitis_hls`` or ``vivado_hls`` when one is on PATH, else None."""
    for tool in ("vitis_hls", "vivado_hls"):
        if shutil.which(tool):
            return tool
    return None


def synthesis_report(hls_model: Any, clock_period: float, reuse_factor: int) -> ResourceEstimate | None:
    """Run C synthesis with the tool on PATH and read its report (None when no tool is installed)."""
    tool = hls_tool()
    if tool is None:
        return None
    import hls4ml

    hls_model.build(csim=False, synth=True, vsynth=False)
    rep = hls4ml.report.read_vivado_report(hls_model.config.get_output_dir()) or {}
    csr = rep.get("CSynthesisReport", rep) if isinstance(rep, dict) else {}

    def num(key: str) -> int:
        try:
            return int(float(csr.get(key, 0)))
        except (TypeError, ValueError):
            return 0

    return ResourceEstimate(source=tool, dsp=num("DSP"), lut=num("LUT"), ff=num("FF"), bram=num("BRAM_18K"),
                            latency_cycles=num("WorstLatency"), clock_period_ns=float(clock_period),
                            reuse_factor=int(reuse_factor))
