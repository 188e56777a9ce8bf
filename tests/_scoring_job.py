"""The scoring job shared by the scoring and distributed tests: one saved model, three inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import hepad
from hepad._toy import toy_events


def make_scoring_job(d: Path):
    """A saved iforest model and three toy input files of different sizes under ``d``.

    Returns ``(model_dir, files, reference_scores, threshold)``; the reference scores are the
    single-process scores of the files, concatenated in input order.
    """
    det = hepad.make_detector("iforest", n_estimators=20, random_state=0).fit(toy_events(1000, seed=5))
    det.save(d / "model")
    files = []
    for i, (n, kind) in enumerate(((700, "background"), (450, "background"), (300, "signal"))):
        p = d / f"in_{i}.h5"
        hepad.write_events(toy_events(n, kind, seed=40 + i), p)
        files.append(p)
    ref = np.concatenate([det.score_samples(hepad.read_events(p)) for p in files])
    return d / "model", files, ref, det.threshold_
