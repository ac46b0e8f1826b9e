"""A rollout over time, shaped for a chart: the canary weight written and observed, each
SLO metric with its threshold, and marks for step boundaries, analysis verdicts, human
actions and the other events.

Pure: it shapes what meshctl already records (the status, the events, a local run's
samples, points a metrics source returned) and reads no clock; the shell passes ``now``.
The dashboard and the HTML report draw the same :meth:`Timeline.to_json`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from meshctl.domain.conditions import Condition
from meshctl.domain.engine import ResolvedAnalysis
from meshctl.domain.status import RolloutStatus

_WEIGHTS = re.compile(r"(\d{1,3})/(\d{1,3})")


class MarkKind(str, Enum):
    STEP = "step"  # a step began
    VERDICT = "verdict"  # an analysis passed, failed or was inconclusive
    ACTION = "action"  # a person promoted, aborted, paused, resumed, approved
    GATE = "gate"  # a release gate began waiting, passed or failed
    EVENT = "event"  # anything else worth a line (started, rolled back, ...)


# Event reasons to mark kinds; a reason not named here is an EVENT mark.
MARK_KINDS: Mapping[str, MarkKind] = {
    "StepStarted": MarkKind.STEP, "PausedAtStep": MarkKind.STEP,
    "AwaitingPromotion": MarkKind.STEP,
    "AnalysisPassed": MarkKind.VERDICT, "AnalysisFailed": MarkKind.VERDICT,
    "InconclusiveAnalysis": MarkKind.VERDICT,
    "UserAbort": MarkKind.ACTION, "Promoted": MarkKind.ACTION, "PromotedFull": MarkKind.ACTION,
    "Resumed": MarkKind.ACTION, "UserPaused": MarkKind.ACTION, "Retried": MarkKind.ACTION,
    "Approved": MarkKind.ACTION, "Rejected": MarkKind.ACTION,
    "GateWaiting": MarkKind.GATE, "GatePassed": MarkKind.GATE, "GateFailed": MarkKind.GATE,
    "GateDeadline": MarkKind.GATE,
}
# Reasons too frequent to mark; their content shows in the weight lines instead.
UNMARKED = frozenset({"WeightChanged", "TrafficVerified"})


@dataclass(frozen=True)
class EventRecord:
    at: datetime
    type: str  # Normal, Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Sample:
    """The status at one moment, as a local run saves it: weights written and, when the
    data plane was read, observed."""

    at: datetime
    phase: str
    step: int
    stable: int
    canary: int
    observed_canary: int | None = None


@dataclass(frozen=True)
class Point:
    at: datetime
    value: float | None  # None: no data at that moment (a gap in the line)
    outcome: str = ""  # a judged measurement's outcome; "" for a point of a range query


@dataclass(frozen=True)
class MetricSeries:
    name: str
    threshold: float | None
    threshold_text: str  # the success condition, e.g. "result < 50"
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Mark:
    at: datetime
    kind: MarkKind
    label: str
    warning: bool = False


@dataclass(frozen=True)
class Timeline:
    namespace: str
    name: str
    phase: str
    written: tuple[Point, ...]  # the canary weight written to the router
    observed: tuple[Point, ...]  # the canary weight seen at the data plane
    metrics: tuple[MetricSeries, ...]
    marks: tuple[Mark, ...]

    def to_json(self) -> dict[str, Any]:
        def points(values: Iterable[Point]) -> list[list[Any]]:
            return [[_seconds(p.at), p.value, p.outcome] for p in values]

        return {
            "namespace": self.namespace, "name": self.name, "phase": self.phase,
            "written": points(self.written), "observed": points(self.observed),
            "metrics": [{"name": m.name, "threshold": m.threshold,
                         "thresholdText": m.threshold_text, "points": points(m.points)}
                        for m in self.metrics],
            "marks": [{"at": _seconds(m.at), "kind": m.kind.value, "label": m.label,
                       "warning": m.warning} for m in self.marks],
        }


def _seconds(at: datetime) -> float:
    return round(at.timestamp(), 3)


def threshold_of(success: Condition | None, failure: Condition | None
                 ) -> tuple[float | None, str]:
    """The line to draw for a metric: the number of its success condition's first
    comparison, else of its failure condition's; with the condition's text.

    ``result < 50`` -> (50.0, "result < 50"); no condition at all -> (None, "")."""
    for condition in (success, failure):
        if condition is not None and condition.any_of and condition.any_of[0]:
            return condition.any_of[0][0].number, condition.text
    return None, ""


def weights_from_events(events: Iterable[EventRecord]) -> tuple[list[Point], list[Point]]:
    """Canary weights written (``WeightChanged``: "stable/canary 90/10") and observed
    (``TrafficVerified``: "step 1: data plane at 90/10"), oldest first."""
    written, observed = [], []
    for e in sorted(events, key=lambda e: e.at):
        found = _WEIGHTS.search(e.message)
        if found is None:
            continue
        if e.reason == "WeightChanged":
            written.append(Point(e.at, float(found.group(2))))
        elif e.reason == "TrafficVerified":
            observed.append(Point(e.at, float(found.group(2))))
    return written, observed


def weights_from_samples(samples: Iterable[Sample]) -> tuple[list[Point], list[Point]]:
    """Canary weights written and observed from a local run's samples, oldest first; a
    sample that could not read the data plane leaves a gap in the observed line."""
    ordered = sorted(samples, key=lambda s: s.at)
    written = [Point(s.at, float(s.canary)) for s in ordered]
    observed = [Point(s.at, None if s.observed_canary is None else float(s.observed_canary))
                for s in ordered]
    return written, observed


def measured_points(status: RolloutStatus) -> dict[str, list[Point]]:
    """Every measurement the status keeps, by metric, oldest first (a metric measured by
    two runs at one moment is one point)."""
    found: dict[str, dict[datetime, Point]] = {}
    for run in status.analysis:
        for metric in run.metrics:
            for m in metric.measurements:
                found.setdefault(metric.name, {})[m.at] = Point(m.at, m.value, m.outcome.value)
    return {name: [by_at[at] for at in sorted(by_at)] for name, by_at in found.items()}


def merged(judged: Sequence[Point], ranged: Sequence[Point]) -> tuple[Point, ...]:
    """The judged measurements with a range query's points between them, oldest first; at
    the same moment the judged one wins (it carries the outcome)."""
    by_at = {p.at: p for p in ranged}
    by_at.update({p.at: p for p in judged})
    return tuple(by_at[at] for at in sorted(by_at))


def marks_from_events(events: Iterable[EventRecord]) -> tuple[Mark, ...]:
    """One mark per event, oldest first, except the frequent weight events."""
    return tuple(Mark(e.at, MARK_KINDS.get(e.reason, MarkKind.EVENT), f"{e.reason}: {e.message}",
                      e.type == "Warning")
                 for e in sorted(events, key=lambda e: e.at) if e.reason not in UNMARKED)


def _extended(points: list[Point], value: float | None, now: datetime) -> tuple[Point, ...]:
    """The line held to ``now`` at the current value (a step line ends at the present)."""
    if value is None or (points and points[-1].at >= now):
        return tuple(points)
    return (*points, Point(now, value))


def timeline(namespace: str, name: str, status: RolloutStatus,
             events: Sequence[EventRecord], now: datetime,
             thresholds: Mapping[str, tuple[float | None, str]] | None = None,
             samples: Sequence[Sample] = (),
             ranges: Mapping[str, Sequence[Point]] | None = None) -> Timeline:
    """The rollout's timeline.

    Weights come from ``samples`` when a local run saved them, else from the events; both
    lines end at ``now`` at the status's current weights. Metrics are the status's
    measurements merged with ``ranges`` (points of a range query, by metric), each with its
    threshold (``thresholds`` by metric name; see :func:`threshold_of`)."""
    written, observed = weights_from_samples(samples) if samples else weights_from_events(events)
    current_observed = status.weights.observed
    judged = measured_points(status)
    ranged = dict(ranges or {})
    limits = dict(thresholds or {})
    names = sorted(set(judged) | set(ranged) | set(limits))
    metrics = tuple(MetricSeries(n, *limits.get(n, (None, "")),
                                 points=merged(judged.get(n, []), ranged.get(n, [])))
                    for n in names)
    return Timeline(
        namespace, name, status.phase.value,
        written=_extended(written, float(status.weights.canary), now),
        observed=_extended(observed, None if current_observed is None
                           else float(current_observed.canary), now),
        metrics=metrics, marks=marks_from_events(events))


def thresholds_of(plans: ResolvedAnalysis) -> dict[str, tuple[float | None, str]]:
    """Each resolved metric's threshold by name (see :func:`threshold_of`); a metric in
    several analyses keeps the first one found, steps before background."""
    out: dict[str, tuple[float | None, str]] = {}
    for metrics in (*(plans.steps[i] for i in sorted(plans.steps)), plans.background):
        for metric in metrics:
            out.setdefault(metric.name, threshold_of(metric.success, metric.failure))
    return out
