"""One self-contained HTML report of an evaluation or comparison output folder.

``write_report(out_dir)`` reads ``metrics.json`` and the PNG plots it lists, and writes
``report.html`` from the jinja2 template ``hepad/templates/report.html.j2``: the images are
embedded as base64 data URIs and the CSS is inline, so the file can be mailed or attached to an
issue and opens anywhere, offline, without JavaScript.

Layout: a front page (headline table with the working points in Hz, warnings), the comparison
plots and agreement table, the input distributions, one section per detector (its threshold,
training convergence, plots and configuration), then configuration, data provenance and
versions as tables.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._write import write_text
from .errors import InputError
from .evaluation.rows import describe_rule, fpr_key
from .rates import COLLISION_RATE_HZ
from .plotting import L1_ACCEPT_RATE_HZ
from .plotting import format_rate as _rate

__all__ = ["write_report", "render_report"]

#: CSS pixels per inch of figure: every plot shows its text at the same size on the page
#: (16 pt at 60 px/inch is about 13 px; two 10-inch plots fit side by side), whatever its width or the PNG resolution.
_PX_PER_INCH = 60


def _num(x: Any, digits: int = 3) -> str:
    if x is None or isinstance(x, str):
        return "–" if x is None else x
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        if x != x:
            return "–"
        return f"{x:.{digits}g}" if isinstance(x, float) else str(x)
    return str(x)


def _fpr_text(f: float) -> str:
    return f"{f:.0e}".replace("e-0", "e-")


def _anchor(name: str) -> str:
    return "det-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested configuration as ``(dotted.key, readable value)`` rows."""
    rows: list[tuple[str, str]] = []
    if isinstance(obj, Mapping):
        if not obj and prefix:
            return [(prefix, "–")]
        for k, v in obj.items():
            rows += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return rows
    if isinstance(obj, (list, tuple)):
        if all(not isinstance(v, (Mapping, list, tuple)) for v in obj):
            return [(prefix, ", ".join(_num(v, 4) for v in obj) or "–")]
        for i, v in enumerate(obj):
            rows += _flatten(v, f"{prefix}[{i}]")
        return rows
    return [(prefix, _num(obj, 6))]


def _img(out_dir: Path, rel: str) -> str | None:
    path = out_dir / rel
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _load(out: Path) -> dict[str, Any]:
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
    return summary


