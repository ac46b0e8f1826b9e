"""Rendering views as tables, JSON or YAML."""

from __future__ import annotations

import json
from typing import Any

import click

OUTPUT_CHOICES = ["table", "json", "yaml", "html"]  # html: `meshctl rollout report` only


def emit(value: Any, output: str) -> None:
    if output == "html":
        raise click.UsageError("-o html is for 'meshctl rollout report'; use -o json or yaml")
    if output == "json":
        click.echo(json.dumps(value, indent=2, sort_keys=False))
    elif output == "yaml":
        from meshctl.ops.documents import as_yaml

        click.echo(as_yaml(value), nl=False)
    else:
        click.echo(str(value))


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _gate_text(gate: dict[str, Any]) -> str:
    kind = gate["type"]
    if kind == "release":
        return f"{gate['kind']} {gate['name']}"
    if kind == "pause":
        return f"pause {gate['duration']}"
    if kind in ("analysis", "backgroundAnalysis"):
        names = ", ".join(m["name"] for m in gate["metrics"])
        return f"{'background ' if kind == 'backgroundAnalysis' else ''}analysis [{names}]"
    if kind == "readiness":
        baseline = f", baseline ready >= {gate['baselineReplicas']}" if (
            "baselineReplicas" in gate) else ""
        return f"canary ready >= {gate['canaryReplicas']}{baseline}"
    if kind == "autoPromotion":
        return f"auto-promote after {gate['seconds']}s"
    if kind == "delay":
        return f"wait {gate['seconds']}s"
    return str(kind)


def plan_table(plan: dict[str, Any]) -> str:
    rows = []
    for step in plan["steps"]:
        w = step["weights"]
        extras = []
        if step.get("headerRoutes"):
            extras.append("routes " + ",".join(step["headerRoutes"]))
        if step.get("mirrorPercent"):
            extras.append(f"mirror {step['mirrorPercent']}%")
        shown = [w["stable"], w["canary"], *([w["baseline"]] if "baseline" in w else [])]
        rows.append([str(step["index"]), step["kind"], "/".join(map(str, shown)),
                     "; ".join(_gate_text(g) for g in step["gates"]) or "-",
                     " ".join(extras) or "-"])
    title = (f"Rollout {plan['rollout']['namespace']}/{plan['rollout']['name']} "
             f"({plan['strategy']})")
    fresh = any("baseline" in step["weights"] for step in plan["steps"])
    weights = "STABLE/CANARY/BASELINE" if fresh else "STABLE/CANARY"
    text = title + "\n" + table(["STEP", "KIND", weights, "GATES", "ROUTES"], rows)
    if plan.get("releaseGates"):
        text += "\nRelease gates:\n" + table(
            ["  NAME", "KIND", "AT", "HOLDS", "DETAIL"],
            [[f"  {g['name']}", g["kind"], ",".join(g["at"]),
              ",".join(str(h) for h in g["holds"]) or "-", _release_detail(g)]
             for g in plan["releaseGates"]])
    return text


def _release_detail(gate: dict[str, Any]) -> str:
    if gate["kind"] == "window":
        frozen = f"; frozen {', '.join(gate['freezes'])}" if gate["freezes"] else ""
        return f"{'; '.join(gate['windows']) or 'always'} {gate['timeZone']}{frozen}"
    if gate["kind"] == "webhook":
        return f"POST {gate['url']} (deadline {gate.get('deadline', '-')})"
    if gate["kind"] == "approval":
        eyes = ", not the starter" if gate["fourEyes"] else ""
        return f"{gate['approvals']} approval(s){eyes} (deadline {gate.get('deadline', '-')})"
    return f"deadline {gate.get('deadline', '-')}"
