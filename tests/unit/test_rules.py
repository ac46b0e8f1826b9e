"""Tables of plain values: phases, durations, conditions, analysis assessment."""

from __future__ import annotations

from datetime import timedelta

import pytest

from meshctl.domain.analysis import ResolvedMetric, assess_metric, outcome_of, record
from meshctl.domain.conditions import Condition
from meshctl.domain.durations import format_duration, parse_duration
from meshctl.domain.measurements import Error, NoData, Value
from meshctl.domain.phases import IllegalTransition, Phase, check_transition, mermaid
from meshctl.domain.status import MetricStatus, Outcome, Verdict
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
