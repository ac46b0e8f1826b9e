"""Measurements are values: a number, no data, or an error. Never an exception, never a
zero standing in for missing data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Value:
    value: float


@dataclass(frozen=True)
class NoData:
    reason: str = "no data"


@dataclass(frozen=True)
class Unavailable(NoData):
    """No data because the metrics source did not answer (down, or slower than the query
    timeout). It says nothing about the version, so it counts as no data; the pause it ends
    in lifts itself once the source answers again (:mod:`meshctl.domain.engine`)."""


@dataclass(frozen=True)
class Error:
    message: str


Measurement = Value | NoData | Error


@dataclass(frozen=True)
class Series:
    """Samples of one query over a span, oldest first (NaN where nothing happened)."""

    values: tuple[float, ...] = ()


Sampled = Series | NoData | Error


@dataclass(frozen=True)
class QueryCheck:
    """Whether a metrics source accepts a query: ``accepted``, else ``message`` says why (or
    why the source could not be asked: then ``reachable`` is False)."""

    accepted: bool
    message: str = ""
    reachable: bool = True
