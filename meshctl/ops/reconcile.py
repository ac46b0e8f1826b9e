"""One reconcile pass, shared by the controller and ``meshctl rollout run``.

    1. observe: status and intents, workloads, traffic as written and as applied;
    2. measure: the analysis queries that are due;
    3. decide: the pure engine;
    4. act: write traffic (one write), converge workloads;
    5. record: save the status only when it changed, emit the events.

The pass never branches on what woke it; running it twice in a row writes nothing the second
time. A crash anywhere is safe: the next pass re-derives everything from the stored status
and the world.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from meshctl.domain.analysis import MeasurementRequest, TakenMeasurement
from meshctl.domain.engine import (
    Decision,
    DesiredWorkloads,
    Event,
    Gate,
    Observation,
    ResolvedAnalysis,
    WorkloadState,
    decide,
    gates_due,
    measurements_due,
)
from meshctl.domain.fields import format_time
from meshctl.domain.intents import Intents
from meshctl.domain.measurements import Error
from meshctl.domain.notifications import Notice, NotificationSink, notices
from meshctl.domain.phases import Phase
from meshctl.domain.ports import MetricProvider, TrafficRouter
from meshctl.domain.release_gates import GateReport, GateRequest
from meshctl.domain.spec import Rollout
from meshctl.domain.status import RolloutStatus
from meshctl.domain.traffic import Weights
from meshctl.domain.trail import acted_by
from meshctl.ops import failpoints
from meshctl.ops.judging import judgement
from meshctl.ops.providers import Providers


class Workloads(Protocol):
    """The versions' workloads (Deployments in a cluster, processes locally): stable,
    canary, and a fresh baseline when the Rollout has one."""

    def observe(self) -> tuple[WorkloadState, WorkloadState, WorkloadState]:
        """(stable, canary, baseline) as they are now (baseline: empty without one)."""

    def apply(self, desired: DesiredWorkloads) -> None:
        """Converge: stable at ``stable_revision``, canary at its revision and replicas,
        the baseline at its revision and replicas (none at 0)."""


class StatusStore(Protocol):
    """Where the Rollout's status and the user's intents live."""

    def load(self) -> tuple[RolloutStatus, Intents]: ...

    def save(self, status: RolloutStatus) -> None: ...

    def record(self, events: Iterable[Event]) -> None: ...


class GateJudge(Protocol):
    """Verdicts of the outside release gates (webhook, job, approval) waiting in status."""

    def judge(self, rollout: Rollout, status: RolloutStatus, requests: list[GateRequest],
              now: datetime) -> Mapping[str, GateReport]: ...


class Notify(Protocol):
    """Sends a notification in the background; never blocks the pass."""

    def send(self, sink: NotificationSink, notice: Notice) -> None: ...


@dataclass
class Ports:
    router: TrafficRouter
    workloads: Workloads
    metrics: Callable[[str | None], MetricProvider]  # address (None: the default) -> provider
    store: StatusStore
    trust_written: bool = False  # no data plane to read: steps proceed on the written split
    observe_timeout: float | None = None  # a step unobserved this long says it is held
    providers: Providers | None = None  # metric providers by kind (default: ``metrics`` only)
    gates: GateJudge | None = None  # None: outside gates wait (and pause at their deadline)
    notifier: Notify | None = None  # None: spec.notifications are not sent
    sinks: tuple[NotificationSink, ...] = ()  # the controller's own, for every Rollout


def measure(requests: Iterable[MeasurementRequest], metrics: Callable[[str | None], MetricProvider],
            now: datetime, providers: Providers | None = None) -> tuple[TakenMeasurement, ...]:
    """Each request measured by its provider kind's source (Prometheus: ``metrics``)."""
    registry = providers or Providers(metrics)
    taken = []
    for r in requests:
        try:
            if r.judge is not None:
                value = judgement(r.judge, registry.samples(r.kind, r.address, r.judge.judge),
                                  r.timeout)
            else:
                value = registry.source(r.kind, r.address).measure(r.query, r.timeout)
        except Exception as exc:  # a provider must not raise; if it does, it is a measurement
            value = Error(f"{type(exc).__name__}: {exc}")
        taken.append(TakenMeasurement(r.run, r.metric, now, value))
    return tuple(taken)


