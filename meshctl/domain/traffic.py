"""Traffic arithmetic: weights, header routes and mirroring, as values.

A ``TrafficSplit`` is everything meshctl decides about how requests reach the two versions.
Backends (Istio VirtualService, the local Envoy) translate it; they never choose it.

Invariants, checked on construction: weights are integers in 0..100 summing to 100;
a mirror percentage is in 0..100.

    >>> Weights.canary_at(10)
    Weights(stable=90, canary=10)
    >>> Weights.canary_at(100).stable
    0
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class MatchKind(str, Enum):
    EXACT = "exact"
    PREFIX = "prefix"
    REGEX = "regex"


@dataclass(frozen=True)
class HeaderMatch:
    """Requests whose header ``name`` matches ``value`` (by ``kind``) go to the canary."""

    name: str
    value: str
    kind: MatchKind = MatchKind.EXACT


@dataclass(frozen=True)
class HeaderRoute:
    """A managed route sending matching requests to the canary regardless of weight.

    All ``matches`` must hold (AND), as in one Istio ``HTTPMatchRequest``.
    """

    name: str
    matches: tuple[HeaderMatch, ...]


@dataclass(frozen=True)
class Weights:
    stable: int
    canary: int

    def __post_init__(self) -> None:
        for name, value in (("stable", self.stable), ("canary", self.canary)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"weight {name} must be an integer, got {value!r}")
            if not 0 <= value <= 100:
                raise ValueError(f"weight {name} must be within 0..100, got {value}")
        if self.stable + self.canary != 100:
            raise ValueError(f"weights must sum to 100, got {self.stable}+{self.canary}")

    @classmethod
    def canary_at(cls, canary: int) -> Weights:
        return cls(stable=100 - canary, canary=canary)

    @classmethod
    def all_stable(cls) -> Weights:
        return cls(stable=100, canary=0)


@dataclass(frozen=True)
class TrafficSplit:
    """The whole desired routing for one service: weights, header routes, mirror."""

    weights: Weights
    header_routes: tuple[HeaderRoute, ...] = ()
    mirror_percent: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.mirror_percent <= 100:
            raise ValueError(f"mirror percent must be within 0..100, got {self.mirror_percent}")

    @classmethod
    def stable_only(cls) -> TrafficSplit:
        """All traffic to stable, no header route, no mirror: the abort target."""
        return cls(weights=Weights.all_stable())
