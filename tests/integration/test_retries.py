"""The adapters' one retry policy, through both Kubernetes clients (the controller's Kube and
the CLI's RestKube), against the real API server: a write that meets a conflict, and one
that meets a transient server error, each succeeds on a fresh read; a permanent error is
not retried.

The transient error is the API server's own: a validating admission webhook (a real HTTPS
server in this process) that fails its first call makes the API server answer the write
with 500 ("failed calling webhook"), as it does when a webhook is briefly down."""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from meshctl.adapters.errors import Invalid, Unavailable
from meshctl.adapters.kube import Kube
from meshctl.adapters.rest import RestKube
from meshctl.domain.spec import GROUP, VERSION
from testworld.certs import CertificateAuthority

from .cluster_world import rollout

pytestmark = pytest.mark.kube

WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


@pytest.fixture(params=["Kube", "RestKube"])
def client(request, kube, namespace) -> Iterator[Any]:
    """One of the two clients, and a Rollout ``web`` to update."""
    with Kube.from_kubeconfig(kube.kubeconfig_path) as admin:
        admin.create(GROUP, VERSION, namespace, "rollouts",
                     rollout(namespace, "web:1", [{"setWeight": 50}]))
    if request.param == "Kube":
        chosen: Any = Kube.from_kubeconfig(kube.kubeconfig_path)
    else:
        chosen = RestKube.connect(kube.kubeconfig_path)
    yield chosen
    chosen.close()


def pause(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "spec": {**obj["spec"], "paused": True}}


def test_a_conflict_is_answered_with_a_fresh_read(client, kube, namespace):
    """Another writer changes the Rollout between our read and our write: the first write
    is a 409; the second attempt reads the newer object, and both changes are kept."""
    seen: list[str] = []

    def mutate(obj: dict[str, Any]) -> dict[str, Any]:
        seen.append(obj["metadata"]["resourceVersion"])
        if len(seen) == 1:
            with Kube.from_kubeconfig(kube.kubeconfig_path, field_manager="other") as other:
                other.merge_patch(GROUP, VERSION, namespace, "rollouts", "web",
                                  {"metadata": {"labels": {"team": "x"}}})
        return pause(obj)

    updated = client.update_with_retry(GROUP, VERSION, namespace, "rollouts", "web", mutate)

    assert (updated.attempts, updated.changed) == (2, True)
    assert seen[0] != seen[1]
    stored = client.get(GROUP, VERSION, namespace, "rollouts", "web")
    assert stored["spec"]["paused"] is True and stored["metadata"]["labels"] == {"team": "x"}


class FlakyWebhook:
    """A validating webhook over HTTPS that answers HTTP 500 while ``failures`` lasts,
    then allows; ``calls`` counts what the API server sent."""

    def __init__(self, ca: CertificateAuthority) -> None:
        self.failures, self.calls = 10**6, 0
        issued = ca.issue("webhook", ips=["127.0.0.1"], server=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with _written(issued) as (cert, key):
            context.load_cert_chain(cert, key)
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.calls += 1
                if hook.failures > 0:
                    hook.failures -= 1
                    self._answer(500, b"briefly down")
                    return
                body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                        "response": {"uid": review["request"]["uid"], "allowed": True}}
                self._answer(200, json.dumps(body).encode())

            def _answer(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/validate"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def _written(issued: Any) -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory(prefix="meshctl-webhook-") as tmp:
        cert, key = issued.write(Path(tmp) / "webhook")
        yield str(cert), str(key)


@pytest.fixture
def flaky_webhook(kube, namespace, client) -> Iterator[FlakyWebhook]:
    """The webhook, registered for updates of Rollouts labelled for this test only, and
    seen failing by the API server (its configuration reaches the server's cache)."""
    ca = CertificateAuthority("webhook CA")
    hook = FlakyWebhook(ca)
    label = uuid.uuid4().hex[:10]
    name = f"meshctl-retry-{label}"
    client.merge_patch(GROUP, VERSION, namespace, "rollouts", "web",
                       {"metadata": {"labels": {"retry-test": label}}})
    kube.request("POST", WEBHOOKS, {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "flaky.meshctl.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Fail", "timeoutSeconds": 5,
            "clientConfig": {"url": hook.url,
                             "caBundle": base64.b64encode(ca.cert_pem).decode()},
            "rules": [{"apiGroups": [GROUP], "apiVersions": [VERSION], "resources": ["rollouts"],
                       "operations": ["UPDATE"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "objectSelector": {"matchLabels": {"retry-test": label}},
        }],
    })
    try:
        deadline = time.monotonic() + 60
        for probe in range(10**6):
            try:
                client.merge_patch(GROUP, VERSION, namespace, "rollouts", "web",
                                   {"metadata": {"annotations": {"probe": str(probe)}}})
            except Unavailable:
                break
            assert time.monotonic() < deadline, "the API server never called the webhook"
            time.sleep(0.2)
        yield hook
    finally:
        kube.request("DELETE", f"{WEBHOOKS}/{name}")
        hook.close()


def test_a_transient_server_error_is_retried_from_a_fresh_read(client, flaky_webhook, namespace):
    """The API server answers the first write with 500 (its webhook failed); the policy
    backs off, reads again and writes: one change, stored, after two attempts."""
    flaky_webhook.failures, flaky_webhook.calls = 1, 0

    updated = client.update_with_retry(GROUP, VERSION, namespace, "rollouts", "web", pause)

    assert (updated.attempts, updated.changed) == (2, True)
    assert flaky_webhook.calls == 2
    assert client.get(GROUP, VERSION, namespace, "rollouts", "web")["spec"]["paused"] is True


def test_a_server_error_that_lasts_ends_the_attempts_with_it(client, flaky_webhook, namespace):
    flaky_webhook.calls = 0

    with pytest.raises(Unavailable) as failed:
        client.update_with_retry(GROUP, VERSION, namespace, "rollouts", "web", pause)

    assert failed.value.status == 500 and "webhook" in failed.value.message
    assert flaky_webhook.calls == client.max_attempts
    assert client.get(GROUP, VERSION, namespace, "rollouts", "web")["spec"].get("paused") is not True


def test_a_permanent_error_is_not_retried(client, namespace):
    calls: list[int] = []

    def too_heavy(obj: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        return {**obj, "spec": {**obj["spec"], "strategy": {"canary": {
            "steps": [{"setWeight": 300}]}}}}

    with pytest.raises(Invalid):
        client.update_with_retry(GROUP, VERSION, namespace, "rollouts", "web", too_heavy)
    assert calls == [1]
