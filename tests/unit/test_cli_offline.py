"""`meshctl lint` and `meshctl rollout plan`, in process, on files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from meshctl.adapters.files import dump_yaml
from meshctl.cli.main import cli
from meshctl.domain.crds import crds
from meshctl.ops.manifests import render

from .test_validation import BASE, STEPS, with_


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def test_lint_accepts_valid_files():
    result = run("lint", "rollouts/canary-subsets.yaml", "rollouts/blue-green.yaml")
    assert result.exit_code == 0, result.output
    assert "2 document(s) valid" in result.output


def test_the_fresh_baseline_example_lints_and_plans_a_three_way_split():
    assert run("lint", "rollouts/fresh-baseline.yaml").exit_code == 0
    result = run("-o", "json", "rollout", "plan", "-f", "rollouts/fresh-baseline.yaml")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert [tuple(s["weights"].values()) for s in plan["steps"][::2]] == [
        (80, 10, 10), (50, 25, 25), (20, 40, 40)]
    vs = next(o for o in plan["steps"][0]["objects"] if o["kind"] == "VirtualService")
    assert [d["destination"]["subset"] for d in vs["spec"]["http"][0]["route"]] == [
        "stable", "canary", "baseline"]
    judge = next(m for m in plan["steps"][1]["gates"][0]["metrics"] if m["name"] == "judge")
    assert judge["judge"]["baseline"] == "fresh"
    assert 'destination_workload="cart-baseline"' in judge["judge"]["metrics"][0]["baselineQuery"]
    text = run("rollout", "plan", "-f", "rollouts/fresh-baseline.yaml").stdout
    assert "STABLE/CANARY/BASELINE" in text and "80/10/10" in text


def test_lint_reports_one_line_per_problem_with_file_and_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    doc = with_(f"{STEPS}.0.setWeight", 120)
    doc["spec"]["strategy"]["canary"]["steps"][1] = {"pase": {}}
    bad.write_text(dump_yaml(doc))
    result = run("lint", str(bad), "rollouts/blue-green.yaml")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: {bad}: spec.strategy.canary.steps[0].setWeight: 120 is above 100; use 100 or less",
        f"error: {bad}: spec.strategy.canary.steps[1].pase: unknown field; did you mean pause?",
    ]


@pytest.mark.parametrize("text, fragment", [
    ("spec: [unclosed", "-:2:1: YAML syntax error: "),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "kind: must be Rollout or AnalysisTemplate"),
    ("- just\n- a list\n", "not a Rollout or AnalysisTemplate document"),
])
def test_lint_reads_stdin_and_never_shows_a_traceback(text, fragment):
    result = run("lint", "-", input=text)
    assert result.exit_code == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_lint_of_a_missing_file_is_one_line():
    result = run("lint", "no/such/file.yaml")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: no/such/file.yaml: cannot read: No such file or directory"


def test_plan_json_has_the_documented_shape():
    result = run("-o", "json", "rollout", "plan", "-f", "rollouts/canary-subsets.yaml")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["rollout"] == {"name": "checkout", "namespace": "shop"}
    assert plan["strategy"] == "canary"
    assert [s["weights"]["canary"] for s in plan["steps"]] == [10, 10, 25, 25, 25, 50, 50, 100]
    first = plan["steps"][0]
    assert set(first) >= {"index", "kind", "weights", "gates", "objects"}
    vs = next(o for o in first["objects"] if o["kind"] == "VirtualService")
    assert vs["spec"]["http"][0]["route"] == [
        {"destination": {"host": "checkout", "subset": "stable"}, "weight": 90},
        {"destination": {"host": "checkout", "subset": "canary"}, "weight": 10},
    ]
    dr = next(o for o in first["objects"] if o["kind"] == "DestinationRule")
    assert [s["name"] for s in dr["spec"]["subsets"]] == ["stable", "canary"]
    analysis = plan["steps"][1]["gates"][0]
    assert analysis["type"] == "analysis"
    latency = analysis["metrics"][0]
    assert latency["successCondition"] == "result < 50"
    assert 'destination_workload="checkout-canary"' in latency["query"]
    assert ">= 50" in latency["query"]  # minRequests guard: too little traffic is no data


def test_plan_of_blue_green_lists_its_stages():
    result = run("-o", "json", "rollout", "plan", "-f", "rollouts/blue-green.yaml")
    plan = json.loads(result.stdout)
    assert [s["kind"] for s in plan["steps"]] == [
        "preview", "prePromotionAnalysis", "cutover", "postPromotionAnalysis", "scaleDown"]
    assert [s["weights"]["canary"] for s in plan["steps"]] == [0, 0, 100, 100, 100]
    preview_vs = plan["steps"][0]["objects"][1]
    assert preview_vs["spec"]["http"][0]["match"] == [{"headers": {"x-preview": {"exact": "1"}}}]


def test_plan_resolves_template_args_escaped():
    result = run("-o", "yaml", "rollout", "plan", "-f", "rollouts/custom-analysis.yaml")
    assert result.exit_code == 0, result.output
    assert 'destination_workload=\\"cart-canary\\"' in result.stdout or \
        'destination_workload="cart-canary"' in result.stdout


def test_plan_with_a_missing_template_names_it(tmp_path):
    doc = with_(f"{STEPS}.1", {"analysis": {"templates": [{"templateName": "nope"}]}})
    path = tmp_path / "r.yaml"
    path.write_text(dump_yaml(doc))
    result = run("rollout", "plan", "-f", str(path))
    assert result.exit_code == 2
    assert "spec.strategy.canary.steps[1].analysis.templates[0].templateName: " \
           "AnalysisTemplate 'nope' not found" in result.stderr


def test_plan_rejects_arg_values_that_would_change_the_query(tmp_path):
    text = Path("rollouts/custom-analysis.yaml").read_text().replace(
        "{name: service, value: cart}", "{name: service, value: \"cart\\n\"}", 1)
    path = tmp_path / "r.yaml"
    path.write_text(text)
    result = run("rollout", "plan", "-f", str(path))
    assert result.exit_code == 2
    assert "analysis.args[0].value: 'cart\\n' holds control or bidirectional characters" \
        in result.stderr


def test_crd_manifests_are_generated_from_the_model():
    """`make crds` output is committed; this fails when the model and the files differ."""
    for name, text in render().items():
        assert Path(f"manifests/crds/{name}").read_text() == text, f"run make crds ({name} is stale)"
        assert Path(f"manifests/helm/meshctl/crds/{name}").read_text() == text, "run make crds"
    assert crds()["rollouts.yaml"]["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_help_lists_the_exit_codes():
    result = run("--help")
    assert result.exit_code == 0
    assert "4 paused waiting for a human" in result.output
    assert BASE  # the shared fixture module imported cleanly


def test_the_kustomization_lists_existing_manifests():
    import yaml

    kustomization = yaml.safe_load(Path("manifests/kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert Path("manifests", resource).is_file(), resource
    deployment = yaml.safe_load(Path("manifests/controller/deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "meshctl-controller"


@pytest.mark.parametrize("command", [("lint",), ("rollout", "plan", "-f"), ("policy", "plan", "-f")])
def test_an_allow_rule_without_callers_is_refused_by_every_entry_point(tmp_path, command):
    doc = with_("spec.security", {"allow": [{"from": [{}], "methods": ["GET"]}]})
    path = tmp_path / "r.yaml"
    path.write_text(dump_yaml(doc))
    result = run(*command, str(path))
    assert result.exit_code == 2, result.output
    assert "spec.security.allow[0].from[0]: set namespace, serviceAccount or both" in result.stderr


def test_the_controller_will_not_start_without_saying_where_weights_are_observed():
    """No istiod and no explicit --trust-stored-weights: exit 2, one line naming both."""
    result = run("controller", "run", "--prometheus-url", "http://127.0.0.1:9")
    assert result.exit_code == 2
    assert "--istiod-debug-url is required" in result.output
    assert "--trust-stored-weights" in result.output
    both = run("controller", "run", "--prometheus-url", "http://127.0.0.1:9",
               "--istiod-debug-url", "http://istiod:15014", "--trust-stored-weights")
    assert both.exit_code == 2 and "exclude each other" in both.output
