"""Progress of a rollout: one line per change, timestamped (the same on a terminal and in CI
logs, so a pipeline's log reads like a terminal's)."""

from __future__ import annotations

from datetime import UTC, datetime

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
    return (f"{status.phase.value:<11} step {status.current_step} "
            f"stable/canary {w.stable}/{w.canary} {last_measurements(status)}".rstrip()
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