def _context(out: Path, summary: dict[str, Any]) -> dict[str, Any]:
    from markupsafe import Markup, escape

    kind = summary.get("kind", "evaluation")
    dets = list(summary.get("detectors", []))
    sigs = list(summary.get("signals", []))
    fprs = list(summary.get("fprs", []))
    crate = float(summary.get("collision_rate_hz") or COLLISION_RATE_HZ)
    info = summary.get("info", {}) or {}
    results = summary.get("results", {}) or {}
    warnings = list(summary.get("warnings") or [])

    working_points = [{"fpr": f, "fpr_text": _fpr_text(f), "rate_text": _rate(f * crate)} for f in fprs]
    rows = []
    for r in summary.get("rows", []):
        tprs = []
        for f in fprs:
            k = fpr_key(f)
            tprs.append({"value": _num(r.get(k)), "low": _num(r.get(f"{k}_low"), 2), "high": _num(r.get(f"{k}_high"), 2),
                         "resolved": bool(r.get(f"{k}_resolved", True))} if k in r else
                        {"value": "–", "low": "–", "high": "–", "resolved": True})
        rows.append({"detector": r["detector"], "anchor": _anchor(str(r["detector"])), "signal": r["signal"],
                     "n_signal": r.get("n_signal", "–"), "auc": _num(r.get("auc"), 4), "auc_err": _num(r.get("auc_err"), 2),
                     "tprs": tprs, "max_sic": _num(r.get("max_sic")), "pr_auc": _num(r.get("pr_auc")),
                     "time_us": _num(r.get("time_per_event_us"))})

    plots = summary.get("plots", []) or []

    def plots_of(section: str) -> Any:
        parts = []
        for p in plots:
            if p.get("section", dets[0] if dets else "") != section:
                continue
            uri = _img(out, p["file"])
            if uri is None:
                continue
            px = round(float(p["width_in"]) * _PX_PER_INCH) if p.get("width_in") else None
            width = f" width='{px}'" if px else ""
            box = f" style='width:{px}px'" if px else ""  # the caption wraps to the plot's width
            parts.append(
                f"<figure{box}><img src='{uri}' alt='{escape(p['title'])}'{width}>"
                f"<figcaption><b>{escape(p['title'])}.</b> {escape(p.get('caption', ''))}</figcaption></figure>"
            )
        return Markup(f"<div class='plots'>{''.join(parts)}</div>") if parts else Markup("")

    def has_section(section: str) -> bool:
        return any(p.get("section") == section for p in plots)

    detectors = []
    det_configs = (info.get("config", {}) or {}).get("detectors") if kind == "comparison" else None
    for d in dets:
        r = results.get(d, {}) or {}
        conv = r.get("convergence") or None
        rate = r.get("threshold_rate_hz")
        if conv:
            training = (f"{conv['epochs']} epochs, best {conv['monitored'].replace('_', ' ')} at epoch "
                        f"{conv['best_epoch']}" + ("" if conv["converged"] else " (the last one: not converged)"))
        else:
            training = "no training history (not a trained network)"
        t = r.get("time_per_event_s")
        cfg = (det_configs or {}).get(d) if det_configs else (info.get("config") or {})
        detectors.append({
            "name": d, "anchor": _anchor(d), "threshold": _num(r.get("threshold"), 5),
            "rule": describe_rule(r.get("threshold_rule")) if r.get("threshold_rule") else "–", "rate": _rate(rate),
            "rate_flag": isinstance(rate, (int, float)) and rate > L1_ACCEPT_RATE_HZ,
            "training": training, "unconverged": bool(conv and not conv["converged"]),
            "time": "–" if not t else f"{t * 1e6:.3g} µs per event (batched, this CPU)",
            "warnings": [w for w in warnings if w.startswith(f"{d}:")],
            "config": _flatten(cfg or {}),
        })

    agreement = None
    a = summary.get("agreement")
    if a:
        ad = a["detectors"]
        agreement = {"detectors": ad, "fpr": _num(a["fpr"], 2), "rows": [
            {"name": n, "cells": [f"{a['decision_agreement'][i][j]:.3f} / {a['rank_correlation'][i][j]:.2f}"
                                  for j in range(len(ad))]} for i, n in enumerate(ad)]}

    config = info.get("config", {}) or {}
    if kind == "comparison":
        config = {k: v for k, v in config.items() if k != "detectors"}
    data = info.get("data", {}) or {}
    samples, columns = [], []
    entries = ([("Background", data.get("background") or {})] if data.get("background") else []) + [
        (f"Signal: {n}", v or {}) for n, v in (data.get("signals") or {}).items()]
    for name, d in entries:
        fields = {k: _num(v, 6) for k, v in d.items() if k != "n_events"}
        columns += [k for k in fields if k not in columns]
        samples.append({"name": name, "n_events": _num(d.get("n_events")), "fields": fields})
    n_bkg = (data.get("background") or {}).get("n_events")

    sections = [{"id": "summary", "name": "Summary"}]
    if agreement:
        sections.append({"id": "comparison", "name": "Comparison"})
    if has_section("Inputs"):
        sections.append({"id": "inputs", "name": "Inputs"})
    sections += [{"id": d["anchor"], "name": d["name"]} for d in detectors]
    sections.append({"id": "provenance", "name": "Provenance"})

    return {
        "title": f"hepad {kind}: {', '.join(dets)}", "signals": sigs, "created": summary.get("created", ""),
        "hepad_version": (info.get("versions") or {}).get("hepad", ""),
        "n_background_text": f"{n_bkg:,} background events" if isinstance(n_bkg, int) else "background",
        "collision_rate": _rate(crate), "working_points": working_points, "rows": rows, "warnings": warnings,
        "agreement": agreement, "detectors": detectors, "sections": sections, "plots_of": plots_of,
        "has_section": has_section, "config": _flatten(config), "samples": samples, "sample_columns": columns,
        "versions": _flatten(info.get("versions") or {}),
    }


def render_report(out_dir: str | os.PathLike[str]) -> str:
    """The HTML text of the report of ``out_dir`` (which must hold ``metrics.json``)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    out = Path(out_dir)
    summary = _load(out)
    env = Environment(loader=PackageLoader("hepad", "templates"), autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2").render(**_context(out, summary))


def write_report(out_dir: str | os.PathLike[str], path: str | os.PathLike[str] | None = None) -> Path:
    """Write ``report.html`` (or ``path``) for the evaluation in ``out_dir``; returns its path."""
    text = render_report(out_dir)
    target = Path(path) if path is not None else Path(out_dir) / "report.html"
    return write_text(target, text)
