"""A fresh baseline (``spec.judge.baseline: fresh``), pure: the three-way split, what lint
refuses (with the field and the fix), the Istio objects, the data-plane reading, the
baseline Deployment, the judge's queries, and whole rollouts stepped through the engine."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshctl.api.messages import from_message, to_message
from meshctl.domain.dataplane import splits_in
from meshctl.domain.engine import WorkloadState
from meshctl.domain.intents import Intents
from meshctl.domain.phases import Phase
from meshctl.domain.problems import InvalidSpec
from meshctl.domain.resolve import Target, judge_metric, resolve_analysis
from meshctl.domain.rollout_plan import rollout_plan
from meshctl.domain.routers import backend_of, gatewayapi, local
from meshctl.domain.routers.backend import MeshKind
from meshctl.domain.routers.istio import (
    apply_split,
    baseline_destination_rule,
    baseline_virtual_service,
    borrowed_subsets,
    read_split,
    with_canary_subset,
    without_canary_subset,
)
from meshctl.domain.schedule import schedule
from meshctl.domain.spec import Rollout
from meshctl.domain.traffic import TrafficSplit, Weights
from meshctl.domain.validation import load_document
from meshctl.domain.workloads import baseline_deployment, workload_state
from meshctl.ops.views import view_of

from .sim import Sim

STEPS = [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 50}, {"analysis": {}}]
ISTIO = {"virtualService": {"name": "web", "routes": ["primary"]},
         "destinationRule": {"name": "web", "stableSubset": "stable", "canarySubset": "canary"}}


def doc(steps: list[dict[str, Any]] | None = None, baseline: str = "fresh",
        routing: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"service": "web", "workloadRef": {"name": "web"},
                     "trafficRouting": routing or {"istio": copy.deepcopy(ISTIO)},
                     "strategy": {"canary": {"steps": steps or STEPS}},
                     "judge": {"lookback": "2m", "window": "10s", "baseline": baseline},
                     **spec}}


def load(d: dict[str, Any]) -> Rollout:
    found = load_document(d)
    assert isinstance(found, Rollout)
    return found


def problems(d: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidSpec) as exc:
        load_document(d)
    return [str(p) for p in exc.value.problems]


# -- the split ----------------------------------------------------------------------------


@pytest.mark.parametrize(("weight", "fresh", "expected"), [
    (20, True, (60, 20, 20)),   # the baseline takes the canary's weight from stable
    (50, True, (0, 50, 50)),    # the most a fresh baseline allows: stable has none left
    (0, True, (100, 0, 0)),     # nothing to the canary, nothing to the baseline
    (20, False, (80, 20, 0)),   # without one: two destinations, as before
])
def test_the_baseline_takes_as_much_as_the_canary(weight, fresh, expected):
    w = Weights.canary_at(weight, fresh_baseline=fresh)
    assert (w.stable, w.canary, w.baseline) == expected


def test_a_split_over_100_is_not_a_split():
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        Weights.canary_at(60, fresh_baseline=True)


def test_the_schedule_and_the_plan_show_the_three_way_split():
    rollout = load(doc())
    assert [s.traffic.weights.described() for s in schedule(rollout.spec)] == [
        "60/20/20", "60/20/20", "0/50/50", "0/50/50"]
    plan = rollout_plan(rollout, _analysis(rollout), backend_of(rollout), replicas=4)
    first = plan["steps"][0]
    assert first["weights"] == {"stable": 60, "canary": 20, "baseline": 20}
    assert {"type": "readiness", "canaryReplicas": 1, "baselineReplicas": 1} in first["gates"]
    vs = first["objects"][-1]
    assert [(d["destination"]["subset"], d["weight"]) for d in vs["spec"]["http"][0]["route"]] \
        == [("stable", 60), ("canary", 20), ("baseline", 20)]


def _analysis(rollout: Rollout) -> Any:
    return resolve_analysis(rollout, {}, MeshKind.ISTIO)


# -- what lint refuses ------------------------------------------------------------------


GATEWAY = {"gatewayAPI": {"httpRoute": {"name": "web"}, "stableService": "web",
                          "canaryService": "web-canary"}}


@pytest.mark.parametrize(("d", "expected"), [
    (doc([{"setWeight": 60}, {"analysis": {}}]),
     "spec.strategy.canary.steps[0].setWeight: 60 is above 50: with spec.judge.baseline fresh "
     "the baseline takes as much as the canary; use at most 50 (promotion moves the rest)"),
    (doc(routing=GATEWAY),
     "spec.trafficRouting.gatewayAPI.baselineService: is required with spec.judge.baseline "
     "fresh: name a Service that selects the pods labelled meshctl.io/track: baseline"),
    (doc(routing={"gatewayAPI": {**GATEWAY["gatewayAPI"], "baselineService": "web"}}),
     "spec.trafficRouting.gatewayAPI.baselineService: must differ from stableService and "
     "canaryService"),
    (doc(routing={"istio": {"virtualService": {"name": "web"}, "stableService": "web",
                            "canaryService": "web-canary"}}),
     "spec.judge.baseline: fresh needs subset-level routing: give "
     "spec.trafficRouting.istio.destinationRule (its baselineSubset is the baseline's), or "
     "use baseline: stable"),
    (doc(routing={"istio": {**ISTIO, "destinationRule": {
        **ISTIO["destinationRule"], "baselineSubset": "canary"}}}),
     "spec.trafficRouting.istio.destinationRule.baselineSubset: must differ from stableSubset "
     "and canarySubset"),
    (doc(baseline="new"), "spec.judge.baseline"),
])
def test_lint_refuses_a_fresh_baseline_it_could_not_run(d, expected):
    assert any(p.startswith(expected) for p in problems(d)), problems(d)


def test_a_stable_baseline_allows_any_weight_and_any_backend():
    assert load(doc([{"setWeight": 80}, {"analysis": {}}], baseline="stable", routing=GATEWAY))
    assert load(doc()).spec.fresh_baseline


# -- the Istio objects and the data plane ----------------------------------------------


def test_the_virtual_service_has_three_weighted_destinations_and_reads_back():
    rollout = load(doc())
    split = TrafficSplit(Weights(60, 20, 20))
    vs = apply_split(baseline_virtual_service(rollout), rollout, split)
    route = vs["spec"]["http"][0]["route"]
    assert route[2] == {"destination": {"host": "web", "subset": "baseline"}, "weight": 20}
    assert read_split(vs, rollout) == split
    back = apply_split(vs, rollout, TrafficSplit.stable_only())
    assert read_split(back, rollout) == TrafficSplit.stable_only()


def test_the_baseline_subset_is_added_with_the_canarys_and_removed_with_it():
    rollout = load(doc())
    dr = baseline_destination_rule(rollout)
    assert dr is not None
    added = with_canary_subset(dr, rollout)
    assert added["spec"]["subsets"][1:] == [
        {"name": "canary", "labels": {"meshctl.io/track": "canary"}},
        {"name": "baseline", "labels": {"meshctl.io/track": "baseline"}}]
    assert without_canary_subset(added, rollout)["spec"]["subsets"] == dr["spec"]["subsets"]


SOURCE = {"filterMetadata": {"istio": {
    "config": "/apis/networking.istio.io/v1/namespaces/shop/virtual-service/web"}}}


def _cluster(subset: str) -> str:
    return f"outbound|80|{subset}|web.shop.svc.cluster.local"


def test_the_data_plane_reads_the_baseline_cluster():
    action = {"weightedClusters": {"clusters": [
        {"name": _cluster("stable"), "weight": 60}, {"name": _cluster("canary"), "weight": 20},
        {"name": _cluster("baseline"), "weight": 20}]}}
    configs = [{"virtualHosts": [{"routes": [{"name": "primary", "route": action,
                                              "metadata": SOURCE}]}]}]
    assert splits_in(configs, load(doc()), "primary") == [TrafficSplit(Weights(60, 20, 20))]
    # without a fresh baseline the third cluster is not meshctl's: no split is read
    assert splits_in(configs, load(doc(baseline="stable")), "primary") == [None]


# -- the Deployment and the judge's queries ------------------------------------------


def test_the_baseline_deployment_is_stables_template_outside_both_subsets():
    stable = {"metadata": {"name": "web", "namespace": "shop", "labels": {"team": "a"}},
              "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}}
    made = baseline_deployment(stable, "r1", 1, "web", "uid-1")
    assert made["metadata"]["name"] == "web-baseline"
    assert made["spec"]["replicas"] == 1
    assert made["spec"]["selector"] == {"matchLabels": {"app": "web",
                                                        "meshctl.io/track": "baseline"}}
    labels = made["spec"]["template"]["metadata"]["labels"]
    assert labels["meshctl.io/track"] == "baseline" and labels["meshctl.io/revision"] == "r1"
    assert made["spec"]["template"]["spec"] == stable["spec"]["template"]["spec"]
    assert made["metadata"]["ownerReferences"] == [
        {"apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout", "name": "web", "uid": "uid-1",
         "controller": True}]
    assert workload_state(made).revision == "r1"


def test_the_judge_compares_with_the_baseline_workload_and_says_so():
    rollout = load(doc())
    found = judge_metric(rollout, Target.of(rollout, MeshKind.ISTIO))
    assert not isinstance(found, list) and found.judge is not None
    assert found.judge.baseline == "fresh"
    latency = found.judge.metrics[0]
    assert 'destination_workload="web-canary"' in latency.canary_query
    assert 'destination_workload="web-baseline"' in latency.baseline_query
    stable = load(doc(baseline="stable"))
    found = judge_metric(stable, Target.of(stable, MeshKind.ISTIO))
    assert not isinstance(found, list) and found.judge is not None
    assert found.judge.baseline == "stable"
    assert 'destination_workload="web"' in found.judge.metrics[0].baseline_query


# -- whole rollouts through the engine ------------------------------------------------


def sim(steps: list[dict[str, Any]], **kw: Any) -> Sim:
    rollout = load(doc(steps))
    world = Sim(rollout.spec, **kw)
    world.status = world.reconcile().status  # first sight: adopt v1, start v2
    return world


def test_traffic_waits_for_the_baseline_then_moves_three_ways():
    """Given a baseline that is not ready, the first weight is not written; once it is, the
    step writes 60/20/20 and the baseline runs the old stable revision at the canary's
    replicas."""
    world = sim([{"setWeight": 20}, {"pause": {}}], baseline_becomes_ready=False)
    world.run(20)
    assert world.written in (None, TrafficSplit.stable_only())
    assert "waiting for baseline ready replicas 0/1" in world.status.message
    world.baseline_becomes_ready = True
    world.run(20)
    assert world.written == TrafficSplit(Weights(60, 20, 20))
    assert world.status.phase is Phase.PAUSED
    assert world.baseline == WorkloadState(1, 1, world.status.stable_revision)
    assert world.status.weights.baseline == 20


def test_promotion_removes_the_baseline_after_stable_has_all_the_traffic():
    world = sim([{"setWeight": 50}])
    seen: list[tuple[str, int, int]] = []
    for _ in range(60):
        d = world.reconcile()
        seen.append((d.status.phase.value, d.traffic.weights.baseline,
                     d.workloads.baseline_replicas))
        if d.status.phase is Phase.HEALTHY:
            break
    assert world.status.phase is Phase.HEALTHY
    assert world.baseline == WorkloadState()
    assert world.written == TrafficSplit.stable_only()
    # the baseline's replicas went to 0 only once no weight was left on it
    first_zero = next(i for i, s in enumerate(seen) if s[0] != "Pending" and s[2] == 0)
    assert all(s[1] == 0 for s in seen[first_zero:])
    assert max(s[2] for s in seen) == 2  # 4 replicas at 50%: the canary's 2
    # promotion gave stable v2; the baseline stayed at v1 until it went
    assert all(d.workloads.baseline_revision == "v1" or d.workloads.baseline_replicas == 0
               for d in world.decisions)


def test_rollback_sends_baseline_traffic_back_and_removes_it():
    world = sim([{"setWeight": 20}, {"pause": {}}])
    world.run(20)
    assert world.written == TrafficSplit(Weights(60, 20, 20))
    world.intents = Intents(abort="a1")
    world.run(60, until=lambda s: s.status.phase is Phase.DEGRADED and s.baseline.replicas == 0)
    assert world.written == TrafficSplit.stable_only()
    assert world.baseline == WorkloadState() and world.canary.replicas == 0


def test_a_restarted_controller_resumes_with_the_same_baseline():
    world = sim([{"setWeight": 20}, {"analysis": {}}, {"setWeight": 40}, {"pause": {}}],
                restart_every_pass=True)
    world.run(60)
    assert world.status.phase is Phase.PAUSED
    assert world.weights_written() == [(100, 0), (60, 20), (20, 40)]  # each once
    assert world.written == TrafficSplit(Weights(20, 40, 40))
    assert world.baseline.replicas == 2


# -- the local mesh ----------------------------------------------------------------------


def test_the_local_route_has_a_third_cluster_only_while_the_baseline_has_weight():
    split = TrafficSplit(Weights(60, 20, 20))
    config = local.route_configuration(split)
    clusters = config["virtual_hosts"][0]["routes"][-1]["route"]["weighted_clusters"]["clusters"]
    assert clusters[-1] == {"name": "baseline", "weight": 20}
    assert local.split_of(config) == split
    two = local.route_configuration(TrafficSplit(Weights(90, 10)))
    assert len(two["virtual_hosts"][0]["routes"][-1]["route"]["weighted_clusters"]["clusters"]) == 2


LOCAL = {"stable": {"address": "127.0.0.1:8001"}, "canary": {"address": "127.0.0.1:8002"}}


@pytest.mark.parametrize(("d", "expected"), [
    (doc(routing={}, local=LOCAL),
     "spec.local.baseline: is required with spec.judge.baseline fresh and a stable address: "
     "give the address or command of a new instance of the stable version (a stable command "
     "is started twice by default)"),
    (doc(routing={}, baseline="stable", local={**LOCAL, "baseline": {"address": "h:1"}}),
     "spec.local.baseline: is used only with spec.judge.baseline fresh; remove it or set that"),
    (doc(routing={}, local={**LOCAL, "baseline": {}}),
     "spec.local.baseline: give exactly one of address or command"),
])
def test_a_local_fresh_baseline_needs_its_own_endpoint(d, expected):
    d["spec"].pop("trafficRouting")
    assert expected in problems(d)


def test_a_local_fresh_baseline_is_its_own_endpoint_or_the_stable_command_again():
    d = doc(local={**LOCAL, "baseline": {"command": ["app", "--version", "v1"]}})
    d["spec"].pop("trafficRouting")
    found = load(d).spec.local
    assert found is not None and found.fresh_baseline(True) == found.baseline
    command = {"stable": {"command": ["app", "--port", "{port}"]}, "canary": LOCAL["canary"]}
    d = doc(local=command)
    d["spec"].pop("trafficRouting")
    found = load(d).spec.local
    assert found is not None and found.fresh_baseline(True) == found.stable
    assert found.fresh_baseline(False) is None


def test_a_canary_subset_the_user_defined_stays_while_the_borrowed_baseline_subset_goes():
    rollout = load(doc())
    own_canary = {"name": "canary", "labels": {"meshctl.io/track": "canary"}}
    original = {"host": "web", "subsets": [{"name": "stable", "labels": {"app": "web"}},
                                           own_canary]}
    assert borrowed_subsets(original, rollout) == {"baseline"}
    dr = with_canary_subset({"spec": original}, rollout)
    kept = without_canary_subset(dr, rollout, borrowed_subsets(original, rollout))
    assert kept["spec"]["subsets"] == original["subsets"]


def test_the_http_route_has_a_third_backend_ref_and_reads_back():
    routing = {"gatewayAPI": {**GATEWAY["gatewayAPI"], "baselineService": "web-baseline"}}
    rollout = load(doc(routing=routing))
    route = gatewayapi.baseline(rollout)[0]
    assert route is not None
    split = TrafficSplit(Weights(60, 20, 20))
    written = gatewayapi.apply_split(route, rollout, split)
    assert written["spec"]["rules"][0]["backendRefs"] == [
        {"name": "web", "port": 80, "weight": 60}, {"name": "web-canary", "port": 80, "weight": 20},
        {"name": "web-baseline", "port": 80, "weight": 20}]
    assert gatewayapi.read_split(written, rollout) == split
    assert gatewayapi.envoy_shape(rollout).track(
        "outbound|80||web-baseline.shop.svc.cluster.local") == "baseline"


# -- what a person and a pipeline see ---------------------------------------------------


def test_status_json_grpc_and_the_table_carry_the_baselines_weight():
    obj = {"metadata": {"name": "web", "namespace": "shop"},
           "status": {"phase": "Paused",
                      "weights": {"stable": 60, "canary": 20, "baseline": 20,
                                  "observed": {"stable": 60, "canary": 20, "baseline": 20}}}}
    view = view_of(obj)
    assert view.to_json()["weights"] == {"stable": 60, "canary": 20, "baseline": 20}
    assert view.to_json()["observedWeights"] == {"stable": 60, "canary": 20, "baseline": 20}
    back = from_message(to_message(view))
    assert back.weights == view.weights and back.observed_weights == view.observed_weights
    two = view_of({**obj, "status": {"phase": "Healthy"}})
    assert two.to_json()["weights"] == {"stable": 100, "canary": 0}
    assert from_message(to_message(two)).weights.baseline == 0


# -- invariants over random worlds ---------------------------------------------------------


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(weights=st.lists(st.integers(0, 50), min_size=1, max_size=4), data=st.data())
def test_every_decision_keeps_the_baselines_invariants(weights, data):
    """Whatever the world does (the data plane lagging, pods not ready, aborts): the baseline
    takes exactly the canary's weight, gets new weight only with ready pods, runs the old
    stable revision, and is never scaled down while weight on it may be in force."""
    steps: list[dict[str, Any]] = []
    for w in sorted(weights):
        steps += [{"setWeight": w}, {"pause": {"duration": f"{data.draw(st.integers(1, 20))}s"}}]
    world = Sim(load(doc(steps)).spec, replicas=data.draw(st.integers(1, 6)))
    for _ in range(data.draw(st.integers(5, 50))):
        world.data_plane_applies = data.draw(st.booleans())
        world.canary_becomes_ready = data.draw(st.booleans())
        world.baseline_becomes_ready = data.draw(st.booleans())
        if data.draw(st.integers(0, 12)) == 0:
            world.intents = Intents(abort=f"a{len(world.decisions)}")
        obs = world.observation()
        d = world.reconcile()
        w = d.traffic.weights
        assert w.baseline == w.canary
        if obs.written is not None and d.traffic != obs.written:
            assert w.baseline == 0 or obs.baseline.ready > 0
        if d.workloads.baseline_replicas:
            assert d.workloads.baseline_revision == "v1"
            assert d.workloads.baseline_replicas == d.workloads.canary_replicas
        if d.workloads.baseline_replicas == 0 and obs.baseline.replicas > 0:
            assert obs.observed is not None and obs.observed.weights.baseline == 0
            assert w.baseline == 0
        world.now += timedelta(seconds=max(d.requeue_after or 1.0, 0.5))
