"""The engine's status store over a real cluster: status in the Rollout's status
subresource, the user's intents in its annotations, events through :mod:`~meshctl.adapters.events`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from meshctl.adapters.events import EventWriter, emit_best_effort
from meshctl.adapters.kube import Kube
from meshctl.adapters.parsed import PARSED
from meshctl.domain.engine import Event
from meshctl.domain.intents import RECORDED, Intents
from meshctl.domain.spec import GROUP, VERSION
from meshctl.domain.status import RolloutStatus


class KubeStatusStore:
    """Status in the Rollout's status subresource; intents in its annotations; events."""

    def __init__(self, kube: Kube, obj: Mapping[str, Any],
                 events: EventWriter | None = None) -> None:
        self.kube = kube
        self.obj = obj
        self.events = events
        meta = obj["metadata"]
        self.namespace, self.name = meta.get("namespace", "default"), meta["name"]

    def load(self) -> tuple[RolloutStatus, Intents]:
        status = PARSED.of(self.obj, "status",
                           lambda obj: RolloutStatus.from_json(obj.get("status")))
        return status, intents_of(self.obj)

    def save(self, status: RolloutStatus) -> None:
        # status is written whole: fields the engine no longer sets must go away, at any
        # depth (a merge patch keeps what it does not name)
        patch = _whole(self.obj.get("status") or {}, status.to_json())
        self.obj = self.kube.merge_patch_status(GROUP, VERSION, self.namespace, "rollouts",
                                                self.name, {"status": patch})

    def record(self, events: Iterable[Event]) -> None:
        if self.events is not None:
            for event in events:
                self.events.put(self.obj, event)
            return
        for event in events:
            emit_best_effort(self.kube, self.obj, event)


def _whole(current: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch turning ``current`` into exactly ``new`` (keys it lacks become null)."""
    patch: dict[str, Any] = {k: None for k in current if k not in new}
    for key, value in new.items():
        old = current.get(key)
        patch[key] = (_whole(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping)
                      else value)
    return patch


def intents_of(obj: Mapping[str, Any]) -> Intents:
    annotations = obj.get("metadata", {}).get("annotations") or {}
    return Intents.of({action: annotations.get(action.annotation) for action in RECORDED})
