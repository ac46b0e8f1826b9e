"""spec.judge.provider: where the judge's samples come from (Prometheus, or the local mesh's
Envoy read directly): validation with field paths and fixes, and resolution (pure)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from meshctl.domain.problems import InvalidSpec
from meshctl.domain.providers import ProviderKind
from meshctl.domain.resolve import resolve_analysis
from meshctl.domain.routers.backend import MeshKind
from meshctl.domain.spec import Rollout
from meshctl.domain.validation import load_document

from .test_judge_spec import doc as cluster_doc

LOCAL: dict[str, Any] = {
    "apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
    "metadata": {"name": "web", "namespace": "demo"},
    "spec": {
        "service": "web",
        "local": {"stable": {"address": "127.0.0.1:8001"}, "canary": {"address": "127.0.0.1:8002"}},
        "strategy": {"canary": {"steps": [{"setWeight": 50}, {"analysis": {}}]}},
        "judge": {"lookback": "12s", "window": "4s", "step": "1s", "minSamples": 8,
                  "provider": {"kind": "envoy"}},
    },
}


def local(**judge: Any) -> dict[str, Any]:
    out = copy.deepcopy(LOCAL)
    out["spec"]["judge"].update(judge)
    return out


def problems(d: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidSpec) as exc:
        load_document(d)
    return [str(p) for p in exc.value.problems]


def resolved_judge(d: dict[str, Any], mesh: MeshKind = MeshKind.ENVOY) -> Any:
    rollout = load_document(d)
    assert isinstance(rollout, Rollout)
    return resolve_analysis(rollout, {}, mesh).steps[1][-1]


@pytest.mark.parametrize(("d", "expected"), [
    (local(metrics=[{"name": "retries", "query": "sum(rate(envoy_retries[1m]))"}]),
     "spec.judge.metrics[0].query: 'sum(rate(envoy_retries[1m]))' is not an Envoy stat (a "
     "histogram's mean, or a counter per second) or COUNTER / COUNTER, e.g. "
     "cluster.{{cluster}}.upstream_rq_retry / cluster.{{cluster}}.upstream_rq_total; PromQL "
     "needs spec.judge.provider.kind prometheus"),
    (local(provider={"kind": "envoy", "address": "http://127.0.0.1:9901"}),
     "spec.judge.provider.address: 'http://127.0.0.1:9901' is not an Envoy admin address; "
     "give host:port, e.g. 127.0.0.1:9901"),
    (local(provider={"kind": "web"}),
     "spec.judge.provider.kind: web reads one number, not samples over time; use prometheus "
     "or envoy"),
    (cluster_doc({"provider": {"kind": "envoy"}}),
     "spec.judge.provider.kind: envoy samples are read from the local mesh's Envoy (meshctl "
     "rollout run --mesh local, spec.local); in a cluster use prometheus"),
    (local(provider={"kind": "statsd"}), "spec.judge.provider.kind: 'statsd' is not one of"),
])
def test_invalid_providers_name_the_field_and_the_fix(d: dict[str, Any], expected: str) -> None:
    found = problems(d)
    assert any(p.startswith(expected) for p in found), found


def test_an_envoy_judge_samples_the_versions_clusters_stats() -> None:
    metric = resolved_judge(local(metrics=[
        {"name": "retries", "query": "cluster.{{cluster}}.upstream_rq_retry / "
                                     "cluster.{{cluster}}.upstream_rq_total"}]))

    assert metric.kind is ProviderKind.ENVOY and metric.address is None
    assert metric.judge.source == "envoy"
    assert [(m.name, m.canary_query, m.baseline_query) for m in metric.judge.metrics] == [
        ("latency", "cluster.canary.upstream_rq_time", "cluster.stable.upstream_rq_time"),
        ("error-ratio", "cluster.canary.upstream_rq_5xx / cluster.canary.upstream_rq_total",
         "cluster.stable.upstream_rq_5xx / cluster.stable.upstream_rq_total"),
        ("retries", "cluster.canary.upstream_rq_retry / cluster.canary.upstream_rq_total",
         "cluster.stable.upstream_rq_retry / cluster.stable.upstream_rq_total"),
    ]


def test_the_default_provider_is_prometheus() -> None:
    d = local()
    del d["spec"]["judge"]["provider"]
    metric = resolved_judge(d)
    assert metric.kind is ProviderKind.PROMETHEUS and metric.judge.source == "prometheus"
    assert "envoy_cluster_upstream_rq_time_sum" in metric.judge.metrics[0].canary_query


def test_a_rollout_with_local_and_istio_routing_resolved_for_a_cluster_is_refused() -> None:
    """The controller resolves for Istio: an Envoy judge there names the field and the fix."""
    with pytest.raises(InvalidSpec) as exc:
        resolved_judge(local(), MeshKind.ISTIO)
    assert [str(p) for p in exc.value.problems] == [
        "spec.judge.provider.kind: envoy samples are read from the local mesh's Envoy "
        "(meshctl rollout run --mesh local); in a cluster use prometheus"]


def test_status_says_the_samples_came_from_envoy() -> None:
    from meshctl.cli.rollouts import judgement_text
    from meshctl.ops.views import JudgementView, JudgeMetricView

    view = JudgementView("step-1", "2026-12-04T21:00:00Z", "Fail", 50.0, "stable", (
        JudgeMetricView("latency", "Fail", "higher-is-worse", 1e-4, 3.0, 20.5, 5.1, 9, 9),),
        source="envoy")

    assert judgement_text(view).startswith(
        "Fail, score 50 against stable (step-1, envoy samples): latency Fail +300.0% p=0.0001")
    assert view.to_json()["source"] == "envoy"
