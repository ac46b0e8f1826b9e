"""The comparative judge on fixed samples, with the real Mann-Whitney U test (scipy)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshctl.adapters.statistics import mann_whitney_greater as rank_test
from meshctl.domain.judge import (
    Direction,
    JudgeSettings,
    JudgeVerdict,
    Samples,
    judge,
    judge_metric,
    relative_change,
    verdict_of,
)

DEFAULTS = JudgeSettings()


def latencies(n: int, mean: float = 100.0, sd: float = 10.0, seed: int = 1) -> tuple[float, ...]:
    rng = random.Random(seed)
    return tuple(rng.gauss(mean, sd) for _ in range(n))


def test_identical_distributions_pass() -> None:
    """Two independent draws from the same distribution: nothing to find."""
    metric = judge_metric(Samples("latency", latencies(200, seed=1), latencies(200, seed=2)),
                          DEFAULTS, rank_test)

    assert metric.verdict is JudgeVerdict.PASS
    assert metric.p_value is not None and metric.p_value > DEFAULTS.significance
    assert metric.effect_size is not None and abs(metric.effect_size) < DEFAULTS.tolerance


def test_a_20ms_shift_at_n200_fails() -> None:
    baseline = latencies(200, seed=2)
    canary = tuple(x + 20.0 for x in latencies(200, seed=1))

    metric = judge_metric(Samples("latency", canary, baseline), DEFAULTS, rank_test)

    assert metric.verdict is JudgeVerdict.FAIL
    assert metric.p_value is not None and metric.p_value < 1e-6
    assert metric.effect_size == pytest.approx(0.2, abs=0.03)


def test_a_1_percent_shift_is_inside_the_tolerance_however_significant() -> None:
    baseline = latencies(200, sd=0.5, seed=2)
    canary = tuple(x * 1.01 for x in latencies(200, sd=0.5, seed=1))

    metric = judge_metric(Samples("latency", canary, baseline), DEFAULTS, rank_test)

    assert metric.p_value is not None and metric.p_value < DEFAULTS.significance  # significant
    assert metric.verdict is JudgeVerdict.PASS  # and still small: +1% < 5%


def test_five_samples_is_no_data_never_a_pass() -> None:
    result = judge([Samples("latency", latencies(5), latencies(200))], DEFAULTS, rank_test)

    assert result.verdict is JudgeVerdict.NO_DATA and result.score is None
    assert result.metrics[0].canary_samples == 5


def test_nan_samples_do_not_count() -> None:
    canary = (float("nan"),) * 20 + latencies(9)
    metric = judge_metric(Samples("latency", canary, latencies(20)), DEFAULTS, rank_test)
    assert metric.verdict is JudgeVerdict.NO_DATA and metric.canary_samples == 9


def test_lower_is_worse_fails_a_drop_and_passes_a_rise() -> None:
    baseline = latencies(50, seed=2)
    lower = tuple(x - 20 for x in latencies(50, seed=1))
    higher = tuple(x + 20 for x in latencies(50, seed=1))

    drop = judge_metric(Samples("throughput", lower, baseline, Direction.LOWER_IS_WORSE),
                        DEFAULTS, rank_test)
    rise = judge_metric(Samples("throughput", higher, baseline, Direction.LOWER_IS_WORSE),
                        DEFAULTS, rank_test)

    assert drop.verdict is JudgeVerdict.FAIL
    assert rise.verdict is JudgeVerdict.PASS  # better is never a failure


def test_errors_where_the_baseline_has_none_fail_when_significant() -> None:
    """A zero baseline has no relative change: any worse canary is beyond the tolerance,
    and the test decides."""
    baseline = (0.0,) * 30
    canary = (0.0,) * 10 + (0.02,) * 20

    metric = judge_metric(Samples("error-ratio", canary, baseline), DEFAULTS, rank_test)

    assert metric.effect_size is None and metric.verdict is JudgeVerdict.FAIL


def test_all_zero_on_both_sides_passes() -> None:
    metric = judge_metric(Samples("error-ratio", (0.0,) * 30, (0.0,) * 30), DEFAULTS, rank_test)
    assert metric.verdict is JudgeVerdict.PASS and metric.p_value == 1.0
    assert metric.effect_size == 0.0


@pytest.mark.parametrize(("score", "verdict"), [
    (100.0, JudgeVerdict.PASS),  # every metric passes
    (95.0, JudgeVerdict.PASS),  # the pass threshold is inclusive
    (80.0, JudgeVerdict.MARGINAL),  # a person decides
    (75.0, JudgeVerdict.MARGINAL),
    (50.0, JudgeVerdict.FAIL),  # one of two metrics fails
    (0.0, JudgeVerdict.FAIL),
])
def test_score_thresholds(score: float, verdict: JudgeVerdict) -> None:
    assert verdict_of(score, DEFAULTS) is verdict


def test_the_score_is_the_share_of_metrics_passing() -> None:
    good = Samples("errors", (0.0,) * 20, (0.0,) * 20)
    bad = Samples("latency", tuple(x + 30 for x in latencies(20)), latencies(20, seed=3))

    result = judge([good, bad, good, good], DEFAULTS, rank_test, baseline="stable")

    assert result.score == 75.0 and result.verdict is JudgeVerdict.MARGINAL
    assert "latency Fail" in result.describe() and "against stable" in result.describe()


@pytest.mark.parametrize(("canary", "baseline", "change"), [
    (24.0, 20.0, 0.2), (18.0, 20.0, -0.1), (0.0, 0.0, 0.0), (0.01, 0.0, None)])
def test_relative_change(canary: float, baseline: float, change: float | None) -> None:
    found = relative_change(canary, baseline)
    assert found == (pytest.approx(change) if change is not None else None)


# -- properties ---------------------------------------------------------------------------

samples = st.lists(st.floats(min_value=0.1, max_value=1000, allow_nan=False), min_size=10,
                   max_size=60)


@settings(max_examples=60, deadline=None)
@given(samples, samples, st.sampled_from(list(Direction)))
def test_a_canary_that_is_better_never_fails(baseline: list[float], noise: list[float],
                                             direction: Direction) -> None:
    """Moved in the better direction (every sample lower when higher is worse, or higher
    when lower is worse), a canary passes, however large the move."""
    factor = 0.5 if direction is Direction.HIGHER_IS_WORSE else 2.0
    canary = tuple(x * factor for x in baseline)
    metric = judge_metric(Samples("m", canary, tuple(baseline), direction), DEFAULTS, rank_test)
    assert metric.verdict is JudgeVerdict.PASS


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(samples, samples), min_size=1, max_size=5))
def test_the_score_is_a_share_and_its_verdict_follows_the_thresholds(
        pairs: list[tuple[list[float], list[float]]]) -> None:
    result = judge([Samples(f"m{i}", tuple(c), tuple(b)) for i, (c, b) in enumerate(pairs)],
                   DEFAULTS, rank_test)
    assert result.score is not None and 0 <= result.score <= 100
    passing = sum(m.verdict is JudgeVerdict.PASS for m in result.metrics)
    assert result.score == round(100 * passing / len(pairs), 2)
    assert result.verdict is verdict_of(result.score, DEFAULTS)


def test_a_difference_under_the_metrics_resolution_passes_however_significant() -> None:
    """Sub-millisecond requests read 0 ms in Envoy: a baseline at 0 and a canary with a few
    1 ms readings differ by less than the 1 ms the metric can show, so they pass; a canary
    a whole millisecond worse still fails."""
    baseline = (0.0,) * 30
    slightly = (0.0,) * 15 + (0.5,) * 15  # means 0 and 0.25 ms: p is small, effect infinite
    worse = (2.0,) * 30

    close = judge_metric(Samples("latency", slightly, baseline, resolution=1.0), DEFAULTS,
                         rank_test)
    far = judge_metric(Samples("latency", worse, baseline, resolution=1.0), DEFAULTS, rank_test)
    unguarded = judge_metric(Samples("latency", slightly, baseline), DEFAULTS, rank_test)

    assert close.p_value is not None and close.p_value < DEFAULTS.significance
    assert close.verdict is JudgeVerdict.PASS
    assert far.verdict is JudgeVerdict.FAIL
    assert unguarded.verdict is JudgeVerdict.FAIL  # without a resolution, as before
