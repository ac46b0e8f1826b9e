"""Metric providers by kind: the spec (exactly one provider), the JSONPath subset, how each
kind resolves, and Envoy's stats JSON read into a measurement (pure)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from meshctl.adapters.web import _stat
from meshctl.domain import jsonpath
from meshctl.domain.measurements import Error, NoData, Value
from meshctl.domain.problems import InvalidSpec
from meshctl.domain.providers import ProviderKind, split_envoy_query
from meshctl.domain.resolve import resolve_analysis
from meshctl.domain.routers.backend import MeshKind
from meshctl.domain.spec import AnalysisTemplate, Rollout
from meshctl.domain.validation import load_document

from .test_validation import BASE

TEMPLATE: dict[str, Any] = {
    "apiVersion": "meshctl.io/v1alpha1", "kind": "AnalysisTemplate",
    "metadata": {"name": "edge"},
    "spec": {"metrics": [
        {"name": "errors-5xx", "provider": {"envoy": {"stat": "cluster.canary.upstream_rq_5xx"}},
         "failureCondition": "result > 10"},
        {"name": "p95", "provider": {"envoy": {"stat": "cluster.canary.upstream_rq_time",
                                               "quantile": 95, "address": "127.0.0.1:9901"}},
         "successCondition": "result < 50"},
        {"name": "budget", "provider": {"web": {"url": "https://slo.example/api/budget",
                                                "jsonPath": "$.data['remaining']"}},
         "successCondition": "result > 0.2"},
    ]},
}


def template(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(TEMPLATE)
    doc["spec"]["metrics"][0]["provider"] = changes.get("provider", doc["spec"]["metrics"][0]["provider"])
    return doc


@pytest.mark.parametrize(("path", "document", "value"), [
    ("$.a.b", {"a": {"b": 3}}, 3),
    ("$['a-b'][0]", {"a-b": [7, 8]}, 7),
    ('$["x y"][-1]', {"x y": [1, 2]}, 2),
    ("$", 5, 5),
])
def test_jsonpath_subset_finds_one_value(path: str, document: Any, value: Any) -> None:
    assert jsonpath.find(jsonpath.parse(path), document) == value


@pytest.mark.parametrize("path", ["a.b", "$..a", "$.items[*]", "$.a[0:2]", "$[?(@.a)]"])
def test_jsonpath_outside_the_subset_is_refused(path: str) -> None:
    with pytest.raises(ValueError):
        jsonpath.parse(path)


def test_jsonpath_nothing_there_is_missing_not_an_error() -> None:
    with pytest.raises(jsonpath.Missing):
        jsonpath.find(jsonpath.parse("$.a[3]"), {"a": [1]})


def test_each_kind_resolves_to_its_address_and_query() -> None:
    tmpl = load_document(TEMPLATE)
    assert isinstance(tmpl, AnalysisTemplate)
    doc = copy.deepcopy(BASE)
    doc["spec"]["strategy"]["canary"]["steps"][1] = {
        "analysis": {"templates": [{"templateName": "edge"}]}}
    rollout = load_document(doc)
    assert isinstance(rollout, Rollout)

    metrics = resolve_analysis(rollout, {"edge": tmpl}, MeshKind.ENVOY).steps[1]

    assert [(m.kind, m.address, m.query) for m in metrics] == [
        (ProviderKind.ENVOY, None, "cluster.canary.upstream_rq_5xx"),
        (ProviderKind.ENVOY, "127.0.0.1:9901", "cluster.canary.upstream_rq_time:P95"),
        (ProviderKind.WEB, "https://slo.example/api/budget", "$.data['remaining']"),
    ]
    assert metrics[2].field.endswith("spec.metrics[2].provider.web.jsonPath)")


@pytest.mark.parametrize(("provider", "expected"), [
    ({}, "spec.metrics[0].provider: "),
    ({"envoy": {"stat": "a"}, "web": {"url": "http://x", "jsonPath": "$.a"}},
     "spec.metrics[0].provider: "),
    ({"web": {"url": "http://x", "jsonPath": "$..a"}},
     "spec.metrics[0].provider.web.jsonPath: '$..a': unsupported at offset 1"),
    ({"web": {"url": "file:///etc/passwd", "jsonPath": "$.a"}}, "spec.metrics[0].provider.web.url"),
])
def test_provider_problems_name_the_field(provider: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidSpec) as exc:
        load_document(template(provider=provider))
    assert any(str(p).startswith(expected) for p in exc.value.problems), exc.value.problems


ENVOY_STATS = {"stats": [
    {"name": "cluster.canary.upstream_rq_5xx", "value": 4},
    {"histograms": {"supported_quantiles": [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100],
                    "computed_quantiles": [{"name": "cluster.canary.upstream_rq_time", "values": [
                        {"interval": None, "cumulative": q} for q in
                        (1, 2, 3, 4, 5, 6.5, 7, 8, 9, 10)]}]}},
]}


@pytest.mark.parametrize(("query", "expected"), [
    ("cluster.canary.upstream_rq_5xx", Value(4.0)),
    ("cluster.canary.upstream_rq_time:P95", Value(6.5)),
    ("cluster.stable.upstream_rq_5xx", NoData("Envoy has no stat cluster.stable.upstream_rq_5xx")),
])
def test_envoy_stats_json_read_into_a_measurement(query: str, expected: Any) -> None:
    stat, quantile = split_envoy_query(query)
    assert _stat(ENVOY_STATS, stat, quantile) == expected


def test_a_quantile_envoy_does_not_compute_is_an_error() -> None:
    assert isinstance(_stat(ENVOY_STATS, "cluster.canary.upstream_rq_time", 97), Error)


def test_an_envoy_metric_needs_an_address_in_a_cluster() -> None:
    tmpl = load_document(TEMPLATE)
    assert isinstance(tmpl, AnalysisTemplate)
    doc = copy.deepcopy(BASE)
    doc["spec"]["strategy"]["canary"]["steps"][1] = {
        "analysis": {"templates": [{"templateName": "edge"}]}}
    rollout = load_document(doc)
    assert isinstance(rollout, Rollout)

    with pytest.raises(InvalidSpec) as exc:
        resolve_analysis(rollout, {"edge": tmpl}, MeshKind.ISTIO)

    assert str(exc.value) == (
        "spec.strategy.canary.steps[1].analysis.templates[0]: AnalysisTemplate edge: "
        "spec.metrics[0].provider.envoy.address is required in a cluster (an Envoy admin "
        "host:port; only the local mesh has a default)")
