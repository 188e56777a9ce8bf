"""Heavy and optional dependencies, imported on use in one place (as uproot's ``extras``).

Each function imports one library and returns the module; when it is missing (or fails to
import) it raises :class:`hepad.errors.DependencyError` with the exact ``pip install`` line,
pinned as ``pyproject.toml`` pins it (a test checks the two agree).

Modules that need a library call these instead of importing it at the top, so that e.g.
``hepad.make_detector("iforest")`` never imports torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import DependencyError

__all__ = ["PINS", "require", "torch", "onnx", "onnxruntime", "hls4ml", "dask_distributed", "zmq", "pythia8"]

#: import name -> the pip requirement, as pinned in pyproject.toml
PINS: dict[str, str] = {
    "torch": "torch==2.13.0",
    "onnx": "onnx==1.23.2",
    "onnxruntime": "onnxruntime==1.32.0",
    "hls4ml": "hls4ml==1.3.0",
    "dask": "dask[distributed]==2026.8.0",
    "distributed": "distributed==2026.8.0",
    "zmq": "pyzmq==27.3.0",
    "pythia8": "pythia8mc==8.317.2",
    "fastjet": "fastjet==3.5.2.0",
    "uproot": "uproot==5.7.7",
    "pyarrow": "pyarrow==26.0.1",
    "zuko": "zuko==1.6.0",
}


def install_line(name: str) -> str:
    """``pip install 'REQ'`` for the import name ``name``."""
    req = PINS.get(name, name)
    return f"pip install '{req}'" if "[" in req else f"pip install {req}"


def require(name: str, purpose: str) -> ModuleType:
    """Import ``name`` or raise DependencyError: '<purpose> needs <name> (...): pip install ...'."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        top = name.split(".")[0]
        raise DependencyError(f"{purpose} needs {top} ({exc}); install it with: {install_line(top)}") from None


def torch(purpose: str = "This detector") -> ModuleType:
    return require("torch", purpose)


def onnx(purpose: str = "ONNX export") -> ModuleType:
    return require("onnx", purpose)


def onnxruntime(purpose: str = "The onnx engine") -> ModuleType:
    return require("onnxruntime", purpose)


def hls4ml(purpose: str = "hls export") -> ModuleType:
    return require("hls4ml", purpose)


def dask_distributed(purpose: str = "Dask scheduling") -> ModuleType:
    """``dask.distributed`` (the scheduler client); installs with dask's ``distributed`` extra."""
    try:
        return importlib.import_module("dask.distributed")
    except ImportError as exc:
        raise DependencyError(f"{purpose} needs dask.distributed ({exc}); install it with: {install_line('dask')}") from None


def zmq(purpose: str = "The ZeroMQ source") -> ModuleType:
    return require("zmq", purpose)


def pythia8(purpose: str = "Event generation") -> ModuleType:
    return require("pythia8", purpose)
