"""The judge's samples from Envoy's own stats: sub-windows cut out of cumulative readings.

Envoy's admin endpoint gives cumulative numbers only: counters since Envoy started, and
histograms as cumulative buckets (from which a sum and a count follow). A recorder in the
shell reads the stats the judge needs every ``poll`` seconds (:func:`poll_period`) and keeps
the readings of the last lookback; a sample for a sub-window ``(t - window, t]`` is then a
ratio of *differences* between the reading at its start and the reading at its end:

- a histogram ``H`` alone: its mean over the sub-window, ``Δsum(H) / Δcount(H)``
  (``cluster.canary.upstream_rq_time``: the mean latency, in ms);
- ``A / B`` (two counters): ``ΔA / ΔB`` (``cluster.canary.upstream_rq_5xx /
  cluster.canary.upstream_rq_total``: the error ratio);
- a counter ``C`` alone: ``ΔC`` per second of the readings' span.

A sub-window with nothing in its denominator (no request: ``Δcount == 0``) is *no sample*
(NaN), never a zero that would look healthy; so is one the readings do not cover (the
recorder was not running then, or missed more than ``max_gap`` seconds, as after a restart of
meshctl or while Envoy did not answer).

Counter resets: when Envoy restarts, its stats start again from zero. Between two readings
where any stat of an expression went down, the later reading counts from zero (as
Prometheus's ``increase`` does): the increase is the later value itself.

Worked example (window 4 s, readings every second; ``total``, ``5xx``)::

    at   10    11    12    13    14    15    16 (Envoy restarted)  17
    total 100  110   120   130   140   150   5                     15
    5xx    0     0     1     1     2     2   0                      1

Sub-window ending at 14 (from the reading at 10): Δtotal = 140 - 100 = 40, Δ5xx = 2 - 0 = 2
-> 0.05. Ending at 17 (from 13): total rises 10, 10, then 5 (a reset: the new value), then
10 = 35; 5xx rises 1, 0, 0 (reset), 1 = 2 -> 2 / 35 = 0.057.

A counter Envoy has not created yet is absent from a reading: a response-code counter
(``..._5xx``, ``..._503``) is created on its first such response, so absent it counts as zero;
any other absent stat makes no sample (a misspelt name is no data, never a zero).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

STAT = re.compile(r"^[A-Za-z0-9_.:|-]+$")

SYNTAX = ("an Envoy stat (a histogram's mean, or a counter per second) or COUNTER / COUNTER, "
          "e.g. cluster.{{cluster}}.upstream_rq_retry / cluster.{{cluster}}.upstream_rq_total")


@dataclass(frozen=True)
class Expression:
    """What one judge metric samples: ``numerator`` alone, or ``numerator / denominator``."""

    numerator: str
    denominator: str | None = None

    @property
    def stats(self) -> tuple[str, ...]:
        return (self.numerator,) if self.denominator is None else (self.numerator, self.denominator)

    def __str__(self) -> str:
        return self.numerator if self.denominator is None else f"{self.numerator} / {self.denominator}"


def parse(text: str) -> Expression:
    """``"cluster.c.upstream_rq_time"`` -> Expression("cluster.c.upstream_rq_time");
    ``"a / b"`` -> Expression("a", "b"). Raises ValueError saying what is accepted."""
    parts = [p.strip() for p in text.strip().split("/")]
    if not 1 <= len(parts) <= 2 or not all(STAT.match(p) for p in parts):
        raise ValueError(f"{text.strip()!r} is not {SYNTAX}")
    return Expression(parts[0], parts[1] if len(parts) == 2 else None)


# The judge's built-ins, per Envoy cluster: the mean upstream request time (ms) and the share
# of requests answered with a 5xx. ``{{cluster}}`` is the version's cluster.
LATENCY_MEAN = "cluster.{{cluster}}.upstream_rq_time"
ERROR_RATIO = "cluster.{{cluster}}.upstream_rq_5xx / cluster.{{cluster}}.upstream_rq_total"


def render(text: str, variables: Mapping[str, str]) -> str:
    """``text`` with each ``{{name}}`` replaced, checked to be an expression (ValueError
    otherwise). ``render(LATENCY_MEAN, {"cluster": "canary"})`` ->
    ``"cluster.canary.upstream_rq_time"``."""
    for name, value in variables.items():
        text = text.replace("{{" + name + "}}", value)
    return str(parse(text))


@dataclass(frozen=True)
class Reading:
    """The watched stats at one moment (unix seconds): counters by name, and histograms by
    name as (sum, count) since Envoy started. A counter Envoy has not created yet (a 5xx
    counter before the first 5xx) is absent."""

    at: float
    counters: Mapping[str, float] = field(default_factory=dict)
    histograms: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def values(self, stat: str) -> tuple[float, ...] | None:
        """A histogram's (sum, count), a counter's (value,), or None when absent."""
        if stat in self.histograms:
            return self.histograms[stat]
        if stat in self.counters:
            return (self.counters[stat],)
        return None


def histogram_totals(buckets: Iterable[tuple[float, float, float]]) -> tuple[float, float]:
    """(sum, count) of a histogram from Envoy's detailed buckets ``(lower_bound, width,
    count)``: each bucket's count at its midpoint, as Envoy's own ``_sum`` is approximated.
    E.g. [(20, 1, 24), (21, 1, 2)] -> (20.5 * 24 + 21.5 * 2, 26) = (535.0, 26)."""
    total = count = 0.0
    for lower, width, n in buckets:
        total += (lower + width / 2) * n
        count += n
    return total, count


def poll_period(window: float, step: float) -> float:
    """How often the recorder reads Envoy: half the shorter of window and step, between
    0.25 s and 5 s. Window 4 s, step 1 s -> 0.5 s; window 60 s, step 60 s -> 5 s."""
    return min(5.0, max(0.25, min(window, step) / 2))


def max_gap(period: float) -> float:
    """The longest time between readings (or from a sub-window's edge to its reading) that
    still covers it: three polls, at least 2 s (a slow admin answer on a busy machine)."""
    return max(3 * period, 2.0)


def kept_span(lookback: float, window: float, period: float) -> float:
    """How far back the recorder keeps readings: the lookback, one window before it and
    the slack of :func:`max_gap`."""
    return lookback + window + max_gap(period)


def sample_times(start: float, end: float, step: float) -> list[float]:
    """Sub-window ends from ``start`` every ``step`` up to ``end`` (as a range query's
    points). (10, 13, 1) -> [10, 11, 12, 13]; (10, 9, 1) -> []."""
    if step <= 0 or end < start:
        return []
    return [start + i * step for i in range(int((end - start) / step + 1e-9) + 1)]


def _covering(readings: Sequence[Reading], begin: float, end: float, gap: float
              ) -> Sequence[Reading] | None:
    """The readings from the last one at or before ``begin`` to the last one at or before
    ``end``, or None when they do not cover ``[begin, end]`` (see :func:`max_gap`)."""
    first = last = None
    for i, r in enumerate(readings):
        if r.at <= begin:
            first = i
        if r.at <= end:
            last = i
    if first is None or last is None or last <= first:
        return None
    span = readings[first:last + 1]
    if begin - span[0].at > gap or end - span[-1].at > gap:
        return None
    if any(b.at - a.at > gap for a, b in itertools.pairwise(span)):
        return None
    return span


LAZY = re.compile(r"_[1-5]([0-9]{2}|xx)$")  # response-code counters: created on first use


def _known(reading: Reading, stat: str) -> tuple[float, ...] | None:
    found = reading.values(stat)
    if found is None and LAZY.search(stat):
        return (0.0,)
    return found


def increase(span: Sequence[Reading], stats: Sequence[str]) -> list[float] | None:
    """The increase of each stat's values (a counter's value; a histogram's sum and count)
    over ``span``, oldest reading first, reset-aware (see the module docstring); None when a
    stat is absent from the last reading (see :data:`LAZY`). Absent from an earlier reading,
    it counts from zero there."""
    last = [_known(span[-1], s) for s in stats]
    if any(v is None for v in last):
        return None
    width = [len(v or ()) for v in last]
    total = [0.0] * sum(width)
    previous = _flat(span[0], stats, width)
    for reading in span[1:]:
        current = _flat(reading, stats, width)
        reset = any(c < p for c, p in zip(current, previous, strict=True))
        for i, (c, p) in enumerate(zip(current, previous, strict=True)):
            total[i] += c if reset else c - p
        previous = current
    return total


def _flat(reading: Reading, stats: Sequence[str], width: Sequence[int]) -> list[float]:
    out: list[float] = []
    for stat, n in zip(stats, width, strict=True):
        found = reading.values(stat)
        out.extend(found if found is not None and len(found) == n else (0.0,) * n)
    return out


def misuse(reading: Reading, expression: Expression) -> str:
    """Why ``expression`` cannot be sampled from stats of this shape ('' when it can): a
    ratio takes two counters."""
    if expression.denominator is None:
        return ""
    for stat in expression.stats:
        if stat in reading.histograms:
            return (f"{stat} is a histogram: a judge metric takes it alone (its mean), not in "
                    "a ratio")
    return ""


def sample(readings: Sequence[Reading], expression: Expression, end: float, window: float,
           gap: float) -> float:
    """The expression over the sub-window ``(end - window, end]``; NaN when there is no
    sample (see the module docstring)."""
    span = _covering(readings, end - window, end, gap)
    if span is None or misuse(span[-1], expression):
        return math.nan
    if expression.denominator is not None:
        found = increase(span, (expression.numerator, expression.denominator))
        if found is None or found[1] <= 0:
            return math.nan  # no request in the sub-window: no sample
        return found[0] / found[1]
    found = increase(span, (expression.numerator,))
    if found is None:
        return math.nan
    if len(found) == 2:  # a histogram: its mean
        return found[0] / found[1] if found[1] > 0 else math.nan
    seconds = span[-1].at - span[0].at
    return found[0] / seconds


def samples(readings: Sequence[Reading], expression: Expression, start: float, end: float,
            step: float, window: float, gap: float) -> tuple[float, ...]:
    """One :func:`sample` per sub-window ending at each of :func:`sample_times`."""
    return tuple(sample(readings, expression, t, window, gap)
                 for t in sample_times(start, end, step))
