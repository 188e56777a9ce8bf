"""``hepad train`` / ``hepad detectors`` and the ``hepad.train`` API behind them."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import hepad
import hepad.cli
from hepad.detectors.base import available_detectors
from hepad.errors import ConfigError
from hepad.io import write_events
from _cli import cli_run as cli


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def files(tmp_path_factory, toy_bkg, toy_bkg_val, toy_sig):
    d = tmp_path_factory.mktemp("cli")
    write_events(toy_bkg, d / "bkg.h5")
    write_events(toy_bkg_val, d / "val.h5")
    write_events(toy_sig, d / "sig.h5")
    return d


def test_train_iforest_writes_a_model(monkeypatch, capsys, files, tmp_path, toy_bkg_val):
    out_dir = tmp_path / "model"
    code, out, err = cli(monkeypatch, capsys, "train", "--detector", "iforest", "--data", files / "bkg.h5",
                         "--val", files / "val.h5", "-o", out_dir, "--rate-hz", "2e6", "--seed", "4",
                         "-p", "n_estimators=40")
    assert code == 0, err
    assert "iforest" in out and str(out_dir) in out
    det = hepad.load(out_dir)
    assert det.n_estimators == 40 and det.random_state == 4
    assert det.threshold_rule_ == {"rate_hz": 2e6, "collision_rate_hz": 4e7}
    # the cut accepts 2 MHz / 40 MHz = 5% of the background it was set on
    assert det.predict(toy_bkg_val).mean() == pytest.approx(0.05, abs=0.002)
    meta = json.loads((out_dir / "metadata.json").read_text())
    assert meta["training_data"]["train"]["n_events"] == 2000 and meta["threshold_set_on"] == "val"
    assert not list(tmp_path.glob(".*ckpt")), "the default checkpoint folder is removed after success"


def test_train_from_config(monkeypatch, capsys, files, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {{detector: knn, params: {{n_neighbors: 3}}}}\n"
                   f"evaluation: {{threshold: {{sigma: 2}}}}\n"
                   f"data: {{train: {files / 'bkg.h5'}, val: {files / 'val.h5'}}}\n")
    code, out, err = cli(monkeypatch, capsys, "train", "--config", cfg, "-o", tmp_path / "m")
    assert code == 0, err
    det = hepad.load(tmp_path / "m")
    assert det.name == "knn" and det.n_neighbors == 3 and det.threshold_rule_ == {"sigma": 2.0}
    saved = json.loads((tmp_path / "m" / "metadata.json").read_text())["config"]
    assert saved["model"]["params"] == {"n_neighbors": 3}


def test_supervised_with_signal(monkeypatch, capsys, files, tmp_path):
    code, out, err = cli(monkeypatch, capsys, "train", "-d", "gbdt", "--data", files / "bkg.h5", "--signal",
                         files / "sig.h5", "-o", tmp_path / "m", "-p", "max_iter=10", "-p", "n_jobs=1")
    assert code == 0, err
    assert hepad.load(tmp_path / "m").supervised


@pytest.mark.parametrize(
    "extra, config, message",
    [
        (["--detector", "iforst"], None, "Unknown detector 'iforst'. Did you mean 'iforest'?"),
        (["--detector", "iforest", "-p", "n_trees=3"], None, "unknown parameter 'n_trees'"),
        (["--detector", "iforest", "-p", "n_estimators=many"], None, "n_estimators='many' is invalid; expected an integer >= 1"),
        ([], "training:\n  epochs: ten\n", "training.epochs: expected an integer, got 'ten'"),
        ([], "model: {detector: iforest}\nthreshold: {percentile: 95}\n", "threshold: unknown key"),
        (["--detector", "gbdt"], None, "gbdt is a supervised reference: pass signal="),
    ],
)
def test_errors_are_one_line_and_leave_no_output(monkeypatch, capsys, files, tmp_path, extra, config, message):
    args = ["train", "--data", files / "bkg.h5", "-o", tmp_path / "model", *extra]
    if config is not None:
        (tmp_path / "c.yaml").write_text(config)
        args += ["--config", tmp_path / "c.yaml"]
    code, out, err = cli(monkeypatch, capsys, *args)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hepad: error: ") and message in lines[0], err
    assert not (tmp_path / "model").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["c.yaml"] if config else [])


def test_missing_data_file(monkeypatch, capsys, tmp_path):
    code, _, err = cli(monkeypatch, capsys, "train", "-d", "iforest", "--data", tmp_path / "nope.h5", "-o", tmp_path / "m")
    assert code == 1 and "nope.h5: no such file" in err and not (tmp_path / "m").exists()


def test_detectors_lists_every_name(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = cli(monkeypatch, capsys, "detectors")
    assert code == 0
    listed = {line.split("│")[1].strip() for line in out.splitlines() if line.count("│") >= 3}
    assert listed == set(available_detectors())
    code, out, _ = cli(monkeypatch, capsys, "detectors", "--json")
    assert json.loads(out) == available_detectors()


def test_detectors_listing_fast_path_matches_typer_and_keeps_names(monkeypatch, capsys):
    # `hepad detectors` is answered without typer (issue 12: < 0.5 s CPU); its output must be
    # the typer command's, and at a pipe's 80 columns the names must survive (they once shrank
    # to nothing) while the summaries are cut.
    from hepad.cli._main import main as typer_main

    monkeypatch.setenv("COLUMNS", "80")
    for args in (["detectors"], ["detectors", "--json"], ["--version"]):
        fast = hepad.cli.main(args), capsys.readouterr().out
        slow = typer_main(args), capsys.readouterr().out
        assert fast == slow, args
    assert hepad.cli.main(["detectors"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(len(ln) <= 80 for ln in lines)
    listed = {ln.split("│")[1].strip() for ln in lines if ln.count("│") >= 3}
    assert listed == set(available_detectors())


def test_cli_startup_imports_nothing_heavy():
    # `hepad --version` / `hepad detectors` in a fresh interpreter: no numpy, typer or pydantic.
    import subprocess

    code = ("import sys; from hepad.cli import main; main(['detectors']); main(['--version']); "
            "heavy = {'numpy', 'typer', 'pydantic', 'torch', 'sklearn'} & set(sys.modules); "
            "assert not heavy, heavy; import hepad; assert 'numpy' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_api_train_with_arrays_and_threshold_rules(toy_bkg, toy_bkg_val):
    det = hepad.train("mahalanobis", toy_bkg.features, toy_bkg_val.features, sigma=3)
    s = det.score_samples(toy_bkg_val)
    assert det.threshold_ == pytest.approx(float(s.astype(np.float64).mean() + 3 * s.astype(np.float64).std()), rel=1e-5)
    with pytest.raises(ConfigError, match="at most one threshold rule"):
        hepad.train("mahalanobis", toy_bkg, percentile=90, sigma=3)
    with pytest.raises(ConfigError, match="No training data"):
        hepad.train("mahalanobis")
    with pytest.raises(ConfigError, match="only used by supervised references"):
        hepad.train("mahalanobis", toy_bkg, signal=toy_bkg_val)


def test_api_train_supervised_labels_from_signal(toy_bkg, toy_bkg_val, toy_sig):
    det = hepad.train("mlp-classifier", toy_bkg, signal=toy_sig, max_iter=20, hidden_layer_sizes=[16], percentile=99)
    assert det.threshold_rule_ == {"percentile": 99}
    # the cut was set on background only: about 1% of the training background passes
    assert det.predict(toy_bkg).mean() == pytest.approx(0.01, abs=0.002)
    assert det.score_samples(toy_sig).mean() > det.score_samples(toy_bkg_val).mean()


def test_metrics_table_is_not_cut_in_a_pipe(monkeypatch, capsys):
    # `make demo | tee log` once showed "TPR@1e…" and "0.738±0.…": a pipe must get whole cells.
    from hepad.cli import print_table

    monkeypatch.setenv("COLUMNS", "80")
    row = {"detector": "axol1tl-like", "signal": "hplus-taunu", "auc": 0.738, "auc_err": 0.012,
           "max_sic": 1.5, "time_per_event_us": 6.6}
    for f, v in (("1e-3", 0.005), ("1e-4", 0.0), ("1e-5", 0.0)):
        row[f"tpr@{f}"], row[f"tpr@{f}_resolved"] = v, f == "1e-3"
    print_table([row], (1e-3, 1e-4, 1e-5), title="t")
    out = capsys.readouterr().out
    assert "…" not in out
    for text in ("axol1tl-like", "hplus-taunu", "0.738±0.012", "TPR@1e-5", "0.000*", "µs/evt"):
        assert text in out, text
