"""The dashboard's rows, the report's HTML and the dashboard's HTTP rules (a real server on
the loopback address over a local run's state files)."""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from meshctl.cli.main import cli
from meshctl.domain.engine import Event
from meshctl.domain.phases import Phase
from meshctl.domain.status import (
    AnalysisRunStatus,
    MeasurementRecord,
    MetricStatus,
    Outcome,
    RolloutStatus,
    WeightPair,
    WeightsStatus,
)
from meshctl.domain.timeline import timeline
from meshctl.ops.demo import demo_rollout
from meshctl.ops.rollouts import LocalRollouts
from meshctl.ops.state import (
    FileStatusStore,
    approvals_path,
    read_approvals,
    read_intents,
    state_paths,
)
from meshctl.ops.views import MeasurementView, RolloutView
from meshctl.web.dashboard import COOKIE, Dashboard, actions_for, gates, row_of, server, slo_status
from meshctl.web.report import report, script_json

NOW = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)


def measured(*outcomes: str) -> RolloutView:
    return RolloutView("web", "demo", "Progressing", measurements=tuple(
        MeasurementView(f"m{i}", "step-1", 1.0, o, "") for i, o in enumerate(outcomes)))


@pytest.mark.parametrize(("view", "expected"), [
    (measured(), "-"),  # nothing measured yet
    (measured("Successful", "Successful"), "ok"),
    (measured("Successful", "Inconclusive"), "no data"),  # no data is not zero
    (measured("Error", "Failed"), "failing"),  # a failure outweighs the rest
])
def test_slo_status_is_the_worst_newest_outcome(view: RolloutView, expected: str) -> None:
    assert slo_status(view) == expected


def test_a_failing_judgement_is_failing_whatever_the_measurements() -> None:
    from dataclasses import replace

    from meshctl.ops.views import JudgementView

    failing = JudgementView("judge", "", "Fail", 0.2, "stable")
    assert slo_status(replace(measured("Successful"), judgement=failing)) == "failing"
    passing = JudgementView("judge", "", "Pass", 0.9, "stable")
    assert slo_status(replace(measured(), judgement=passing)) == "ok"


def test_gates_name_the_pause_and_requests_not_acted_on() -> None:
    view = RolloutView("web", "demo", "Paused", pause_reason="AwaitingPromotion",
                       pending_intents=("promote",))
    assert gates(view) == "AwaitingPromotion, promote requested"
    assert gates(RolloutView("web", "demo", "Progressing")) == ""
    gated = RolloutView("web", "demo", "Progressing", gates_waiting=("change-board (approval)",))
    assert gates(gated) == "gate change-board (approval)"


def test_actions_follow_the_engines_table() -> None:
    assert actions_for(RolloutView("web", "demo", "Progressing")) == ["promote", "abort", "pause"]
    degraded = actions_for(RolloutView("web", "demo", "Degraded"))
    assert "retry" in degraded and "abort" not in degraded
    assert "resume" in actions_for(RolloutView("web", "demo", "Paused", paused=True))


def test_approve_is_offered_while_an_approval_gate_waits() -> None:
    waiting = ("change-board (approval)",)
    assert actions_for(RolloutView("web", "demo", "Progressing", gates_waiting=waiting))[-1] \
        == "approve"
    assert "approve" in actions_for(RolloutView("web", "demo", "Paused", gates_waiting=waiting))
    assert "approve" not in actions_for(RolloutView("web", "demo", "Progressing",
                                                    gates_waiting=("risk (webhook)",)))
    assert "approve" not in actions_for(RolloutView("web", "demo", "Degraded",
                                                    gates_waiting=waiting))


def test_row_is_the_view_with_slo_gates_and_since() -> None:
    row = row_of(measured("Successful"))
    assert (row["name"], row["slo"], row["gates"], row["since"]) == ("web", "ok", "", "")


def test_script_json_cannot_close_its_script_element() -> None:
    text = script_json({"label": "</script><script>alert(1)</script>"})
    assert "</" not in text and json.loads(text)["label"].startswith("</script>")


def test_report_is_self_contained_and_escapes_what_it_shows() -> None:
    events = [Event("Warning", "AnalysisFailed", "<b>latency</b>")]
    from meshctl.domain.timeline import EventRecord

    line = timeline("demo", "web", RolloutStatus(), [EventRecord(NOW, e.type, e.reason, e.message)
                                                     for e in events], NOW)
    text = report([(line, None)], generated=NOW)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)  # nothing remote
    assert "default-src 'none'" in text  # and the browser is told to load nothing else
    assert "<td>AnalysisFailed: &lt;b&gt;latency&lt;/b&gt;</td>" in text
    assert "<b>latency</b></td>" not in text  # shown as text, never as markup
    assert "uPlot" in text and "MeshctlTimeline.renderReport" in text


