"""`meshctl rollout ...` in process (click's CliRunner) against the real API server, with the
real controller acting on what the CLI records, and on the local mesh: every command and
every exit code a pipeline or a person on call relies on."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from meshctl.adapters.files import dump_yaml
from meshctl.cli.main import cli

from .cluster_world import rollout
from .running_controller import RunningController

STAMPED = re.compile(r"^\d\d:\d\d:\d\d \S+/web ", re.M)  # a progress line: time, rollout


class CLI:
    def __init__(self, controller: RunningController, tmp_path: Path) -> None:
        self.c, self.tmp_path = controller, tmp_path

    def __call__(self, *args: str) -> Result:
        base = ["--kubeconfig", self.c.kubeconfig, "-n", self.c.ns]
        return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)

    def file(self, image: str, steps: list[dict[str, Any]], **spec: Any) -> str:
        path = self.tmp_path / f"rollout-{image.replace(':', '-')}.yaml"
        doc = rollout(self.c.ns, image, steps, **spec)
        del doc["metadata"]["namespace"]  # taken from -n, as a pipeline's file would be
        path.write_text(dump_yaml(doc))
        return str(path)


@pytest.fixture
def run(kube, cluster, namespace, istio_metrics, tmp_path) -> Iterator[CLI]:
    exporter, url = istio_metrics
    exporter.set(namespace, "web", "web-canary", rps=40, error_rate=0.0, latency_ms=5)
    with RunningController(kube, namespace, url) as controller:
        yield CLI(controller, tmp_path)


def one_line(text: str) -> str:
    """The one error line (a 'hint:' line may follow it)."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("hint: ")]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@pytest.mark.kube
@pytest.mark.cluster
@pytest.mark.prometheus
def test_a_healthy_rollout_with_wait_exits_0_and_the_new_version_is_stable(run):
    result = run("rollout", "start", "web", "--image", "web:2", "--wait", "--timeout", "90s")
    assert result.exit_code == 0, result.stderr
    assert STAMPED.search(result.stderr), result.stderr  # plain timestamped progress lines
    assert "stable/canary 75/25" in result.stderr and "availability=" in result.stderr
    assert f"rollout {run.c.ns}/web is Healthy" in result.stderr
    assert run.c.weights() == {"stable": 100, "canary": 0}
    assert run.c.image("web") == "web:2"

    shown = json.loads(run("-o", "json", "rollout", "status", "web").stdout)
    assert shown["phase"] == "Healthy" and shown["image"] == "web:2"
    assert shown["weights"] == {"stable": 100, "canary": 0}
    # no istiod in this world (the controller trusts stored weights): never shown as observed
    assert shown["observedWeights"] is None
    assert shown["notObserved"].startswith("stored, not observed")
    assert shown["step"] == shown["totalSteps"] == 3
    assert {m["metric"] for m in shown["measurements"]} >= {"availability", "latency-p95"}

    table = run("rollout", "status", "web").stdout
    assert "Phase:    Healthy" in table and "stable/canary 100/0" in table

    listed = run("rollout", "list")
    assert listed.exit_code == 0
    assert re.search(rf"{run.c.ns}\s+web\s+Healthy\s+3/3\s+100/0\s+web:2", listed.stdout)

    history = json.loads(run("-o", "json", "rollout", "history", "web").stdout)
    assert {"role": "previous", "image": "web:1"}.items() <= history["revisions"][-1].items()
    reasons = [e["reason"] for e in history["events"]]
    assert reasons.index("RolloutStarted") < reasons.index("RolloutCompleted")
    assert run("-o", "yaml", "rollout", "status", "web").stdout.startswith("name: web")

    # the report: the weight line from the events, each SLO metric with its threshold
    line = json.loads(run("-o", "json", "rollout", "report", "web", "--prometheus",
                          run.c.prometheus_url).stdout)
    assert 25.0 in [p[1] for p in line["written"]] and line["written"][-1][1] == 0.0
    limits = {m["name"]: m["threshold"] for m in line["metrics"]}
    assert limits["availability"] is not None and limits["latency-p95"] is not None
    ranged = [p for m in line["metrics"] for p in m["points"] if p[2] == ""]
    assert ranged  # Prometheus filled the lines between the judged measurements
    assert {"step", "event"} <= {m["kind"] for m in line["marks"]}
    page = run.tmp_path / "report.html"
    assert run("-o", "html", "rollout", "report", "web", "--to", str(page)).exit_code == 0
    assert f"{run.c.ns}/web" in page.read_text()


