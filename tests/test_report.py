"""The HTML report: self-contained (embedded PNGs, no external references), one row per signal x detector."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import numpy as np
import pytest

from _eval_helpers import comparison_of, report_of
from hepad.errors import InputError
from hepad.report import write_report


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
def comparison(tiny_dataset):
    return comparison_of(tiny_dataset)


@pytest.fixture(scope="module")
def report_dir(tiny_dataset, tmp_path_factory):
    return report_of(tiny_dataset, tmp_path_factory.getbasetemp())


def test_report_is_self_contained(report_dir):
    from PIL import Image

    text = (report_dir / "report.html").read_text()
    p = _Collector()
    p.feed(text)
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(imgs) >= 25  # comparison plots + every detector's own set
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
    assert p.summary_rows == 1 + 3 * 4
    for name in ("ae", "iforest", "mahalanobis", "ato4l", "hplus-taunu", "Configuration", "Data provenance", "Versions"):
        assert name in text


def test_plot_files_match_report(report_dir):
    import json

    doc = json.loads((report_dir / "metrics.json").read_text())
    files = {p["file"] for p in doc["plots"]}
    assert {"plots/compare_roc.png", "plots/compare_rate.png", "plots/compare_agreement.png", "plots/compare_time.png",
            "plots/compare_history.png", "plots/inputs.png", "plots/ae_history.png", "plots/ae_objects.png"} <= files
    for d in ("ae", "iforest", "mahalanobis"):
        assert {f"plots/{d}_{k}.png" for k in ("roc", "rejection", "rate", "scores", "sic", "confusion")} <= files
    for f in files:
        assert (report_dir / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_errors(tmp_path):
    with pytest.raises(InputError, match="metrics.json"):
        write_report(tmp_path)
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(InputError, match="JSON"):
        write_report(tmp_path)


def _section(text: str, anchor: str) -> str:
    start = text.index(f'<section id="{anchor}"')
    return text[start:text.index("</section>", start)]


def test_front_page_sections_and_readable_tables(report_dir, comparison):
    text = (report_dir / "report.html").read_text()
    summary = _section(text, "summary")
    # The working points are quoted as trigger rates at 40 MHz.
    for rate in ("TPR at 40 kHz", "TPR at 4 kHz", "TPR at 400 Hz"):
        assert rate in summary
    # One section per detector, holding its own plots and nobody else's.
    for d in comparison.detectors:
        sec = _section(text, f"det-{d}")
        alts = [a for a in (line.split("alt='", 1)[1].split("'", 1)[0] for line in sec.split("<img")[1:])]
        assert len(alts) >= 7 and all(f"({d})" in a for a in alts), (d, alts)
        assert "params." in sec  # its configuration as a key/value table
    # Configuration and provenance are tables, not raw JSON dumps.
    assert "<pre" not in text and '{"' not in text
    prov = _section(text, "provenance")
    assert str(comparison.results["ae"].info["data"]["background"]["source"]) in prov
    assert "<th class=\"l\">numpy</th>" in prov


def test_warnings_for_unconverged_training_and_non_trigger_thresholds(report_dir, comparison):
    text = (report_dir / "report.html").read_text()
    ae = comparison.results["ae"]
    val = np.asarray(ae.history["val_loss"], dtype=float)
    unconverged = int(np.nanargmin(val)) == len(val) - 1
    assert ("training had not converged" in _section(text, "det-ae")) == unconverged
    assert unconverged  # two epochs: the loss is still falling, the case the warning is for
    assert "training had not converged" not in _section(text, "det-iforest")  # no history, no claim
    for d, r in comparison.results.items():
        rate = r.threshold_rate_hz()
        sec = _section(text, f"det-{d}")
        # The default 95th percentile passes ~5 % of background: MHz, far above what L1 accepts.
        assert (rate > 100e3) == ("not a trigger setting" in sec), (d, rate)
        assert rate > 100e3
    assert "not a trigger setting" in _section(text, "summary")
