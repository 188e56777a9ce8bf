"""The one optional-imports module: pins agree with pyproject.toml, errors give the pip line."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from hepad import extras
from hepad.errors import DependencyError, HepadError

PYPROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())


def test_pins_match_pyproject():
    deps = PYPROJECT["project"]["dependencies"]
    for name, req in extras.PINS.items():
        assert req in deps, f"extras.PINS[{name!r}] = {req!r} is not pinned so in pyproject.toml"


def test_missing_library_names_the_pip_line(monkeypatch):
    import builtins
    import importlib

    real = importlib.import_module

    def fake(name, *a, **k):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(DependencyError) as info:
        extras.onnxruntime("The onnx engine")
    msg = str(info.value)
    assert isinstance(info.value, HepadError) and isinstance(info.value, ImportError)
    assert msg.startswith("The onnx engine needs onnxruntime") and msg.endswith("pip install onnxruntime==1.32.0")
    assert extras.install_line("dask") == "pip install 'dask[distributed]==2026.8.0'"
    assert builtins  # imported for the monkeypatch scope only


def test_no_other_module_writes_its_own_pip_line():
    """Every 'pip install' line in the package comes from extras (so the pins cannot drift)."""
    src = Path(extras.__file__).parent
    offenders = []
    for path in src.rglob("*.py"):
        if path.name == "extras.py":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"pip install \S+", line) and "install_line" not in line:
                offenders.append(f"{path.relative_to(src)}:{i}")
    # Modules owned by other work streams still carry their own line; each must at least
    # agree with the pins (checked here) until they call extras.
    for ref in offenders:
        file, line = ref.rsplit(":", 1)
        text = (src / file).read_text().splitlines()[int(line) - 1]
        req = re.search(r"pip install '?([^'\s)\"]+)", text).group(1)
        assert req in extras.PINS.values(), f"{ref}: pip line {req!r} disagrees with pyproject's pins"
