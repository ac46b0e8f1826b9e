"""The comparative judge's false positives and detection, on backfilled data.

Envoy-named history for a stable and a canary cluster is written scrape by scrape (every
15 s, 20 requests/s each) by ``testworld.backfill`` and turned into TSDB blocks by promtool;
a real Prometheus serves it, and the judge reads it through the Prometheus provider with its
built-in queries, at the default settings (``spec.judge: {}``: lookback 10m, one sample per
1 m window, minSamples 10, tolerance 5%, significance 0.01, pass 95, marginal 75). Each run is
its own 10-minute span of history, judged as a run that began at the span's start:

- identical canaries (the same latency and error ratio as stable): a verdict other than
  Pass is a false positive (goal: under 1%);
- a canary 10% slower: a Fail is a detection.

Two noise models, each second's mean latency drawn around the version's mean with a relative
spread of 20% (calm) or 100% (bursty), each request around that by 30%.

    nice python -m bench.judge [--runs 50] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.results import stamp, write_section
from meshctl.adapters.prometheus import PrometheusProvider
from meshctl.domain import envoy_samples
from meshctl.domain.analysis import ResolvedMetric
from meshctl.domain.envoy_samples import Reading
from meshctl.domain.judge import Judged, JudgeVerdict
from meshctl.domain.measurements import Sampled, Series
from meshctl.domain.resolve import MeshKind, resolve_analysis
from meshctl.domain.spec import Rollout
from meshctl.domain.validation import load_document
from meshctl.ops.judging import judgement
from testworld.backfill import Span, backfilled_prometheus, envoy_history, envoy_readings

HEADING = "## Comparative judge: false positives and detection"
SPAN = 600
STABLE_MS = 20.0
NOISE = {"calm (20% per second)": 0.2, "moderate (50% per second)": 0.5,
         "bursty (100% per second)": 1.0}


@dataclass
class Tally:
    runs: int = 0
    passed: int = 0
    marginal: int = 0
    failed: int = 0
    no_data: int = 0
    p_below: int = 0  # latency p-value under the significance, whatever the effect
    seconds: float = 0.0

    def add(self, found: Any, significance: float) -> None:
        self.runs += 1
        if not isinstance(found, Judged) or found.judgement is None:
            self.no_data += 1
            return
        verdict = found.judgement.verdict
        self.passed += verdict is JudgeVerdict.PASS
        self.marginal += verdict is JudgeVerdict.MARGINAL
        self.failed += verdict is JudgeVerdict.FAIL
        p = found.judgement.metrics[0].p_value
        self.p_below += p is not None and p < significance


def default_judge(judge: dict[str, Any] | None = None) -> ResolvedMetric:
    rollout = load_document({
        "apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "bench"},
        "spec": {"service": "bench", "local": {"stable": {"address": "127.0.0.1:1"},
                                               "canary": {"address": "127.0.0.1:2"}},
                 "judge": judge or {},
                 "strategy": {"canary": {"steps": [{"setWeight": 10}, {"analysis": {}}]}}}})
    assert isinstance(rollout, Rollout)
    return resolve_analysis(rollout, {}, MeshKind.ENVOY).steps[1][-1]


def measure(runs: int, second_sd: float) -> dict[str, Tally]:
    """``runs`` identical spans, then ``runs`` spans with the canary 10% slower."""
    first = (int(time.time()) // 3600 - 2 * runs * SPAN // 3600 - 2) * 3600
    cases = [STABLE_MS] * runs + [STABLE_MS * 1.1] * runs
    spans = [Span(first + i * SPAN, SPAN, STABLE_MS, canary) for i, canary in enumerate(cases)]
    metric = default_judge()
    assert metric.judge is not None
    significance = metric.judge.settings.significance
    tallies = {"identical": Tally(), "+10% latency": Tally()}
    with tempfile.TemporaryDirectory() as tmp:
        server = backfilled_prometheus(envoy_history(spans, scrape=15, second_sd=second_sd),
                                       Path(tmp))
        provider = PrometheusProvider(server.url)
        try:
            for i, span in enumerate(spans):
                tally = tallies["identical" if i < runs else "+10% latency"]
                started = datetime.fromtimestamp(span.start, UTC)
                request = metric.request("bench", started,
                                         datetime.fromtimestamp(span.start + SPAN, UTC))
                assert request.judge is not None
                clock = time.monotonic()
                tally.add(judgement(request.judge, provider, 10.0), significance)
                tally.seconds += time.monotonic() - clock
        finally:
            provider.close()
            server.stop()
    return tallies


class Recorded:
    """What meshctl's Envoy recorder would hold (readings every 5 s, as at the default
    window and step), answering as it does: samples cut by :mod:`meshctl.domain.envoy_samples`."""

    def __init__(self, readings: list[Reading], window: float, period: float) -> None:
        self.readings, self.window, self.gap = readings, window, envoy_samples.max_gap(period)

    def samples(self, query: str, start: datetime, end: datetime, step_seconds: float,
                timeout_seconds: float) -> Sampled:
        return Series(envoy_samples.samples(
            self.readings, envoy_samples.parse(query), start.timestamp(), end.timestamp(),
            step_seconds, self.window, self.gap))


def measure_envoy(runs: int, second_sd: float) -> dict[str, Tally]:
    """As :func:`measure`, the same traffic read as Envoy readings (no Prometheus)."""
    cases = [STABLE_MS] * runs + [STABLE_MS * 1.1] * runs
    spans = [Span(i * SPAN, SPAN, STABLE_MS, canary) for i, canary in enumerate(cases)]
    metric = default_judge({"provider": {"kind": "envoy"}})
    judge = metric.judge
    assert judge is not None
    period = envoy_samples.poll_period(judge.window, judge.step)
    readings = envoy_readings(spans, poll=int(period), second_sd=second_sd)
    tallies = {"identical": Tally(), "+10% latency": Tally()}
    for i, span in enumerate(spans):
        tally = tallies["identical" if i < runs else "+10% latency"]
        mine = [r for r in readings if span.start <= r.at <= span.start + SPAN]
        request = metric.request("bench", datetime.fromtimestamp(span.start, UTC),
                                 datetime.fromtimestamp(span.start + SPAN, UTC))
        assert request.judge is not None
        clock = time.monotonic()
        tally.add(judgement(request.judge, Recorded(mine, judge.window, period), 10.0),
                  judge.settings.significance)
        tally.seconds += time.monotonic() - clock
    return tallies


def _rows(results: dict[str, dict[str, Tally]]) -> list[str]:
    rows = []
    for noise, tallies in results.items():
        for case, t in tallies.items():
            if case == "identical":
                rate = (t.runs - t.passed) / t.runs
                goal = "under 1%: " + ("met" if rate < 0.01 else "**not met**")
                label = f"false positives {rate:.1%}"
            else:
                rate = t.failed / t.runs
                goal = "-"
                label = f"detected {rate:.1%}"
            rows.append(f"| {noise} | {case} | {t.runs} | {t.passed} | {t.marginal} | "
                        f"{t.failed} | {t.no_data} | {label} | {goal} | {t.p_below} | "
                        f"{1000 * t.seconds / max(t.runs, 1):.0f} |")
    return rows


HEADER = ["| noise | canary | runs | Pass | Marginal | Fail | no data | rate | goal | "
          "latency p < 0.01 | ms per judgement |",
          "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]


def section(results: dict[str, dict[str, Tally]], runs: int,
            envoy: dict[str, dict[str, Tally]] | None = None) -> str:
    rows = [*HEADER, *_rows(results)]
    envoy_part = [] if envoy is None else [
        "The same traffic read from Envoy directly (`provider: {kind: envoy}`): the readings "
        "meshctl's recorder would take every 5 s (Envoy's cumulative counters and latency "
        "histogram), each sample cut from two of them by `meshctl.domain.envoy_samples`; no "
        "Prometheus. A sample is a ratio of two differences, as `rate(a)/rate(b)` is, so the "
        "verdicts should match the Prometheus rows above.", "", *HEADER, *_rows(envoy), ""]
    return "\n".join([
        HEADING, "",
        "`nice python -m bench.judge`: the judge at its default settings (`spec.judge: {}`: "
        "lookback 10m, one sample per 1 m window, minSamples 10, tolerance 5%, "
        "significance 0.01, pass 95, marginal 75) against a real Prometheus serving "
        "backfilled Envoy history (promtool; a scrape every 15 s, 20 requests/s per "
        f"version, stable at {STABLE_MS:g} ms mean latency, no errors), through the "
        f"Prometheus provider and its range queries; {runs} runs per row, each its own "
        "10-minute span.", "",
        stamp(), "",
        *rows, "",
        "Noise: each second's mean latency is drawn around the version's mean with the "
        "relative spread named (log-normal), each request around that by 30%. The "
        "`latency p < 0.01` column counts runs whose latency test alone was significant: "
        "for identical canaries that is the rank test's own false-positive rate (about 1% "
        "expected); the 5% tolerance on the effect size is what keeps a significant but "
        "small difference from failing a version. A +10% shift is twice the tolerance; "
        "with bursty noise, 10 one-minute samples a side cannot always tell it apart "
        "(lengthen the lookback, or take a shorter window, to detect more).", "",
        *envoy_part, "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--no-write", action="store_true", help="print JSON only")
    args = parser.parse_args()
    results = {noise: measure(args.runs, sd) for noise, sd in NOISE.items()}
    envoy = {noise: measure_envoy(args.runs, sd) for noise, sd in NOISE.items()}
    json.dump({source: {n: {c: vars(t) for c, t in ts.items()} for n, ts in found.items()}
               for source, found in (("prometheus", results), ("envoy", envoy))},
              sys.stdout, indent=2)
    print()
    if not args.no_write:
        write_section(HEADING, section(results, args.runs, envoy))


if __name__ == "__main__":
    main()
