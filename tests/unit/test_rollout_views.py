"""The rollout views and their judgement, in plain values: what `--wait` and `--watch` decide
from a status, what a view shows, how failures map to exit and gRPC codes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import click
import grpc
import pytest

from meshctl.api.client import FAILURES
from meshctl.api.messages import from_message, to_message
from meshctl.api.server import CODES, METHOD_ROLES, Access
from meshctl.cli.options import Duration
from meshctl.cli.results import FAILURE_EXIT
from meshctl.cli.rollouts import WAIT_EXIT, progress_line
from meshctl.domain.keys import PREVIOUS_TEMPLATE
from meshctl.domain.phases import Ending
from meshctl.ops.failures import Failure
from meshctl.ops.start import _replaced
from meshctl.ops.views import ConditionView, MeasurementView, RolloutView, WeightsView, view_of
from meshctl.ops.wait import judge

ROOT = Path(__file__).resolve().parent.parent.parent


def view(**changes) -> RolloutView:
    base = RolloutView(name="web", namespace="shop", phase="Healthy", generation=3,
                       observed_generation=3)
    return dataclasses.replace(base, **changes)


INVALID = (ConditionView("InvalidSpec", "True", "InvalidSpec", "bad", ""),)


@pytest.mark.parametrize("case, generation, expected", [
    (view(), 0, Ending.HEALTHY),
    (view(phase="Degraded"), 0, Ending.DEGRADED),
    (view(phase="Paused", pause_reason="PausedAtStep"), 0, Ending.PAUSED),
    (view(phase="Paused", pause_reason="InconclusiveAnalysis"), 0, Ending.PAUSED),
    (view(phase="Paused", pause_reason="AwaitingPromotion"), 0, Ending.PAUSED),
    (view(phase="Paused", pause_reason="UserPaused"), 0, Ending.PAUSED),
    (view(phase="Paused", pause_reason="AnalysisUnavailable"), 0, None),  # lifts itself
    (view(phase="Progressing"), 0, None),
    (view(phase="Promoting"), 0, None),
    (view(phase="Aborting"), 0, None),
    (view(conditions=INVALID), 0, Ending.INVALID),
    (view(observed_generation=2), 0, None),
    (view(), 4, None),
    (view(phase="Degraded", pending_intents=("retry",)), 0, None),
])
def test_judge(case, generation, expected):
    """Healthy 0, Degraded 1, paused for a person 4, invalid 2; a status the controller
    has not caught up with (older generation, a request not acted on) says nothing yet."""
    assert judge(case, generation) is expected


ROLLOUT = {
    "apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
    "metadata": {"name": "web", "namespace": "shop", "generation": 5,
                 "annotations": {"meshctl.io/intent-abort": "a2",
                                 "meshctl.io/intent-promote": "p1"}},
    "spec": {"service": "web", "workloadRef": {"name": "web"},
             "trafficRouting": {"istio": {"virtualService": {"name": "web"},
                                          "stableService": "web", "canaryService": "web-canary"}},
             "template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}},
             "strategy": {"canary": {"steps": [{"setWeight": 20}, {"analysis": {}},
                                               {"setWeight": 50}]}}},
    "status": {
        "phase": "Progressing", "currentStep": 1, "observedGeneration": 5,
        "currentRevision": "abc", "stableRevision": "def",
        "weights": {"stable": 80, "canary": 20, "observed": {"stable": 90, "canary": 10}},
        "handledIntents": [{"action": "promote", "id": "p1"}, {"action": "abort", "id": "a1"}],
        "analysis": [{"name": "step-1", "startedAt": "2026-01-01T00:00:00Z", "metrics": [
            {"name": "availability", "measurements": [
                {"at": "2026-01-01T00:00:05Z", "outcome": "Successful", "value": 0.999},
                {"at": "2026-01-01T00:00:06Z", "outcome": "Successful", "value": 1.0}]},
            {"name": "latency-p95", "measurements": [
                {"at": "2026-01-01T00:00:06Z", "outcome": "Inconclusive"}]}]}],
    },
}


def test_a_view_shows_the_latest_of_each_metric_and_the_requests_not_yet_acted_on():
    v = view_of(ROLLOUT)
    assert (v.phase, v.step, v.total_steps, v.image) == ("Progressing", 1, 3, "web:2")
    assert v.weights == WeightsView(80, 20) and v.observed_weights == WeightsView(90, 10)
    assert v.measurements == (
        MeasurementView("availability", "step-1", 1.0, "Successful", "2026-01-01T00:00:06Z"),
        MeasurementView("latency-p95", "step-1", None, "Inconclusive", "2026-01-01T00:00:06Z"))
    assert v.pending_intents == ("abort",)  # promote p1 was handled, abort a2 is new
    assert not v.current
    assert json.loads(json.dumps(v.to_json()))["observedWeights"] == {"stable": 90, "canary": 10}


def test_a_view_of_a_damaged_status_is_shown_not_raised():
    damaged = {**ROLLOUT, "status": {"phase": "Sideways"}}
    assert view_of(damaged).message.startswith("status unreadable")


def test_the_grpc_message_carries_the_whole_view():
    v = dataclasses.replace(view_of(ROLLOUT), conditions=INVALID)
    assert from_message(to_message(v)) == v
    assert from_message(to_message(view())).observed_weights is None
    unknown = dataclasses.replace(view(), not_observed="stored, not observed: no istiod")
    assert from_message(to_message(unknown)) == unknown


def test_changing_the_template_records_the_previous_one_once():
    old = {"spec": {"containers": [{"name": "web", "image": "web:1"}]}}
    new = {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}
    changed = _replaced({"metadata": {}, "spec": {"template": old}}, new)
    assert changed["spec"]["template"] == new
    assert json.loads(changed["metadata"]["annotations"][PREVIOUS_TEMPLATE]) == old
    same = _replaced({"metadata": {}, "spec": {"template": new}}, new)
    assert "annotations" not in same["metadata"]  # no change, nothing recorded


@pytest.mark.parametrize("identities, method, allowed", [
    (["dashboard"], "GetRollout", True),
    (["dashboard"], "WatchRollout", True),
    (["dashboard"], "Abort", False),
    (["laptop", "spiffe://cluster.local/ns/ops/sa/oncall"], "Abort", True),
    (["spiffe://cluster.local/ns/ops/sa/oncall"], "ListRollouts", True),
    (["someone"], "GetRollout", False),
    ([], "GetRollout", False),
])
def test_access_by_identity(identities, method, allowed):
    """Operators may call everything; readers only List, Get and Watch; others nothing."""
    access = Access.of(readers=["dashboard"], operators=["spiffe://cluster.local/ns/ops/sa/oncall"])
    assert access.allows(identities, method) is allowed


def test_every_failure_has_an_exit_code_and_a_grpc_code_and_back():
    assert set(FAILURE_EXIT) == {f.value for f in Failure}
    assert set(WAIT_EXIT) == {o.value for o in Ending}
    assert set(CODES) == set(Failure)
    for failure, code in CODES.items():
        assert FAILURES.get(code, Failure.UNAVAILABLE) is failure
    # every method of the service has a role, and no role names a method it lacks
    from meshctl.api.gen.meshctl.v1 import rollouts_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["Rollouts"]
    assert set(METHOD_ROLES) == {m.name for m in service.methods}
    assert grpc.StatusCode.UNAVAILABLE not in FAILURES  # falls back to Unavailable


@pytest.mark.parametrize("text, seconds", [("90", 90.0), ("2.5", 2.5), ("90s", 90.0),
                                           ("1m30s", 90.0), ("1h", 3600.0)])
def test_timeouts_are_seconds_or_durations(text, seconds):
    assert Duration().convert(text, None, None) == seconds


def test_a_timeout_that_does_not_parse_is_a_usage_error():
    with pytest.raises(click.BadParameter, match="30s, 5m"):
        Duration().convert("soon", None, None)


def test_a_progress_line_has_phase_step_weights_measurements_and_reason():
    line = progress_line(view_of(ROLLOUT))
    assert line == ("shop/web Progressing step 1/3 stable/canary 80/20 (observed 90/10) "
                    "availability=100.000% latency-p95=no data")
    with_message = dataclasses.replace(view(), message="revision abc is stable at 100%")
    assert progress_line(with_message).endswith("| revision abc is stable at 100%")


def test_help_imports_neither_kubernetes_nor_grpc_nor_the_domain():
    code = ("import sys; from click.testing import CliRunner; from meshctl.cli.main import cli; "
            "CliRunner().invoke(cli, ['rollout', '--help']); "
            "print(sorted({m.split('.')[0] if not m.startswith('meshctl.') else "
            "'.'.join(m.split('.')[:2]) for m in sys.modules}))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    for heavy in ("kubernetes", "grpc", "google", "yaml", "meshctl.domain", "meshctl.ops",
                  "meshctl.adapters", "meshctl.api"):
        assert f"'{heavy}'" not in loaded


def test_the_generated_grpc_code_is_fresh():
    """What `make verify-protos` checks: regenerating gives the committed files."""
    pytest.importorskip("grpc_tools")
    checked = subprocess.run([sys.executable, str(ROOT / "protos" / "generate.py"), "--check"],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_a_listed_view_is_remembered_by_uid_and_resource_version() -> None:
    """The same object at the same resourceVersion gives the same view without parsing it
    again; a new resourceVersion is read anew; an object without one is never remembered."""
    from meshctl.ops.views import remembered_view_of

    obj = {"metadata": {"name": "web", "namespace": "shop", "uid": "u1",
                        "resourceVersion": "7"}, "status": {"phase": "Progressing"}}
    first = remembered_view_of(obj)
    assert remembered_view_of({**obj, "status": {"phase": "Healthy"}}) is first
    moved = {**obj, "metadata": {**obj["metadata"], "resourceVersion": "8"},
             "status": {"phase": "Healthy"}}
    assert remembered_view_of(moved).phase == "Healthy"
    local = {"metadata": {"name": "web", "namespace": "shop"}, "status": {"phase": "Paused"}}
    assert remembered_view_of(local) is not remembered_view_of(local)
