"""The comparative judge: is the canary worse than its baseline, metric by metric (Kayenta's
way, built in)?

Each judge metric brings two sets of samples over the same span of time, one number per
sub-window for the canary and for the baseline (the stable version, or a fresh baseline),
and a direction: ``higher-is-worse`` (latency, error ratio) or ``lower-is-worse``
(throughput, a success ratio). A metric's verdict:

- **NoData** when either side has fewer than ``min_samples`` finite samples: too little to
  judge is never a pass;
- **Fail** when the canary is worse by more than ``tolerance`` (the *effect size*, the
  relative change of the mean, ``(mean(canary) - mean(baseline)) / |mean(baseline)|``, taken
  in the worse direction) *and* the rank test finds it significant (its one-sided p-value in
  the worse direction is below ``significance``). A change smaller than the tolerance passes,
  however significant; a large change the test cannot tell from noise passes too; and so
  does a difference of the means smaller than the metric's ``resolution``, the least change
  it can show (Envoy records request times in whole milliseconds: sub-millisecond requests
  read 0, and a baseline whose mean is 0 would make any canary infinitely worse);
- **Pass** otherwise.

The score is the share of metrics that pass, 0-100. The judgement: NoData when any metric
has no data; Pass at ``pass_score`` or more; Marginal from ``marginal_score`` up to it (a
person decides); Fail below ``marginal_score``.

The rank test is given (:data:`RankTest`): the domain imports only the standard library, so
the Mann-Whitney U test (scipy) lives in :mod:`meshctl.adapters.statistics` and the shell
passes it in.

Worked examples (tolerance 5%, significance 0.01, min 10 samples, pass 95, marginal 75):
latency baseline mean 20.0 ms, canary mean 24.0 ms, p = 0.0001 -> effect +20%, Fail; error
ratio both 0.0, p = 1.0 -> effect +0%, Pass; score 50 -> Fail. Latency canary mean 20.2 ms
(effect +1%) with p = 0.001 -> Pass (inside the tolerance): score 100 -> Pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from meshctl.domain.fields import field
from meshctl.domain.measurements import Value

BUILTIN_JUDGE_METRICS = ("latency", "error-ratio")

RankTest = Callable[[Sequence[float], Sequence[float]], float]
"""``test(first, second)``: the one-sided p-value that ``first`` tends to be greater than
``second`` (Mann-Whitney U, alternative "greater")."""


class Direction(str, Enum):
    HIGHER_IS_WORSE = "higher-is-worse"
    LOWER_IS_WORSE = "lower-is-worse"


class Baseline(str, Enum):
    """What the canary is compared with: the stable version as it runs (its pods may have
    been up for days), or a fresh Deployment of the stable revision at the canary's size,
    started beside the canary and taking the same weight."""

    STABLE = "stable"
    FRESH = "fresh"


class JudgeVerdict(str, Enum):
    PASS = "Pass"
    MARGINAL = "Marginal"
    FAIL = "Fail"
    NO_DATA = "NoData"


@dataclass(frozen=True)
class JudgeSettings:
    min_samples: int = 10
    tolerance: float = 0.05  # a relative change of the mean
    significance: float = 0.01
    pass_score: float = 95.0
    marginal_score: float = 75.0


@dataclass(frozen=True)
class Samples:
    """One metric's samples for the canary and the baseline over the same span."""

    name: str
    canary: tuple[float, ...]
    baseline: tuple[float, ...]
    direction: Direction = Direction.HIGHER_IS_WORSE
    resolution: float = 0.0  # the least change of the mean the metric can show


@dataclass(frozen=True)
class JudgedMetric:
    """One metric's verdict, as the status shows it."""

    name: str = field("name", required=True)
    verdict: JudgeVerdict = field("verdict", required=True)
    direction: Direction = field("direction", default=Direction.HIGHER_IS_WORSE)
    p_value: float | None = field("pValue", doc="One-sided, in the worse direction.")
    effect_size: float | None = field(
        "effectSize", doc="Relative change of the canary's mean from the baseline's "
        "(0.2 = +20%); unset when the baseline's mean is 0.")
    canary_mean: float | None = field("canaryMean")
    baseline_mean: float | None = field("baselineMean")
    canary_samples: int = field("canarySamples", default=0)
    baseline_samples: int = field("baselineSamples", default=0)

    def describe(self) -> str:
        if self.verdict is JudgeVerdict.NO_DATA:
            return (f"{self.name} no data ({self.canary_samples} canary, "
                    f"{self.baseline_samples} baseline samples)")
        effect = "n/a" if self.effect_size is None else f"{self.effect_size:+.1%}"
        p = "n/a" if self.p_value is None else f"{self.p_value:.2g}"
        return f"{self.name} {self.verdict.value} ({effect}, p={p})"


@dataclass(frozen=True)
class Judgement:
    """The judge's answer: a score, a verdict and each metric's, against which baseline."""

    verdict: JudgeVerdict = field("verdict", required=True)
    score: float | None = field("score", doc="Share of metrics passing, 0-100; unset with no data.")
    baseline: str = field("baseline", default="stable", doc="What the canary was compared "
                          "with: stable (the running stable version) or fresh (a new "
                          "Deployment of the stable revision beside the canary).")
    metrics: tuple[JudgedMetric, ...] = field("metrics", default=())
    source: str = field("source", default="prometheus", doc="Where the samples came from: "
                        "prometheus (range queries) or envoy (read from Envoy directly).")

    def describe(self) -> str:
        score = "no score" if self.score is None else f"score {self.score:g}"
        parts = "; ".join(m.describe() for m in self.metrics)
        return f"judge {self.verdict.value}, {score} against {self.baseline}: {parts}"


