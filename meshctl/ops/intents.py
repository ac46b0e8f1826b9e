"""The user's intents (promote, abort, retry, resume, pause): recorded on the Rollout for
the controller to carry out, never acted on here. Promote, abort, retry and resume are
annotations ``meshctl.io/intent-<action>: <id>`` (:mod:`meshctl.domain.engine` acts on each
id once); pause is ``spec.paused``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from meshctl.domain.intents import Action
from meshctl.domain.phases import ALLOWED, Phase
from meshctl.domain.release_gates import Identity
from meshctl.domain.spec import GROUP, VERSION
from meshctl.domain.trail import actor_annotation
from meshctl.ops.connect import Objects
from meshctl.ops.failures import Failure, RolloutError, translated
from meshctl.ops.views import PLURAL, RolloutView, view_of


def request(kube: Objects, namespace: str, name: str, action: Action,
            by: Identity | None = None) -> RolloutView:
    """Record the user's ``action`` on the Rollout for the controller to carry out.

    An action the rollout's phase makes meaningless is refused, unless the controller has
    not yet seen the latest spec (the phase may be about to change). ``pause`` sets
    ``spec.paused``; ``resume`` clears it and records a resume intent (which also ends a
    pause for an inconclusive analysis, measuring again). ``by`` (the authenticated
    caller) is recorded for the audit trail (``meshctl.io/actor-<action>``).
    """
    with translated():
        obj = kube.get(GROUP, VERSION, namespace, PLURAL, name)
        check_allowed(view_of(obj), action)
        patch: dict[str, Any] = {}
        if action is Action.PAUSE:
            patch["spec"] = {"paused": True}
        else:
            patch["metadata"] = {"annotations": {action.annotation: uuid.uuid4().hex[:12]}}
        if action is Action.RESUME and (obj.get("spec") or {}).get("paused"):
            patch["spec"] = {"paused": False}
        if by is not None:
            key, value = actor_annotation(action.value, by, datetime.now(UTC))
            patch.setdefault("metadata", {}).setdefault("annotations", {})[key] = value
        return view_of(kube.merge_patch(GROUP, VERSION, namespace, PLURAL, name, patch))


def check_allowed(view: RolloutView, action: Action) -> None:
    """Refuse ``action`` in a phase it means nothing in (:data:`meshctl.domain.phases.ALLOWED`,
    the table the engine acts by), unless the controller has not seen the latest spec or
    every intent yet (the phase may be about to change)."""
    phases = ALLOWED[action]
    if not view.current or Phase(view.phase) in phases:
        return
    if action is Action.RESUME and view.paused:
        return
    wanted = " or ".join(p.value for p in phases)
    raise RolloutError(Failure.PRECONDITION, f"cannot {action.value.replace('-', ' ')} "
                       f"{view.namespace}/{view.name}: it is {view.phase} (needs {wanted})")