def reconcile(rollout: Rollout, plans: ResolvedAnalysis, revision: str, ports: Ports,
              now: datetime, gate: Gate | None = None) -> Decision:
    status, intents = ports.store.load()
    stable, canary, baseline = ports.workloads.observe()
    written = ports.router.written()
    observed = ports.router.observed()
    obs = Observation(revision=revision, stable=stable, canary=canary, baseline=baseline,
                      written=written, observed=observed,
                      unobserved=ports.router.unobserved_reason() if observed is None else "",
                      trust_written=ports.trust_written, observe_timeout=ports.observe_timeout,
                      intents=intents, analysis=plans, generation=rollout.metadata.generation,
                      gate=gate)
    obs = dataclasses.replace(obs, gate_reports=_judge_gates(rollout, status, obs, ports, now))
    taken = measure(measurements_due(rollout.spec, status, obs, now), ports.metrics, now,
                    ports.providers)
    decision = decide(rollout.spec, status, dataclasses.replace(obs, measurements=taken), now)
    annotations = rollout.metadata.annotations
    events = [dataclasses.replace(e, message=acted_by(e.reason, e.message, annotations))
              for e in decision.events]
    if decision.traffic != obs.written:
        drift = _drift(status, obs)
        if drift:
            events.append(Event("Warning", "TrafficCorrected", drift))
        ports.router.apply(decision.traffic)
        failpoints.hit("traffic-written")
        if decision.status.phase is Phase.ABORTING:
            failpoints.hit("abort")
    ports.workloads.apply(decision.workloads)
    if decision.workloads.canary_replicas != canary.replicas:
        failpoints.hit("scaled")
    if decision.workloads.baseline_replicas != baseline.replicas:
        failpoints.hit("baseline-scaled")
    if decision.status.phase is Phase.PROMOTING:
        failpoints.hit("promotion")
    if decision.status != status:
        ports.store.save(decision.status)
        failpoints.hit("status-saved")
    ports.store.record(events)
    _notify(rollout, decision.status, events, ports, now)
    return dataclasses.replace(decision, events=tuple(events))


def _notify(rollout: Rollout, status: RolloutStatus, events: list[Event], ports: Ports,
            now: datetime) -> None:
    """Queue the pass's notices for each sink that wants them (sent in the background)."""
    sinks = (*rollout.spec.notifications, *ports.sinks)
    if ports.notifier is None or not sinks:
        return
    found = notices(rollout.namespace, rollout.name, status.current_revision or "",
                    status.phase.value, ((e.type, e.reason, e.message) for e in events),
                    format_time(now))
    for notice in found:
        for sink in sinks:
            if sink.wants(notice.kind):
                ports.notifier.send(sink, notice)


def _judge_gates(rollout: Rollout, status: RolloutStatus, obs: Observation, ports: Ports,
                 now: datetime) -> Mapping[str, GateReport]:
    due = gates_due(rollout.spec, status, obs)
    if not due or ports.gates is None:
        return {}
    return ports.gates.judge(rollout, status, due, now)


def _drift(status: RolloutStatus, obs: Observation) -> str:
    """A message when someone else changed the weights meshctl last wrote."""
    if obs.written is None or status.phase is Phase.PENDING:
        return ""
    mine = status.weights
    found = obs.written.weights
    if (found.stable, found.canary, found.baseline) == (mine.stable, mine.canary,
                                                        mine.baseline or 0):
        return ""
    last = Weights(mine.stable, mine.canary, mine.baseline or 0)
    return (f"weights were changed by another writer to stable/canary {found.described()}; "
            f"meshctl manages them (last written {last.described()})")
