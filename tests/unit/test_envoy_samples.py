"""The judge's samples cut from cumulative Envoy readings, on plain values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshctl.domain import envoy_samples as es
from meshctl.domain.envoy_samples import Expression, Reading

TOTAL, ERRORS, TIME = "cluster.c.upstream_rq_total", "cluster.c.upstream_rq_5xx", "cluster.c.upstream_rq_time"
RATIO = Expression(ERRORS, TOTAL)
MEAN = Expression(TIME)
GAP = 2.0


def counters(rows: list[tuple[float, float, float | None]]) -> list[Reading]:
    """(at, total, 5xx or None: not created yet) -> readings."""
    return [Reading(at, {TOTAL: total, **({ERRORS: err} if err is not None else {})})
            for at, total, err in rows]


# The module docstring's worked example: one reading a second, Envoy restarted at 16.
DOC = counters([(10, 100, 0), (11, 110, 0), (12, 120, 1), (13, 130, 1), (14, 140, 2),
                (15, 150, 2), (16, 5, 0), (17, 15, 1)])


@pytest.mark.parametrize(("end", "expected", "why"), [
    (14, 2 / 40, "40 requests and 2 errors from 10 to 14"),
    (17, 2 / 35, "across the restart at 16 the new values count from zero: 35 and 2"),
    (13, None, "(9, 13] starts before the first reading: not covered, no sample"),
])
def test_error_ratio_per_sub_window(end: float, expected: float | None, why: str) -> None:
    found = es.sample(DOC, RATIO, end, 4, GAP)
    if expected is None:
        assert math.isnan(found), why
    else:
        assert found == pytest.approx(expected), why


@pytest.mark.parametrize(("rows", "why"), [
    ([(0, 50, 0), (1, 50, 0), (2, 50, 0), (3, 50, 0), (4, 50, 0)],
     "no request in the sub-window: no sample, not a healthy zero"),
    ([(0, 50, 0), (4, 60, 1)], "a gap of 4 s between readings (max 2 s): not covered"),
    ([(0, 50, 0), (1, 60, 1)], "the last reading is 3 s before the sub-window's end"),
])
def test_no_sample(rows: list[tuple[float, float, float | None]], why: str) -> None:
    assert math.isnan(es.sample(counters(rows), RATIO, 4, 4, GAP)), why


def test_a_5xx_counter_envoy_has_not_created_yet_counts_as_zero() -> None:
    readings = counters([(0, 10, None), (1, 20, None), (2, 30, None)])
    assert es.sample(readings, RATIO, 2, 2, GAP) == 0.0


def test_any_other_missing_stat_is_no_sample() -> None:
    """A misspelt stat is no data, never a zero."""
    readings = counters([(0, 10, 0), (1, 20, 0), (2, 30, 0)])
    assert math.isnan(es.sample(readings, Expression("cluster.c.upstream_rq_retry", TOTAL),
                                2, 2, GAP))
    assert math.isnan(es.sample(readings, Expression("cluster.c.typo"), 2, 2, GAP))


def test_a_histogram_alone_is_its_mean_over_the_sub_window() -> None:
    """sum 100 ms over 10 requests before, 400 ms over 25 after: 300 / 15 = 20 ms."""
    readings = [Reading(0, histograms={TIME: (100.0, 10.0)}),
                Reading(1, histograms={TIME: (250.0, 18.0)}),
                Reading(2, histograms={TIME: (400.0, 25.0)})]
    assert es.sample(readings, MEAN, 2, 2, GAP) == pytest.approx(20.0)
    quiet = [Reading(0, histograms={TIME: (100.0, 10.0)}), Reading(2, histograms={TIME: (100.0, 10.0)})]
    assert math.isnan(es.sample(quiet, MEAN, 2, 2, GAP)), "no request: no sample"


def test_a_histogram_after_a_restart_counts_from_zero() -> None:
    readings = [Reading(0, histograms={TIME: (500.0, 50.0)}),
                Reading(1, histograms={TIME: (60.0, 2.0)}),  # restarted: 2 requests, 30 ms
                Reading(2, histograms={TIME: (120.0, 4.0)})]
    assert es.sample(readings, MEAN, 2, 2, GAP) == pytest.approx(30.0)


def test_a_counter_alone_is_per_second() -> None:
    readings = counters([(0, 10, 0), (1, 30, 0), (2, 50, 0)])
    assert es.sample(readings, Expression(TOTAL), 2, 2, GAP) == pytest.approx(20.0)


def test_a_histogram_in_a_ratio_is_refused() -> None:
    reading = Reading(0, {TOTAL: 1.0}, {TIME: (1.0, 1.0)})
    assert "histogram" in es.misuse(reading, Expression(TIME, TOTAL))
    assert es.misuse(reading, MEAN) == ""


@pytest.mark.parametrize(("text", "expected"), [
    ("cluster.canary.upstream_rq_time", Expression("cluster.canary.upstream_rq_time")),
    (" a.b / c.d ", Expression("a.b", "c.d")),
    ("cluster.outbound|80|canary|web.upstream_rq_total",
     Expression("cluster.outbound|80|canary|web.upstream_rq_total")),
])
def test_parse(text: str, expected: Expression) -> None:
    assert es.parse(text) == expected


@pytest.mark.parametrize("text", ["sum(rate(x[1m]))", "a / b / c", "", "a /"])
def test_parse_refuses_what_is_not_a_stat_expression(text: str) -> None:
    with pytest.raises(ValueError, match="COUNTER / COUNTER"):
        es.parse(text)


def test_histogram_totals_from_detailed_buckets() -> None:
    assert es.histogram_totals([(20, 1, 24), (21, 1, 2)]) == (535.0, 26.0)


@pytest.mark.parametrize(("args", "expected"), [
    ((10, 13, 1), [10, 11, 12, 13]), ((10, 9, 1), []), ((0, 10, 4), [0, 4, 8]),
])
def test_sample_times(args: tuple[float, float, float], expected: list[float]) -> None:
    assert es.sample_times(*args) == expected


def test_sample_times_count_a_span_that_floats_make_a_hair_short() -> None:
    """0.6 / 0.2 is 2.9999999999999996 in floats: still four points."""
    assert len(es.sample_times(0.1, 0.7, 0.2)) == 4


def test_poll_period_and_what_is_kept() -> None:
    assert es.poll_period(4, 1) == 0.5
    assert es.poll_period(60, 60) == 5.0
    assert es.poll_period(0.2, 0.2) == 0.25
    assert es.kept_span(600, 60, 5.0) == 600 + 60 + 15


@given(st.lists(st.integers(0, 20), min_size=2, max_size=30), st.integers(1, 5))
def test_the_sub_windows_requests_add_up_with_no_reset(increments: list[int], errors_every: int) -> None:
    """Without a restart, the error ratio of the whole span is exactly the errors counted
    over the requests counted."""
    total = err = 0.0
    rows = []
    for i, n in enumerate(increments):
        total += n
        err += n // errors_every if i else 0
        rows.append((float(i), total, err))
    found = es.sample(counters(rows), RATIO, len(rows) - 1, len(rows) - 1, GAP)
    requests = total - rows[0][1]
    if requests == 0:
        assert math.isnan(found)
    else:
        assert found == pytest.approx((err - rows[0][2]) / requests)
