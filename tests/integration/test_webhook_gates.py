"""Webhook release gates against a real local HTTPS server (real TLS: a CA made with
``cryptography`` by testworld.certs), with the HMAC-SHA256 signature checked by the receiver
as a user's receiver would; the signing key read from a real Secret on the test world's API
server; and a whole rollout stepped through decide() whose gate is that server."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import http.server
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from meshctl.adapters.kube import Kube
from meshctl.domain.engine import Observation, gates_due
from meshctl.domain.phases import Phase
from meshctl.domain.release_gates import GateReport, GateVerdict
from meshctl.domain.spec import Rollout
from meshctl.domain.validation import load_document
from meshctl.ops.gates import EnvSecrets, GateJudge, KubeSecrets
from tests.unit.sim import Sim
from testworld.certs import CertificateAuthority

KEY = "s3cret-hmac-key-never-logged"


class Receiver:
    """An HTTPS webhook receiver: answers each POST with the next status of ``answers``
    (the last one repeats), records what it got and whether the signature verified."""

    def __init__(self, directory: Path, ca: CertificateAuthority, key: bytes) -> None:
        self.answers: list[int] = [200]
        self.got: list[dict[str, Any]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
                given = self.headers.get("X-Meshctl-Signature", "")
                receiver.got.append({"body": json.loads(body), "signed": hmac.compare_digest(
                    expected, given), "signature": given})
                status = receiver.answers.pop(0) if len(receiver.answers) > 1 else \
                    receiver.answers[0]
                text = b"approved by risk engine" if status < 300 else b"risk score 97 > 80"
                self.send_response(status)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args: Any) -> None:
                pass

        cert, keyfile = ca.issue("risk", dns=["localhost"], ips=["127.0.0.1"],
                                 server=True).write(directory / "server")
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, keyfile)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/assess"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ca() -> CertificateAuthority:
    return CertificateAuthority("risk webhook CA")


@pytest.fixture
def receiver(tmp_path: Path, ca: CertificateAuthority) -> Iterator[Receiver]:
    server = Receiver(tmp_path, ca, KEY.encode())
    yield server
    server.stop()


def payments(url: str, ca_pem: str | None, **hook: Any) -> Rollout:
    webhook: dict[str, Any] = {"url": url, "signingSecret": {"name": "risk-webhook",
                                                            "key": "hmac-key"},
                               "timeout": "2s", "retries": 2, **hook}
    if ca_pem is not None:
        webhook["caBundle"] = ca_pem
    doc = {"apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
           "metadata": {"name": "payments", "namespace": "pay"},
           "spec": {"service": "payments", "workloadRef": {"name": "payments"},
                    "trafficRouting": {"istio": {
                        "virtualService": {"name": "payments"},
                        "destinationRule": {"name": "payments", "stableSubset": "stable",
                                            "canarySubset": "canary"}}},
                    "gates": [{"name": "risk", "at": ["beforeTraffic"], "webhook": webhook}],
                    "strategy": {"canary": {"steps": [{"setWeight": 20}, {"setWeight": 60}]}}}}
    rollout = load_document(doc)
    assert isinstance(rollout, Rollout)
    return rollout


ENV = {"MESHCTL_SECRET_RISK_WEBHOOK_HMAC_KEY": KEY}


@dataclasses.dataclass
class WebhookSim(Sim):
    """The in-memory world whose outside gates are judged by the real GateJudge."""

    rollout: Rollout | None = None
    judge: GateJudge | None = None
    reports: list[GateReport] = dataclasses.field(default_factory=list)

    def observation(self) -> Observation:
        obs = super().observation()
        assert self.rollout is not None and self.judge is not None
        found = self.judge.judge(self.rollout, self.status, gates_due(self.spec, self.status),
                                 self.now)
        self.reports += found.values()
        return dataclasses.replace(obs, gate_reports=found)


def drive(rollout: Rollout, judge: GateJudge, passes: int = 60) -> WebhookSim:
    sim = WebhookSim(rollout.spec, rollout=rollout, judge=judge,
                     now=datetime.now(UTC).replace(microsecond=0))
    return sim.run(passes=passes)


def test_a_signed_webhook_that_answers_2xx_lets_traffic_move(receiver, ca):
    rollout = payments(receiver.url, ca.cert_pem.decode())
    sim = drive(rollout, GateJudge(EnvSecrets(ENV)))
    assert sim.status.phase is Phase.HEALTHY
    assert len(receiver.got) == 1 and receiver.got[0]["signed"]
    body = receiver.got[0]["body"]
    assert (body["rollout"], body["gate"], body["point"], body["weights"]) == (
        {"namespace": "pay", "name": "payments"}, "risk", "beforeTraffic",
        {"stable": 100, "canary": 0})
    record = sim.status.gate("risk@beforeTraffic#0")
    assert record.verdict is GateVerdict.PASSED
    assert "answered HTTP 200: approved by risk engine" in record.message
    assert KEY not in json.dumps(sim.status.to_json())


def test_a_4xx_answer_fails_the_gate_and_no_canary_weight_is_ever_written(receiver, ca):
    receiver.answers = [403]
    sim = drive(payments(receiver.url, ca.cert_pem.decode()), GateJudge(EnvSecrets(ENV)))
    assert sim.status.phase is Phase.DEGRADED and sim.status.abort.reason == "GateFailed"
    assert "HTTP 403: risk score 97 > 80" in sim.status.message
    assert all(w.weights.canary == 0 for w in sim.writes)
    assert len(receiver.got) == 1  # the receiver judged: not retried


def test_5xx_answers_are_retried_with_the_same_signed_body(receiver, ca):
    receiver.answers = [503, 502, 200]
    sim = drive(payments(receiver.url, ca.cert_pem.decode()), GateJudge(EnvSecrets(ENV)))
    assert sim.status.phase is Phase.HEALTHY
    assert [g["signed"] for g in receiver.got] == [True, True, True]
    assert len({g["signature"] for g in receiver.got}) == 1  # one body, signed once


def test_no_2xx_after_the_retries_keeps_waiting_then_pauses_at_the_deadline(receiver, ca):
    receiver.answers = [503]
    rollout = payments(receiver.url, ca.cert_pem.decode(), retries=1)
    doc_deadline = dataclasses.replace(rollout.spec.gates[0], deadline=None)
    assert doc_deadline.deadline_seconds == 600.0
    sim = drive(rollout, GateJudge(EnvSecrets(ENV)), passes=400)
    assert sim.status.phase is Phase.PAUSED and sim.status.pause_reason == "GateDeadline"
    assert "no verdict after 2 tries: HTTP 503" in sim.status.message
    assert all(w.weights.canary == 0 for w in sim.writes)


def test_a_receiver_whose_certificate_the_ca_bundle_does_not_sign_is_never_trusted(receiver):
    other = CertificateAuthority("someone else")
    judge = GateJudge(EnvSecrets(ENV))
    rollout = payments(receiver.url, other.cert_pem.decode())
    sim = WebhookSim(rollout.spec, rollout=rollout, judge=judge).run(passes=3)
    assert receiver.got == []
    assert sim.status.phase is Phase.PROGRESSING
    assert "certificate not trusted" in sim.status.message


def test_an_unreachable_receiver_keeps_the_gate_waiting(ca):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nobody listens there
    rollout = payments(f"https://127.0.0.1:{port}/assess", ca.cert_pem.decode(), retries=0)
    sim = WebhookSim(rollout.spec, rollout=rollout, judge=GateJudge(EnvSecrets(ENV))).run(
        passes=3)
    assert sim.status.phase is Phase.PROGRESSING
    assert "no verdict after 1 tries" in sim.status.message


def test_without_the_signing_key_nothing_is_sent(receiver, ca):
    rollout = payments(receiver.url, ca.cert_pem.decode())
    sim = WebhookSim(rollout.spec, rollout=rollout, judge=GateJudge(EnvSecrets({}))).run(
        passes=3)
    assert receiver.got == []
    assert "cannot sign the request: no MESHCTL_SECRET_RISK_WEBHOOK_HMAC_KEY" in sim.status.message


@pytest.mark.parametrize("client_kind", ["kubernetes", "rest"])
def test_the_signing_key_comes_from_a_real_secret(kube, namespace, receiver, ca, client_kind):
    """Both of the controller's clients read the Secret; a missing one is named, with no
    value in the message."""
    from meshctl.adapters.rest import RestKube

    kube.request("POST", f"/api/v1/namespaces/{namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "risk-webhook"},
        "data": {"hmac-key": base64.b64encode(KEY.encode()).decode()}})
    client = (Kube.from_kubeconfig(kube.kubeconfig_path) if client_kind == "kubernetes"
              else RestKube.connect(kube.kubeconfig_path))
    assert client is not None
    try:
        rollout = payments(receiver.url, ca.cert_pem.decode())
        rollout = dataclasses.replace(rollout, metadata=dataclasses.replace(
            rollout.metadata, namespace=namespace))
        sim = drive(rollout, GateJudge(KubeSecrets(client)))
        assert sim.status.phase is Phase.HEALTHY and receiver.got[0]["signed"]
        elsewhere = dataclasses.replace(rollout, metadata=dataclasses.replace(
            rollout.metadata, namespace="default"))
        first = WebhookSim(rollout.spec, rollout=elsewhere, judge=GateJudge(KubeSecrets(client)))
        first.run(passes=3)
        assert "cannot sign the request: cannot read Secret default/risk-webhook: NotFound" in (
            first.status.message)
        assert len(receiver.got) == 1
    finally:
        client.close()
