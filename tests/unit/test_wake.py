"""Which watched changes wake a reconcile pass, and which go to the front of the queue."""

from __future__ import annotations

from typing import Any

from meshctl.controller.manager import Wake, wake
from meshctl.domain.keys import INTENT_PREFIX, REVISION


def rollout(generation: int = 1, **annotations: str) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "shop", "generation": generation,
                         "annotations": annotations, "resourceVersion": "1"},
            "status": {"phase": "Progressing"}}


def deployment(replicas: int, ready: int, revision: str = "r1",
               generation: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": "web-canary", "namespace": "shop", "generation": generation},
            "spec": {"replicas": replicas, "template": {"metadata": {"labels": {
                REVISION: revision}}}},
            "status": {"observedGeneration": generation, "updatedReplicas": ready,
                       "readyReplicas": ready}}


def test_what_someone_asked_of_a_rollout_is_urgent_and_an_abort_first() -> None:
    abort = {INTENT_PREFIX + "abort": "2026-12-04T21:00:00Z"}
    again = {INTENT_PREFIX + "abort": "2026-12-04T21:05:00Z"}
    promote = {INTENT_PREFIX + "promote": "2026-12-04T21:00:00Z"}
    assert wake("rollouts", None, rollout(), echo=False) is Wake.URGENT  # created
    assert wake("rollouts", rollout(1), rollout(2), echo=False) is Wake.URGENT  # new spec
    assert wake("rollouts", rollout(1), rollout(1, **promote), echo=False) is Wake.URGENT
    assert wake("rollouts", rollout(1), rollout(1, **abort), echo=False) is Wake.ABORT
    assert wake("rollouts", rollout(1, **abort), rollout(1, **again), echo=False) is Wake.ABORT
    assert wake("rollouts", rollout(1), rollout(2, **abort), echo=False) is Wake.ABORT
    # withdrawn by someone (the controller's own removal comes back as an echo)
    assert wake("rollouts", rollout(1, **abort), rollout(1), echo=False) is Wake.URGENT
    assert [w.rank for w in (Wake.ABORT, Wake.URGENT, Wake.DUE)] == sorted(
        w.rank for w in (Wake.ABORT, Wake.URGENT, Wake.DUE))  # served in that order


def test_a_status_change_by_someone_else_is_served_in_turn_and_an_echo_not_at_all() -> None:
    other = rollout(1, note="x")
    assert wake("rollouts", rollout(1), other, echo=False) is Wake.DUE
    assert wake("rollouts", rollout(1), rollout(2), echo=True) is Wake.NONE


def test_a_deployment_that_just_became_ready_is_urgent() -> None:
    assert wake("deployments", deployment(2, 1), deployment(2, 2), echo=False) is Wake.URGENT
    assert wake("deployments", deployment(2, 0), deployment(2, 1), echo=False) is Wake.DUE
    assert wake("deployments", deployment(2, 2), deployment(1, 1), echo=False) is Wake.DUE
    assert wake("deployments", deployment(0, 0), deployment(0, 0, "r2"), echo=False) is Wake.DUE


def test_a_deployment_change_the_engine_does_not_read_wakes_nothing() -> None:
    before, after = deployment(2, 2), deployment(2, 2)
    after["status"]["conditions"] = [{"type": "Available", "status": "True"}]
    assert wake("deployments", before, after, echo=False) is Wake.NONE
    assert wake("deployments", None, after, echo=False) is Wake.DUE  # first seen


def test_a_deployment_given_up_by_its_rollout_wakes_the_rollouts_naming_it() -> None:
    """Rollout web was deleted and its label left the Deployment: a second Rollout naming
    the Deployment (invalid while web held it) is reconciled and takes it over."""
    held, given_up = deployment(2, 2), deployment(2, 2)
    held["metadata"]["labels"] = {"app": "web", "meshctl.io/rollout": "web"}
    given_up["metadata"]["labels"] = {"app": "web"}
    assert wake("deployments", held, given_up, echo=False) is Wake.DUE
    assert wake("deployments", given_up, held, echo=True) is Wake.DUE
    assert wake("deployments", held, held, echo=False) is Wake.NONE


def test_the_traffic_objects_wake_a_pass_in_turn_echo_or_not() -> None:
    vs = {"metadata": {"name": "web", "namespace": "shop"}}
    assert wake("virtualservices", None, vs, echo=True) is Wake.DUE
