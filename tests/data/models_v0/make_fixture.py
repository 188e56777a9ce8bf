"""Save small models with main's code (before the detector refactor), plus inputs and scores."""
import sys, json
from pathlib import Path
import numpy as np
import hepad
from hepad._toy import toy_events
from hepad.detectors.base import make_detector
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
train = toy_events(1500, "background", seed=21)
val = toy_events(500, "background", seed=22)
sig = toy_events(300, "signal", seed=23)
X = np.concatenate([toy_events(150, "background", seed=24).features, sig.features[:50]])
fast = {
 "iforest": dict(n_estimators=8, max_samples=64),
 "ocsvm": dict(n_components=16, max_samples=500),
 "mahalanobis": {},
 "gmm": dict(n_components=2, covariance_type="diag"),
 "knn": dict(max_samples=60),
 "ae": dict(hidden_layers=[8], latent_dim=4, epochs=2, n_threads=1, device="cpu"),
 "vae": dict(hidden_layers=[8], latent_dim=3, epochs=2, n_threads=1, device="cpu", score="kl"),
 "deep-svdd": dict(hidden_layers=[8], latent_dim=4, epochs=2, n_threads=1, device="cpu"),
 "ensemble": dict(members=[{"detector": "mahalanobis"}, {"detector": "knn", "params": {"max_samples": 40}}], combine="majority"),
 "gbdt": dict(max_iter=4, early_stopping=False, n_jobs=1, max_leaf_nodes=4),
 "mlp-classifier": dict(hidden_layer_sizes=[4], max_iter=5, early_stopping=False),
}
scores = {}
for name, p in fast.items():
    det = make_detector(name, **p)
    if det.supervised:
        Xs = np.concatenate([train.features, sig.features[50:]]); y = np.r_[np.zeros(len(train)), np.ones(len(sig) - 50)]
        det.fit(Xs, val, y=y)
    else:
        det.fit(train, val)
    if name == "ae":
        det.set_threshold(val, rate_hz=2e5)
    det.save(out / name)
    scores[name] = det.score_samples(X)
    scores[name + ".predict"] = det.predict(X)
np.savez(out / "expected.npz", X=X, **scores)
(out / "README.md").write_text(
    "Models saved by hepad before the detector-interface refactor (main at the commit in\n"
    "`saved_by.txt`), with the events `X` of `expected.npz` and their scores and predictions then.\n"
    "`tests/test_saved_models_compat.py` loads them with today's code and checks the scores match.\n"
    "Rebuild (only with that old commit): `python /tmp/mk_fixture.py tests/data/models_v0`.\n")
