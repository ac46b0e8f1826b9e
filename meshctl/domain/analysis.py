"""Analysis: turning measurements and limits into a verdict, purely.

A run has metrics; each metric gets measurements at its ``interval`` (from ``initialDelay``
after the run starts) until it has ``count`` of them. Each measurement's outcome:

- a value: Failed if ``failureCondition`` holds; else Successful if ``successCondition``
  holds (or is absent); else Failed when only ``successCondition`` is given, Inconclusive
  when both are given and neither holds;
- no data: Inconclusive (missing data is never a pass and never a zero);
- an error: Error.

A metric's verdict: Failing when failed > failureLimit or consecutive errors >
consecutiveErrorLimit; Inconclusive when inconclusive > inconclusiveLimit; Passing when all
``count`` measurements are in (errors are retried, not counted) and at
least ``minSamples`` succeeded; else Pending.
A run fails when any metric fails, is inconclusive when any is, passes when all pass.

A *guard* metric (``ResolvedMetric.guard``) can only fail a run: its failed measurements count
as any metric's, but its successes, no data and errors neither pass nor hold the run; it stays
Pending (measured on every interval) until it fails or the run ends. The SLO's fast
availability check is one: it stops a hard failure before the latency window has filled.

A metric with ``since_window`` counts from a moment, not over a rate window: each
measurement's query gets ``{{since}}`` = the later of the run's start and ``since_window``
seconds ago (:meth:`ResolvedMetric.query_at`). So it never counts what happened before its run
(a retry right after a failure starts clean), and it can measure from the run's first
interval on.

A metrics source that does not answer (:class:`Unavailable`, a kind of no data) counts
as no data; the records remember it (``unavailable``), so the engine can tell a pause for a
missing source (:func:`unavailable_only`; it probes the source, :func:`probes_due`, and lifts the pause
when it answers with data, :func:`quiet_too_long`) from a pause for no data about the
version.

Worked examples (limit 0): measurements [Successful, Successful, Failed] -> Failing, reason
"1 of 3 measurements failed (limit 0): last value 83.2". Count 3 with [NoData] ->
Inconclusive at once: "no data: 0 requests", so a human looks before anything promotes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from meshctl.domain import queries
from meshctl.domain.conditions import Condition
from meshctl.domain.judge import Judged, JudgeRequest, ResolvedJudge
from meshctl.domain.measurements import Error, Measurement, NoData, Unavailable, Value
from meshctl.domain.providers import ProviderKind
from meshctl.domain.status import (
    MAX_MEASUREMENTS_KEPT,
    AnalysisRunStatus,
    MeasurementRecord,
    MetricStatus,
    Outcome,
    Verdict,
)


@dataclass(frozen=True)
class ResolvedMetric:
    """A metric with its query resolved and its limits in seconds: what the engine runs."""

    name: str
    query: str
    success: Condition | None = None
    failure: Condition | None = None
    address: str | None = None
    timeout: float = 10.0
    interval: float = 10.0
    count: int | None = 1  # None: until the run ends (background analysis)
    failure_limit: int = 0
    inconclusive_limit: int = 0
    consecutive_error_limit: int = 4
    initial_delay: float = 0.0
    min_samples: int = 1
    guard: bool = False  # only fails the run (see the module docstring)
    # counting from a moment (see the module docstring): ``template`` with its
    # ``variables``, rendered at each measurement with ``since``; ``query`` shows it
    since_window: float | None = None
    template: str = ""
    variables: tuple[tuple[str, str], ...] = ()
    # the spec field the query comes from, for a problem Prometheus finds in it
    # ("spec.slo.latencyP95"; a template's metric: "...templates[0] (AnalysisTemplate t:
    # spec.metrics[1].provider.prometheus.query)")
    field: str = ""
    judge: ResolvedJudge | None = None  # the comparative judge: its value is a score
    kind: ProviderKind = ProviderKind.PROMETHEUS  # which provider measures ``query``

    def request(self, run: str, started: datetime, now: datetime) -> MeasurementRequest:
        """What the shell should measure now for this metric in ``run`` (begun ``started``)."""
        judge = None
        if self.judge is not None:
            judge = JudgeRequest(self.judge, *self.judge.span(started, now))
        return MeasurementRequest(run, self.name, self.query_at(started, now), self.address,
                                  self.timeout, judge, self.kind)

    def query_at(self, started: datetime, now: datetime) -> str:
        """The query to run at ``now`` in a run that began at ``started``: ``query``, or for
        a metric counting from a moment, its template from the later of ``started`` and
        ``since_window`` seconds before ``now``.

        Window 2 s, run started at 10:00:00: at 10:00:01 it counts from 10:00:00 (1 s of
        traffic); at 10:00:05, from 10:00:03."""
        if self.since_window is None:
            return self.query
        since = max(started, now - timedelta(seconds=self.since_window))
        span_ms = max(1, int((now - since).total_seconds() * 1000))  # (since, now], floored
        return queries.render(self.template, {**dict(self.variables),
                                              "since": f"{since.timestamp():.3f}",
                                              "span": f"{span_ms}ms"})


@dataclass(frozen=True)
class MeasurementRequest:
    """One query the shell should run now for ``run``/``metric``."""

    run: str
    metric: str
    query: str
    address: str | None
    timeout: float
    judge: JudgeRequest | None = None  # a judgement to make instead of ``query``
    kind: ProviderKind = ProviderKind.PROMETHEUS


@dataclass(frozen=True)
class TakenMeasurement:
    run: str
    metric: str
    at: datetime
    measurement: Measurement


def outcome_of(plan: ResolvedMetric, measurement: Measurement) -> tuple[Outcome, str]:
    outcome, message = _outcome(plan, measurement)
    if isinstance(measurement, Judged) and measurement.judgement is not None:
        message = f"{message}: {measurement.judgement.describe()}"
    return outcome, message


def _outcome(plan: ResolvedMetric, measurement: Measurement) -> tuple[Outcome, str]:
    if isinstance(measurement, Error):
        return Outcome.ERROR, measurement.message
    if isinstance(measurement, NoData) or math.isnan(measurement.value):
        reason = measurement.reason if isinstance(measurement, NoData) else "NaN"
        return Outcome.INCONCLUSIVE, f"no data: {reason}"
    value = measurement.value
    if plan.failure is not None and plan.failure.holds(value):
        return Outcome.FAILED, f"{value:g} meets failure condition {plan.failure.text}"
    if plan.success is None or plan.success.holds(value):
        return Outcome.SUCCESSFUL, f"{value:g} meets {plan.success.text if plan.success else 'no condition'}"
    if plan.failure is None:
        return Outcome.FAILED, f"{value:g} does not meet {plan.success.text}"
    return Outcome.INCONCLUSIVE, f"{value:g} meets neither condition"


def record(plan: ResolvedMetric, metric: MetricStatus, at: datetime,
           measurement: Measurement) -> MetricStatus:
    """Add one measurement to a metric's counters and recompute its verdict."""
    outcome, message = outcome_of(plan, measurement)
    value = measurement.value if isinstance(measurement, Value) else None
    if value is not None and math.isnan(value):
        value = None
    entry = MeasurementRecord(at=at, outcome=outcome, value=value, message=message,
                              unavailable=True if isinstance(measurement, Unavailable) else None,
                              judgement=measurement.judgement if isinstance(measurement, Judged)
                              else None)
    updated = dataclasses.replace(
        metric,
        count=metric.count + 1,
        successful=metric.successful + (outcome is Outcome.SUCCESSFUL),
        failed=metric.failed + (outcome is Outcome.FAILED),
        inconclusive=metric.inconclusive + (outcome is Outcome.INCONCLUSIVE),
        errors=metric.errors + (outcome is Outcome.ERROR),
        consecutive_errors=metric.consecutive_errors + 1 if outcome is Outcome.ERROR else 0,
        measurements=(*metric.measurements, entry)[-MAX_MEASUREMENTS_KEPT:],
    )
    verdict, reason = assess_metric(plan, updated)
    return dataclasses.replace(updated, verdict=verdict, reason=reason)


