"""Phases of a Rollout and the one table of legal transitions.

An illegal move raises :class:`IllegalTransition` and changes nothing. The state diagram in
the README is generated from :data:`TRANSITIONS` (``meshctl.domain.phases.mermaid()``).
"""

from __future__ import annotations

from enum import Enum


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


# Paused for one of these reasons, a rollout waits for a person: `--wait` exits 4, and so
# does a local `rollout run` (even while background analysis keeps measuring).
HUMAN_PAUSES = ("PausedAtStep", "InconclusiveAnalysis", "AwaitingPromotion", "UserPaused")
# Paused for this one, a rollout waits for its metrics source (Prometheus down, or slower
# than the query timeout): the engine asks it again every interval and resumes on its own
# once it answers; `--wait` and a local run keep waiting (until their --timeout). A person
# may still promote (skip the analysis), resume or abort.
ANALYSIS_UNAVAILABLE = "AnalysisUnavailable"


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
