"""The report as a browser shows it: headless Chromium renders it with no console error and every plot loaded.

Chromium (Debian's ``chromium`` package) is installed by ``.ci/run`` when absent; without it the
test is skipped. The screenshot is kept as a test artifact in ``$HEPAD_TEST_ARTIFACTS`` (default
``build/test-artifacts/``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from _eval_helpers import report_of

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")

# Collects uncaught errors and console.error calls from the first moment, and on load records
# which images decoded (complete with a natural width) into a <pre> that --dump-dom prints.
_PROBE_HEAD = """<script>window.__errs=[];
window.addEventListener('error',function(e){window.__errs.push(String(e.message||(e.target&&(e.target.src||'').slice(0,40))||'error'))},true);
var __ce=console.error;console.error=function(){window.__errs.push(Array.prototype.join.call(arguments,' '));__ce.apply(console,arguments)};
</script>"""
_PROBE_TAIL = """<script>window.addEventListener('load',function(){
var imgs=Array.prototype.slice.call(document.images);
var p=document.createElement('pre');p.id='hepad-probe';
p.textContent=JSON.stringify({n:imgs.length,loaded:imgs.filter(function(i){return i.complete&&i.naturalWidth>0}).length,
bad:imgs.filter(function(i){return !(i.complete&&i.naturalWidth>0)}).map(function(i){return i.alt}),errors:window.__errs,
width:document.documentElement.scrollWidth});
document.body.appendChild(p);});</script>"""


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def report(tiny_dataset, tmp_path_factory):
    return report_of(tiny_dataset, tmp_path_factory.getbasetemp())


def test_report_renders_in_chromium_without_errors(report, tmp_path):
    html = (report / "report.html").read_text(encoding="utf-8")
    n_plots = len(json.loads((report / "metrics.json").read_text())["plots"])
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("<head>", "<head>" + _PROBE_HEAD, 1).replace("</body>", _PROBE_TAIL + "</body>", 1),
                     encoding="utf-8")
    r = _chromium(["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()], tmp_path / "profile")
    m = re.search(r'<pre id="hepad-probe">(.*?)</pre>', r.stdout, re.S)
    assert m, f"the page did not finish loading: {r.stderr[-2000:]}"
    state = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert state["errors"] == []
    assert state["n"] == n_plots >= 25  # every plot of metrics.json is in the page ...
    assert state["bad"] == [] and state["loaded"] == n_plots  # ... and decoded
    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln and re.search(r"error|uncaught|failed", ln, re.I)]
    assert console == []


def test_report_screenshot_is_not_blank(report, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    r = _chromium([f"--screenshot={shot}", "--window-size=1400,2200", (report / "report.html").as_uri()],
                  tmp_path / "profile")
    assert shot.is_file(), f"chromium wrote no screenshot: {r.stderr[-2000:]}"
    px = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert px.shape == (2200, 1400)
    assert px.std() > 20  # text, tables and plots, not an empty page
    # The header bar (dark) and the white summary section are where the layout puts them.
    assert px[:40].mean() < 90 and px[150:400].mean() > 150
    artifacts = Path(os.environ.get("HEPAD_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, artifacts / "report-chromium.png")
