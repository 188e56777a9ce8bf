"""Models saved before the detector-interface refactor load and score as they did then.

``tests/data/models_v0`` holds one small model per registered detector, saved by hepad's main
branch before the refactor (commit in ``saved_by.txt``), with the events they were scored on
and the scores and 0/1 predictions of that time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hepad.artifact import load
from hepad.detectors.registry import DETECTORS
from hepad.thresholds import ThresholdRule

DATA = Path(__file__).parent / "data" / "models_v0"
EXPECTED = np.load(DATA / "expected.npz", allow_pickle=False)


#: the detectors registered when the fixture was saved (detectors added since have no old model)
BEFORE = {"iforest", "ocsvm", "mahalanobis", "gmm", "knn", "ae", "vae", "deep-svdd", "ensemble", "gbdt", "mlp-classifier"}


def test_every_detector_of_then_has_an_old_model():
    assert {p.name for p in DATA.iterdir() if p.is_dir()} == BEFORE <= set(DETECTORS)


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.iterdir() if p.is_dir()))
def test_old_model_loads_and_scores_match(name):
    det = load(DATA / name)
    X = EXPECTED["X"]
    np.testing.assert_allclose(det.score_samples(X), EXPECTED[name], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(det.predict(X), EXPECTED[name + ".predict"])
    assert isinstance(det.threshold_rule_, ThresholdRule)
    assert det.threshold_rule_ == ({"rate_hz": 2e5, "collision_rate_hz": 4e7} if name == "ae" else {"percentile": 95.0})
    assert det.get_params()["threshold_rule"] is None  # an old model has no rule parameter: the default
