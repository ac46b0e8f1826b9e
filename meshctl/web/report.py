"""A rollout's report: one HTML file with everything inline (uPlot, the chart code, the
data), so it opens offline and can be attached to a change ticket."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from meshctl.domain.timeline import Timeline
from meshctl.ops.views import RolloutView
from meshctl.web.assets import UPLOT_CSS, UPLOT_JS, asset

# Nothing outside the file may load: no script, style, image or connection elsewhere.
OFFLINE = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
           "img-src data:")


def script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no "</" can close it early."""
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _summary(view: RolloutView | None, timeline: Timeline) -> list[tuple[str, str]]:
    if view is None:
        return [("Rollout", f"{timeline.namespace}/{timeline.name}"), ("Phase", timeline.phase)]
    observed = view.observed_weights
    rows = [("Rollout", f"{view.namespace}/{view.name}"),
            ("Phase", view.phase + (f" ({view.pause_reason})" if view.pause_reason else "")),
            ("Step", f"{view.step}/{view.total_steps}" if view.total_steps else str(view.step)),
            ("Weights written", f"stable {view.weights.stable} / canary {view.weights.canary}"),
            ("Weights observed", view.not_observed or "-" if observed is None
             else f"stable {observed.stable} / canary {observed.canary}"),
            ("Revision", f"{view.revision or '-'} (stable {view.stable_revision or '-'})")]
    if view.image:
        rows.append(("Image", view.image))
    if view.abort_reason:
        rows.append(("Aborted", view.abort_reason))
    rows.append(("Message", view.message or "-"))
    return rows


def _section(index: int, timeline: Timeline, view: RolloutView | None) -> tuple[str, Any]:
    data = timeline.to_json()
    summary = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                      for k, v in _summary(view, timeline))
    marks = "".join(
        f"<tr class='{html.escape(m['kind'])}{' warning' if m['warning'] else ''}'>"
        f"<td>{_time(m['at'])}</td><td>{html.escape(m['kind'])}</td>"
        f"<td>{html.escape(m['label'])}</td></tr>" for m in data["marks"])
    name = html.escape(f"{timeline.namespace}/{timeline.name}")
    return f"""<section class="rollout" id="rollout-{index}">
<h2>{name}</h2>
<table class="summary">{summary}</table>
<h3>Timeline</h3>
<div class="charts" id="charts-{index}"></div>
<h3>Events</h3>
<table class="events"><tr><th>Time</th><th>Kind</th><th>Event</th></tr>{marks}</table>
</section>""", data


def report(sections: Sequence[tuple[Timeline, RolloutView | None]], title: str = "",
           generated: datetime | None = None) -> str:
    """The report's HTML text: a section per rollout, each with its summary, charts and
    events."""
    parts = [_section(i, t, v) for i, (t, v) in enumerate(sections)]
    if not title:
        title = "meshctl rollout " + ", ".join(f"{t.namespace}/{t.name}" for t, _ in sections)
    when = (generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = "\n".join(text for text, _ in parts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{OFFLINE}">
<title>{html.escape(title)}</title>
<style>{asset(UPLOT_CSS)}</style><style>{asset("style.css")}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p class="generated">Report generated {when} by meshctl.</p>
<p class="legend">Lines: canary weight written (solid) and observed at the data plane (dashed);
each SLO metric with its threshold (red, dashed). Marks: step boundaries (grey, dashed),
analysis verdicts (purple), human actions (amber), release gates (blue), warnings (red).</p>
{body}
<script type="application/json" id="timelines">{script_json([d for _, d in parts])}</script>
<script>{asset(UPLOT_JS)}</script>
<script>{asset("timeline.js")}</script>
<script>window.meshctlCharts = MeshctlTimeline.renderReport();</script>
</body></html>
"""
