"""Whatever `lint` accepts, `rollout plan` and the engine handle: no spec that validates
makes anything downstream raise (exit 70). Hostile values are drawn at random into every
field of a canary and a blue-green Rollout."""

from __future__ import annotations

import copy
import math
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshctl.adapters.files import FileProblem, parse_bytes
from meshctl.cli.render import plan_table
from meshctl.domain.engine import ResolvedAnalysis
from meshctl.domain.problems import InvalidSpec
from meshctl.domain.resolve import resolve_analysis
from meshctl.domain.routers.backend import MeshKind
from meshctl.domain.spec import Rollout
from meshctl.domain.validation import load_document
from meshctl.ops.rollout_plan import plan_for

from .sim import Sim
from .test_validation import with_

CANARY = with_("spec.strategy.canary", {
    "steps": [{"setWeight": 10}, {"pause": {"duration": "1m"}}, {"analysis": {}},
              {"setHeaderRoute": {"name": "beta", "match": [
                  {"headerName": "x-beta", "headerValue": {"exact": "1"}}]}},
              {"setMirror": {"percent": 20}}, {"setWeight": 50}],
    "analysis": {"startingStep": 1}})
CANARY["spec"]["slo"] = {"latencyP95": "50ms", "availability": "99.9%", "window": "1m",
                         "minRequests": 20, "interval": "10s", "count": 3}
CANARY["spec"]["progressDeadlineSeconds"] = 600
CANARY["spec"]["security"] = {"allow": [{"from": [{"namespace": "web"}], "ports": [8080]}]}
CANARY["spec"]["gates"] = [
    {"name": "hours", "at": ["beforeTraffic", "beforeIncrease"], "deadline": "1h",
     "window": {"timeZone": "Europe/Stockholm",
                "windows": [{"days": ["Mon", "Fri"], "start": "09:00", "end": "16:00"}],
                "freezes": [{"start": "2026-12-18", "end": "2027-01-06", "reason": "year end"}]}},
    {"name": "risk", "at": ["beforeTraffic"], "deadline": "10m",
     "webhook": {"url": "https://risk.example:8443/assess", "timeout": "5s", "retries": 2,
                 "signingSecret": {"name": "risk", "key": "hmac"}}},
    {"name": "cab", "at": ["beforePromotion"],
     "approval": {"count": 2, "users": ["ann", "bob"], "forbidStarter": True}},
]
CANARY["spec"]["notifications"] = [
    {"name": "bus", "url": "https://events.example/rollouts"},
    {"name": "chat", "url": "https://hooks.example/x", "format": "slack",
     "events": ["paused", "promoted"]},
]
BLUE_GREEN = with_("spec.strategy", {"blueGreen": {
    "autoPromotionSeconds": 30, "scaleDownDelaySeconds": 30, "prePromotionAnalysis": {},
    "previewRoute": {"name": "preview", "match": [
        {"headerName": "x-preview", "headerValue": {"prefix": "y"}}]}}})
LOCAL = copy.deepcopy(CANARY)
del LOCAL["spec"]["trafficRouting"], LOCAL["spec"]["workloadRef"]
LOCAL["spec"]["local"] = {"stable": {"address": "127.0.0.1:8081"},
                          "canary": {"command": ["app", "--port", "{port}"]}}

HOSTILE: list[Any] = [
    0, -1, 1, 100, 101, 2**31, 10**30, 0.5, math.inf, -math.inf, math.nan, True, None, "", "x",
    "0s", "0ms", "1ms", "0.0000001ms", "99999999999999d", "9" * 400 + "s", "1e3s", "5m",
    "web/../..", "a" * 300, "Front End!", "\u202e", [], [{}], {}, "127.0.0.1:99999", ":80",
    "100%", "0%", "1e400%", "999%",
]


