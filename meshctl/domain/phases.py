"""Phases of a Rollout, the one table of legal transitions, and beside it the table of
which user action means something in which phase.

An illegal move raises :class:`IllegalTransition` and changes nothing. The state diagram in
the README is generated from :data:`TRANSITIONS` (``meshctl.domain.phases.mermaid()``).
The engine acts on a user's intent only in the phases :data:`ALLOWED` lists, and the
front-ends refuse it elsewhere (FailedPrecondition), both from this one table.
"""

from __future__ import annotations

from enum import Enum

from meshctl.domain.intents import Action


class Phase(str, Enum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    HEALTHY = "Healthy"
    ABORTING = "Aborting"
    DEGRADED = "Degraded"


P = Phase
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    P.PENDING: frozenset({P.PROGRESSING, P.HEALTHY}),
    P.PROGRESSING: frozenset({P.PAUSED, P.PROMOTING, P.ABORTING, P.PROGRESSING}),
    P.PAUSED: frozenset({P.PROGRESSING, P.PROMOTING, P.ABORTING}),
    P.PROMOTING: frozenset({P.HEALTHY, P.ABORTING, P.PROGRESSING}),
    P.HEALTHY: frozenset({P.PROGRESSING}),
    P.ABORTING: frozenset({P.DEGRADED, P.HEALTHY, P.PROGRESSING}),
    P.DEGRADED: frozenset({P.PROGRESSING, P.HEALTHY}),
}

_ACTIVE = (P.PROGRESSING, P.PAUSED)
# Which phases a user action means something in (in the order of Phase).
ALLOWED: dict[Action, tuple[Phase, ...]] = {
    Action.PROMOTE: _ACTIVE,
    Action.PROMOTE_FULL: _ACTIVE,
    Action.ABORT: (*_ACTIVE, P.PROMOTING),
    Action.RETRY: (P.DEGRADED,),
    Action.RESUME: (P.PAUSED,),
    Action.PAUSE: tuple(Phase),  # spec.paused: recorded anywhere, it pauses a Progressing rollout
}
# Where each action takes a rollout from a phase it is allowed in (or keeps it, as promote
# does mid-step); every such move is in TRANSITIONS (a unit test keeps the tables in step).
LEADS_TO: dict[Action, Phase] = {
    Action.PROMOTE: P.PROGRESSING,
    Action.PROMOTE_FULL: P.PROMOTING,
    Action.ABORT: P.ABORTING,
    Action.RETRY: P.PROGRESSING,
    Action.RESUME: P.PROGRESSING,
    Action.PAUSE: P.PAUSED,
}


def allows(action: Action, phase: Phase) -> bool:
    """``action`` means something in ``phase`` (:data:`ALLOWED`)."""
    return phase in ALLOWED[action]


# Paused for one of these reasons, a rollout waits for a person: `--wait` exits 4, and so
# does a local `rollout run` (even while background analysis keeps measuring).
HUMAN_PAUSES = ("PausedAtStep", "InconclusiveAnalysis", "AwaitingPromotion", "UserPaused",
                "GateDeadline")
# A release gate (spec.gates) still waiting past its deadline: a person resumes (the gate
# waits again) or aborts; promote does not skip it.
GATE_DEADLINE = "GateDeadline"
# Paused for this one, a rollout waits for its metrics source (Prometheus down, or slower
# than the query timeout): the engine asks it again every interval and resumes on its own
# once it answers; `--wait` and a local run keep waiting (until their --timeout). A person
# may still promote (skip the analysis), resume or abort.
ANALYSIS_UNAVAILABLE = "AnalysisUnavailable"


class Ending(str, Enum):
    """Where a rollout comes to rest for someone waiting on it: ``--wait``, ``status
    --watch`` and a local ``rollout run`` stop there; the CLI maps each to its exit code."""

    HEALTHY = "Healthy"
    DEGRADED = "Degraded"  # rolled back
    PAUSED = "Paused"  # waiting for a person
    INVALID = "InvalidSpec"
    TIMED_OUT = "TimedOut"  # the waiter gave up first


def ending_of(phase: Phase, pause_reason: str | None, invalid: bool = False) -> Ending | None:
    """Where a rollout in ``phase`` has ended; None while it is still moving. E.g. Paused
    for ``PausedAtStep`` has ended (a person must promote), Paused for a timed step has not."""
    if invalid:
        return Ending.INVALID
    if phase is Phase.HEALTHY:
        return Ending.HEALTHY
    if phase is Phase.DEGRADED:
        return Ending.DEGRADED
    if phase is Phase.PAUSED and pause_reason in HUMAN_PAUSES:
        return Ending.PAUSED
    return None


class IllegalTransition(RuntimeError):
    def __init__(self, source: Phase, target: Phase) -> None:
        super().__init__(f"illegal phase transition {source.value} -> {target.value}")
        self.source, self.target = source, target


def check_transition(source: Phase, target: Phase) -> Phase:
    """``target`` if moving there from ``source`` is legal (staying put always is)."""
    if source != target and target not in TRANSITIONS[source]:
        raise IllegalTransition(source, target)
    return target


def mermaid() -> str:
    """The state diagram, for the README."""
    lines = ["stateDiagram-v2"]
    for source, targets in TRANSITIONS.items():
        for target in sorted(targets, key=lambda p: p.value):
            if target != source:
                lines.append(f"    {source.value} --> {target.value}")
    return "\n".join(lines)
