"""Every rendered query asked of a real Prometheus: ``meshctl lint --prometheus-url`` and the
controller refuse a query Prometheus rejects, naming the metric's field path and quoting
Prometheus's own message; a query it accepts passes; an unreachable Prometheus is exit 5."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from meshctl.adapters.files import dump_all, parse_documents
from meshctl.adapters.prometheus import PrometheusProvider
from meshctl.cli.main import cli
from meshctl.domain.measurements import Unavailable
from meshctl.domain.resolve import resolve_analysis
from meshctl.domain.routers.backend import MeshKind
from meshctl.domain.spec import GROUP, VERSION, Rollout
from meshctl.domain.validation import load_document
from meshctl.localmesh.procs import free_port
from meshctl.ops.query_checks import QueryReport, check_queries

from .cluster_world import ADMIN_ROUTE, Driver, rollout
from .conftest import running_prometheus

pytestmark = [pytest.mark.prometheus]

EXAMPLE = Path("rollouts/custom-analysis.yaml")
# Prometheus's own words for a missing parenthesis
PARSE_ERROR = "parse error: unclosed left parenthesis"
BROKEN = 'sum(rate(istio_requests_total{destination_workload="{{args.workload}}"}[2m])'
TEMPLATE_FIELD = ("spec.strategy.canary.steps[1].analysis.templates[0] (AnalysisTemplate "
                  "error-budget: spec.metrics[1].provider.prometheus.query)")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus with nothing to scrape: it parses and runs queries."""
    with running_prometheus([], tmp_path_factory.mktemp("prometheus")) as url:
        yield url


def example_documents() -> list[dict[str, Any]]:
    return [d.body for d in parse_documents(EXAMPLE.read_text())]


def with_broken_query(tmp_path: Path) -> Path:
    docs = example_documents()
    docs[0]["spec"]["metrics"][1]["provider"]["prometheus"]["query"] = BROKEN
    path = tmp_path / "broken.yaml"
    path.write_text(dump_all(docs))
    return path


def lint(*args: str) -> Any:
    return CliRunner().invoke(cli, ["lint", *args])


def test_lint_accepts_queries_prometheus_parses(prometheus: str) -> None:
    result = lint("--prometheus-url", prometheus, str(EXAMPLE), "rollouts/local-demo.yaml",
                  "rollouts/judged-canary.yaml")

    assert result.exit_code == 0, result.output
    assert "document(s) valid" in result.output


def test_the_judges_queries_are_checked_too(prometheus: str, tmp_path: Path) -> None:
    """The judge's built-ins for each version (here from the proxies' own Envoy stats) and a
    metric of the user's, whose broken query is named by its field."""
    docs = [d.body for d in parse_documents(Path("rollouts/judged-canary.yaml").read_text())]
    docs[1]["spec"]["slo"] = {"metrics": "envoy"}
    docs[1]["spec"]["judge"]["metrics"][0]["query"] = "rate(x[{{window}}]"
    path = tmp_path / "judged.yaml"
    path.write_text(dump_all(docs))

    result = lint("--prometheus-url", prometheus, str(path))

    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines  # the built-ins parse, for the canary and for stable
    assert lines[0].startswith(f"error: {path}#2: spec.judge.metrics[0].query: Prometheus "
                               "rejects the query of metric 'judge': HTTP 400: bad_data: ")


def test_lint_refuses_a_query_prometheus_rejects_with_its_field_and_message(
        prometheus: str, tmp_path: Path) -> None:
    broken = with_broken_query(tmp_path)

    result = lint("--prometheus-url", prometheus, str(broken))

    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    # two analysis steps render the same query: it is asked, and named, once
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {broken}#2: {TEMPLATE_FIELD}: Prometheus rejects the "
                               "query of metric 'latency-p99': HTTP 400: bad_data: ")
    assert PARSE_ERROR in lines[0]


def test_lint_without_the_url_does_not_ask(tmp_path: Path) -> None:
    assert lint(str(with_broken_query(tmp_path))).exit_code == 0


def test_lint_cannot_check_against_an_unreachable_prometheus(tmp_path: Path) -> None:
    result = lint("--prometheus-url", f"http://127.0.0.1:{free_port()}", str(EXAMPLE))

    assert result.exit_code == 5, result.output
    assert "Prometheus http://127.0.0.1:" in result.stderr
    assert "does not answer" in result.stderr


@pytest.mark.kube
def test_the_controller_marks_a_rejected_query_invalid_and_writes_nothing(
        kube: Any, namespace: str, prometheus: str) -> None:
    template = copy.deepcopy(example_documents()[0])
    template["metadata"]["namespace"] = namespace
    template["spec"]["metrics"][1]["provider"]["prometheus"]["query"] = BROKEN
    steps = [{"setWeight": 20}, {"analysis": {
        "templates": [{"templateName": "error-budget"}],
        "args": [{"name": "service", "value": "web"}, {"name": "workload", "value": "web-canary"}]}}]
    kube.apply([
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": "web", "namespace": namespace},
         "spec": {"hosts": ["web"], "http": [ADMIN_ROUTE, {"name": "primary", "route": [
             {"destination": {"host": "web", "subset": "stable"}}]}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": "web", "namespace": namespace},
         "spec": {"host": "web", "subsets": [{"name": "stable", "labels": {"app": "web"}},
                                             {"name": "canary", "labels": {"app": "web"}}]}},
        template,
    ])
    driver = Driver(kube, namespace, prometheus)
    driver.kube.create(GROUP, VERSION, namespace, "rollouts", rollout(namespace, "web:2", steps))
    vs_before = driver.vs()

    outcome = driver.once()

    field = TEMPLATE_FIELD
    assert outcome.problems and outcome.problems[0].startswith(f"{field}: Prometheus rejects")
    condition = next(c for c in driver.get()["status"]["conditions"] if c["type"] == "InvalidSpec")
    assert condition["status"] == "True"
    assert PARSE_ERROR in condition["message"] and field in condition["message"]
    assert driver.vs()["spec"] == vs_before["spec"]
    assert driver.deployment("web-canary") is None


def test_a_prometheus_that_never_answers_is_not_asked_again_for_a_while(silent_server):
    """The controller keeps one provider per Prometheus: once it gave no answer within a
    timeout, checks and measurements say so at once until its hold is over, instead of each
    waiting its own timeout (every pass of every Rollout, an abort's included).
    Connections are counted at the hung server."""
    found = load_document(rollout("shop", "web:2", [{"setWeight": 20}, {"analysis": {}}]))
    assert isinstance(found, Rollout)
    plans = resolve_analysis(found, {}, MeshKind.ISTIO)
    clock = [1000.0]
    provider = PrometheusProvider(f"http://127.0.0.1:{silent_server.port}", down_hold=5.0,
                                  clock=lambda: clock[0])

    def check() -> QueryReport:
        return check_queries(plans, lambda address: provider, datetime.now(UTC), set(),
                             timeout=0.5)

    try:
        first = check()
        asked = len(silent_server.accepted)
        assert first.unreachable and not first.problems and asked >= 1
        again = check()
        assert "not asked again" in again.unreachable and not again.problems
        measured = provider.measure("up", 0.5)
        assert isinstance(measured, Unavailable) and "did not answer" in measured.reason
        assert len(silent_server.accepted) == asked
        clock[0] += 5.0
        assert check().unreachable
        assert len(silent_server.accepted) > asked  # asked again once the hold is over
    finally:
        provider.close()