def assess_metric(plan: ResolvedMetric, m: MetricStatus) -> tuple[Verdict, str]:
    last = m.measurements[-1].message if m.measurements else ""
    if m.failed > plan.failure_limit:
        return Verdict.FAILING, (f"{plan.name}: {m.failed} of {m.count} measurements failed "
                                 f"(limit {plan.failure_limit}): {last}")
    if plan.guard:
        return Verdict.PENDING, f"{plan.name}: guarding, {m.count} measurement(s): {last}"
    if m.consecutive_errors > plan.consecutive_error_limit:
        return Verdict.FAILING, (f"{plan.name}: {m.consecutive_errors} errors in a row "
                                 f"(limit {plan.consecutive_error_limit}): {last}")
    if m.inconclusive > plan.inconclusive_limit:
        return Verdict.INCONCLUSIVE, (f"{plan.name}: {m.inconclusive} inconclusive "
                                      f"(limit {plan.inconclusive_limit}): {last}")
    if plan.count is not None and m.count - m.errors >= plan.count:
        if m.successful >= plan.min_samples:
            return Verdict.PASSING, f"{plan.name}: {m.successful} of {m.count} passed: {last}"
        return Verdict.INCONCLUSIVE, (f"{plan.name}: {m.successful} successful measurements, "
                                      f"fewer than minSamples {plan.min_samples}")
    if not m.measurements:
        return Verdict.PENDING, f"{plan.name}: waiting for the first measurement"
    return Verdict.PENDING, f"{plan.name}: {m.count} measurement(s) so far: {last}"


