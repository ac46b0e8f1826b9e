"""Every validation error names the field path and the fix; valid examples pass."""

from __future__ import annotations

import copy
import glob
from typing import Any

import pytest

from meshctl.adapters.files import read_documents
from meshctl.domain.problems import InvalidSpec
from meshctl.domain.routers.istio import mesh_problems
from meshctl.domain.spec import AnalysisTemplate, Rollout
from meshctl.domain.validation import load_document

BASE: dict[str, Any] = {
    "apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
    "spec": {
        "service": "web", "workloadRef": {"name": "web"},
        "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]},
                                     "destinationRule": {"name": "web", "stableSubset": "stable",
                                                         "canarySubset": "canary"}}},
        "strategy": {"canary": {"steps": [{"setWeight": 10}, {"pause": {"duration": "1m"}},
                                          {"setWeight": 50}]}},
    },
}


def with_(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    node = doc
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    last = keys[-1]
    if value is DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return doc


DELETE = object()
STEPS = "spec.strategy.canary.steps"


@pytest.mark.parametrize("doc, path, fragment", [
    (with_(f"{STEPS}.0.setWeight", 120), f"{STEPS}[0].setWeight", "120 is above 100; use 100 or less"),
    (with_(f"{STEPS}.0.setWeight", -1), f"{STEPS}[0].setWeight", "-1 is below 0"),
    (with_(f"{STEPS}.0.setWeight", "ten"), f"{STEPS}[0].setWeight", "must be an integer"),
    (with_(f"{STEPS}.2.setWeight", 5), f"{STEPS}[2].setWeight", "5 is below 10"),
    (with_(f"{STEPS}.1", {"pase": {}}), f"{STEPS}[1].pase", "unknown field; did you mean pause?"),
    (with_(f"{STEPS}.1", {"setWeight": 20, "pause": {}}), f"{STEPS}[1]", "exactly one of"),
    (with_(f"{STEPS}.1", {}), f"{STEPS}[1]", "exactly one of"),
    (with_(f"{STEPS}.1.pause.duration", "1 minute"), f"{STEPS}[1].pause.duration",
     "write it like 30s, 5m, 1h30m"),
    (with_("spec.service", DELETE), "spec.service", "is required"),
    (with_("spec.service", "Web_1"), "spec.service", "does not match"),
    (with_("spec.strategy", {}), "spec.strategy", "exactly one of canary or blueGreen"),
    (with_("spec.strategy", {"canary": {"steps": [{"setWeight": 5}]}, "blueGreen": {}}),
     "spec.strategy", "exactly one"),
    (with_("spec.trafficRouting.istio.destinationRule.canarySubset", "stable"),
     "spec.trafficRouting.istio.destinationRule.canarySubset", "must differ"),
    (with_("spec.trafficRouting.istio.destinationRule", DELETE), "spec.trafficRouting.istio",
     "give destinationRule, or both stableService and canaryService"),
    (with_("spec.trafficRouting.istio.stableService", "a"), "spec.trafficRouting.istio", "not both"),
    (with_("spec.trafficRouting", DELETE), "spec.trafficRouting.istio", "is required"),
    (with_("spec.workloadRef", DELETE), "spec.workloadRef", "is required"),
    (with_("spec.slo", {"availability": "99.99"}), "spec.slo.availability", "does not match"),
    (with_("spec.slo", {"availability": "101%"}), "spec.slo.availability", "at most 100%"),
    (with_("spec.slo", {"latencyP95": 50}), "spec.slo.latencyP95", "duration string"),
    (with_("spec.strategy.canary.analysis", {"startingStep": 7}),
     "spec.strategy.canary.analysis.startingStep", "past the last step"),
    (with_(f"{STEPS}.1", {"setHeaderRoute": {"name": "beta", "match": [
        {"headerName": "X-Beta", "headerValue": {"exact": "1", "prefix": "2"}}]}}),
     f"{STEPS}[1].setHeaderRoute.match[0].headerValue", "exactly one of exact, prefix, regex"),
    (with_(f"{STEPS}.1", {"setHeaderRoute": {"name": "beta", "match": [
        {"headerName": "x-beta", "headerValue": {"regex": "("}}]}}),
     f"{STEPS}[1].setHeaderRoute.match[0].headerValue.regex", "does not compile"),
    (with_(f"{STEPS}.1", {"setMirror": {"percent": 101}}), f"{STEPS}[1].setMirror.percent", "above 100"),
    (with_("apiVersion", "argoproj.io/v1alpha1"), "apiVersion", "must be meshctl.io/v1alpha1"),
    (with_("kind", "Deployment"), "kind", "must be Rollout or AnalysisTemplate"),
    (with_("metadata", DELETE), "metadata", "is required"),
])
def test_invalid_specs_name_the_field_and_the_fix(doc, path, fragment):
    with pytest.raises(InvalidSpec) as err:
        load_document(doc)
    found = [p for p in err.value.problems if p.path == path]
    assert found, f"no problem at {path}: {err.value.problems}"
    assert any(fragment in p.message for p in found), found


def test_every_problem_is_reported_not_only_the_first():
    doc = with_(f"{STEPS}.0.setWeight", 120)
    doc["spec"]["strategy"]["canary"]["steps"][1] = {"pase": {}}
    doc["spec"]["service"] = 5
    with pytest.raises(InvalidSpec) as err:
        load_document(doc)
    assert len(err.value.problems) == 3


def test_analysis_template_conditions_are_checked():
    doc = {"apiVersion": "meshctl.io/v1alpha1", "kind": "AnalysisTemplate",
           "metadata": {"name": "t"},
           "spec": {"metrics": [
               {"name": "m", "provider": {"prometheus": {"query": "up"}},
                "successCondition": "result is fine"},
               {"name": "n", "provider": {"prometheus": {"query": "up"}}},
           ]}}
    with pytest.raises(InvalidSpec) as err:
        load_document(doc)
    messages = {str(p) for p in err.value.problems}
    assert "spec.metrics[0].successCondition: 'result is fine' is not a comparison; " \
           "write it like 'result < 50'" in messages
    assert any(m.startswith("spec.metrics[1]: give successCondition") for m in messages)


@pytest.mark.parametrize("path", sorted(glob.glob("rollouts/*.yaml")))
def test_examples_are_valid(path):
    docs = read_documents(path)
    assert docs
    for doc in docs:
        assert isinstance(load_document(doc.body), Rollout | AnalysisTemplate)


def _rollout() -> Rollout:
    value = load_document(BASE)
    assert isinstance(value, Rollout)
    return value


@pytest.mark.parametrize("vs, dr, path, fragment", [
    (None, None, "spec.trafficRouting.istio.virtualService.name", "not found"),
    ({"spec": {"http": [{"name": "other"}]}}, None,
     "spec.trafficRouting.istio.virtualService.routes[0]", "route 'primary' is not in"),
    ({"spec": {"http": [{"name": "primary"}]}}, {"spec": {"subsets": [{"name": "canary"}]}},
     "spec.trafficRouting.istio.destinationRule.stableSubset", "lacks subset 'stable'"),
    ({"spec": {"http": [{"name": "primary"}]}}, None,
     "spec.trafficRouting.istio.destinationRule.name", "not found"),
])
def test_checks_against_live_objects(vs, dr, path, fragment):
    problems = list(mesh_problems(_rollout(), vs, dr))
    assert any(p.path == path and fragment in p.message for p in problems), problems


def test_live_objects_that_fit_raise_nothing():
    vs = {"spec": {"http": [{"name": "primary"}, {"name": "admin"}]}}
    dr = {"spec": {"subsets": [{"name": "stable"}]}}
    assert list(mesh_problems(_rollout(), vs, dr)) == []


SECURITY = "spec.security"


@pytest.mark.parametrize("security, path, fragment", [
    ({"allow": [{"methods": ["GET"]}]}, f"{SECURITY}.allow[0].from",
     "name at least one caller"),
    ({"allow": [{"from": []}]}, f"{SECURITY}.allow[0].from", "name at least one caller"),
    ({"allow": [{"from": [{}]}]}, f"{SECURITY}.allow[0].from[0]",
     "set namespace, serviceAccount or both"),
    ({"allow": [{"from": [{"serviceAccount": "Front End!"}]}]},
     f"{SECURITY}.allow[0].from[0].serviceAccount", "lower case"),
    ({"allow": [{"from": [{"namespace": "a/../../b"}]}]},
     f"{SECURITY}.allow[0].from[0].namespace", "lower case"),
    ({"allow": [{"from": [{"serviceAccount": "a" * 254}]}]},
     f"{SECURITY}.allow[0].from[0].serviceAccount", "longer than 253"),
    ({"allow": [{"from": [{"namespace": "web"}], "ports": [70000]}]},
     f"{SECURITY}.allow[0].ports[0]", "70000 is above 65535"),
    ({"allow": [{"from": [{"namespace": "web"}], "ports": [0]}]},
     f"{SECURITY}.allow[0].ports[0]", "0 is below 1"),
    ({"allow": [{"from": [{"namespace": "web"}], "paths": ["/admin\u202e"]}]},
     f"{SECURITY}.allow[0].paths[0]", "control or bidirectional"),
    ({"allow": [{"from": [{"namespace": "web"}], "methods": ["GET\x00"]}]},
     f"{SECURITY}.allow[0].methods[0]", "control or bidirectional"),
])
def test_zero_trust_rules_that_would_allow_anyone_or_cannot_exist_are_refused(
        security, path, fragment):
    """One validation serves lint, plan, start and the controller: the same load_document."""
    with pytest.raises(InvalidSpec) as err:
        load_document(with_("spec.security", security))
    found = [p for p in err.value.problems if p.path == path]
    assert found, f"no problem at {path}: {err.value.problems}"
    assert any(fragment in p.message for p in found), found


@pytest.mark.parametrize("path, value, where, fragment", [
    ("metadata.name", "w" * 64, "metadata.name", "longer than 63"),
    ("metadata.namespace", "../../etc", "metadata.namespace", "lower case"),
    ("metadata.namespace", "n" * 64, "metadata.namespace", "longer than 63"),
    ("metadata.namespace", "a\u200fb", "metadata.namespace", "control or bidirectional"),
    ("spec.trafficRouting.istio.destinationRule.canarySubset", "Canary Subset",
     "spec.trafficRouting.istio.destinationRule.canarySubset", "lower case"),
    ("spec.trafficRouting.istio.virtualService.routes", ["primary\n"],
     "spec.trafficRouting.istio.virtualService.routes[0]", "control or bidirectional"),
])
def test_names_kubernetes_would_refuse_are_refused_with_the_field(path, value, where, fragment):
    with pytest.raises(InvalidSpec) as err:
        load_document(with_(path, value))
    found = [p for p in err.value.problems if p.path == where]
    assert found, f"no problem at {where}: {err.value.problems}"
    assert any(fragment in p.message for p in found), found


def test_the_crd_schema_refuses_an_allow_rule_without_callers():
    from meshctl.domain.crds import crds
    spec = crds()["rollouts.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rule = spec["properties"]["spec"]["properties"]["security"]["properties"]["allow"]["items"]
    assert "from" in rule["required"]
    assert rule["properties"]["from"]["minItems"] == 1
    assert rule["properties"]["from"]["items"]["minProperties"] == 1
