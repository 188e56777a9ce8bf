"""Exporters of the torch detectors: ONNX (any runtime) and hls4ml (FPGA firmware + emulation).

Both hang off one representation, the detector's ``export_module()`` (raw inputs -> score,
preprocessing folded in), and both have a parity test against PyTorch
(``tests/test_export_parity.py``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["export_onnx", "read_onnx_metadata", "export_hls", "precision_scan", "HLSModel", "layer_names",
           "hls_tool", "synthesis_report"]

# hls4ml is heavy to import: load each exporter on first use.
_LAZY = {
    "export_onnx": "onnx",
    "read_onnx_metadata": "onnx",
    "export_hls": "hls",
    "precision_scan": "scan",
    "HLSModel": "hls",
    "layer_names": "_precision",  # the names hls4ml gives a network's layers
    "hls_tool": "_resources",  # vitis_hls / vivado_hls on PATH, or None
    "synthesis_report": "_resources",  # C synthesis resources and latency, when a tool is present
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'hepad.export' has no attribute {name!r}")
