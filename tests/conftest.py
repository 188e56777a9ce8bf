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
