"""Progress of a rollout: one line per change, timestamped (the same on a terminal and in CI
logs, so a pipeline's log reads like a terminal's)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from meshctl.domain.engine import Decision, Event
from meshctl.domain.status import RolloutStatus


def last_measurements(status: RolloutStatus) -> str:
    """The newest measurement of each metric, over all analysis runs."""
    latest: dict[str, tuple[datetime, float | None]] = {}
    for run in status.analysis:
        for metric in run.metrics:
            if metric.measurements:
                m = metric.measurements[-1]
                if metric.name not in latest or latest[metric.name][0] < m.at:
                    latest[metric.name] = (m.at, m.value)
    return " ".join(f"{name}={'no data' if value is None else _fmt(name, value)}"
                    for name, (_, value) in sorted(latest.items()))


def _fmt(name: str, value: float) -> str:
    if "availability" in name:
        return f"{value * 100:.3f}%"
    if "latency" in name:
        return f"{value:.1f}ms"
    return f"{value:g}"


def status_line(status: RolloutStatus) -> str:
    w = status.weights
    shown = (f"stable/canary/baseline {w.stable}/{w.canary}/{w.baseline}" if w.baseline
             else f"stable/canary {w.stable}/{w.canary}")
    return (f"{status.phase.value:<11} step {status.current_step} "
            f"{shown} {last_measurements(status)}".rstrip()
            + (f" | {status.message}" if status.message else ""))


class ProgressPrinter:
    """Prints a line when the status line changes, and each Warning event."""

    def __init__(self, err: bool = True) -> None:
        self._last = ""
        self._err = err

    def __call__(self, decision: Decision) -> None:
        line = status_line(decision.status)
        if line != self._last:
            self._last = line
            click.echo(f"{_now()} {line}", err=self._err)

    def event(self, event: Event) -> None:
        if event.type == "Warning":
            click.echo(f"{_now()} {event.reason}: {event.message}", err=self._err)


def _now() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S")


def demo_summary(scenarios: list[dict[str, Any]]) -> str:
    lines = ["", "Summary"]
    for s in scenarios:
        took = s["time_to_rollback_seconds"]
        extra = f", {took:.2f}s from the fault to 100% stable at the Envoy" if took else ""
        lines.append(f"- {s['name']}: {s['result']}{extra}")
        if s.get("caught_by"):
            lines.append(f"  caught by: {s['caught_by']}")
        weights = " -> ".join(f"{st['weights']['stable']}/{st['weights']['canary']}"
                              for st in _changes(s["steps"]))
        lines.append(f"  weights (stable/canary): {weights}")
        served = ", ".join(f"{k} {v}" for k, v in sorted(s["requests"].items()))
        lines.append(f"  requests: {served}")
        for d in s["decisions"]:
            if d["reason"] in ("AnalysisPassed", "AnalysisFailed", "RolloutCompleted",
                               "Promoting") or d["type"] == "Warning":
                lines.append(f"  {d['reason']}: {d['message']}")
    return "\n".join(lines)


def _changes(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for step in steps:
        if not out or out[-1]["weights"] != step["weights"]:
            out.append(step)
    return out