@pytest.mark.kube
@pytest.mark.cluster
@pytest.mark.prometheus
def test_a_failing_rollout_exits_1_after_the_automatic_rollback_and_retry_starts_again(
        run, istio_metrics):
    exporter, _ = istio_metrics
    exporter.set(run.c.ns, "web", "web-canary", error_rate=0.2)
    result = run("rollout", "start", "web", "--image", "web:3", "--wait", "--timeout", "90")
    assert result.exit_code == 1, result.stderr
    assert "was rolled back (AnalysisFailed)" in result.stderr
    assert run.c.weights() == {"stable": 100, "canary": 0}
    assert run.c.image("web") == "web:1"

    exporter.set(run.c.ns, "web", "web-canary", error_rate=0.0)
    assert run("rollout", "retry", "web").exit_code == 0
    watched = run("rollout", "status", "web", "--watch", "--timeout", "90")
    assert watched.exit_code == 0, watched.stderr
    assert run.c.image("web") == "web:3"


@pytest.mark.kube
@pytest.mark.cluster
@pytest.mark.prometheus
def test_an_indefinite_pause_exits_4_and_promote_lets_it_finish(run):
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}]
    result = run("rollout", "start", "-f", run.file("web:4", steps), "--wait", "--timeout", "60")
    assert result.exit_code == 4, result.stderr
    assert "paused waiting for a person (PausedAtStep)" in result.stderr
    assert run.c.weights() == {"stable": 80, "canary": 20}

    promoted = run("rollout", "promote", "web")
    assert promoted.exit_code == 0
    assert promoted.stdout.startswith(f"promote requested for {run.c.ns}/web")
    watched = run("rollout", "status", "web", "--watch", "--timeout", "60")
    assert watched.exit_code == 0, watched.stderr
    assert run.c.image("web") == "web:4"


@pytest.mark.kube
@pytest.mark.cluster
@pytest.mark.prometheus
def test_a_timeout_exits_3_and_abort_brings_traffic_back_to_stable(run):
    steps = [{"setWeight": 10}, {"pause": {"duration": "1h"}}, {"setWeight": 60}]
    result = run("rollout", "start", "web", "-f", run.file("web:5", steps), "--wait",
                 "--timeout", "4s")
    assert result.exit_code == 3, result.stderr
    assert "did not finish in time" in result.stderr

    aborted = run("-o", "json", "rollout", "abort", "web")
    assert aborted.exit_code == 0
    assert json.loads(aborted.stdout)["action"] == "abort"
    watched = run("rollout", "status", "web", "--watch", "--timeout", "30")
    assert watched.exit_code == 1, watched.stderr
    assert run.c.weights() == {"stable": 100, "canary": 0}
    assert run.c.rollout()["status"]["abort"]["reason"] == "UserAbort"


@pytest.mark.kube
@pytest.mark.cluster
@pytest.mark.prometheus
def test_pause_exits_4_on_watch_and_resume_continues(run):
    steps = [{"setWeight": 10}, {"pause": {"duration": "3s"}}, {"setWeight": 40},
             {"pause": {"duration": "3s"}}]
    run("rollout", "start", "-f", run.file("web:6", steps))
    run.c.wait_for(lambda o: (o.get("status") or {}).get("currentStep") == 1, what="step 1")
    assert run("rollout", "pause", "web").exit_code == 0
    watched = run("rollout", "status", "web", "--watch", "--timeout", "30")
    assert watched.exit_code == 4, watched.stderr
    assert "(UserPaused)" in watched.stderr
    assert run.c.rollout()["spec"]["paused"] is True

    assert run("rollout", "resume", "web").exit_code == 0
    assert run.c.rollout()["spec"]["paused"] is False
    watched = run("rollout", "status", "web", "--watch", "--timeout", "60")
    assert watched.exit_code == 0, watched.stderr


@pytest.mark.kube
@pytest.mark.cluster
@pytest.mark.prometheus
def test_undo_goes_back_to_the_template_before_the_last_start(run):
    assert run("rollout", "start", "web", "--image", "web:7", "--wait").exit_code == 0
    undone = run("rollout", "undo", "web", "--wait", "--timeout", "90")
    assert undone.exit_code == 0, undone.stderr
    assert run.c.image("web") == "web:1"
    assert run.c.rollout()["spec"]["template"]["spec"]["containers"][0]["image"] == "web:1"


@pytest.mark.kube
@pytest.mark.cluster
@pytest.mark.prometheus
def test_wrong_requests_exit_2_with_one_line_and_write_nothing(run):
    before = run.c.rollout()
    bad = run.tmp_path / "bad.yaml"
    doc = rollout(run.c.ns, "web:9", [{"setWeight": 50}, {"setWeight": 20}])
    bad.write_text(dump_yaml(doc))
    result = run("rollout", "start", "-f", str(bad), "--wait")
    assert result.exit_code == 2
    assert "setWeight" in one_line(result.stderr)
    assert run("rollout", "start", "web", "--image", "web 9").exit_code == 2
    assert run.c.rollout()["spec"] == before["spec"]

    missing = run("rollout", "status", "nope")
    assert missing.exit_code == 2 and "not found" in one_line(missing.stderr)
    retry = run("rollout", "retry", "web")
    assert retry.exit_code == 2
    assert "cannot retry" in one_line(retry.stderr) and "it is Healthy" in retry.stderr
    undo = run("rollout", "undo", "web")
    assert undo.exit_code == 2 and "no previous template" in one_line(undo.stderr)
    both = run("rollout", "start", "web", "--image", "a:1", "-f", str(bad))
    assert both.exit_code == 2 and "exactly one of" in one_line(both.stderr)


