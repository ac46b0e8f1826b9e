"""Tables of plain values: phases, durations, conditions, analysis assessment."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from meshctl.domain.analysis import (
    ResolvedMetric,
    assess_metric,
    outcome_of,
    patience,
    quiet_too_long,
    record,
    unavailable_only,
)
from meshctl.domain.conditions import Condition
from meshctl.domain.durations import format_duration, parse_duration
from meshctl.domain.measurements import Error, NoData, Unavailable, Value
from meshctl.domain.phases import IllegalTransition, Phase, check_transition, mermaid
from meshctl.domain.status import AnalysisRunStatus, MetricStatus, Outcome, Verdict
from meshctl.domain.traffic import Weights

from .sim import T0


@pytest.mark.parametrize("source, target", [
    (Phase.HEALTHY, Phase.DEGRADED),
    (Phase.DEGRADED, Phase.PROMOTING),
    (Phase.PENDING, Phase.ABORTING),
    (Phase.HEALTHY, Phase.PAUSED),
])
def test_illegal_transitions_raise(source, target):
    with pytest.raises(IllegalTransition, match=f"{source.value} -> {target.value}"):
        check_transition(source, target)


def test_every_phase_is_in_the_table_and_the_diagram():
    diagram = mermaid()
    for phase in Phase:
        assert phase.value in diagram
    assert "Aborting --> Degraded" in diagram


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("1.5s", 1.5), ("2d", 172800),
])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5x", "m5", "1h 30m", "-5s", "5s5"])
def test_bad_durations_say_how_to_write_one(text):
    with pytest.raises(ValueError, match="write it like 30s"):
        parse_duration(text)


@pytest.mark.parametrize("seconds, text", [(90, "1m30s"), (0.25, "250ms"), (3600, "1h"), (0, "0ms")])
def test_durations_format(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text, value, holds", [
    ("result < 50", 49.9, True),
    ("result < 50", 50, False),
    ("result >= 0.9999", 0.9999, True),
    ("result >= 0.99 && result <= 1", 1.5, False),
    ("result < 1 || result > 9", 10, True),
    ("result < 1 or result > 9", 5, False),
    ("result != 0", float("nan"), False),
])
def test_conditions(text, value, holds):
    assert Condition.parse(text).holds(value) is holds


@pytest.mark.parametrize("text", ["len(result) < 1", "result < abc", "__import__('os')", "result"])
def test_conditions_are_never_code(text):
    with pytest.raises(ValueError, match="is not a comparison"):
        Condition.parse(text)


def test_weights_must_be_integers_summing_to_100():
    assert Weights.canary_at(10) == Weights(90, 10)
    for bad in [(50, 49), (101, -1), (50.0, 50)]:
        with pytest.raises(ValueError):
            Weights(*bad)  # type: ignore[arg-type]


LATENCY = ResolvedMetric(name="latency", query="q", success=Condition.parse("result < 50"), count=3)
BOTH = ResolvedMetric(name="m", query="q", success=Condition.parse("result < 50"),
                  failure=Condition.parse("result > 100"))


@pytest.mark.parametrize("plan, measurement, outcome", [
    (LATENCY, Value(10), Outcome.SUCCESSFUL),
    (LATENCY, Value(60), Outcome.FAILED),  # only a success condition: not meeting it fails
    (BOTH, Value(60), Outcome.INCONCLUSIVE),  # between the two conditions
    (BOTH, Value(160), Outcome.FAILED),
    (LATENCY, NoData("0 requests"), Outcome.INCONCLUSIVE),  # no data is never a pass or a zero
    (LATENCY, Value(float("nan")), Outcome.INCONCLUSIVE),
    (LATENCY, Error("timeout"), Outcome.ERROR),
])
def test_measurement_outcomes(plan, measurement, outcome):
    assert outcome_of(plan, measurement)[0] is outcome


def _feed(plan, *measurements):
    metric = MetricStatus(name=plan.name)
    for i, m in enumerate(measurements):
        metric = record(plan, metric, T0 + timedelta(seconds=i), m)
    return metric


@pytest.mark.parametrize("plan, measurements, verdict", [
    (LATENCY, [Value(1), Value(2)], Verdict.PENDING),  # count 3 not reached
    (LATENCY, [Value(1), Value(2), Value(3)], Verdict.PASSING),
    (LATENCY, [Value(1), Value(90)], Verdict.FAILING),  # failureLimit 0
    (ResolvedMetric(name="l", query="q", success=Condition.parse("result < 50"), count=3,
                failure_limit=1), [Value(90), Value(1), Value(2)], Verdict.PASSING),
    (LATENCY, [NoData()], Verdict.INCONCLUSIVE),  # inconclusiveLimit 0
    (ResolvedMetric(name="l", query="q", count=2, inconclusive_limit=2,
                success=Condition.parse("result < 50")), [NoData(), Value(1), Value(1)],
     Verdict.PASSING),
    (LATENCY, [Error("x")] * 4 + [Value(1)], Verdict.PENDING),  # errors retried, not counted
    (LATENCY, [Error("x")] * 4, Verdict.PENDING),  # 4 in a row: within the limit 4
    (LATENCY, [Error("x")] * 5, Verdict.FAILING),  # consecutiveErrorLimit 4
    (ResolvedMetric(name="l", query="q", count=2, min_samples=3, failure_limit=5,
                success=Condition.parse("result < 50")), [Value(1), Value(2)],
     Verdict.INCONCLUSIVE),  # fewer successes than minSamples
])
def test_metric_verdicts(plan, measurements, verdict):
    metric = _feed(plan, *measurements)
    assert metric.verdict is verdict, metric.reason
    assert assess_metric(plan, metric)[0] is verdict


def test_a_failing_verdict_names_the_value_and_the_rule():
    metric = _feed(LATENCY, Value(12), Value(83.2))
    assert metric.reason == ("latency: 1 of 2 measurements failed (limit 0): "
                             "83.2 does not meet result < 50")


def test_the_readme_state_diagram_is_the_table():
    from pathlib import Path

    readme = Path("README.md").read_text()
    assert mermaid() in readme


DOWN = Unavailable("did not answer within 10s")


@pytest.mark.parametrize("measured, unavailable", [
    ({"latency": [DOWN]}, True),  # Prometheus never answered
    ({"latency": [Value(1), DOWN]}, True),  # it went away after a good measurement
    ({"latency": [NoData("3 requests")]}, False),  # it answered: too little traffic
    ({"latency": [Value(60)]}, False),  # not inconclusive at all (failing)
    ({"latency": [DOWN], "errors": [NoData("0 requests")]}, False),  # one metric has data
    ({"latency": [DOWN], "errors": [Value(1)]}, True),  # the other is still pending
    ({"latency": [], "errors": []}, False),  # nothing inconclusive
])
def test_a_pause_lifts_itself_only_when_the_source_alone_was_missing(measured, unavailable):
    """The rule behind AnalysisUnavailable: every inconclusive metric's last measurement
    found the metrics source unavailable."""
    metrics = tuple(_feed(dataclasses.replace(LATENCY, name=name), *values)
                    for name, values in measured.items())
    run = AnalysisRunStatus(name="step-1", started_at=T0, metrics=metrics)
    assert unavailable_only(run) is unavailable


def test_an_unavailable_source_counts_as_no_data_and_is_remembered():
    metric = _feed(LATENCY, DOWN)
    assert metric.verdict is Verdict.INCONCLUSIVE and metric.inconclusive == 1
    assert metric.measurements[-1].unavailable is True
    assert _feed(LATENCY, NoData("0 requests")).measurements[-1].unavailable is None


@pytest.mark.parametrize("plan, seconds", [
    (ResolvedMetric(name="l", query="q", initial_delay=60, interval=10, inconclusive_limit=1), 160),
    (ResolvedMetric(name="l", query="q", initial_delay=4, interval=1, inconclusive_limit=1), 12),
    (ResolvedMetric(name="l", query="q", interval=10), 20),  # no delay, limit 0
])
def test_patience_for_a_source_that_answers_without_data(plan, seconds):
    assert patience(plan) == seconds


@pytest.mark.parametrize("measured, quiet_after", [
    ([DOWN, NoData("no series"), NoData("no series"), NoData("no series")], True),  # 20 s
    ([DOWN, NoData("no series"), NoData("no series")], False),  # answered empty for 10 s
    ([NoData("no series"), NoData("no series"), DOWN], False),  # not answering again
])
def test_quiet_too_long_counts_from_the_first_answer_without_data(measured, quiet_after):
    """Limit 0, interval 10 s, no initial delay: patience 20 s; records 10 s apart."""
    plan = ResolvedMetric(name="latency", query="q", interval=10, count=5)
    metric = MetricStatus(name="latency")
    for i, m in enumerate(measured):
        metric = record(plan, metric, T0 + timedelta(seconds=10 * i), m)
    run = AnalysisRunStatus(name="step-1", started_at=T0, metrics=(metric,))
    now = T0 + timedelta(seconds=10 * (len(measured) - 1))
    assert bool(quiet_too_long(run, [plan], now)) is quiet_after