def paths(node: Any, prefix: str = "") -> list[str]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += paths(value, f"{prefix}.{key}" if prefix else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += paths(value, f"{prefix}.{i}")
    return out


def mutated(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    node: Any = doc
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


def runs_downstream(doc: dict[str, Any]) -> None:
    """Plan it for both meshes and step the engine through it; nothing may raise."""
    try:
        rollout = load_document(doc)
    except InvalidSpec:
        return
    assert isinstance(rollout, Rollout)
    for mesh in ("istio", "local"):
        plan_table(plan_for(rollout, {}, mesh))
    plans = resolve_analysis(rollout, {}, MeshKind.ISTIO)
    sim = Sim(rollout.spec, analysis=ResolvedAnalysis(plans.steps, plans.background,
                                                plans.background_from))
    for _ in range(40):
        d = sim.reconcile()
        sim.now += timedelta(seconds=min(max(d.requeue_after or 1.0, 0.5), 10**6))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_spec_lint_accepts_never_crashes_plan_or_the_engine(data):
    base = data.draw(st.sampled_from([CANARY, BLUE_GREEN, LOCAL]))
    doc = base
    for _ in range(data.draw(st.integers(1, 3))):
        doc = mutated(doc, data.draw(st.sampled_from(paths(doc))),
                      data.draw(st.sampled_from(HOSTILE)))
    runs_downstream(doc)


@pytest.mark.parametrize("path, value, where, fragment", [
    ("spec.strategy.canary.steps.1.pause.duration", "9" * 400 + "s",
     "spec.strategy.canary.steps[1].pause.duration", "at most 365d"),
    ("spec.strategy.canary.steps.1.pause.duration", "99999999999999d",
     "spec.strategy.canary.steps[1].pause.duration", "at most 365d"),
    ("spec.slo.window", "0s", "spec.slo.window", "at least 1s"),
    ("spec.slo.window", "10ms", "spec.slo.window", "at least 1s"),
    ("spec.slo.interval", "0s", "spec.slo.interval", "at least 1s"),
    ("spec.slo.latencyP95", "0ms", "spec.slo.latencyP95", "at least 1ms"),
    ("spec.slo.count", 10**30, "spec.slo.count", "use 2147483647 or less"),
    ("spec.progressDeadlineSeconds", 10**30, "spec.progressDeadlineSeconds", "or less"),
    ("spec.strategy.canary.steps", [], "spec.strategy.canary.steps", "at least one step"),
    ("metadata.namespace", "web/../../etc", "metadata.namespace", "lower case"),
])
def test_lint_refuses_what_would_crash_later_with_the_field_and_the_fix(path, value, where,
                                                                         fragment):
    with pytest.raises(InvalidSpec) as err:
        load_document(mutated(CANARY, path, value))
    found = [p for p in err.value.problems if p.path == where]
    assert found and any(fragment in p.message for p in found), err.value.problems


def test_a_local_port_out_of_range_is_refused():
    with pytest.raises(InvalidSpec) as err:
        load_document(mutated(LOCAL, "spec.local.stable.address", "127.0.0.1:99999"))
    assert [str(p) for p in err.value.problems] == [
        "spec.local.stable.address: port 99999 is out of range; use 1-65535"]


@pytest.mark.parametrize("text", [
    b"a: &a [*a]\n",
    b"spec:\n  template: &t\n    spec: {template: *t}\n",
])
def test_a_recursive_alias_is_refused(text):
    with pytest.raises(FileProblem) as err:
        parse_bytes(text, "r.yaml")
    assert "refers to itself" in str(err.value)


@pytest.mark.parametrize("base", [CANARY, BLUE_GREEN, LOCAL], ids=["canary", "blueGreen", "local"])
def test_every_field_with_every_hostile_value_validates_or_runs(base):
    """Exhaustive over one mutation: each field of the spec, each hostile value."""
    failures = []
    for path in paths(base):
        for value in HOSTILE:
            try:
                runs_downstream(mutated(base, path, value))
            except Exception as exc:  # collected, reported below
                failures.append(f"{path}={value!r}: {type(exc).__name__}: {exc}"[:200])
    assert not failures, "\n".join(failures)
