"""``meshctl rollout approve`` and the gRPC ``Approve``: one approver's approval of the
revision a Rollout is rolling out, recorded on it for the controller to count.

The identity is always the authenticated caller's, never a flag: on the CLI the one the API
server reports for the caller's credentials (SelfSubjectReview, :func:`who_am_i`), over gRPC
the client certificate's. An approval is the annotation ``approval.meshctl.io/<hash of the
user>`` (one per approver); the controller counts those of the current revision whose
identity a waiting approval gate allows (:func:`meshctl.domain.release_gates.judge_approval`).
An approval the gates would not count is refused here with the reason, and nothing is
written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from meshctl.domain.keys import STARTED_BY
from meshctl.domain.phases import Phase
from meshctl.domain.release_gates import (
    Approval,
    Identity,
    approval_annotation,
    may_approve,
)
from meshctl.domain.spec import GROUP, VERSION, Rollout
from meshctl.domain.status import RolloutStatus
from meshctl.domain.validation import load_document
from meshctl.ops.connect import Objects
from meshctl.ops.failures import Failure, RolloutError, translated
from meshctl.ops.views import PLURAL, RolloutView, view_of

MAX_COMMENT = 1000


def who_am_i(kube: Objects) -> Identity:
    """The caller as the API server authenticated it."""
    with translated():
        info = kube.who_am_i()
    user = str(info.get("username") or "")
    if not user:
        raise RolloutError(Failure.UNAUTHENTICATED, "the API server reports no user for "
                           "these credentials")
    return Identity(user, tuple(str(g) for g in info.get("groups") or ()), "kubernetes")


def approve(kube: Objects, namespace: str, name: str, who: Identity, comment: str,
            now: datetime) -> RolloutView:
    """Record ``who``'s approval of the revision the Rollout is rolling out."""
    if len(comment) > MAX_COMMENT or any(c in comment for c in "\x00\r"):
        raise RolloutError(Failure.INVALID, f"--comment: at most {MAX_COMMENT} characters of "
                           "plain text")
    with translated():
        obj = kube.get(GROUP, VERSION, namespace, PLURAL, name)
        rollout, status = _parsed(obj)
        _check(rollout, status, who)
        key, value = approval_annotation(Approval(who, status.current_revision or "", now,
                                                  comment))
        patched = kube.merge_patch(GROUP, VERSION, namespace, PLURAL, name,
                                   {"metadata": {"annotations": {key: value}}})
    return view_of(patched)


def _parsed(obj: dict[str, Any]) -> tuple[Rollout, RolloutStatus]:
    rollout = load_document(obj)
    if not isinstance(rollout, Rollout):
        raise RolloutError(Failure.INVALID, "not a Rollout")
    return rollout, RolloutStatus.from_json(obj.get("status"))


def _check(rollout: Rollout, status: RolloutStatus, who: Identity) -> None:
    where = f"{rollout.namespace}/{rollout.name}"
    gates = [g.approval for g in rollout.spec.gates if g.approval is not None]
    if not gates:
        raise RolloutError(Failure.PRECONDITION, f"{where} has no approval gate "
                           "(spec.gates[].approval)")
    if status.phase not in (Phase.PROGRESSING, Phase.PAUSED) or not status.current_revision:
        raise RolloutError(Failure.PRECONDITION, f"cannot approve {where}: it is "
                           f"{status.phase.value}; nothing waits for an approval")
    starter = (rollout.metadata.annotations or {}).get(STARTED_BY)
    reasons = [may_approve(g, who, starter) for g in gates]
    if all(reasons):
        raise RolloutError(Failure.PRECONDITION, f"cannot approve {where}: {reasons[0]}")
