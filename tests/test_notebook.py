"""examples/quickstart.ipynb runs end to end on the `tiny` dataset (executed with nbclient).

The dataset comes from ``$HEPAD_DATA_DIR`` (or the default cache) when it holds the tiny files;
otherwise the fast test builds it once into the default cache (Pythia 8, 1-2 minutes on
2 cores), and the slow one lets the notebook build it into a fresh folder.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "quickstart.ipynb"
TINY_FILES = ("sm_train.h5", "sm_val.h5", "sm_test.h5", "ato4l.h5", "lq-btau.h5", "h0-tautau.h5", "hplus-taunu.h5")


def _kernel_dir(tmp: Path) -> Path:
    """A kernelspec named python3 that runs this interpreter (the venv's), whatever Jupyter finds first."""
    spec = tmp / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (hepad tests)",
        "language": "python",
    }))
    return tmp


def _existing_tiny() -> str | None:
    from hepad.generate import default_dataset_dir

    for cand in (os.environ.get("HEPAD_DATA_DIR"), str(default_dataset_dir("tiny"))):
        if cand and all((Path(cand) / f).is_file() for f in TINY_FILES):
            return cand
    return None


def _execute(data: str, tmp_path: Path, monkeypatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")

    monkeypatch.setenv("HEPAD_DATA_DIR", data)
    monkeypatch.setenv("HEPAD_NOTEBOOK_SIZE", "tiny")
    monkeypatch.setenv("HEPAD_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("JUPYTER_PATH", str(_kernel_dir(tmp_path / "jupyter")))
    monkeypatch.setenv("MPLBACKEND", "agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # The plot cell produced an image, and the report exists with its plots.
    assert any("image/png" in o.get("data", {}) for o in outputs)
    report = tmp_path / "out" / "report.html"
    assert report.is_file() and report.stat().st_size > 10_000
    assert len(list((tmp_path / "out" / "plots").glob("*.png"))) >= 6
    doc = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert sorted(r["signal"] for r in doc["rows"]) == ["ato4l", "h0-tautau", "hplus-taunu", "lq-btau"]


def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    data = _existing_tiny()
    if data is None:
        # A fresh machine (CI): build the tiny dataset once into the default cache (about 1-2
        # minutes of Pythia on 2 cores); later runs reuse it.
        from hepad.generate import build_dataset, default_dataset_dir

        monkeypatch.delenv("HEPAD_DATA_DIR", raising=False)
        data = str(default_dataset_dir("tiny"))
        build_dataset("tiny", data)
    _execute(data, tmp_path, monkeypatch)


@pytest.mark.slow
def test_quickstart_notebook_builds_tiny(tmp_path, monkeypatch):
    # The notebook's own build_dataset call generates the tiny dataset here (Pythia 8: minutes).
    _execute(str(tmp_path / "tiny"), tmp_path, monkeypatch)
