"""The controller's own metrics (``/metrics``), on prometheus-client, in one registry."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from meshctl.domain.engine import Decision, Event
from meshctl.domain.phases import Phase


class ControllerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconcile_seconds = Histogram(
            "meshctl_reconcile_duration_seconds", "Time of one reconcile pass.", ["result"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75,
                     1, 2.5, 5, 10),
            registry=self.registry)
        self.reconcile_cpu_seconds = Histogram(
            "meshctl_reconcile_cpu_seconds", "CPU time of one reconcile pass's thread (the "
            "pass's own work; the rest of its duration is waiting, mostly for the API server).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1),
            registry=self.registry)
        self.reconcile_api_seconds = Histogram(
            "meshctl_reconcile_api_seconds", "Time one reconcile pass spent in calls to the "
            "API server (request, answer and its decoding; 0 when the pass wrote nothing).",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5,
                     0.75, 1, 2.5),
            registry=self.registry)
        self.api_request_seconds = Histogram(
            "meshctl_api_request_duration_seconds", "Time of one call to the API server as "
            "the controller sees it (request, answer and its decoding), by verb and resource.",
            ["verb", "resource"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75,
                     1, 2.5, 5),
            registry=self.registry)
        self.queue_wait_seconds = Histogram(
            "meshctl_queue_wait_seconds", "Time a Rollout's key waited for a worker after it "
            "was due; urgent: a new spec, an intent or a canary just ready.", ["urgent"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry)
        self.rollouts = Gauge("meshctl_rollouts", "Rollouts by phase.", ["phase"],
                              registry=self.registry)
        self.verdicts = Counter("meshctl_analysis_verdicts_total",
                                "Analysis verdicts reached (passed or failed).", ["verdict"],
                                registry=self.registry)
        self.weight_changes = Counter("meshctl_weight_changes_total",
                                      "Traffic weight changes written.", registry=self.registry)
        self.api_errors = Counter("meshctl_api_errors_total",
                                  "Errors talking to the API server or Prometheus.", ["kind"],
                                  registry=self.registry)
        self.leader = Gauge("meshctl_leader", "Shards whose Lease this process holds "
                            "(unsharded: 1 while it leads).",
                            registry=self.registry)
        self._phases: dict[str, Phase] = {}
        self._phases_lock = threading.Lock()  # workers pass different keys at once

    def api_call(self, verb: str, resource: str, seconds: float) -> None:
        self.api_request_seconds.labels(verb, resource).observe(seconds)

    def queue_wait(self, urgent: bool, seconds: float) -> None:
        self.queue_wait_seconds.labels("true" if urgent else "false").observe(seconds)

    def observe(self, key: str, decision: Decision | None, events: Iterable[Event] = ()) -> None:
        if decision is not None:
            self._count(key, decision.status.phase)
        for event in events:
            if event.reason == "WeightChanged":
                self.weight_changes.inc()
            elif event.reason in ("AnalysisPassed", "AnalysisFailed"):
                self.verdicts.labels("Passing" if event.reason == "AnalysisPassed"
                                     else "Failing").inc()

    def _count(self, key: str, phase: Phase | None) -> None:
        """Move ``key`` between the per-phase gauges (constant time: no pass counts all)."""
        with self._phases_lock:
            self._move(key, phase)

    def _move(self, key: str, phase: Phase | None) -> None:
        before = self._phases.pop(key, None) if phase is None else self._phases.get(key)
        if before is phase:
            return
        if before is not None:
            self.rollouts.labels(before.value).dec()
        if phase is not None:
            self._phases[key] = phase
            self.rollouts.labels(phase.value).inc()

    def forget(self, key: str) -> None:
        self._count(key, None)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
