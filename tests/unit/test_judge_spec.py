"""spec.judge: validation with field paths and fixes, resolution into the SLO's analysis
steps, the plan, and the engine acting on the judge's score (pure)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from meshctl.domain.judge import Direction, Judged, JudgedMetric, Judgement, JudgeVerdict
from meshctl.domain.measurements import Measurement, Value
from meshctl.domain.phases import Phase
from meshctl.domain.problems import InvalidSpec
from meshctl.domain.resolve import resolve_analysis
from meshctl.domain.rollout_plan import rollout_plan
from meshctl.domain.routers import backend_of
from meshctl.domain.routers.backend import MeshKind
from meshctl.domain.spec import Rollout
from meshctl.domain.status import RolloutStatus
from meshctl.domain.validation import load_document

from .sim import Sim
from .test_validation import BASE

STEPS = [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 50}, {"analysis": {}}]
JUDGE = {"lookback": "2m", "window": "10s"}


def doc(judge: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    out["spec"]["strategy"] = {"canary": {"steps": STEPS, "analysis": {"startingStep": 1}}}
    out["spec"]["judge"] = {**JUDGE, **(judge or {})}
    out["spec"].update(spec)
    return out


def load(d: dict[str, Any]) -> Rollout:
    rollout = load_document(d)
    assert isinstance(rollout, Rollout)
    return rollout


def problems(d: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidSpec) as exc:
        load_document(d)
    return [str(p) for p in exc.value.problems]


@pytest.mark.parametrize(("judge", "expected"), [
    ({"marginalScore": 96}, "spec.judge.marginalScore: 96 is above passScore 95; use at most 95"),
    ({"lookback": "1m"}, "spec.judge.lookback: 1m holds 6 sample(s) of window 10s every 10s, "
                         "fewer than minSamples 10; lengthen it to at least 1m40s or lower minSamples"),
    ({"metrics": [{"name": "latency", "query": "x"}]},
     "spec.judge.metrics[0].name: 'latency' is already a judge metric; give it another name"),
    ({"tolerance": "five"}, "spec.judge.tolerance"),
    ({"metrics": [{"name": "rps", "query": "x", "direction": "up"}]},
     "spec.judge.metrics[0].direction"),
    ({"passScore": 101}, "spec.judge.passScore"),
])
def test_invalid_judges_name_the_field_and_the_fix(judge: dict[str, Any], expected: str) -> None:
    found = problems(doc(judge))
    assert any(p.startswith(expected) for p in found), found


def test_the_judge_joins_every_slo_step_but_not_background_analysis() -> None:
    plans = resolve_analysis(load(doc()), {}, MeshKind.ISTIO)

    for index in (1, 3):
        names = [m.name for m in plans.steps[index]]
        assert names == ["latency-p95", "availability", "availability-fast", "judge"]
    assert "judge" not in [m.name for m in plans.background]
    judge = plans.steps[1][-1]
    assert judge.initial_delay == 120 and judge.judge is not None
    latency = judge.judge.metrics[0]
    assert 'destination_workload="web-canary"' in latency.canary_query
    assert 'destination_workload="web"' in latency.baseline_query
    assert "[10s]" in latency.canary_query
    assert judge.judge.step == 10 and judge.judge.settings.tolerance == 0.05


def test_with_envoy_slo_metrics_the_judge_reads_each_versions_proxy_cluster() -> None:
    """slo.metrics: envoy in a cluster: the proxies' own stats, the canary's cluster
    against the stable one (subset-level routing: the two subsets of the host)."""
    judge = resolve_analysis(load(doc(slo={"metrics": "envoy"})), {}, MeshKind.ISTIO)
    metric = judge.steps[1][-1].judge
    assert metric is not None
    latency = metric.metrics[0]
    assert "envoy_cluster_upstream_rq_time_sum" in latency.canary_query
    assert r"[0-9]+\\|canary\\|web\\.default\\.svc" in latency.canary_query
    assert r"[0-9]+\\|stable\\|web\\.default\\.svc" in latency.baseline_query


def test_no_judge_where_one_version_has_all_the_traffic() -> None:
    """An analysis step at 100% canary: stable has no samples, so the judge stays out."""
    d = doc(strategy={"canary": {"steps": [{"setWeight": 50}, {"analysis": {}},
                                           {"setWeight": 100}, {"analysis": {}}]}})
    plans = resolve_analysis(load(d), {}, MeshKind.ISTIO)
    assert [m.name for m in plans.steps[1]][-1] == "judge"
    assert "judge" not in [m.name for m in plans.steps[3]]


def test_a_blue_green_rollout_cannot_have_a_judge() -> None:
    d = doc(strategy={"blueGreen": {"autoPromotionSeconds": 0}})
    assert any(p.startswith("spec.judge: compares a canary with stable while both serve "
                            "traffic; blue-green serves one version at a time")
               for p in problems(d))


def test_user_metrics_are_rendered_for_both_versions_on_the_local_mesh() -> None:
    d = doc({"metrics": [{"name": "rps", "direction": "lower-is-worse",
                          "query": 'sum(rate(envoy_cluster_upstream_rq_total{envoy_cluster_name='
                                   '"{{cluster}}"}[{{window}}]))'}]})
    judge = resolve_analysis(load(d), {}, MeshKind.ENVOY).steps[1][-1].judge
    assert judge is not None
    rps = judge.metrics[2]
    assert rps.direction is Direction.LOWER_IS_WORSE
    assert 'envoy_cluster_name="canary"}[10s]' in rps.canary_query
    assert 'envoy_cluster_name="stable"}[10s]' in rps.baseline_query
    assert rps.field == "spec.judge.metrics[0].query"


def test_a_user_query_that_cannot_be_rendered_is_named() -> None:
    d = doc({"metrics": [{"name": "rps", "query": "sum(x{a={{workload}}})"}]})
    with pytest.raises(InvalidSpec) as exc:
        resolve_analysis(load(d), {}, MeshKind.ISTIO)
    assert str(exc.value).startswith("spec.judge.metrics[0].query: variable 'workload'")


def test_the_plan_shows_the_judge_among_the_step_metrics() -> None:
    rollout = load(doc())
    plan = rollout_plan(rollout, resolve_analysis(rollout, {}, MeshKind.ISTIO),
                        backend_of(rollout))
    gate = next(g for g in plan["steps"][1]["gates"] if g["type"] == "analysis")
    judge = next(m for m in gate["metrics"] if m["name"] == "judge")
    assert judge["successCondition"] == "result >= 95"
    assert judge["failureCondition"] == "result < 75"
    assert judge["judge"]["baseline"] == "stable"
    assert judge["judge"]["lookback"] == "2m" and judge["judge"]["minSamples"] == 10
    assert [m["name"] for m in judge["judge"]["metrics"]] == ["latency", "error-ratio"]


# -- the engine acting on the score ------------------------------------------------------


def judged(score: float) -> Judged:
    verdict = JudgeVerdict.PASS if score >= 95 else (
        JudgeVerdict.MARGINAL if score >= 75 else JudgeVerdict.FAIL)
    latency = JudgedMetric("latency", JudgeVerdict.PASS if score >= 75 else JudgeVerdict.FAIL,
                           p_value=1e-9 if score < 75 else 0.4, effect_size=0.3 if score < 75 else 0.0,
                           canary_mean=26.0, baseline_mean=20.0, canary_samples=12, baseline_samples=12)
    return Judged(score, Judgement(verdict, score, "stable", (latency,)))


def sim_with_judge(score: float, **judge: Any) -> Sim:
    rollout = load(doc(judge))
    plans = resolve_analysis(rollout, {}, MeshKind.ISTIO)

    def metric(run: str, name: str) -> Measurement:
        return judged(score) if name == "judge" else Value(0.99999 if "avail" in name else 10.0)

    return Sim(rollout.spec, analysis=plans, metric=metric, restart_every_pass=True)


def test_a_passing_judge_promotes() -> None:
    sim = sim_with_judge(100.0).run()
    assert sim.status.phase is Phase.HEALTHY


def test_a_failing_judge_rolls_back_naming_the_judge_and_its_numbers() -> None:
    sim = sim_with_judge(50.0).run()

    assert sim.status.phase is Phase.DEGRADED
    assert sim.status.abort is not None and sim.status.abort.reason == "AnalysisFailed"
    assert "judge: 1 of 1 measurements failed" in sim.status.abort.message
    assert "latency Fail (+30.0%, p=1e-09)" in sim.status.abort.message
    run = next(r for r in sim.status.analysis if r.name == "step-1")
    record = next(m for m in run.metrics if m.name == "judge").measurements[-1]
    assert record.judgement is not None and record.judgement.score == 50.0
    assert record.judgement.metrics[0].p_value == 1e-9
    # the judgement survives the status's round trip (the controller restarts every pass)
    assert RolloutStatus.from_json(sim.status.to_json()) == sim.status


def test_a_marginal_judge_pauses_for_a_human() -> None:
    sim = sim_with_judge(80.0).run()

    assert sim.status.phase is Phase.PAUSED
    assert sim.status.pause_reason == "InconclusiveAnalysis"
    assert "80 meets neither condition: judge Marginal, score 80" in sim.status.message


# -- the status view, the CLI and the gRPC message ---------------------------------------


def test_status_and_the_grpc_view_carry_the_judgement() -> None:
    from meshctl.api.messages import from_message, to_message
    from meshctl.cli.rollouts import view_text
    from meshctl.ops.views import view_of

    sim = sim_with_judge(50.0).run()
    obj = {"metadata": {"name": "web", "namespace": "shop"}, "spec": doc()["spec"],
           "status": sim.status.to_json()}

    view = view_of(obj)

    j = view.judgement
    assert j is not None and j.run == "step-1" and j.verdict == "Fail" and j.score == 50.0
    assert j.baseline == "stable"
    assert [(m.name, m.verdict, m.p_value, m.effect_size) for m in j.metrics] == [
        ("latency", "Fail", 1e-9, 0.3)]
    assert view.to_json()["judgement"]["metrics"][0]["pValue"] == 1e-9
    assert "Judge:    Fail, score 50 against stable (step-1): latency Fail +30.0% p=1e-09" \
        in view_text(view)
    assert from_message(to_message(view)) == view
