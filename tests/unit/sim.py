"""A pure, in-memory world for stepping whole rollouts through decide().

It applies each Decision the way the shell would (traffic written, canary scaled, stable
template updated) with knobs for what the world does back: whether the data plane applies
writes, whether canary pods become ready, what each measurement returns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from meshctl.domain.analysis import ResolvedMetric, TakenMeasurement
from meshctl.domain.conditions import Condition
from meshctl.domain.engine import (
    Decision,
    Observation,
    ResolvedAnalysis,
    WorkloadState,
    decide,
    measurements_due,
)
from meshctl.domain.intents import Intents
from meshctl.domain.measurements import Measurement, Value
from meshctl.domain.spec import RolloutSpec
from meshctl.domain.status import RolloutStatus
from meshctl.domain.traffic import TrafficSplit
from meshctl.domain.validation import load_document

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rollout_spec(spec: dict[str, Any]) -> RolloutSpec:
    doc = {"apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
           "metadata": {"name": "web"},
           "spec": {"service": "web", "workloadRef": {"name": "web"},
                    "trafficRouting": {"istio": {"virtualService": {"name": "web"},
                                                 "destinationRule": {"name": "web",
                                                                     "stableSubset": "stable",
                                                                     "canarySubset": "canary"}}},
                    **spec}}
    rollout = load_document(doc)
    assert isinstance(rollout.spec, RolloutSpec)
    return rollout.spec


def canary(*steps: dict[str, Any], **extra: Any) -> RolloutSpec:
    return rollout_spec({"strategy": {"canary": {"steps": list(steps)}}, **extra})


def slo_metric(name: str = "latency", count: int = 1, interval: float = 10.0) -> ResolvedMetric:
    return ResolvedMetric(name=name, query=f"q_{name}", success=Condition.parse("result < 50"),
                      count=count, interval=interval)


@dataclasses.dataclass
class Sim:
    spec: RolloutSpec
    analysis: ResolvedAnalysis = dataclasses.field(default_factory=ResolvedAnalysis)
    replicas: int = 4
    revision: str = "v2"
    status: RolloutStatus = dataclasses.field(default_factory=RolloutStatus)
    now: datetime = T0
    written: TrafficSplit | None = None
    observed: TrafficSplit | None = None
    stable: WorkloadState = WorkloadState(4, 4, "v1")
    canary: WorkloadState = WorkloadState(0, 0, None)
    baseline: WorkloadState = WorkloadState()  # a fresh baseline (spec.judge.baseline: fresh)
    baseline_becomes_ready: bool = True
    intents: Intents = Intents()
    data_plane_applies: bool = True
    unobserved: str = ""  # the reason given when the data plane cannot be read
    trust_written: bool = False
    observe_timeout: float | None = None
    canary_becomes_ready: bool = True
    metric: Callable[[str, str], Measurement] = lambda run, metric: Value(10.0)
    writes: list[TrafficSplit] = dataclasses.field(default_factory=list)
    decisions: list[Decision] = dataclasses.field(default_factory=list)
    restart_every_pass: bool = False

    def observation(self) -> Observation:
        return Observation(revision=self.revision, stable=self.stable, canary=self.canary,
                           baseline=self.baseline,
                           written=self.written, observed=self.observed, intents=self.intents,
                           unobserved=self.unobserved if self.observed is None else "",
                           trust_written=self.trust_written,
                           observe_timeout=self.observe_timeout,
                           analysis=self.analysis)

    def reconcile(self) -> Decision:
        if self.restart_every_pass:  # a new controller process: only the stored status survives
            self.status = RolloutStatus.from_json(self.status.to_json())
        obs = self.observation()
        due = measurements_due(self.spec, self.status, obs, self.now)
        taken = tuple(TakenMeasurement(r.run, r.metric, self.now, self.metric(r.run, r.metric))
                      for r in due)
        decision = decide(self.spec, self.status, dataclasses.replace(obs, measurements=taken),
                          self.now)
        self.apply(decision)
        return decision

    def apply(self, d: Decision) -> None:
        self.decisions.append(d)
        self.status = d.status
        if d.traffic != self.written:
            self.writes.append(d.traffic)
            self.written = d.traffic
        if self.data_plane_applies:
            self.observed = self.written
        want = d.workloads
        ready = want.canary_replicas if self.canary_becomes_ready else 0
        self.canary = WorkloadState(want.canary_replicas, ready, want.canary_revision)
        count = want.baseline_replicas
        self.baseline = WorkloadState(count, count if self.baseline_becomes_ready else 0,
                                      want.baseline_revision) if count else WorkloadState()
        if want.stable_revision != self.stable.revision:
            self.stable = WorkloadState(self.replicas, self.replicas, want.stable_revision)

    def run(self, passes: int = 300, until: Callable[[Sim], bool] | None = None) -> Sim:
        """Reconcile, moving the clock by each requeue, until idle, ``until`` or ``passes``."""
        for _ in range(passes):
            d = self.reconcile()
            if until is not None and until(self):
                break
            if d.requeue_after is None:
                break
            self.now += timedelta(seconds=max(d.requeue_after, 0.5))
        return self

    def weights_written(self) -> list[tuple[int, int]]:
        """Each change of weights written (route- or mirror-only writes are folded in)."""
        out: list[tuple[int, int]] = []
        for w in self.writes:
            pair = (w.weights.stable, w.weights.canary)
            if not out or out[-1] != pair:
                out.append(pair)
        return out
