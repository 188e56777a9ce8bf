"""The HTML report: self-contained (embedded PNGs, no external references), one row per signal x detector."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from hepad._toy import toy_events
from hepad.detectors.base import BaseDetector, as_features
from hepad.errors import InputError
from hepad.evaluation import compare
from hepad.preprocessing import Preprocessor
from hepad.report import write_report


class _Recon(BaseDetector):
    name = "recon"

    def _fit(self, X, X_val, **fit_options):
        self.preprocessor_ = Preprocessor().fit(X, self.feature_names_in_)
        self.history_ = {"epoch": [0, 1, 2, 3], "train_loss": [2.0, 1.0, 0.6, 0.5], "val_loss": [2.1, 1.1, 0.7, 0.65]}

    def feature_errors(self, X):
        return self.preprocessor_.transform(as_features(X)) ** 2

    def encode(self, X):
        return self.preprocessor_.transform(as_features(X))[:, :4]

    def _score(self, X):
        return self.feature_errors(X).mean(axis=1)


class _Met(BaseDetector):
    name = "met"

    def _fit(self, X, X_val, **fit_options):
        pass

    def _score(self, X):
        return X[:, 0]


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.in_summary = False
        self.summary_rows = 0
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table" and "summary" in (a.get("class") or ""):
            self.in_summary = True
        if self.in_summary and tag == "tr":
            self.summary_rows += 1

    def handle_endtag(self, tag):
        if tag == "table":
            self.in_summary = False


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "cmp"
    train = toy_events(800, seed=30)
    dets = {"recon": _Recon().fit(train), "met": _Met().fit(train)}
    sigs = {"sigA": toy_events(200, "signal", seed=31), "sigB": toy_events(150, "signal", seed=32)}
    # Diagnostics (latent, inputs, objects) are written by the notebook test; here the report.
    res = compare(dets, toy_events(1000, seed=33), sigs, diagnostics=False)
    res.save(out, report=True, dpi=50)
    return out


def test_report_is_self_contained(report_dir):
    from PIL import Image

    text = (report_dir / "report.html").read_text()
    p = _Collector()
    p.feed(text)
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(imgs) >= 8  # comparison plots + the first detector's plots
    for a in imgs:
        src = a["src"]
        assert src.startswith("data:image/png;base64,")
        im = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        im.verify()
        assert im.format == "PNG"
    for tag, a in p.tags:
        for attr in ("src", "href"):
            v = a.get(attr)
            assert v is None or v.startswith(("data:", "#")), f"external reference <{tag} {attr}={v!r}>"
        assert tag not in ("script", "link", "iframe")
    # One summary row per detector x signal (+ the header row).
    assert p.summary_rows == 1 + 2 * 2
    for name in ("recon", "met", "sigA", "sigB", "Configuration", "Data provenance", "Versions"):
        assert name in text


def test_plot_files_match_report(report_dir):
    import json

    doc = json.loads((report_dir / "metrics.json").read_text())
    files = {p["file"] for p in doc["plots"]}
    assert {"plots/compare_roc.png", "plots/compare_agreement.png", "plots/compare_time.png", "plots/recon_roc.png",
            "plots/recon_scores.png", "plots/recon_sic.png", "plots/recon_confusion.png", "plots/recon_history.png"} <= files
    for f in files:
        assert (report_dir / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_errors(tmp_path):
    with pytest.raises(InputError, match="metrics.json"):
        write_report(tmp_path)
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(InputError, match="JSON"):
        write_report(tmp_path)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (optional visual check)")
def test_report_renders_in_headless_chromium(report_dir, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    cmd = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}", "--window-size=1400,1600",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}", (report_dir / "report.html").as_uri(),
    ]
    subprocess.run(cmd, check=False, capture_output=True, timeout=120)
    assert shot.is_file(), "chromium wrote no screenshot"
    px = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert px.std() > 10  # not a blank page
