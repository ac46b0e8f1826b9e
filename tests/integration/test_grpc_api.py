"""The gRPC API over a real mutual-TLS channel (certificates made here with `cryptography`),
served from the ops layer against the real API server while the real controller drives
the rollout; and the CLI speaking it with --server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from meshctl.adapters.kube import Kube
from meshctl.api.gen.meshctl.v1 import rollouts_pb2 as pb
from meshctl.api.gen.meshctl.v1 import rollouts_pb2_grpc as pb_grpc
from meshctl.api.server import Access, RolloutServer, ServerTLS
from meshctl.cli.main import cli
from meshctl.domain.spec import GROUP, VERSION
from meshctl.ops.rollouts import ClusterRollouts
from testworld.certs import CertificateAuthority, Issued

from .running_controller import RunningController

pytestmark = [pytest.mark.kube, pytest.mark.cluster, pytest.mark.prometheus]
ONCALL_SPIFFE = "spiffe://cluster.local/ns/ops/sa/oncall"
PAUSING = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}]


class Certs:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = CertificateAuthority()
        self.server = self.ca.issue("meshctl-controller", dns=["localhost"], ips=["127.0.0.1"],
                                    server=True)
        self.operator = self.ca.issue("oncall-laptop", uris=[ONCALL_SPIFFE])  # by its SAN
        self.reader = self.ca.issue("dashboard")  # by its CN
        self.stranger = self.ca.issue("someone-else")
        self.nameless = self.ca.issue(None)
        self.foreign = CertificateAuthority("another CA").issue("oncall-laptop",
                                                                uris=[ONCALL_SPIFFE])
        self.ca_path = directory / "ca.crt"
        self.ca_path.write_bytes(self.ca.cert_pem)

    def files(self, issued: Issued, name: str) -> list[str]:
        cert, key = issued.write(self.dir / name)
        return ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(self.ca_path)]


class Api:
    def __init__(self, controller: RunningController, certs: Certs, server: RolloutServer):
        self.c, self.certs, self.server = controller, certs, server
        self.ns = controller.ns
        self._channels: list[grpc.Channel] = []

    def stub(self, issued: Issued | None) -> pb_grpc.RolloutsStub:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.certs.ca.cert_pem,
            private_key=issued.key_pem if issued else None,
            certificate_chain=issued.cert_pem if issued else None)
        channel = grpc.secure_channel(self.server.address, credentials)
        self._channels.append(channel)
        return pb_grpc.RolloutsStub(channel)

    def ref(self, name: str = "web") -> pb.RolloutRef:
        return pb.RolloutRef(namespace=self.ns, name=name)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()


@pytest.fixture
def api(kube, cluster, namespace, istio_metrics, tmp_path) -> Iterator[Api]:
    exporter, url = istio_metrics
    exporter.set(namespace, "web", "web-canary", rps=40, error_rate=0.0, latency_ms=5)
    certs = Certs(tmp_path)
    access = Access.of(readers=["dashboard"], operators=[ONCALL_SPIFFE])
    with RunningController(kube, namespace, url, steps=PAUSING) as controller:
        # the API runs as the controller does: its ServiceAccount, its RBAC
        as_controller = Kube.from_kubeconfig(
            kube.service_account_kubeconfig("meshctl-system", "meshctl-controller"))
        server = RolloutServer(ClusterRollouts(as_controller), "127.0.0.1:0",
                               ServerTLS(certs.server.cert_pem, certs.server.key_pem,
                                         certs.ca.cert_pem), access)
        found = Api(controller, certs, server)
        try:
            yield found
        finally:
            found.close()
            server.stop(grace=0)
            as_controller.close()


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code()


def test_without_a_client_certificate_the_handshake_fails_with_unavailable(api):
    # require_client_auth: the TLS handshake itself fails, before any method runs; gRPC
    # reports a failed handshake as UNAVAILABLE (not UNAUTHENTICATED, which needs a call).
    stub = api.stub(None)
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetRollout(api.ref(), timeout=5)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    foreign = api.stub(api.certs.foreign)  # the right name, signed by a CA we do not trust
    assert code_of(lambda: foreign.GetRollout(api.ref(), timeout=5)) is grpc.StatusCode.UNAVAILABLE


def test_a_certificate_without_an_identity_is_unauthenticated(api):
    stub = api.stub(api.certs.nameless)
    assert code_of(lambda: stub.GetRollout(api.ref(), timeout=5)) is \
        grpc.StatusCode.UNAUTHENTICATED


def test_a_read_only_identity_reads_but_cannot_abort(api):
    reader = api.stub(api.certs.reader)
    got = reader.GetRollout(api.ref(), timeout=5)
    assert (got.name, got.phase, got.image) == ("web", "Healthy", "web:1")
    listed = reader.ListRollouts(pb.ListRolloutsRequest(namespace=api.ns), timeout=5)
    assert [r.name for r in listed.rollouts] == ["web"]
    for call in (reader.Abort, reader.Pause, reader.Resume, reader.Retry):
        assert code_of(lambda call=call: call(api.ref(), timeout=5)) is \
            grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: reader.Promote(pb.PromoteRequest(namespace=api.ns, name="web"),
                                          timeout=5)) is grpc.StatusCode.PERMISSION_DENIED
    annotations = api.c.rollout()["metadata"].get("annotations") or {}
    assert not [k for k in annotations if k.startswith("meshctl.io/intent-")]  # nothing recorded
    stranger = api.stub(api.certs.stranger)
    assert code_of(lambda: stranger.GetRollout(api.ref(), timeout=5)) is \
        grpc.StatusCode.PERMISSION_DENIED


def test_errors_map_to_status_codes(api):
    operator = api.stub(api.certs.operator)
    assert code_of(lambda: operator.GetRollout(api.ref("nope"), timeout=5)) is \
        grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: operator.GetRollout(api.ref(""), timeout=5)) is \
        grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as raised:
        operator.Retry(api.ref(), timeout=5)
    assert raised.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "it is Healthy" in raised.value.details()


def start(api: Api, image: str) -> None:
    api.c.driver.kube.merge_patch(GROUP, VERSION, api.ns, "rollouts", "web", {"spec": {
        "template": {"spec": {"containers": [{"name": "web", "image": image}]}}}})


def test_watch_streams_each_phase_change_in_order_and_promote_releases_the_pause(api):
    operator = api.stub(api.certs.operator)
    stream = operator.WatchRollout(pb.WatchRolloutRequest(namespace=api.ns, name="web",
                                                          timeout_seconds=90))
    seen: list[pb.Rollout] = []
    paused = threading.Event()

    def follow() -> None:
        for message in stream:
            seen.append(message)
            if message.phase == "Paused":
                paused.set()
            if message.phase == "Healthy" and message.image == "web:2" and \
                    message.observed_generation == message.generation and len(seen) > 1:
                stream.cancel()
                return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    time.sleep(0.5)  # the stream's first message is the rollout as it is
    start(api, "web:2")
    assert paused.wait(30), [m.phase for m in seen]
    promoted = operator.Promote(pb.PromoteRequest(namespace=api.ns, name="web"), timeout=5)
    assert promoted.pending_intents == ["promote"]
    reader.join(60)
    phases = [m.phase for m in seen]
    changes = [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p]
    assert changes == ["Healthy", "Progressing", "Paused", "Progressing", "Promoting",
                       "Healthy"], phases
    steps = [m.step for m in seen]
    assert steps == sorted(steps)  # never back
    assert seen[-1].weights == pb.Weights(stable=100, canary=0)


def test_abort_through_grpc_brings_traffic_to_100_percent_stable(api):
    start(api, "web:3")
    api.c.wait_for(lambda o: (o.get("status") or {}).get("phase") == "Paused", what="the pause")
    assert api.c.weights() == {"stable": 80, "canary": 20}
    operator = api.stub(api.certs.operator)
    asked = time.monotonic()
    answer = operator.Abort(api.ref(), timeout=5)
    assert answer.pending_intents == ["abort"]
    deadline = asked + 10
    while api.c.weights() != {"stable": 100, "canary": 0}:
        assert time.monotonic() < deadline, "abort did not reach the VirtualService in 10 s"
        time.sleep(0.05)
    took = time.monotonic() - asked
    obj = api.c.wait_for(lambda o: o["status"]["phase"] == "Degraded", what="Degraded")
    assert obj["status"]["abort"]["reason"] == "UserAbort"
    print(f"abort through gRPC: 100% stable in the VirtualService after {took:.2f}s")


def test_the_cli_speaks_grpc_with_server(api):
    base = ["--server", api.server.address, "-n", api.ns]
    runner = CliRunner()
    operator = api.certs.files(api.certs.operator, "operator")
    reader = api.certs.files(api.certs.reader, "reader")

    shown = runner.invoke(cli, [*base, *reader, "-o", "json", "rollout", "status", "web"])
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["phase"] == "Healthy"
    listed = runner.invoke(cli, [*base, *reader, "rollout", "list"])
    assert listed.exit_code == 0 and "web" in listed.stdout

    denied = runner.invoke(cli, [*base, *reader, "rollout", "abort", "web"])
    assert denied.exit_code == 5
    assert "PERMISSION_DENIED" in denied.stderr and len(denied.stderr.splitlines()) == 1
    no_cert = runner.invoke(cli, [*base, "--tls-ca", str(api.certs.ca_path),
                                  "rollout", "status", "web"])
    assert no_cert.exit_code == 5 and "UNAVAILABLE" in no_cert.stderr
    history = runner.invoke(cli, [*base, *reader, "-o", "json", "rollout", "history", "web"])
    assert history.exit_code == 0, history.stderr
    assert json.loads(history.stdout)["rollout"]["name"] == "web"
    not_started = runner.invoke(cli, [*base, *reader, "rollout", "start", "web", "--image", "x:1"])
    assert not_started.exit_code == 5 and "PERMISSION_DENIED" in not_started.stderr

    start(api, "web:4")
    api.c.wait_for(lambda o: (o.get("status") or {}).get("phase") == "Paused", what="the pause")
    assert runner.invoke(cli, [*base, *operator, "rollout", "promote", "web"]).exit_code == 0
    watched = runner.invoke(cli, [*base, *operator, "rollout", "status", "web", "--watch",
                                  "--timeout", "60"])
    assert watched.exit_code == 0, watched.stderr
    assert "Promoting" in watched.stderr and "is Healthy" in watched.stderr


def test_start_history_and_undo_follow_the_same_rules_as_the_cli(api, tmp_path):
    """On-call tooling never shells out: what `rollout start|history|undo` do, the API
    does, operators only for the writes."""
    reader, operator = api.stub(api.certs.reader), api.stub(api.certs.operator)
    ref = api.ref()
    image = pb.StartRequest(namespace=api.ns, name="web", image="web:5")
    assert code_of(lambda: reader.Start(image)) is grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: reader.Undo(ref)) is grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: api.stub(api.certs.stranger).History(ref)) \
        is grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: operator.Undo(ref)) is grpc.StatusCode.FAILED_PRECONDITION

    started = operator.Start(image)
    assert started.image == "web:5" and started.generation > 1
    found = reader.History(ref)
    assert found.rollout.name == "web"
    assert {r.role: r.image for r in found.revisions}.get("previous") == "web:1"
    assert any(e.reason for e in found.events)

    undone = operator.Undo(ref)
    assert undone.image == "web:1" and undone.generation > started.generation

    # a whole Rollout, as `start -f` sends it; an invalid one writes nothing
    body = api.c.rollout()
    body["spec"]["template"]["spec"]["containers"][0]["image"] = "web:6"
    body["metadata"] = {"name": "web"}
    applied = operator.Start(pb.StartRequest(namespace=api.ns, rollout_json=json.dumps(body)))
    assert applied.image == "web:6"
    body["spec"]["strategy"] = {"canary": {"steps": [{"setWeight": 120}]}}
    bad = pb.StartRequest(namespace=api.ns, rollout_json=json.dumps(body))
    assert code_of(lambda: operator.Start(bad)) is grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: operator.Start(pb.StartRequest(namespace=api.ns, rollout_json="["))) \
        is grpc.StatusCode.INVALID_ARGUMENT
    assert api.c.rollout()["spec"]["template"]["spec"]["containers"][0]["image"] == "web:6"


def test_controller_run_serves_the_grpc_api_with_mutual_tls(kube, cluster, namespace, tmp_path):
    """The composition a Deployment runs: `meshctl controller run --grpc-addr ...`."""
    import signal
    import subprocess
    import sys

    from .cluster_world import rollout, seed_service

    certs = Certs(tmp_path)
    server_cert, server_key = certs.server.write(tmp_path / "server")
    seed_service(kube, namespace)
    with Kube.from_kubeconfig(kube.kubeconfig_path) as admin:
        admin.create(GROUP, VERSION, namespace, "rollouts", rollout(namespace, "web:1", PAUSING))
    sa = kube.service_account_kubeconfig("meshctl-system", "meshctl-controller")
    command = [str(Path(sys.executable).parent / "meshctl"), "--kubeconfig", str(sa),
               "-n", namespace, "controller", "run", "--prometheus-url", "http://127.0.0.1:9",
               "--trust-stored-weights",  # no istiod in this world
               "--health-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
               "--grpc-cert", str(server_cert), "--grpc-key", str(server_key),
               "--grpc-client-ca", str(certs.ca_path), "--grpc-reader", "dashboard",
               "--dashboard-addr", "127.0.0.1:0"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        address, board = "", ""
        deadline = time.monotonic() + 30
        # other threads log too (leader election): the two announcements in any order
        while not (address and board) and time.monotonic() < deadline:
            line = process.stderr.readline()
            assert line or process.poll() is None, "controller run exited"
            if "gRPC API on " in line:
                address = line.split("gRPC API on ")[1].split()[0]
            if "dashboard on " in line:
                board = line.split("dashboard on ")[1].split()[0]
        assert address, "no gRPC address announced"
        assert board.startswith("https://"), board
        _dashboard_answers(board, certs, namespace)
        reader = certs.files(certs.reader, "reader")
        shown = CliRunner().invoke(cli, ["--server", address, *reader, "-n", namespace,
                                         "-o", "json", "rollout", "status", "web"])
        assert shown.exit_code == 0, shown.stderr
        assert json.loads(shown.stdout)["name"] == "web"
        denied = CliRunner().invoke(cli, ["--server", address, *reader, "-n", namespace,
                                          "rollout", "abort", "web"])
        assert denied.exit_code == 5 and "PERMISSION_DENIED" in denied.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        process.stderr.close()


def _dashboard_answers(url: str, certs: Certs, namespace: str) -> None:
    """The controller's dashboard: the reader's certificate lists, and may not act."""
    import http.client
    import ssl
    from urllib.parse import urlsplit

    context = ssl.create_default_context(cafile=str(certs.ca_path))
    reader_cert, reader_key = certs.reader.write(certs.ca_path.parent / "dash-reader")
    context.load_cert_chain(str(reader_cert), str(reader_key))
    where = urlsplit(url)
    for method, path, expected in (("GET", "/api/rollouts", 200),
                                   ("POST", f"/api/rollouts/{namespace}/web/abort", 403)):
        conn = http.client.HTTPSConnection(where.hostname, where.port, context=context,
                                           timeout=10)
        try:
            conn.request(method, path, headers={"X-Meshctl-Action": "1"})
            response = conn.getresponse()
            body = json.loads(response.read())
        finally:
            conn.close()
        assert response.status == expected, body
        if method == "GET":
            assert [r["name"] for r in body["rollouts"]] == ["web"]
