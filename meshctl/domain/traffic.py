"""Traffic arithmetic: weights, header routes and mirroring, as values.

A ``TrafficSplit`` is everything meshctl decides about how requests reach the two versions.
Backends (Istio VirtualService, the local Envoy) translate it; they never choose it.

Invariants, checked on construction: weights are integers in 0..100 summing to 100;
a mirror percentage is in 0..100.

With a fresh baseline (``spec.judge.baseline: fresh``) a third destination, a new Deployment
of the stable revision, takes as much as the canary, Kayenta's way: the canary and the
baseline each get ``w`` and stable keeps ``100 - 2w`` (so ``w`` is at most 50).

    >>> Weights.canary_at(10)
    Weights(stable=90, canary=10, baseline=0)
    >>> Weights.canary_at(100).stable
    0
    >>> Weights.canary_at(20, fresh_baseline=True)
    Weights(stable=60, canary=20, baseline=20)
    >>> Weights.canary_at(50, fresh_baseline=True).stable
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


MAX_BASELINE_WEIGHT = 50  # canary w + baseline w must leave stable 100 - 2w >= 0


@dataclass(frozen=True)
class Weights:
    stable: int
    canary: int
    baseline: int = 0  # the fresh baseline's (0 without one)

    def __post_init__(self) -> None:
        for name, value in (("stable", self.stable), ("canary", self.canary),
                            ("baseline", self.baseline)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"weight {name} must be an integer, got {value!r}")
            if not 0 <= value <= 100:
                raise ValueError(f"weight {name} must be within 0..100, got {value}")
        if self.stable + self.canary + self.baseline != 100:
            raise ValueError(f"weights must sum to 100, got {self.described()}")

    def described(self) -> str:
        """``90/10`` (stable/canary), or ``60/20/20`` (stable/canary/baseline)."""
        parts = (self.stable, self.canary, self.baseline) if self.baseline else (
            self.stable, self.canary)
        return "/".join(map(str, parts))

    @classmethod
    def canary_at(cls, canary: int, fresh_baseline: bool = False) -> Weights:
        """The canary at ``canary``; with a fresh baseline, the baseline at the same
        weight (ValueError above 50: validation refuses such a step first)."""
        baseline = canary if fresh_baseline else 0
        return cls(stable=100 - canary - baseline, canary=canary, baseline=baseline)

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
