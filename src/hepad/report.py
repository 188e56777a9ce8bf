"""One self-contained HTML report of an evaluation or comparison output folder.

``write_report(out_dir)`` reads ``metrics.json`` and the PNG plots it lists, and writes
``report.html``: the images are embedded as base64 data URIs and the CSS is inline, so the file
can be mailed or attached to an issue and opens anywhere, offline, without JavaScript.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

from ._atomic import atomic_path
from .errors import InputError

__all__ = ["write_report", "render_report"]

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#12263a;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#c5d2df;font-size:13px}
main{padding:20px 32px;max-width:1400px}
section{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:14px 20px;margin-bottom:18px}
h2{font-size:17px;margin:4px 0 12px;color:#12263a}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border-bottom:1px solid #e4e8ee;padding:5px 8px;text-align:right;white-space:nowrap}
th{background:#eef2f6;position:sticky;top:0} td.l,th.l{text-align:left}
tr:hover td{background:#f7fafc}
.warn{background:#fff6e0;border-color:#f0c36d} .warn li{font-size:13px}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:16px}
figure{margin:0} figure img{width:100%;height:auto;border:1px solid #e4e8ee}
figcaption{font-size:12px;color:#4a5560;margin-top:4px} figcaption b{color:#1d232a}
pre{background:#f3f5f8;padding:10px;font-size:12px;overflow:auto;max-height:420px}
.note{font-size:12px;color:#4a5560}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        if x != x:
            return "–"
        return f"{x:.{digits}g}"
    return str(x)


def _table(summary: dict[str, Any]) -> str:
    from .evaluation import fpr_key

    fprs = summary.get("fprs", [])
    head = ["Detector", "Signal", "N signal", "ROC AUC", "PR AUC"] + [f"TPR @ FPR {f:.0e}" for f in fprs] + [
        "max SIC", "TPR @ thr", "Rate @ thr [kHz]", "µs / event"]
    out = ["<table class='summary'><thead><tr>"]
    out += [f"<th class='l'>{_e(h)}</th>" if i < 2 else f"<th>{_e(h)}</th>" for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for r in summary.get("rows", []):
        cells = [f"<td class='l'>{_e(r['detector'])}</td>", f"<td class='l'>{_e(r['signal'])}</td>",
                 f"<td>{_e(r['n_signal'])}</td>",
                 f"<td>{_fmt(r['auc'])} ± {_fmt(r['auc_err'], 2)}</td>", f"<td>{_fmt(r['pr_auc'], 3)}</td>"]
        for f in fprs:
            k = fpr_key(f)
            if k not in r:
                cells.append("<td>–</td>")
                continue
            star = "" if r.get(f"{k}_resolved", True) else "<sup title='not resolved by the background sample'>*</sup>"
            cells.append(
                f"<td title='interval {_fmt(r[f'{k}_low'], 3)}–{_fmt(r[f'{k}_high'], 3)}'>{_fmt(r[k], 3)}"
                f" <small>[{_fmt(r[f'{k}_low'], 2)}, {_fmt(r[f'{k}_high'], 2)}]</small>{star}</td>"
            )
        cells.append(f"<td>{_fmt(r.get('max_sic', float('nan')), 3)}</td>")
        cells.append(f"<td>{_fmt(r['tpr_at_threshold'], 3)}</td>" if "tpr_at_threshold" in r else "<td>–</td>")
        rate = r.get("trigger_rate_hz")
        cells.append(f"<td>{_fmt(rate / 1e3, 4)}</td>" if isinstance(rate, (int, float)) else "<td>–</td>")
        cells.append(f"<td>{_fmt(r['time_per_event_us'], 3)}</td>" if r.get("time_per_event_us") else "<td>–</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    out.append(
        "<p class='note'>ROC AUC ± its Hanley–McNeil standard error. TPR at a fixed background efficiency: the cut "
        "keeps at most that fraction of background; brackets give the 68% Clopper–Pearson interval; * marks working "
        "points with fewer than 10/FPR background events (not resolved). max SIC = max TPR/√FPR over points with at "
        "least 10 background events. Rate at the detector's threshold = FPR × 40 MHz.</p>"
    )
    return "".join(out)


def _img(out_dir: Path, rel: str) -> str | None:
    path = out_dir / rel
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _agreement(summary: dict[str, Any]) -> str:
    a = summary.get("agreement")
    if not a:
        return ""
    dets = a["detectors"]
    rows = ["<table><thead><tr><th class='l'></th>" + "".join(f"<th>{_e(d)}</th>" for d in dets) + "</tr></thead><tbody>"]
    for i, d in enumerate(dets):
        cells = "".join(
            f"<td>{a['decision_agreement'][i][j]:.3f} / {a['rank_correlation'][i][j]:.2f}</td>" for j in range(len(dets))
        )
        rows.append(f"<tr><td class='l'>{_e(d)}</td>{cells}</tr>")
    rows.append("</tbody></table>")
    return (
        f"<section><h2>Model agreement</h2>{''.join(rows)}<p class='note'>Each cell: fraction of signal events on which "
        f"the two detectors agree, each cut at background efficiency {a['fpr']:.2g} / Spearman rank correlation of "
        f"their scores on all events.</p></section>"
    )


def render_report(out_dir: str | os.PathLike[str]) -> str:
    """The HTML text of the report of ``out_dir`` (which must hold ``metrics.json``)."""
    out = Path(out_dir)
    mpath = out / "metrics.json"
    if not mpath.is_file():
        raise InputError(
            f"{out}: no metrics.json here. Run `hepad evaluate ... -o {out}` or `hepad compare ... -o {out}` first."
        )
    try:
        summary = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{mpath}: not readable as JSON ({exc}). Re-run the evaluation.") from None
    if not isinstance(summary, dict) or "rows" not in summary:
        raise InputError(f"{mpath}: not a hepad metrics file (no 'rows'). Re-run the evaluation.")
    kind = summary.get("kind", "evaluation")
    dets = summary.get("detectors", [])
    sigs = summary.get("signals", [])
    title = f"hepad {kind}: {', '.join(dets)}"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{_e(title)}</h1><p>{len(sigs)} signal(s): {_e(', '.join(sigs))} · created "
        f"{_e(summary.get('created', ''))} · hepad {_e(summary.get('info', {}).get('versions', {}).get('hepad', ''))}</p></header><main>",
        f"<section><h2>Summary</h2>{_table(summary)}</section>",
    ]
    warns = summary.get("warnings") or []
    if warns:
        parts.append("<section class='warn'><h2>Warnings</h2><ul>" + "".join(f"<li>{_e(w)}</li>" for w in warns)
                     + "</ul></section>")
    parts.append(_agreement(summary))
    figs = []
    for p in summary.get("plots", []):
        uri = _img(out, p["file"])
        if uri is None:
            continue
        figs.append(f"<figure><img src='{uri}' alt='{_e(p['title'])}'><figcaption><b>{_e(p['title'])}.</b> "
                    f"{_e(p.get('caption', ''))}</figcaption></figure>")
    if figs:
        parts.append(f"<section><h2>Plots</h2><div class='plots'>{''.join(figs)}</div></section>")
    info = summary.get("info", {})
    for key, heading in (("config", "Configuration"), ("data", "Data provenance"), ("versions", "Versions")):
        if info.get(key):
            parts.append(f"<section><h2>{heading}</h2><pre>{_e(json.dumps(info[key], indent=2, default=str))}</pre></section>")
    parts.append("</main></body></html>")
    return "\n".join(parts)


def write_report(out_dir: str | os.PathLike[str], path: str | os.PathLike[str] | None = None) -> Path:
    """Write ``report.html`` (or ``path``) for the evaluation in ``out_dir``; returns its path."""
    text = render_report(out_dir)
    target = Path(path) if path is not None else Path(out_dir) / "report.html"
    with atomic_path(target, suffix=".html") as tmp:
        tmp.write_text(text, encoding="utf-8")
        from .evaluation import _readable

        _readable(tmp)
    return target
