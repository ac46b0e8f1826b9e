"""The Rollout status: everything needed to continue a rollout lives here.

Restart safety rests on this: the controller keeps no state of its own between passes, so a
killed controller resumes from the status (and the objects) alone. Timestamps are set only
on transitions, never refreshed, so an idle pass writes nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from meshctl.domain.fields import field, from_json, to_json
from meshctl.domain.intents import Action
from meshctl.domain.judge import Judgement
from meshctl.domain.phases import Phase
from meshctl.domain.problems import InvalidSpec
from meshctl.domain.release_gates import GateStatus
from meshctl.domain.traffic import Weights

MAX_MEASUREMENTS_KEPT = 10


class Verdict(str, Enum):
    PENDING = "Pending"
    PASSING = "Passing"
    FAILING = "Failing"
    INCONCLUSIVE = "Inconclusive"


class Outcome(str, Enum):
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"


@dataclass(frozen=True)
class MeasurementRecord:
    at: datetime = field("at", required=True)
    outcome: Outcome = field("outcome", required=True)
    value: float | None = field("value")
    message: str | None = field("message")
    unavailable: bool | None = field(
        "unavailable", doc="True when the metrics source did not answer (no data about the "
        "version); such a pause lifts itself once it answers again.")
    judgement: Judgement | None = field(
        "judgement", doc="The comparative judge's: its score, verdict and each metric's "
        "p-value and effect size.")


@dataclass(frozen=True)
class MetricStatus:
    name: str = field("name", required=True)
    query: str = field("query", default="")
    verdict: Verdict = field("verdict", default=Verdict.PENDING)
    reason: str = field("reason", default="")
    count: int = field("count", default=0)
    successful: int = field("successful", default=0)
    failed: int = field("failed", default=0)
    inconclusive: int = field("inconclusive", default=0)
    errors: int = field("errors", default=0)
    consecutive_errors: int = field("consecutiveErrors", default=0)
    measurements: tuple[MeasurementRecord, ...] = field(
        "measurements", default=(), doc="The latest measurements, newest last."
    )

    @property
    def last_at(self) -> datetime | None:
        return self.measurements[-1].at if self.measurements else None


@dataclass(frozen=True)
class AnalysisRunStatus:
    name: str = field("name", required=True, doc="step-N, background, prePromotion, ...")
    started_at: datetime = field("startedAt", required=True)
    step: int = field("step", default=0)
    revision: str = field("revision", default="")
    verdict: Verdict = field("verdict", default=Verdict.PENDING)
    reason: str = field("reason", default="")
    metrics: tuple[MetricStatus, ...] = field("metrics", default=())


@dataclass(frozen=True)
class StatusCondition:
    type: str = field("type", required=True)
    status: str = field("status", required=True)
    reason: str = field("reason", default="")
    message: str = field("message", default="")
    last_transition_time: datetime | None = field("lastTransitionTime")


@dataclass(frozen=True)
class AbortStatus:
    reason: str = field("reason", required=True)
    at: datetime = field("at", required=True)
    message: str = field("message", default="")
    stable_observed_at: datetime | None = field(
        "stableObservedAt", doc="When the data plane was seen at 100% stable."
    )


@dataclass(frozen=True)
class WeightPair:
    stable: int = field("stable", required=True, minimum=0, maximum=100)
    canary: int = field("canary", required=True, minimum=0, maximum=100)
    baseline: int | None = field("baseline", minimum=0, maximum=100,
                                 doc="The fresh baseline's; unset without one.")

    @classmethod
    def of(cls, weights: Weights | None) -> WeightPair | None:
        if weights is None:
            return None
        return cls(weights.stable, weights.canary, weights.baseline or None)

    def to_weights(self) -> Weights:
        return Weights(self.stable, self.canary, self.baseline or 0)


@dataclass(frozen=True)
class WeightsStatus:
    stable: int = field("stable", default=100)
    canary: int = field("canary", default=0)
    baseline: int | None = field("baseline", doc="The fresh baseline's (spec.judge.baseline: "
                                 "fresh); unset without one.")
    observed: WeightPair | None = field("observed", doc="As last seen at the data plane.")
    not_observed: str = field("notObserved", default="", doc="Why the data plane's weights "
                              "are not known, e.g. 'stored, not observed: ...'; empty when "
                              "they are.")


@dataclass(frozen=True)
class Intent:
    action: str = field("action", required=True)
    id: str = field("id", required=True)


@dataclass(frozen=True)
class RolloutStatus:
    phase: Phase = field("phase", default=Phase.PENDING)
    current_step: int = field("currentStep", default=0)
    step_started_at: datetime | None = field("stepStartedAt")
    stable_revision: str | None = field("stableRevision")
    current_revision: str | None = field("currentRevision")
    weights: WeightsStatus = field("weights", default=WeightsStatus())
    header_routes: tuple[str, ...] = field("headerRoutes", default=())
    mirror_percent: int = field("mirrorPercent", default=0)
    analysis: tuple[AnalysisRunStatus, ...] = field("analysis", default=())
    conditions: tuple[StatusCondition, ...] = field("conditions", default=())
    observed_generation: int = field("observedGeneration", default=0)
    abort: AbortStatus | None = field("abort")
    pause_reason: str | None = field("pauseReason")
    promoted: bool = field("promoted", default=False, doc="Promote was asked at this step.")
    message: str = field("message", default="")
    handled_intents: tuple[Intent, ...] = field(
        "handledIntents", default=(), doc="Ids of user intents already acted on."
    )
    gates: tuple[GateStatus, ...] = field(
        "gates", default=(), doc="Release gates of the current revision and their verdicts."
    )

    def handled(self, action: Action) -> str | None:
        return next((i.id for i in self.handled_intents if Action.parse(i.action) is action),
                    None)

    def with_handled(self, action: Action, intent_id: str) -> RolloutStatus:
        others = tuple(i for i in self.handled_intents if Action.parse(i.action) is not action)
        return dataclasses.replace(
            self, handled_intents=(*others, Intent(action.value, intent_id))
        )

    def run(self, name: str) -> AnalysisRunStatus | None:
        return next((r for r in self.analysis if r.name == name), None)

    def gate(self, key: str) -> GateStatus | None:
        return next((g for g in self.gates if g.key == key), None)

    def condition(self, type_: str) -> StatusCondition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = to_json(self)
        return out

    @classmethod
    def from_json(cls, raw: Any) -> RolloutStatus:
        """Raises InvalidSpec when the stored status is damaged."""
        if not raw:
            return cls()
        value, problems = from_json(cls, raw, "status")
        if value is None:
            raise InvalidSpec(problems)
        return value
