"""The comparative judge's measurement: each judge metric's samples for the canary and the
baseline from its sample source (Prometheus: a range query each; Envoy: differences of the
readings :mod:`meshctl.adapters.envoy_samples` records; one sample per sub-window either
way), judged by the pure :func:`meshctl.domain.judge.judge` with the Mann-Whitney U test of
:mod:`meshctl.adapters.statistics`; the judgement names its source.

Why sub-windows and not pods: a sample per pod needs many pods for a test to mean anything
(a canary often has one or two), and the local mesh has no pods at all; a sample per
sub-window (its own rate window, ``step`` apart) gives as many samples as the lookback holds,
for any number of replicas, from the series the SLO already reads.
"""

from __future__ import annotations

import dataclasses

from meshctl.adapters.statistics import mann_whitney_greater
from meshctl.domain.judge import Judged, JudgeRequest, JudgeVerdict, Samples, judge
from meshctl.domain.measurements import Error, Measurement, NoData, Series
from meshctl.domain.ports import SampleSource


def judgement(request: JudgeRequest, source: object, timeout: float) -> Measurement:
    """The judge's score as a measurement (:class:`Judged`), or no data (too few samples,
    the source unavailable), or an error (a query the source refuses)."""
    if not isinstance(source, SampleSource):
        return Error(f"the metrics source {type(source).__name__} gives no samples to judge")
    spec = request.judge
    if request.start > request.end:
        return NoData("the judge's lookback has not filled a window yet")
    found = []
    for metric in spec.metrics:
        sides = []
        for version, query in (("canary", metric.canary_query), (spec.baseline, metric.baseline_query)):
            sampled = source.samples(query, request.start, request.end, spec.step, timeout)
            if not isinstance(sampled, Series):
                what = sampled.message if isinstance(sampled, Error) else sampled.reason
                return type(sampled)(f"judge metric {metric.name} ({version}): {what}")
            sides.append(sampled.values)
        found.append(Samples(metric.name, sides[0], sides[1], metric.direction,
                             metric.resolution))
    result = dataclasses.replace(judge(found, spec.settings, mann_whitney_greater, spec.baseline),
                                 source=spec.source)
    if result.verdict is JudgeVerdict.NO_DATA or result.score is None:
        return NoData(f"{result.describe()}; need {spec.settings.min_samples} on each side")
    return Judged(result.score, result)