@pytest.mark.kube
@pytest.mark.cluster
@pytest.mark.prometheus
def test_a_spec_the_controller_finds_invalid_exits_2_with_its_reason(run):
    """Valid on its own, invalid against the cluster (a route the VirtualService lacks):
    the controller marks InvalidSpec and touches nothing; --wait reports it and exits 2."""
    doc = run.file("web:8", [{"setWeight": 50}],
                   trafficRouting={"istio": {"virtualService": {"name": "web", "routes": ["nope"]},
                                             "destinationRule": {"name": "web",
                                                                 "stableSubset": "stable",
                                                                 "canarySubset": "canary"}}})
    before = run.c.driver.vs()["spec"]
    result = run("rollout", "start", "-f", doc, "--wait", "--timeout", "30")
    assert result.exit_code == 2, result.stderr
    assert "has an invalid spec" in result.stderr and "route 'nope'" in result.stderr
    assert run.c.driver.vs()["spec"] == before
    assert run.c.driver.deployment("web-canary") is None


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("args", [["rollout", "status", "web"], ["rollout", "list"],
                                  ["rollout", "abort", "web"],
                                  ["rollout", "start", "web", "--image", "web:2", "--wait"]])
def test_an_unreachable_api_server_exits_5_with_one_line(tmp_path, args):
    config = tmp_path / "kubeconfig"
    config.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": f"https://127.0.0.1:{closed_port()}",
                                                  "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u",
                                                  "namespace": "shop"}}]}))
    result = CliRunner().invoke(cli, ["--kubeconfig", str(config), *args])
    assert result.exit_code == 5, result.output
    assert one_line(result.stderr).startswith("error: cannot reach the cluster:")


def test_a_missing_kubeconfig_exits_5_with_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["--kubeconfig", str(tmp_path / "none"),
                                      "rollout", "status", "web"])
    assert result.exit_code == 5
    assert "cannot reach the cluster" in one_line(result.stderr)


# --- the local mesh ------------------------------------------------------------------------


@pytest.mark.envoy
@pytest.mark.prometheus
def test_a_local_run_pauses_with_4_and_promote_through_the_state_dir_finishes_it(tmp_path):
    from .conftest import servers_unavailable

    app = ["python", "-m", "meshctl.localmesh.app", "--port", "{port}", "--version"]
    doc = {"apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
           "spec": {"service": "web", "local": {"stable": {"command": [*app, "v1"]},
                                                "canary": {"command": [*app, "v2"]}},
                    "strategy": {"canary": {"steps": [{"setWeight": 30}, {"pause": {}},
                                                      {"setWeight": 60}]}}}}
    path = tmp_path / "web.yaml"
    path.write_text(dump_yaml(doc))
    state = str(tmp_path / "state")
    runner = CliRunner()

    def meshctl(*args: str) -> Result:
        return runner.invoke(cli, list(args), catch_exceptions=False)

    first = meshctl("rollout", "run", "-f", str(path), "--state-dir", state, "--load", "0",
                    "--timeout", "60")
    if first.exit_code != 4 and "envoy" in first.stderr.lower():
        servers_unavailable(first.stderr)
    assert first.exit_code == 4, first.stderr
    shown = json.loads(meshctl("-o", "json", "rollout", "status", "web", "--state-dir", state).stdout)
    assert (shown["phase"], shown["pauseReason"]) == ("Paused", "PausedAtStep")
    assert shown["weights"] == {"stable": 70, "canary": 30}
    listed = meshctl("rollout", "list", "--state-dir", state)
    assert re.search(r"default\s+web\s+Paused\s+1\s+70/30", listed.stdout), listed.stdout

    assert meshctl("rollout", "pause", "web", "--state-dir", state).exit_code == 2
    assert meshctl("rollout", "promote", "web", "--state-dir", state).exit_code == 0
    second = meshctl("rollout", "run", "-f", str(path), "--state-dir", state, "--load", "0",
                     "--timeout", "60")
    assert second.exit_code == 0, second.stderr
    watched = meshctl("rollout", "status", "web", "--state-dir", state, "--watch")
    assert watched.exit_code == 0 and "is Healthy" in watched.stderr
