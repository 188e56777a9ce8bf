"""Shared fixtures: small toy samples and the location of the real open-data files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hepad._toy import toy_events

REPO = Path(__file__).resolve().parents[1]


def real_data_dir() -> Path:
    env = os.environ.get("HEPAD_REAL_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    d = real_data_dir()
    if not d.is_dir():
        pytest.skip(f"real open-data folder not found at {d} (set HEPAD_REAL_DATA to its location)")
    return d


@pytest.fixture(scope="session")
def toy_bkg():
    """2,000 toy background events (ADC layout)."""
    return toy_events(2000, "background", seed=1)


@pytest.fixture(scope="session")
def toy_bkg_val():
    return toy_events(1000, "background", seed=2)


@pytest.fixture(scope="session")
def toy_sig():
    """500 toy signal events: more leptons, harder MET and jets."""
    return toy_events(500, "signal", seed=3)


@pytest.fixture(scope="session")
def tiny_dataset() -> dict[str, Path]:
    """The generator's ``tiny`` dataset (realistic Pythia 8 events), name -> path.

    Built once per machine into the default cache (about 1-2 minutes on 2 cores) and reused; the
    dataset builder validates each file's process, seed and size and regenerates what does not
    match. Tests must read these files, never write them.
    """
    from hepad.generate import build_dataset, default_dataset_dir

    directory = default_dataset_dir("tiny") if not os.environ.get("HEPAD_DATA_DIR") else None
    paths = build_dataset("tiny", directory)
    return {Path(p).stem: Path(p) for p in paths.values()}


#: Detectors whose scikit-learn estimator checks run in the default suite (the rest are slow).
FAST_SKLEARN_CHECKED = {"mahalanobis"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark scikit-learn's estimator checks of the slower detectors ``slow`` before ``-m``
    deselects: `make test` then deselects them instead of reporting hundreds of skips."""
    for item in items:
        if getattr(item, "originalname", "") != "test_scikit_learn_estimator_checks":
            continue
        est = item.callspec.params.get("estimator")
        if getattr(est, "name", None) not in FAST_SKLEARN_CHECKED:
            item.add_marker(pytest.mark.slow)