# -- the HTTP server over a local run's files ---------------------------------------------


def seed(state: Path) -> None:
    """A local run of demo/web at step 2, 70/30 written, 90/10 seen, one latency sample."""
    store = FileStatusStore(state, demo_rollout("web", "127.0.0.1:1", "127.0.0.1:2"))
    store.save_thresholds({"latency-p95": (50.0, "result < 50")})
    metric = MetricStatus("latency-p95", measurements=(
        MeasurementRecord(NOW, Outcome.SUCCESSFUL, 12.0),))
    store.save(RolloutStatus(phase=Phase.PROGRESSING, current_step=2,
                             weights=WeightsStatus(70, 30, observed=WeightPair(90, 10)),
                             analysis=(AnalysisRunStatus("step-1", NOW, metrics=(metric,)),)))
    store.record([Event("Normal", "StepStarted", "step 2 (setWeight) started")])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, str, Path]]:
    seed(tmp_path)
    httpd = server(Dashboard(LocalRollouts(tmp_path), "s3cret", "demo"))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield httpd.server_address[1], "s3cret", tmp_path
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def call(port: int, method: str, path: str, headers: dict[str, str] | None = None
         ) -> tuple[int, Any, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        kind = resp.getheader("Content-Type") or ""
        value = json.loads(body) if kind.startswith("application/json") else body.decode()
        return resp.status, value, dict(resp.getheaders())
    finally:
        conn.close()


def test_pages_and_the_api_read_the_local_run(served: tuple[int, str, Path]) -> None:
    port, _, _ = served
    status, page, _ = call(port, "GET", "/")
    assert status == 200 and 'data-page="list"' in page and "<script>" not in page
    status, data, _ = call(port, "GET", "/api/rollouts")
    assert status == 200
    [row] = data["rollouts"]
    assert (row["name"], row["weights"], row["observedWeights"], row["slo"]) == (
        "web", {"stable": 70, "canary": 30}, {"stable": 90, "canary": 10}, "ok")
    status, one, _ = call(port, "GET", "/api/rollouts/demo/web")
    assert status == 200 and one["canAct"] is False
    assert one["timeline"]["metrics"][0]["threshold"] == 50.0
    assert call(port, "GET", "/api/rollouts/demo/nope")[0] == 404
    assert call(port, "GET", "/assets/vendor/uPlot.iife.min.js")[0] == 200
    assert call(port, "GET", "/assets/../../pyproject.toml")[0] == 404  # only named assets


def test_only_the_token_holder_may_act(served: tuple[int, str, Path]) -> None:
    """Without the cookie, or without the action header a cross-site form cannot send,
    an abort is refused and nothing is recorded; with both it is recorded once."""
    port, token, state = served
    _, intents_path = state_paths(state, "demo", "web")
    header = {"X-Meshctl-Action": "1"}
    cookie = {"Cookie": f"{COOKIE}={token}"}
    assert call(port, "POST", "/api/rollouts/demo/web/abort", header)[0] == 403
    assert call(port, "POST", "/api/rollouts/demo/web/abort", cookie)[0] == 403
    assert call(port, "POST", "/api/rollouts/demo/web/abort",
                {**header, "Cookie": f"{COOKIE}=guess"})[0] == 403
    assert read_intents(intents_path).abort is None
    status, body, _ = call(port, "POST", "/api/rollouts/demo/web/retry", {**header, **cookie})
    assert status == 409 and "Progressing" in body["error"]  # the phase gives it no meaning
    status, body, _ = call(port, "POST", "/api/rollouts/demo/web/abort", {**header, **cookie})
    assert status == 200 and body["action"] == "abort"
    assert read_intents(intents_path).abort is not None


def test_login_sets_the_cookie_only_for_the_right_token(served: tuple[int, str, Path]) -> None:
    port, token, _ = served
    assert call(port, "GET", "/login?token=wrong")[0] == 403
    status, _, headers = call(port, "GET", f"/login?token={token}")
    assert status == 303 and "HttpOnly" in headers["Set-Cookie"]
    assert "SameSite=Strict" in headers["Set-Cookie"]
    status, data, _ = call(port, "GET", "/api/session", {"Cookie": f"{COOKIE}={token}"})
    assert data == {"canAct": True}


def test_a_request_for_another_host_is_refused(served: tuple[int, str, Path]) -> None:
    port, _, _ = served
    assert call(port, "GET", "/api/rollouts", {"Host": f"evil.example:{port}"})[0] == 421


def test_a_read_only_dashboard_has_no_token_to_guess(tmp_path: Path) -> None:
    board = Dashboard(LocalRollouts(tmp_path), None)
    assert not board.may_act("") and not board.may_act("anything")


# -- the CLI -----------------------------------------------------------------------------


def test_rollout_report_writes_one_html_file(tmp_path: Path) -> None:
    seed(tmp_path)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["rollout", "report", "web", "-n", "demo", "--state-dir",
                                      str(tmp_path), "-o", "html", "--to", str(out)])
    assert result.exit_code == 0, result.output
    assert "Rollout</th><td>demo/web" in out.read_text()


