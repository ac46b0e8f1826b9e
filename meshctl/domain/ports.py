"""Ports: the small interfaces the shell implements and the engine's callers use.

Adapters translate between these domain words and a real system; they do not decide.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from meshctl.domain.measurements import Measurement, QueryCheck, Sampled
from meshctl.domain.traffic import TrafficSplit


class TrafficRouter(Protocol):
    """Where the traffic split of one service is written and observed."""

    def written(self) -> TrafficSplit | None:
        """The split as last written to the control plane (None: meshctl never wrote one)."""

    def observed(self) -> TrafficSplit | None:
        """The split the data plane is applying now (None: cannot tell yet)."""

    def unobserved_reason(self) -> str:
        """Why the last ``observed()`` was None, one sentence ('' when it was not None)."""

    def apply(self, split: TrafficSplit) -> None:
        """Write the whole split in one write. Raises on failure; never half-applies."""


class MetricProvider(Protocol):
    """Where measurements come from (Prometheus)."""

    def measure(self, query: str, timeout_seconds: float) -> Measurement:
        """Run one query; returns a Measurement, never raises for data problems."""


@runtime_checkable
class QueryChecker(Protocol):
    """A metrics source that can say whether it accepts a query (Prometheus parses it)."""

    def check_query(self, query: str, timeout_seconds: float = 5.0) -> QueryCheck:
        """Never raises: an unreachable source is ``QueryCheck(False, why, reachable=False)``."""


@runtime_checkable
class SampleSource(Protocol):
    """A metrics source that gives a query's samples over a span (the judge's input)."""

    def samples(self, query: str, start: datetime, end: datetime, step_seconds: float,
                timeout_seconds: float) -> Sampled:
        """One number per ``step_seconds`` from ``start`` to ``end``; never raises for data
        problems (an unreachable source is ``Unavailable``)."""
