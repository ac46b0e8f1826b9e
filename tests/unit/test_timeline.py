"""The timeline a chart draws, shaped from plain recorded values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from meshctl.domain.analysis import ResolvedMetric
from meshctl.domain.conditions import Condition
from meshctl.domain.engine import ResolvedAnalysis
from meshctl.domain.phases import Phase
from meshctl.domain.status import (
    AnalysisRunStatus,
    MeasurementRecord,
    MetricStatus,
    Outcome,
    RolloutStatus,
    WeightPair,
    WeightsStatus,
)
from meshctl.domain.timeline import (
    EventRecord,
    MarkKind,
    Point,
    Sample,
    marks_from_events,
    merged,
    threshold_of,
    thresholds_of,
    timeline,
    weights_from_events,
    weights_from_samples,
)

T0 = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(("success", "failure", "expected"), [
    ("result < 50", None, (50.0, "result < 50")),  # the success condition's number
    (None, "result >= 0.05", (0.05, "result >= 0.05")),  # else the failure condition's
    ("result > 0.999 && result <= 1", None, (0.999, "result > 0.999 && result <= 1")),
    (None, None, (None, "")),  # no condition: no line
])
def test_threshold_is_the_first_comparison(success: str | None, failure: str | None,
                                           expected: tuple[float | None, str]) -> None:
    parse = lambda text: None if text is None else Condition.parse(text)  # noqa: E731
    assert threshold_of(parse(success), parse(failure)) == expected


def test_thresholds_by_metric_name_steps_first() -> None:
    step = ResolvedMetric("latency-p95", "q", success=Condition.parse("result < 50"))
    background = ResolvedMetric("latency-p95", "q", success=Condition.parse("result < 80"))
    other = ResolvedMetric("availability", "q", success=Condition.parse("result >= 0.999"))
    plans = ResolvedAnalysis(steps={1: (step,)}, background=(background, other))
    assert thresholds_of(plans) == {"latency-p95": (50.0, "result < 50"),
                                    "availability": (0.999, "result >= 0.999")}


def test_weights_from_events_read_written_and_observed_lines() -> None:
    events = [
        EventRecord(at(5), "Normal", "TrafficVerified", "step 0: data plane at 90/10"),
        EventRecord(at(1), "Normal", "WeightChanged", "stable/canary 90/10"),
        EventRecord(at(9), "Normal", "WeightChanged", "stable/canary 70/30"),
        EventRecord(at(9), "Normal", "StepStarted", "step 2 (setWeight) started"),
    ]
    written, observed = weights_from_events(events)
    assert written == [Point(at(1), 10.0), Point(at(9), 30.0)]
    assert observed == [Point(at(5), 10.0)]


def test_a_sample_without_the_data_plane_is_a_gap_in_the_observed_line() -> None:
    samples = [Sample(at(2), "Progressing", 0, 90, 10, None),
               Sample(at(1), "Progressing", 0, 100, 0, 0)]
    written, observed = weights_from_samples(samples)
    assert [p.value for p in written] == [0.0, 10.0]  # oldest first
    assert [p.value for p in observed] == [0.0, None]


def test_marks_sort_events_into_steps_verdicts_actions_and_skip_weight_events() -> None:
    events = [
        EventRecord(at(1), "Normal", "StepStarted", "step 1 (analysis) started"),
        EventRecord(at(2), "Normal", "WeightChanged", "stable/canary 90/10"),
        EventRecord(at(3), "Warning", "AnalysisFailed", "step 1: latency"),
        EventRecord(at(4), "Normal", "UserAbort", "aborted by user"),
        EventRecord(at(5), "Warning", "RolledBack", "rolled back"),
    ]
    marks = marks_from_events(events)
    assert [(m.kind, m.warning) for m in marks] == [
        (MarkKind.STEP, False), (MarkKind.VERDICT, True), (MarkKind.ACTION, False),
        (MarkKind.EVENT, True)]
    assert marks[1].label == "AnalysisFailed: step 1: latency"


def test_judged_measurement_wins_over_a_range_point_at_the_same_moment() -> None:
    judged = [Point(at(2), 40.0, "Successful")]
    ranged = [Point(at(1), 30.0), Point(at(2), 41.0), Point(at(3), 60.0)]
    assert merged(judged, ranged) == (Point(at(1), 30.0), Point(at(2), 40.0, "Successful"),
                                      Point(at(3), 60.0))


def _status() -> RolloutStatus:
    metric = MetricStatus("latency-p95", measurements=(
        MeasurementRecord(at(3), Outcome.SUCCESSFUL, 12.0),
        MeasurementRecord(at(4), Outcome.INCONCLUSIVE, None)))
    same_metric_other_run = MetricStatus("latency-p95", measurements=(
        MeasurementRecord(at(4), Outcome.INCONCLUSIVE, None),))
    return RolloutStatus(
        phase=Phase.PROGRESSING, current_step=2,
        weights=WeightsStatus(70, 30, observed=WeightPair(90, 10)),
        analysis=(AnalysisRunStatus("step-1", at(2), metrics=(metric,)),
                  AnalysisRunStatus("background", at(2), metrics=(same_metric_other_run,))))


def test_timeline_of_a_cluster_rollout_from_status_and_events() -> None:
    """Given a rollout at 70/30 written, 90/10 seen, two latency measurements (one without
    data) and the events up to now; the lines end at now, each metric has its threshold."""
    events = [EventRecord(at(1), "Normal", "WeightChanged", "stable/canary 90/10"),
              EventRecord(at(6), "Normal", "WeightChanged", "stable/canary 70/30"),
              EventRecord(at(6), "Normal", "StepStarted", "step 2 (setWeight) started")]
    line = timeline("shop", "web", _status(), events, at(10),
                    {"latency-p95": (50.0, "result < 50"), "availability": (0.999, "x")})
    assert [(p.at, p.value) for p in line.written] == [(at(1), 10.0), (at(6), 30.0),
                                                        (at(10), 30.0)]
    assert [(p.at, p.value) for p in line.observed] == [(at(10), 10.0)]
    latency, availability = sorted(line.metrics, key=lambda m: m.name != "latency-p95")
    assert latency.threshold == 50.0
    assert [(p.value, p.outcome) for p in latency.points] == [(12.0, "Successful"),
                                                              (None, "Inconclusive")]
    assert availability.points == ()  # a threshold without measurements yet
    assert [m.kind for m in line.marks] == [MarkKind.STEP]
    data = line.to_json()
    assert data["written"][0] == [at(1).timestamp(), 10.0, ""]
    assert data["metrics"][0]["thresholdText"] in ("result < 50", "x")


def test_timeline_of_a_local_run_prefers_its_samples_over_events() -> None:
    samples = [Sample(at(1), "Progressing", 0, 90, 10, 10), Sample(at(5), "Progressing", 2, 70, 30, 10)]
    line = timeline("demo", "web", _status(), [], at(5), samples=samples)
    assert [p.value for p in line.written] == [10.0, 30.0]  # the last sample is at now
    assert [p.value for p in line.observed] == [10.0, 10.0]


def test_a_local_runs_files_give_its_timeline(tmp_path: Path) -> None:
    """Given a local run that saved three statuses (two alike), an event and thresholds;
    the timeline has one sample per change, the event's mark and the threshold."""
    from meshctl.domain.engine import Event
    from meshctl.ops.demo import demo_rollout
    from meshctl.ops.state import FileStatusStore
    from meshctl.ops.timelines import local_timeline

    store = FileStatusStore(tmp_path, demo_rollout("web", "127.0.0.1:1", "127.0.0.1:2"))
    store.save_thresholds({"latency-p95": (50.0, "result < 50")})
    store.save(RolloutStatus(phase=Phase.PROGRESSING))
    store.save(RolloutStatus(phase=Phase.PROGRESSING))
    store.save(_status())
    store.record([Event("Normal", "StepStarted", "step 2 (setWeight) started")])
    line = local_timeline(tmp_path, "demo", "web")
    assert [p.value for p in line.written][:2] == [0.0, 30.0]
    assert [p.value for p in line.observed][:2] == [None, 10.0]
    assert {m.name: m.threshold for m in line.metrics} == {"latency-p95": 50.0}
    assert [m.label for m in line.marks] == ["StepStarted: step 2 (setWeight) started"]


def test_no_local_run_is_a_not_found_error(tmp_path: Path) -> None:
    from meshctl.ops.failures import Failure, RolloutError
    from meshctl.ops.timelines import local_timeline

    with pytest.raises(RolloutError) as caught:
        local_timeline(tmp_path, "demo", "web")
    assert caught.value.failure is Failure.NOT_FOUND