def holding(plans: Iterable[ResolvedMetric], metrics: Iterable[MetricStatus]) -> list[tuple[Verdict, str]]:
    """The verdicts a run's verdict is combined from: a pending guard holds nothing (unless
    the run has nothing but guards)."""
    guards = {p.name for p in plans if p.guard}
    metrics = tuple(metrics)
    if all(m.name in guards for m in metrics):
        return [(m.verdict, m.reason) for m in metrics]
    return [(m.verdict, m.reason) for m in metrics
            if not (m.name in guards and m.verdict is Verdict.PENDING)]


def combine(verdicts: Iterable[tuple[Verdict, str]]) -> tuple[Verdict, str]:
    """A run's verdict from its metrics': one failing fails it, one inconclusive pauses it."""
    items = list(verdicts)
    for verdict in (Verdict.FAILING, Verdict.INCONCLUSIVE, Verdict.PENDING):
        reasons = [r for v, r in items if v is verdict]
        if reasons:
            return verdict, "; ".join(reasons)
    return Verdict.PASSING, "; ".join(r for _, r in items) or "no metrics"


def start_run(
    name: str, step: int, revision: str, plans: Iterable[ResolvedMetric], now: datetime
) -> AnalysisRunStatus:
    plans = tuple(plans)
    metrics = tuple(MetricStatus(name=p.name, query=p.query,
                                 reason=f"{p.name}: waiting for the first measurement")
                    for p in plans)
    verdict, reason = combine(holding(plans, metrics))
    return AnalysisRunStatus(name=name, started_at=now, step=step, revision=revision,
                             metrics=metrics, verdict=verdict, reason=reason)


def due(run: AnalysisRunStatus, plans: Iterable[ResolvedMetric], now: datetime) -> list[MeasurementRequest]:
    """The measurements to take now for a run that is still Pending."""
    if run.verdict is not Verdict.PENDING:
        return []
    out = []
    by_name = {m.name: m for m in run.metrics}
    for plan in plans:
        metric = by_name.get(plan.name)
        if metric is None or metric.verdict is not Verdict.PENDING:
            continue
        if now >= next_due(run, plan, metric):
            out.append(plan.request(run.name, run.started_at, now))
    return out


def next_due(run: AnalysisRunStatus, plan: ResolvedMetric, metric: MetricStatus) -> datetime:
    last = metric.last_at
    if last is None:
        return run.started_at + timedelta(seconds=plan.initial_delay)
    return last + timedelta(seconds=plan.interval)


def seconds_until_due(run: AnalysisRunStatus, plans: Iterable[ResolvedMetric], now: datetime) -> float | None:
    """How long until the next measurement of a pending run is due (None: nothing due)."""
    if run.verdict is not Verdict.PENDING:
        return None
    by_name = {m.name: m for m in run.metrics}
    waits = [
        max(0.0, (next_due(run, plan, by_name[plan.name]) - now).total_seconds())
        for plan in plans
        if plan.name in by_name and by_name[plan.name].verdict is Verdict.PENDING
    ]
    return min(waits) if waits else None


def apply_measurements(
    run: AnalysisRunStatus, plans: Iterable[ResolvedMetric], taken: Iterable[TakenMeasurement]
) -> AnalysisRunStatus:
    """Record the measurements meant for this run and recompute its verdict."""
    plan_by_name = {p.name: p for p in plans}
    metrics = {m.name: m for m in run.metrics}
    for t in taken:
        if t.run != run.name or t.metric not in metrics or t.metric not in plan_by_name:
            continue
        metric = metrics[t.metric]
        if metric.verdict is not Verdict.PENDING:
            continue
        if metric.last_at is not None and t.at <= metric.last_at:
            continue  # already recorded: presenting a measurement twice changes nothing
        metrics[t.metric] = record(plan_by_name[t.metric], metrics[t.metric], t.at, t.measurement)
    ordered = tuple(metrics[m.name] for m in run.metrics)
    verdict, reason = combine(holding(plan_by_name.values(), ordered))
    return dataclasses.replace(run, metrics=ordered, verdict=verdict, reason=reason)


