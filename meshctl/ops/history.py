"""``meshctl rollout history``: the revisions a Rollout knows, its events, and its audit
trail (who started, approved, promoted, aborted...; each release gate's verdict)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from meshctl.domain.fields import format_time
from meshctl.domain.problems import InvalidSpec
from meshctl.domain.spec import GROUP, VERSION
from meshctl.domain.status import RolloutStatus
from meshctl.domain.trail import trail
from meshctl.domain.workloads import template_revision
from meshctl.ops.connect import Objects
from meshctl.ops.failures import translated
from meshctl.ops.start import previous_template
from meshctl.ops.views import PLURAL, RolloutView, first_image, view_of


@dataclass(frozen=True)
class RevisionView:
    role: str  # current, stable, previous
    revision: str
    image: str


@dataclass(frozen=True)
class EventView:
    time: str
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class AuditView:
    time: str
    action: str
    by: str
    via: str
    comment: str
    detail: str


@dataclass(frozen=True)
class History:
    rollout: RolloutView
    revisions: tuple[RevisionView, ...]
    events: tuple[EventView, ...]
    audit: tuple[AuditView, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"rollout": self.rollout.to_json(),
                "revisions": [{"role": r.role, "revision": r.revision, "image": r.image}
                              for r in self.revisions],
                "events": [{"time": e.time, "type": e.type, "reason": e.reason,
                            "message": e.message} for e in self.events],
                "audit": [{"time": a.time, "action": a.action, "by": a.by, "via": a.via,
                           "comment": a.comment, "detail": a.detail} for a in self.audit]}


def history(kube: Objects, namespace: str, name: str) -> History:
    """The revisions the Rollout knows (current, stable, the template before the last
    start) and its events, oldest first (every phase change is an event)."""
    with translated():
        obj = kube.get(GROUP, VERSION, namespace, PLURAL, name)
        events = kube.list("events.k8s.io", "v1", namespace, "events")
    view = view_of(obj)
    revisions = [RevisionView("current", view.revision, view.image)]
    if view.stable_revision and view.stable_revision != view.revision:
        revisions.append(RevisionView("stable", view.stable_revision, ""))
    previous = previous_template(obj)
    if previous is not None:
        revisions.append(RevisionView("previous", template_revision(previous),
                                      first_image(previous)))
    return History(view, tuple(revisions), events_of(obj, events), audit_of(obj))


def events_of(obj: Mapping[str, Any], events: Iterable[Mapping[str, Any]]
              ) -> tuple[EventView, ...]:
    """The events (events.k8s.io/v1) about the Rollout ``obj``, oldest first."""
    meta = obj.get("metadata") or {}
    name, uid = meta.get("name"), meta.get("uid")
    mine = [e for e in events if (e.get("regarding") or {}).get("kind") == "Rollout"
            and (e.get("regarding") or {}).get("name") == name
            and (e.get("regarding") or {}).get("uid") in (uid, None)]
    rows = [EventView(str(e.get("eventTime") or (e.get("metadata") or {}).get("creationTimestamp")
                          or ""),
                      str(e.get("type", "")), str(e.get("reason", "")), str(e.get("note", "")))
            for e in mine]
    return tuple(sorted(rows, key=lambda e: e.time))


def audit_of(obj: Mapping[str, Any]) -> tuple[AuditView, ...]:
    """The Rollout's audit trail (:func:`meshctl.domain.trail.trail`); a damaged status
    leaves the gates' verdicts out, never the people's actions."""
    try:
        gates = RolloutStatus.from_json(obj.get("status")).gates
    except InvalidSpec:
        gates = ()
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return tuple(AuditView(format_time(e.at), e.action, e.by, e.via, e.comment, e.detail)
                 for e in trail(annotations, gates))