def test_rollout_report_json_is_the_timeline(tmp_path: Path) -> None:
    seed(tmp_path)
    result = CliRunner().invoke(cli, ["rollout", "report", "web", "-n", "demo", "--state-dir",
                                      str(tmp_path), "-o", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["written"][-1][1] == 30.0


def test_html_output_is_only_for_reports(tmp_path: Path) -> None:
    seed(tmp_path)
    result = CliRunner().invoke(cli, ["rollout", "list", "--state-dir", str(tmp_path),
                                      "-o", "html"])
    assert result.exit_code != 0
    assert "-o html is for 'meshctl rollout report'" in result.output


# -- HTTPS with client certificates (the controller's way) --------------------------------


def test_over_https_the_client_certificate_decides(tmp_path: Path) -> None:
    """A reader's certificate reads and may not act; an operator's acts; a certificate of
    an identity not listed is refused; no certificate at all fails the handshake."""
    import ssl

    from meshctl.web.dashboard import Identities, ServeTLS
    from testworld.certs import CertificateAuthority

    seed(tmp_path)
    ca = CertificateAuthority()
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    cert, key = ca.issue("dashboard", dns=["localhost"], ips=["127.0.0.1"],
                         server=True).write(tmp_path / "server")
    who = {name: ca.issue(name, uris=[f"spiffe://cluster.local/ns/ops/sa/{name}"]).write(
        tmp_path / name) for name in ("oncall", "viewer", "stranger")}
    board = Dashboard(LocalRollouts(tmp_path), None, "demo", identities=Identities(
        frozenset({"viewer"}), frozenset({"spiffe://cluster.local/ns/ops/sa/oncall"})))
    httpd = server(board, tls=ServeTLS(str(cert), str(key), str(tmp_path / "ca.crt")))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    port = httpd.server_address[1]

    def call_as(name: str | None, method: str, path: str, body: Any = None) -> int:
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
        if name is not None:
            context.load_cert_chain(*map(str, who[name]))
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body),
                         headers={"X-Meshctl-Action": "1"})
            return conn.getresponse().status
        finally:
            conn.close()

    try:
        assert call_as("viewer", "GET", "/api/rollouts") == 200
        assert call_as("viewer", "POST", "/api/rollouts/demo/web/abort") == 403
        assert call_as("stranger", "GET", "/api/rollouts") == 403
        with pytest.raises((ssl.SSLError, ConnectionError)):
            call_as(None, "GET", "/api/rollouts")
        assert call_as("viewer", "POST", "/api/rollouts/demo/web/approve") == 403
        assert call_as("oncall", "POST", "/api/rollouts/demo/web/approve",
                       {"comment": "CHG-1234 signed off"}) == 200
        assert call_as("oncall", "POST", "/api/rollouts/demo/web/approve", ["not", "a", "map"]) \
            == 400
        assert call_as("oncall", "POST", "/api/rollouts/demo/web/abort") == 200
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    _, intents_path = state_paths(tmp_path, "demo", "web")
    assert read_intents(intents_path).abort is not None
    (approval,) = (json.loads(v) for v in read_approvals(
        approvals_path(tmp_path, "demo", "web")).values())
    assert (approval["user"], approval["via"], approval["comment"]) == (
        "spiffe://cluster.local/ns/ops/sa/oncall", "certificate", "CHG-1234 signed off")


@pytest.mark.parametrize(("args", "line"), [
    (["dashboard", "--port", "99999"], "Invalid value for '--port'"),
    (["dashboard", "--address", "nohost.invalid", "--port", "0"],
     "error: --address/--port: cannot listen on nohost.invalid:0"),
    (["rollout", "report", "nope", "-o", "html"], "error: no local run of default/nope"),
])
def test_bad_dashboard_and_report_input_is_one_line_exit_2(tmp_path: Path, args: list[str],
                                                           line: str) -> None:
    """The installed command in its own process: exit codes as a shell sees them."""
    import subprocess
    import sys

    seed(tmp_path)
    meshctl = str(Path(sys.executable).parent / "meshctl")
    done = subprocess.run([meshctl, *args, "--state-dir", str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert line in done.stderr and "Traceback" not in done.stderr
