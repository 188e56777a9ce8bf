"""hepad.evaluation (evaluate / compare / save) and the `hepad evaluate|compare|report` commands."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from hepad import metrics as M
from hepad._toy import toy_events
from hepad.detectors.base import BaseDetector, as_features
from hepad.errors import ConfigError, InputError
from hepad.evaluation import BACKGROUND_NAME, compare, evaluate, fpr_key, load_samples
from hepad.preprocessing import Preprocessor


class ToyAE(BaseDetector):
    """A stand-in reconstruction detector: error = squared standardised inputs (no training)."""

    name = "toy-ae"

    def __init__(self, *, power: float = 2.0) -> None:
        self.power = power

    def _fit(self, X, X_val, **fit_options):
        self.preprocessor_ = Preprocessor(phi="drop").fit(X, self.feature_names_in_)
        self.history_ = {"epoch": [0, 1, 2], "train_loss": [1.0, 0.5, 0.3], "val_loss": [1.1, 0.6, 0.4]}

    def feature_errors(self, X):
        return np.abs(self.preprocessor_.transform(as_features(X))) ** self.power

    def encode(self, X):
        return self.preprocessor_.transform(as_features(X))[:, :5]

    def _score(self, X):
        return self.feature_errors(X).mean(axis=1)


class ToySum(BaseDetector):
    name = "toy-sum"

    def _fit(self, X, X_val, **fit_options):
        pass

    def _score(self, X):
        return X[:, ::3].sum(axis=1)  # scalar sum of pT


@pytest.fixture(scope="module")
def samples():
    return toy_events(1500, seed=11), {"sigA": toy_events(300, "signal", seed=12), "sigB": toy_events(200, "signal", seed=13)}


@pytest.fixture(scope="module")
def fitted():
    train = toy_events(1000, seed=10)
    return ToyAE().fit(train), ToySum().fit(train)


def test_evaluate_metrics_agree_with_metric_functions(samples, fitted):
    bkg, sigs = samples
    ae, _ = fitted
    res = evaluate(ae, bkg, sigs, diagnostics=False)
    assert res.signals == ["sigA", "sigB"]
    rows = res.table()
    assert [r["signal"] for r in rows] == ["sigA", "sigB"]
    b = ae.score_samples(bkg)
    s = ae.score_samples(sigs["sigA"])
    np.testing.assert_allclose(res.scores[BACKGROUND_NAME], b)
    y = np.r_[np.zeros(len(b)), np.ones(len(s))]
    sc = np.r_[b, s]
    assert rows[0]["auc"] == pytest.approx(M.roc_auc(y, sc))
    assert rows[0]["pr_auc"] == pytest.approx(M.pr_auc(y, sc))
    wp = M.tpr_at_fpr(y, sc, 1e-3, warn=False)
    assert rows[0][fpr_key(1e-3)] == pytest.approx(wp.tpr)
    assert rows[0][f"{fpr_key(1e-3)}_resolved"] is False  # 1500 < 10 / 1e-3
    # Threshold metrics use the detector's own threshold (score > threshold_).
    assert rows[0]["threshold"] == pytest.approx(ae.threshold_)
    assert rows[0]["tpr_at_threshold"] == pytest.approx(np.mean(s > ae.threshold_))
    assert rows[0]["trigger_rate_hz"] == pytest.approx(np.mean(b > ae.threshold_) * 40e6)
    assert rows[0]["time_per_event_us"] > 0
    assert any("1e-03" in w for w in res.warnings())
    assert res.history["train_loss"] == [1.0, 0.5, 0.3]


def test_evaluate_diagnostics(samples, fitted):
    bkg, sigs = samples
    ae, plain = fitted
    res = evaluate(ae, bkg, sigs, embed=("pca",), n_embed=200)
    emb = res.embedding
    assert emb["space"] == "latent space"
    assert emb["pca"].shape == (len(emb["labels"]), 2)
    assert set(emb["labels"]) == {BACKGROUND_NAME, "sigA", "sigB"}
    # Per-slot contributions: phi dropped, so each slot has pT and eta; 19 slots in layout order.
    c = res.contributions
    assert c["slots"][:3] == ["MET", "e1", "e2"] and len(c["slots"]) == 19
    assert set(c["mean_error"]) == {BACKGROUND_NAME, "sigA", "sigB"}
    assert all(len(v) == 19 for v in c["mean_error"].values())
    assert set(res.features[BACKGROUND_NAME]) >= {"Number of jets", "Number of muons", "Number of electrons"}
    # A detector without encode/feature_errors: preprocessed-input view, no slot plot.
    res2 = evaluate(plain, bkg, sigs, embed=("pca",), n_embed=200)
    assert res2.embedding["space"] == "preprocessed inputs"
    assert res2.contributions is None


def test_compare_agreement_and_rank_correlation(samples, fitted):
    bkg, sigs = samples
    ae, plain = fitted
    cmp = compare({"ae": ae, "sum": plain, "ae-again": ae}, bkg, sigs, diagnostics=False)
    assert cmp.detectors == ["ae", "sum", "ae-again"]
    assert len(cmp.table()) == 6
    # The same detector twice agrees everywhere and is perfectly rank-correlated.
    assert cmp.agreement[0, 2] == pytest.approx(1.0)
    assert cmp.rank_correlation[0, 2] == pytest.approx(1.0)
    assert cmp.agreement[0, 1] < 1.0
    assert -1 <= cmp.rank_correlation[0, 1] < 1
    np.testing.assert_allclose(cmp.agreement, cmp.agreement.T)
    # The agreement FPR is raised to what 1500 background events resolve.
    assert cmp.agreement_fpr == pytest.approx(10 / 1500)


def test_save_writes_json_csv_without_plots(tmp_path, samples, fitted):
    bkg, sigs = samples
    res = evaluate(fitted[1], bkg, sigs, diagnostics=False)
    written = res.save(tmp_path / "out", plots=False)
    doc = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert doc["kind"] == "evaluation" and doc["signals"] == ["sigA", "sigB"]
    assert doc["info"]["data"]["background"]["n_events"] == 1500
    assert "numpy" in doc["info"]["versions"]
    with open(written["metrics.csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [r["signal"] for r in rows] == ["sigA", "sigB"]
    assert float(rows[1]["auc"]) == pytest.approx(res.table()[1]["auc"])
    assert not (tmp_path / "out" / "plots").exists()
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left behind


def test_load_samples_from_paths(tmp_path):
    from hepad import write_events

    b = tmp_path / "bkg_1.h5"
    b2 = tmp_path / "bkg_2.h5"
    s = tmp_path / "ato4l.h5"
    write_events(toy_events(100, seed=1), b)
    write_events(toy_events(50, seed=2), b2)
    write_events(toy_events(30, "signal", seed=3), s)
    bkg, sigs = load_samples(str(tmp_path / "bkg_*.h5"), [str(s), f"other={s}"], max_events=40)
    assert len(bkg) == 80  # 40 + 40 from the two globbed files
    assert list(sigs) == ["ato4l", "other"] and len(sigs["ato4l"]) == 30
    with pytest.raises(ConfigError, match="twice"):
        load_samples(str(b), [str(s), str(s)])
    with pytest.raises(InputError, match="no such file"):
        load_samples(str(tmp_path / "missing.h5"), [str(s)])
    with pytest.raises(ConfigError, match="at least one signal"):
        load_samples(str(b), [])


# ---------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    import hepad

    d = tmp_path_factory.mktemp("cli")
    hepad.write_events(toy_events(1200, seed=21), d / "sm_train.h5")
    hepad.write_events(toy_events(1500, seed=22), d / "sm_test.h5")
    hepad.write_events(toy_events(300, "signal", seed=23), d / "ato4l.h5")
    hepad.write_events(toy_events(300, "signal", seed=24), d / "lq.h5")
    hepad.train("mahalanobis", d / "sm_train.h5", output=d / "model")
    return d


def _run(args):
    from typer.testing import CliRunner

    from hepad.cli import app

    return CliRunner().invoke(app, args)


def test_cli_evaluate_and_report(cli_files, tmp_path):
    d = cli_files
    out = tmp_path / "eval"
    r = _run(["evaluate", str(d / "model"), "-b", str(d / "sm_test.h5"), "-s", f"ato4l={d / 'ato4l.h5'}",
              "-s", str(d / "lq.h5"), "-o", str(out), "--no-plots", "--fpr", "1e-2", "--fpr", "1e-3"])
    assert r.exit_code == 0, r.output
    assert "not resolved" in r.output  # the 1e-3 working point with 1500 background events
    doc = json.loads((out / "metrics.json").read_text())
    assert [row["signal"] for row in doc["rows"]] == ["ato4l", "lq"]
    assert doc["fprs"] == [1e-2, 1e-3]
    r = _run(["report", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "report.html").read_text().count("<tr>") >= 3


def test_cli_errors(cli_files, tmp_path):
    from hepad.errors import HepadError

    d = cli_files
    r = _run(["report", str(tmp_path)])
    assert isinstance(r.exception, HepadError) and "metrics.json" in str(r.exception)
    r = _run(["evaluate", str(d / "model"), "-b", str(d / "sm_test.h5"), "-s", str(d / "ato4l.h5"),
              "-o", str(tmp_path / "x"), "--fpr", "2"])
    assert isinstance(r.exception, ConfigError) and "(0, 1)" in str(r.exception)
    r = _run(["compare", "mahalanobsi", "-b", str(d / "sm_test.h5"), "-s", str(d / "ato4l.h5"),
              "-o", str(tmp_path / "y"), "--train", str(d / "sm_train.h5")])
    assert isinstance(r.exception, ConfigError) and "mahalanobis" in str(r.exception)
    r = _run(["compare", "iforest", "-b", str(d / "sm_test.h5"), "-s", str(d / "ato4l.h5"), "-o", str(tmp_path / "z")])
    assert isinstance(r.exception, ConfigError) and "--train" in str(r.exception)


def test_cli_compare_trains_names_and_loads_dirs(cli_files, tmp_path):
    d = cli_files
    out = tmp_path / "cmp"
    r = _run(["compare", str(d / "model"), "mahalanobis", "--train", str(d / "sm_train.h5"), "-b", str(d / "sm_test.h5"),
              "-s", str(d / "ato4l.h5"), "-o", str(out), "--no-plots"])
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["kind"] == "comparison"
    assert doc["detectors"] == ["model", "mahalanobis"]
    # Same detector, same training data: identical AUCs, full agreement.
    assert doc["rows"][0]["auc"] == pytest.approx(doc["rows"][1]["auc"])
    assert doc["agreement"]["decision_agreement"][0][1] == pytest.approx(1.0)


def test_evaluate_files_histogram_path_matches_in_process(cli_files, tmp_path):
    import hepad
    from hepad.evaluation import evaluate_files

    d = cli_files
    hist = evaluate_files(d / "model", [d / "sm_test.h5"], {"ato4l": d / "ato4l.h5"}, n_workers=0, fprs=(1e-2,))
    exact = evaluate(hepad.load(d / "model"), d / "sm_test.h5", {"ato4l": d / "ato4l.h5"}, fprs=(1e-2,),
                     diagnostics=False)
    h, e = hist.table()[0], exact.table()[0]
    assert h["detector"] == "mahalanobis" and h["n_background"] == e["n_background"] == 1500
    bound = hist.metrics["ato4l"]["auc_binning_error_bound"]
    assert abs(h["auc"] - e["auc"]) <= bound + 1e-12
    assert h["tpr@1e-2"] == pytest.approx(e["tpr@1e-2"])  # working points are exact
    assert h["auc_err"] == pytest.approx(e["auc_err"], rel=1e-2)
    written = hist.save(tmp_path / "h", report=True)  # no scores: table and report, no plots
    assert "report.html" in written and not (tmp_path / "h" / "plots").exists()
