"""The audit trail of a rollout: who did what, when, and why, from what the Rollout holds.

Sources, all on the Rollout itself (so the trail survives a controller restart and needs no
store of its own): each human action through meshctl leaves ``meshctl.io/actor-<action>``
(the latest one per action: who, how authenticated, when, the comment), each approval its
``approval.meshctl.io/<hash>`` annotation, and each release gate's verdict is in
``status.gates`` (when, by whom for approvals, the message). Events tell the same story as
it happened (every phase change, gate verdict and approval is one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from meshctl.domain.jsontext import parsed_object
from meshctl.domain.keys import ACTOR_PREFIX
from meshctl.domain.release_gates import GateStatus, GateVerdict, Identity, approvals_in, stamp


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    action: str  # start, promote, abort, ..., approve, gate-passed, gate-failed
    by: str = ""  # the identity ("" for the controller's own verdicts without one)
    via: str = ""  # kubernetes (SelfSubjectReview) | grpc (client certificate) | controller
    comment: str = ""
    detail: str = ""


def actor_annotation(action: str, who: Identity, at: datetime, comment: str = ""
                     ) -> tuple[str, str]:
    """``meshctl.io/actor-<action>`` and its JSON value."""
    value = {"user": who.user, "via": who.via, "comment": comment,
             "at": stamp(at)}
    return ACTOR_PREFIX + action, json.dumps(value, sort_keys=True)


def trail(annotations: dict[str, str] | None, gates: tuple[GateStatus, ...]
          ) -> tuple[AuditEntry, ...]:
    """Every recorded action and verdict, oldest first."""
    out = [*_actors(annotations or {}), *_approvals(annotations), *_verdicts(gates)]
    return tuple(sorted(out, key=lambda e: e.at))


def _actors(annotations: dict[str, str]) -> list[AuditEntry]:
    out = []
    for key, text in annotations.items():
        if not key.startswith(ACTOR_PREFIX):
            continue
        try:
            raw = parsed_object(text) or {}
            at = datetime.fromisoformat(str(raw["at"]).replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError):
            continue
        out.append(AuditEntry(at, key[len(ACTOR_PREFIX):], str(raw.get("user", "")),
                              str(raw.get("via", "")), str(raw.get("comment", ""))))
    return out


def _approvals(annotations: dict[str, str] | None) -> list[AuditEntry]:
    return [AuditEntry(a.at, "approve", a.identity.user, a.identity.via, a.comment,
                       f"revision {a.revision}") for a in approvals_in(annotations)]


def _verdicts(gates: tuple[GateStatus, ...]) -> list[AuditEntry]:
    out = []
    for g in gates:
        if g.verdict is GateVerdict.WAITING or g.decided_at is None:
            continue
        action = "gate-passed" if g.verdict is GateVerdict.PASSED else "gate-failed"
        out.append(AuditEntry(g.decided_at, action, ", ".join(g.by), "controller", "",
                              f"{g.name} ({g.kind}) {g.point.value}: {g.message}"))
    return out


# Which person's action an engine Event carries out: (reason, start of its message) -> action.
_ACTED_ON = (
    ("RolloutStarted", "template changed", "start"), ("RolloutStarted", "retry", "retry"),
    ("UserAbort", "aborting: aborted by user", "abort"), ("Promoted", "", "promote"),
    ("PromotedFull", "", "promote-full"), ("Resumed", "resumed by user", "resume"),
    ("Resumed", "resumed (spec.paused", "resume"), ("UserPaused", "paused by user", "pause"),
)


def acted_by(reason: str, message: str, annotations: dict[str, str] | None) -> str:
    """The message of an engine Event that carries out a person's action, with who asked
    for it (from ``meshctl.io/actor-<action>``); the message as it was otherwise.

    E.g. ("UserAbort", "aborting: aborted by user") with an abort by bob recorded becomes
    "aborting: aborted by user (bob via kubernetes)"."""
    action = next((a for r, start, a in _ACTED_ON if r == reason and message.startswith(start)),
                  None)
    if action is None:
        return message
    actor = next((e for e in _actors(annotations or {}) if e.action == action), None)
    if actor is None or not actor.by:
        return message
    comment = f": {actor.comment}" if actor.comment else ""
    return f"{message} ({actor.by} via {actor.via}{comment})"
