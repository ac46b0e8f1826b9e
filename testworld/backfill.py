"""A real Prometheus holding exact, made-up history: Envoy-named series written as OpenMetrics
and turned into TSDB blocks by ``promtool tsdb create-blocks-from openmetrics`` (Debian's
``prometheus`` package), then served by a Prometheus started over them.

:func:`envoy_history` writes what a local mesh's Envoy would have exported, scrape by scrape,
for the clusters ``stable`` and ``canary``: ``envoy_cluster_upstream_rq_total``,
``envoy_cluster_upstream_rq_xx{envoy_response_code_class="5"}`` and the latency histogram's
``envoy_cluster_upstream_rq_time_sum``/``_count``. Each :class:`Span` is a stretch of time
with its own latency for each version; the judge's built-in queries read them as they would
read a live mesh.

The noise model: each second of a version has its own mean latency, drawn from a log-normal
around the version's mean (``second_sd``, relative; load, pauses), and its requests spread
around that (``request_sd``, relative). Windows of 30 s therefore vary by a few percent, as a
real service's do, and identical versions differ only by chance.
"""

from __future__ import annotations

import math
import random
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from meshctl.domain.envoy_samples import Reading
from meshctl.localmesh.prometheus import Prometheus

VERSIONS = ("stable", "canary")


class BackfillUnavailable(Exception):
    """promtool is missing or refused the input."""


@dataclass(frozen=True)
class Span:
    """``seconds`` of traffic from ``start`` (Unix seconds): each version's mean latency in
    ms and error ratio."""

    start: float
    seconds: int
    stable_ms: float
    canary_ms: float
    stable_errors: float = 0.0
    canary_errors: float = 0.0


@dataclass
class _Counters:
    total: float = 0.0
    errors: float = 0.0
    time_sum: float = 0.0


def envoy_history(spans: Sequence[Span], *, rps: int = 20, scrape: int = 5,
                  second_sd: float = 0.2, request_sd: float = 0.3, seed: int = 1) -> str:
    """The OpenMetrics text of every span, scraped every ``scrape`` seconds, ``# EOF`` last."""
    rng = random.Random(seed)
    counters = {v: _Counters() for v in VERSIONS}
    samples: dict[str, list[str]] = {}
    for span in spans:
        for second in range(span.seconds):
            for version in VERSIONS:
                _one_second(counters[version], span, version, rps, second_sd, request_sd, rng)
            if second % scrape == 0:
                _scrape(samples, counters, span.start + second)
    return _text(samples)


def envoy_readings(spans: Sequence[Span], *, rps: int = 20, poll: int = 5,
                   second_sd: float = 0.2, request_sd: float = 0.3, seed: int = 1
                   ) -> list[Reading]:
    """The same traffic as :func:`envoy_history` (same seed, same draws), as the readings
    meshctl's Envoy recorder would have taken every ``poll`` seconds (Envoy's stat names)."""
    rng = random.Random(seed)
    counters = {v: _Counters() for v in VERSIONS}
    readings = []
    for span in spans:
        for second in range(span.seconds):
            for version in VERSIONS:
                _one_second(counters[version], span, version, rps, second_sd, request_sd, rng)
            if second % poll == 0:
                readings.append(Reading(
                    span.start + second,
                    {f"cluster.{v}.{name}": value for v, c in counters.items()
                     for name, value in (("upstream_rq_total", c.total),
                                         ("upstream_rq_5xx", c.errors))},
                    {f"cluster.{v}.upstream_rq_time": (c.time_sum, c.total)
                     for v, c in counters.items()}))
    return readings


def _one_second(c: _Counters, span: Span, version: str, rps: int, second_sd: float,
                request_sd: float, rng: random.Random) -> None:
    mean = span.canary_ms if version == "canary" else span.stable_ms
    errors = span.canary_errors if version == "canary" else span.stable_errors
    second_mean = mean * _lognormal(rng, second_sd)
    c.total += rps
    c.errors += sum(rng.random() < errors for _ in range(rps))
    c.time_sum += sum(second_mean * _lognormal(rng, request_sd) for _ in range(rps))


def _lognormal(rng: random.Random, sd: float) -> float:
    """A factor with mean 1 and relative spread ``sd``."""
    sigma = math.sqrt(math.log(1 + sd * sd))
    return rng.lognormvariate(-sigma * sigma / 2, sigma)


def _scrape(samples: dict[str, list[str]], counters: dict[str, _Counters], at: float) -> None:
    for version, c in counters.items():
        cluster = f'envoy_cluster_name="{version}"'
        for family, labels, value in (
            ("envoy_cluster_upstream_rq_total", cluster, c.total),
            ("envoy_cluster_upstream_rq_xx", f'{cluster},envoy_response_code_class="5"', c.errors),
            ("envoy_cluster_upstream_rq_time_sum", cluster, c.time_sum),
            ("envoy_cluster_upstream_rq_time_count", cluster, c.total),
        ):
            samples.setdefault(family, []).append(f"{family}{{{labels}}} {value:.3f} {at:.3f}")


def _text(samples: dict[str, list[str]]) -> str:
    # Every family's samples together (OpenMetrics groups by family), each a gauge: the
    # counters here are monotonic, and rate() reads a gauge's samples the same way.
    lines: list[str] = []
    for family, rows in samples.items():
        lines.append(f"# TYPE {family} gauge")
        lines += sorted(rows, key=_series_then_time)
    return "\n".join([*lines, "# EOF", ""])


def _series_then_time(row: str) -> tuple[str, float]:
    series, _, rest = row.rpartition("} ")
    return series, float(rest.split()[1])


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        raise BackfillUnavailable("no promtool: install the system package 'prometheus'")
    return found


def backfilled_prometheus(openmetrics: str, workdir: Path) -> Prometheus:
    """A started Prometheus (no scrape targets) serving the blocks ``openmetrics`` makes.
    The caller stops it. Keep the data within the last day (its retention)."""
    server = Prometheus([], workdir=workdir)
    server.start()  # a fresh data directory, then stopped to take the blocks
    server.stop()
    source = workdir / "history.om"
    source.write_text(openmetrics)
    done = subprocess.run([promtool(), "tsdb", "create-blocks-from", "openmetrics", "-q",
                           str(source), str(workdir / "prometheus-data")],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackfillUnavailable(f"promtool refused the history: {done.stderr.strip()[:500]}")
    server.restart()
    return server


def spans_back_to_back(first: float, seconds: int, cases: Iterable[tuple[float, float]]
                       ) -> list[Span]:
    """Spans one after another from ``first``, one per (stable_ms, canary_ms) case."""
    return [Span(first + i * seconds, seconds, stable, canary)
            for i, (stable, canary) in enumerate(cases)]