@dataclass(frozen=True)
class Judged(Value):
    """A measurement that is the judge's score, with the judgement behind it."""

    judgement: Judgement | None = None


def judge_metric(samples: Samples, settings: JudgeSettings, test: RankTest) -> JudgedMetric:
    canary = [x for x in samples.canary if math.isfinite(x)]
    baseline = [x for x in samples.baseline if math.isfinite(x)]
    counts = {"canary_samples": len(canary), "baseline_samples": len(baseline)}
    if min(len(canary), len(baseline)) < settings.min_samples:
        return JudgedMetric(samples.name, JudgeVerdict.NO_DATA, samples.direction, **counts)
    c_mean, b_mean = sum(canary) / len(canary), sum(baseline) / len(baseline)
    effect = relative_change(c_mean, b_mean)
    higher = samples.direction is Direction.HIGHER_IS_WORSE
    p = test(canary, baseline) if higher else test(baseline, canary)
    worse_by = _worse_by(c_mean, b_mean, effect, higher)
    failed = (worse_by > settings.tolerance and p < settings.significance
              and abs(c_mean - b_mean) >= samples.resolution)
    return JudgedMetric(samples.name, JudgeVerdict.FAIL if failed else JudgeVerdict.PASS,
                        samples.direction, p_value=p, effect_size=effect, canary_mean=c_mean,
                        baseline_mean=b_mean, **counts)


def relative_change(canary: float, baseline: float) -> float | None:
    """``(canary - baseline) / |baseline|``; 0 when both are 0; None (undefined) when only
    the baseline is 0. E.g. 24 against 20 -> 0.2; 0.01 against 0 -> None."""
    if baseline == 0:
        return 0.0 if canary == 0 else None
    return (canary - baseline) / abs(baseline)


def _worse_by(canary: float, baseline: float, effect: float | None, higher: bool) -> float:
    """How much worse the canary is, relatively (negative: better); infinite when the
    baseline's mean is 0 and the canary's is worse."""
    if effect is None:
        return math.inf if (canary > baseline) == higher else -math.inf
    return effect if higher else -effect


def judge(metrics: Sequence[Samples], settings: JudgeSettings, test: RankTest,
          baseline: str = "stable") -> Judgement:
    """Every metric judged and the score; see the module docstring for the rules."""
    judged = tuple(judge_metric(m, settings, test) for m in metrics)
    if not judged or any(m.verdict is JudgeVerdict.NO_DATA for m in judged):
        return Judgement(JudgeVerdict.NO_DATA, None, baseline, judged)
    score = round(100.0 * sum(m.verdict is JudgeVerdict.PASS for m in judged) / len(judged), 2)
    return Judgement(verdict_of(score, settings), score, baseline, judged)


def verdict_of(score: float, settings: JudgeSettings) -> JudgeVerdict:
    """95 and up passes (at the defaults), 75 up to 95 is marginal, below 75 fails."""
    if score >= settings.pass_score:
        return JudgeVerdict.PASS
    if score >= settings.marginal_score:
        return JudgeVerdict.MARGINAL
    return JudgeVerdict.FAIL


# -- what the shell runs ------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeQuery:
    """One judge metric's query, rendered for the canary and for the baseline."""

    name: str
    canary_query: str
    baseline_query: str
    direction: Direction = Direction.HIGHER_IS_WORSE
    field: str = ""  # the spec field it comes from (a user's: spec.judge.metrics[i].query)
    resolution: float = 0.0  # see Samples


@dataclass(frozen=True)
class ResolvedJudge:
    """The judge of a Rollout, ready to run: its queries, settings and sampling, in seconds."""

    metrics: tuple[JudgeQuery, ...]
    settings: JudgeSettings = JudgeSettings()
    lookback: float = 600.0
    window: float = 60.0
    step: float = 60.0
    baseline: str = "stable"
    source: str = "prometheus"  # the provider kind the samples come from

    def span(self, started: datetime, now: datetime) -> tuple[datetime, datetime]:
        """(first, last) sample times of a judgement at ``now`` in a run begun at
        ``started``: samples cover the last ``lookback``, never before the run, each one
        its own ``window`` back. Lookback 60 s, window 10 s, run started long ago, now
        10:01:00 -> (10:00:10, 10:01:00): 6 samples at a 10 s step."""
        since = max(started, now - timedelta(seconds=self.lookback))
        return since + timedelta(seconds=self.window), now

    def describe(self) -> str:
        return (f"judge: {', '.join(m.name for m in self.metrics)}; canary against "
                f"{self.baseline} over {self.lookback:g}s")


@dataclass(frozen=True)
class JudgeRequest:
    """A judgement the shell should make: samples of every metric from ``start`` to
    ``end`` every ``judge.step`` seconds, for the canary and the baseline."""

    judge: ResolvedJudge
    start: datetime
    end: datetime