# -- a metrics source that does not answer ------------------------------------------------


def unavailable_only(run: AnalysisRunStatus) -> bool:
    """True when ``run`` is inconclusive only because its metrics source did not answer:
    the last measurement of every inconclusive metric found the source unavailable.

    E.g. latency [Value 12, Unavailable] with limit 0 -> True (Prometheus went away);
    latency [NoData "3 requests"] -> False (Prometheus answered: too little traffic)."""
    stuck = [m for m in run.metrics if m.verdict is Verdict.INCONCLUSIVE]
    return bool(stuck) and all(m.measurements and m.measurements[-1].unavailable
                               for m in stuck)


def _stuck(run: AnalysisRunStatus, plans: Iterable[ResolvedMetric]
           ) -> list[tuple[ResolvedMetric, MetricStatus]]:
    by_name = {m.name: m for m in run.metrics}
    return [(plan, by_name[plan.name]) for plan in plans
            if plan.name in by_name and by_name[plan.name].verdict is Verdict.INCONCLUSIVE]


def probes_due(run: AnalysisRunStatus, plans: Iterable[ResolvedMetric], now: datetime
               ) -> list[MeasurementRequest]:
    """While a run waits for its metrics source: each inconclusive metric's query, once per
    ``interval`` after its last measurement, to learn whether the source answers again."""
    return [plan.request(run.name, run.started_at, now)
            for plan, metric in _stuck(run, plans) if now >= next_due(run, plan, metric)]


def seconds_until_probe(run: AnalysisRunStatus, plans: Iterable[ResolvedMetric], now: datetime
                        ) -> float | None:
    waits = [max(0.0, (next_due(run, plan, metric) - now).total_seconds())
             for plan, metric in _stuck(run, plans)]
    return min(waits) if waits else None


def patience(plan: ResolvedMetric) -> float:
    """How long a source that answers again may answer without data before a pause for it
    turns into one for a person: twice what a fresh run would allow (its initial delay,
    then ``inconclusiveLimit + 1`` intervals of no data). A source that was down has an
    empty window to fill first.

    E.g. initialDelay 60 s, interval 10 s, limit 1 -> 2 x (60 + 20) = 160 s;
    initialDelay 4 s, interval 1 s, limit 1 -> 12 s."""
    return 2 * (plan.initial_delay + (plan.inconclusive_limit + 1) * plan.interval)


def quiet_too_long(run: AnalysisRunStatus, plans: Iterable[ResolvedMetric], now: datetime) -> str:
    """Why the source, answering again, has had no data for longer than a metric's
    :func:`patience` ("" while it has not): the latest records of that metric are all
    answered no data (not ``unavailable``), the first of them that long ago."""
    for plan, metric in _stuck(run, plans):
        quiet = []
        for entry in reversed(metric.measurements):
            if entry.unavailable or entry.outcome is not Outcome.INCONCLUSIVE:
                break
            quiet.append(entry)
        if quiet and (now - quiet[-1].at).total_seconds() >= patience(plan):
            return (f"{plan.name} has had no data for {(now - quiet[-1].at).total_seconds():g} "
                    f"s: {quiet[0].message}")
    return ""


def record_probes(run: AnalysisRunStatus, plans: Iterable[ResolvedMetric],
                  taken: Iterable[TakenMeasurement]) -> AnalysisRunStatus:
    """Record probes that found no data, the source unavailable or answering with nothing
    (the run stays inconclusive; the records say when it was last asked, which times the
    next probe, and since when it answers without data)."""
    plan_by_name = {p.name: p for p in plans}
    metrics = {m.name: m for m in run.metrics}
    for t in taken:
        metric = metrics.get(t.metric)
        if (t.run != run.name or metric is None or t.metric not in plan_by_name
                or metric.verdict is not Verdict.INCONCLUSIVE
                or (metric.last_at is not None and t.at <= metric.last_at)):
            continue
        metrics[t.metric] = record(plan_by_name[t.metric], metric, t.at, t.measurement)
    ordered = tuple(metrics[m.name] for m in run.metrics)
    verdict, reason = combine(holding(plan_by_name.values(), ordered))
    return dataclasses.replace(run, metrics=ordered, verdict=verdict, reason=reason)


def without_pending_runs(runs: Iterable[AnalysisRunStatus]) -> tuple[AnalysisRunStatus, ...]:
    """The runs that reached a verdict; runs still measuring start again from scratch.

    For a metrics source that restarted empty (the local mesh's own Prometheus after the
    process was killed): measurements of a pending run came from data that is gone.
    """
    return tuple(r for r in runs if r.verdict is not Verdict.PENDING)
