"""The SLO's fast availability check: a guard that fails a run on a hard failure before the
latency window has filled, and that never passes or holds a run by itself."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from meshctl.domain.analysis import ResolvedMetric
from meshctl.domain.conditions import Condition
from meshctl.domain.engine import ResolvedAnalysis
from meshctl.domain.measurements import NoData, Value
from meshctl.domain.phases import Phase
from meshctl.domain.resolve import (
    Target,
    fast_window,
    hard_failure_ratio,
    slo_metrics,
)
from meshctl.domain.routers.backend import MeshKind
from meshctl.domain.spec import Rollout
from meshctl.domain.status import Verdict
from meshctl.domain.validation import load_document

from .sim import T0, Sim, canary


@pytest.mark.parametrize("window, interval, expected", [
    (4.0, 1.0, "4s"),  # the demo: 1 s measurements over a 4 s window
    (60.0, 10.0, "40s"),  # four measurement intervals when the window is longer
    (60.0, 0.5, "2s"),
    (1.5, 1.0, "1500ms"),  # never longer than the SLO window; sub-second as milliseconds
])
def test_fast_window_is_four_intervals_at_most_the_slo_window(window, interval, expected):
    assert fast_window(window, interval) == expected


@pytest.mark.parametrize("availability, expected", [
    (0.999, 0.998),  # 0.1% budget: fails above 0.2% errors
    (0.99, 0.98),
    (0.4, 0.0),  # a budget over half: never below zero
])
def test_hard_failure_is_twice_the_error_budget(availability, expected):
    assert hard_failure_ratio(availability) == pytest.approx(expected)


def _rollout(slo: dict[str, object]) -> Rollout:
    doc = load_document({
        "apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"service": "web", "workloadRef": {"name": "web"}, "slo": slo,
                 "trafficRouting": {"istio": {"virtualService": {"name": "web"},
                                              "destinationRule": {"name": "web", "stableSubset": "stable",
                                                                  "canarySubset": "canary"}}},
                 "strategy": {"canary": {"steps": [{"setWeight": 10}, {"analysis": {}}]}}}})
    assert isinstance(doc, Rollout)
    return doc


def test_slo_metrics_add_a_fast_guard_over_a_short_window_with_the_min_requests_guard():
    rollout = _rollout({"availability": "99.9%", "window": "1m", "interval": "5s",
                        "minRequests": 30})
    plans = {p.name: p for p in slo_metrics(rollout, Target.of(rollout, MeshKind.ISTIO))}
    fast = plans["availability-fast"]
    # measured twice an interval from the first half interval on, over a span of four
    assert fast.guard and fast.initial_delay == 2.5 and fast.interval == 2.5
    assert fast.since_window == 20
    assert fast.failure is not None and fast.failure.text == "result < 0.998"
    assert fast.success is None
    assert "@ $since" in fast.query and "[1m]" not in fast.query  # counted, not a rate
    assert ">= 30" in fast.query  # too few requests: no data, which a guard ignores
    # the windowed metrics still wait one window and decide passing
    assert plans["latency-p95"].initial_delay == 60 and not plans["latency-p95"].guard
    assert plans["availability"].initial_delay == 60


@pytest.mark.parametrize("seconds_into_the_run, counts_from", [
    (1, 0),  # younger than its span: from the run's start, never before it
    (5, 0),
    (20, 0),
    (22, 2),  # older: the last 20 s
    (300, 280),
])
def test_the_fast_check_counts_from_its_run_start_or_its_span_ago(seconds_into_the_run,
                                                                  counts_from):
    rollout = _rollout({"window": "1m", "interval": "5s"})
    fast = next(p for p in slo_metrics(rollout, Target.of(rollout, MeshKind.ENVOY)) if p.guard)
    query = fast.query_at(T0, T0 + timedelta(seconds=seconds_into_the_run))
    since = (T0 + timedelta(seconds=counts_from)).timestamp()
    assert f"@ {since:.3f} " in query and "$since" not in query and "{{" not in query


def _plans() -> ResolvedAnalysis:
    latency = ResolvedMetric(name="latency", query="q_latency", success=Condition.parse("result < 50"),
                         interval=1, count=3, initial_delay=60)
    guard = ResolvedMetric(name="availability-fast", query="q_fast",
                       failure=Condition.parse("result < 0.998"), interval=1, count=3,
                       guard=True)
    return ResolvedAnalysis(steps={1: (latency, guard)})


def test_a_hard_failure_rolls_back_before_the_latency_window_has_filled():
    """The guard's 90% availability fails the run at its first data, long before the
    latency metric's first measurement (60 s after the step began)."""
    sim = Sim(canary({"setWeight": 10}, {"analysis": {}}, {"setWeight": 100}), analysis=_plans(),
              metric=lambda run, m: Value(0.9) if m == "availability-fast" else Value(10.0))
    sim.run(until=lambda s: s.status.phase is Phase.DEGRADED)
    assert sim.status.phase is Phase.DEGRADED
    run = sim.status.run("step-1")
    assert run is not None and run.verdict is Verdict.FAILING
    assert "availability-fast" in run.reason
    latency = next(m for m in run.metrics if m.name == "latency")
    assert latency.count == 0  # it never had to measure
    assert sim.now < T0 + timedelta(seconds=60)


@pytest.mark.parametrize("guard_sees", [NoData("3 requests"), Value(1.0)])
def test_a_guard_with_no_data_or_good_data_neither_holds_nor_pauses_the_run(guard_sees):
    """Too few requests is no data, which would pause a normal metric: a guard ignores it;
    the run passes on the windowed metrics alone."""
    sim = Sim(canary({"setWeight": 10}, {"analysis": {}}, {"setWeight": 100}), analysis=_plans(),
              metric=lambda run, m: guard_sees if m == "availability-fast" else Value(10.0))
    sim.run()
    assert sim.status.phase is Phase.HEALTHY
    run = sim.status.run("step-1")
    assert run is not None and run.verdict is Verdict.PASSING


def test_a_run_of_guards_only_measures_on_until_it_fails():
    guard = dataclasses.replace(_plans().steps[1][1], count=None)
    sim = Sim(canary({"setWeight": 10}, {"analysis": {}}, {"setWeight": 100}),
              analysis=ResolvedAnalysis(steps={1: (guard,)}), metric=lambda run, m: Value(1.0))
    sim.run(passes=30)
    run = sim.status.run("step-1")
    assert run is not None and run.verdict is Verdict.PENDING
    assert run.metrics[0].count > 5
