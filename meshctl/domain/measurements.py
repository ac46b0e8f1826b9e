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
class Error:
    message: str


Measurement = Value | NoData | Error
