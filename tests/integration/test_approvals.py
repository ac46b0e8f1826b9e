"""Approval gates with identities the callers cannot choose: on the real API server, three
ServiceAccounts (real bearer tokens, real RBAC) start and approve through the CLI, each
identified by SelfSubjectReview; over the real mutual-TLS gRPC API, two client certificates
(SPIFFE IDs) approve. The four-eyes rule holds: whoever started the rollout is refused.
The controller's count is the shell's GateJudge over the Rollout as the API server
returns it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner

from meshctl.adapters.kube import Kube
from meshctl.api.gen.meshctl.v1 import rollouts_pb2 as pb
from meshctl.api.gen.meshctl.v1 import rollouts_pb2_grpc as pb_grpc
from meshctl.api.server import Access, RolloutServer, ServerTLS
from meshctl.cli.main import cli
from meshctl.domain.keys import STARTED_BY
from meshctl.domain.release_gates import GatePoint, GateRequest, GateVerdict
from meshctl.domain.spec import GROUP, VERSION, Rollout
from meshctl.domain.status import RolloutStatus
from meshctl.domain.validation import load_document
from meshctl.ops.gates import GateJudge
from testworld.certs import CertificateAuthority

pytestmark = [pytest.mark.kube]
ALICE = "spiffe://cluster.local/ns/ops/sa/alice"
BRUNO = "spiffe://cluster.local/ns/ops/sa/bruno"


def rollout_doc(approval: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "payments"},
        "spec": {"service": "payments", "workloadRef": {"name": "payments"},
                 "template": {"metadata": {"labels": {"app": "payments"}},
                              "spec": {"containers": [{"name": "app", "image": "pay:1"}]}},
                 "trafficRouting": {"istio": {
                     "virtualService": {"name": "payments"},
                     "destinationRule": {"name": "payments", "stableSubset": "stable",
                                         "canarySubset": "canary"}}},
                 "gates": [{"name": "change-approval", "at": ["beforePromotion"],
                            "approval": approval}],
                 "strategy": {"canary": {"steps": [{"setWeight": 20}]}}}}


class World:
    def __init__(self, kube: Any, namespace: str) -> None:
        self.kube, self.ns = kube, namespace
        self.base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/rollouts"

    def account(self, name: str) -> str:
        """A ServiceAccount that may read and patch Rollouts here; its kubeconfig."""
        self.kube.request("POST", f"/api/v1/namespaces/{self.ns}/serviceaccounts",
                          {"metadata": {"name": name}})
        return str(self.kube.service_account_kubeconfig(self.ns, name))

    def user(self, name: str) -> str:
        return f"system:serviceaccount:{self.ns}:{name}"

    def create(self, approval: dict[str, Any]) -> None:
        self.kube.request("POST", self.base, rollout_doc(approval))

    def progressing(self, revision: str = "rev2") -> None:
        """The status as the controller would have it mid-rollout (no controller runs here)."""
        status = RolloutStatus.from_json({"phase": "Progressing", "currentRevision": revision,
                                         "stableRevision": "rev1", "currentStep": 1})
        self.kube.request("PATCH", f"{self.base}/payments/status",
                          {"status": status.to_json()},
                          content_type="application/merge-patch+json")

    def get(self) -> dict[str, Any]:
        found: dict[str, Any] = self.kube.request("GET", f"{self.base}/payments")
        return found

    def verdict(self) -> tuple[GateVerdict, str, tuple[str, ...]]:
        """What the controller's gate judge finds on the Rollout as stored."""
        obj = self.get()
        rollout = load_document(obj)
        assert isinstance(rollout, Rollout)
        status = RolloutStatus.from_json(obj.get("status"))
        gate = rollout.spec.gates[0]
        request = GateRequest("change-approval@beforePromotion#0", gate,
                              GatePoint.BEFORE_PROMOTION, 1, status.current_revision or "",
                              datetime.now(UTC))
        report = GateJudge().judge(rollout, status, [request], datetime.now(UTC))[request.key]
        return report.verdict, report.message, report.by


@pytest.fixture
def world(kube, namespace) -> World:
    found = World(kube, namespace)
    kube.request("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles", {
        "metadata": {"name": "release"},
        "rules": [{"apiGroups": [GROUP], "resources": ["rollouts"],
                   "verbs": ["get", "list", "watch", "update", "patch"]},
                  {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["list"]}]})
    kube.request("POST",
                 f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings", {
                     "metadata": {"name": "release"},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                 "name": "release"},
                     "subjects": [{"kind": "Group",
                                   "name": f"system:serviceaccounts:{namespace}"}]})
    return found


def meshctl(kubeconfig: str, namespace: str, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--kubeconfig", kubeconfig, "-n", namespace, *args])


def test_two_identities_approve_and_the_starter_may_not(world):
    """Given a gate needing two approvals from the namespace's ServiceAccounts, four eyes;
    when ann starts the rollout and ann, bob and cem approve through the CLI; then ann is
    refused (she started it), bob's approval leaves it waiting 1/2, cem's passes it, and
    each approval names the identity the API server reported."""
    ann, bob, cem = (world.account(n) for n in ("ann", "bob", "cem"))
    world.create({"count": 2, "groups": [f"system:serviceaccounts:{world.ns}"],
                  "forbidStarter": True})
    started = meshctl(ann, world.ns, "rollout", "start", "payments", "--image", "pay:2")
    assert started.exit_code == 0, started.output
    assert world.get()["metadata"]["annotations"][STARTED_BY] == world.user("ann")
    world.progressing()

    refused = meshctl(ann, world.ns, "rollout", "approve", "payments", "--comment", "mine")
    assert refused.exit_code == 2
    assert f"{world.user('ann')} started this rollout; four eyes" in refused.output
    assert world.verdict()[0] is GateVerdict.WAITING

    first = meshctl(bob, world.ns, "rollout", "approve", "payments", "--comment", "CAB-1234")
    assert first.exit_code == 0, first.output
    verdict, message, by = world.verdict()
    assert (verdict, by) == (GateVerdict.WAITING, (world.user("bob"),))
    assert message.startswith("1/2 approvals")
    again = meshctl(bob, world.ns, "rollout", "approve", "payments")  # one person, one count
    assert again.exit_code == 0 and world.verdict()[0] is GateVerdict.WAITING

    assert meshctl(cem, world.ns, "rollout", "approve", "payments").exit_code == 0
    verdict, message, by = world.verdict()
    assert verdict is GateVerdict.PASSED
    assert by == tuple(sorted([world.user("bob"), world.user("cem")]))
    recorded = [json.loads(v) for k, v in world.get()["metadata"]["annotations"].items()
                if k.startswith("approval.meshctl.io/")]
    assert {(r["user"], r["via"], r["revision"]) for r in recorded} == {
        (world.user("bob"), "kubernetes", "rev2"), (world.user("cem"), "kubernetes", "rev2")}
    assert all(world.user("bob") != r["user"] or r["comment"] == "" for r in recorded)

    # the audit trail: who started, who approved (the latest of each approver), who aborted
    assert meshctl(cem, world.ns, "rollout", "abort", "payments").exit_code == 0
    shown = meshctl(ann, world.ns, "-o", "json", "rollout", "history", "payments")
    assert shown.exit_code == 0, shown.output
    audit = [(a["action"], a["by"], a["via"]) for a in json.loads(shown.stdout)["audit"]]
    assert audit[0] == ("start", world.user("ann"), "kubernetes")
    assert set(audit[1:]) == {("approve", world.user("bob"), "kubernetes"),
                              ("approve", world.user("cem"), "kubernetes"),
                              ("abort", world.user("cem"), "kubernetes")}
    table = meshctl(ann, world.ns, "rollout", "history", "payments").output
    assert "Audit trail:" in table and "approve" in table


def test_an_approval_of_an_earlier_revision_does_not_count(world):
    bob, cem = world.account("bob"), world.account("cem")
    world.create({"count": 2, "users": [world.user("bob"), world.user("cem")]})
    world.progressing("rev2")
    assert meshctl(bob, world.ns, "rollout", "approve", "payments").exit_code == 0
    world.progressing("rev3")  # a newer template: approvals start over
    assert meshctl(cem, world.ns, "rollout", "approve", "payments").exit_code == 0
    verdict, _, by = world.verdict()
    assert (verdict, by) == (GateVerdict.WAITING, (world.user("cem"),))


def test_someone_the_gate_does_not_allow_is_refused_and_nothing_is_written(world):
    dan = world.account("dan")
    world.create({"count": 1, "users": ["alice@example.com"]})
    world.progressing()
    refused = meshctl(dan, world.ns, "rollout", "approve", "payments")
    assert refused.exit_code == 2
    assert "is not among the approvers this gate allows" in refused.output
    assert not any(k.startswith("approval.meshctl.io/")
                   for k in world.get()["metadata"].get("annotations", {}))


def test_a_healthy_rollout_has_nothing_to_approve(world):
    bob = world.account("bob")
    world.create({"count": 1, "users": [world.user("bob")]})
    refused = meshctl(bob, world.ns, "rollout", "approve", "payments")
    assert refused.exit_code == 2 and "nothing waits for an approval" in refused.output


# --- over gRPC: the client certificate is the identity ----------------------------------------


@pytest.fixture
def grpc_api(kube, world, tmp_path: Path) -> Iterator[tuple[str, CertificateAuthority, Any]]:
    ca = CertificateAuthority()
    server_cert = ca.issue("meshctl-controller", dns=["localhost"], ips=["127.0.0.1"],
                           server=True)
    # the API runs as the controller does: its ServiceAccount, its RBAC
    as_controller = Kube.from_kubeconfig(
        kube.service_account_kubeconfig("meshctl-system", "meshctl-controller"))
    from meshctl.ops.rollouts import ClusterRollouts

    server = RolloutServer(ClusterRollouts(as_controller), "127.0.0.1:0",
                           ServerTLS(server_cert.cert_pem, server_cert.key_pem, ca.cert_pem),
                           Access.of(readers=[ALICE, BRUNO], operators=["release-bot"]))
    try:
        yield server.address, ca, as_controller
    finally:
        server.stop(grace=0)
        as_controller.close()


def stub_for(address: str, ca: CertificateAuthority, common_name: str, uris: list[str]
             ) -> tuple[pb_grpc.RolloutsStub, grpc.Channel]:
    issued = ca.issue(common_name, uris=uris)
    channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(
        root_certificates=ca.cert_pem, private_key=issued.key_pem,
        certificate_chain=issued.cert_pem))
    return pb_grpc.RolloutsStub(channel), channel


def test_approvals_over_grpc_are_the_certificates_spiffe_ids(world, grpc_api):
    address, ca, _ = grpc_api
    world.create({"count": 2, "spiffeIds": [ALICE, BRUNO], "forbidStarter": True})
    bot, bot_channel = stub_for(address, ca, "release-bot", [ALICE])
    alice, alice_channel = stub_for(address, ca, "alice-laptop", [ALICE])
    bruno, bruno_channel = stub_for(address, ca, "bruno-laptop", [BRUNO])
    try:
        # alice's certificate also starts it (through the operator CN release-bot's cert
        # carrying alice's SPIFFE ID): four eyes keeps her out
        bot.Start(pb.StartRequest(namespace=world.ns, name="payments", image="pay:2"),
                  timeout=10)
        assert world.get()["metadata"]["annotations"][STARTED_BY] == ALICE
        world.progressing()
        with pytest.raises(grpc.RpcError) as refused:
            alice.Approve(pb.ApproveRequest(namespace=world.ns, name="payments",
                                            comment="me"), timeout=10)
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "four eyes" in refused.value.details()
        bruno.Approve(pb.ApproveRequest(namespace=world.ns, name="payments",
                                        comment="risk reviewed"), timeout=10)
        verdict, _, by = world.verdict()
        assert (verdict, by) == (GateVerdict.WAITING, (BRUNO,))
        recorded = [json.loads(v) for k, v in world.get()["metadata"]["annotations"].items()
                    if k.startswith("approval.meshctl.io/")]
        assert [(r["user"], r["via"], r["comment"]) for r in recorded] == [
            (BRUNO, "grpc", "risk reviewed")]
        history = bruno.History(pb.RolloutRef(namespace=world.ns, name="payments"), timeout=10)
        assert [(a.action, a.by, a.via) for a in history.audit] == [
            ("start", ALICE, "grpc"), ("approve", BRUNO, "grpc")]
        assert history.audit[1].comment == "risk reviewed"
    finally:
        for channel in (bot_channel, alice_channel, bruno_channel):
            channel.close()


def test_a_certificate_the_server_does_not_know_may_not_approve(world, grpc_api):
    address, ca, _ = grpc_api
    world.create({"count": 1, "spiffeIds": [ALICE]})
    world.progressing()
    stranger, channel = stub_for(address, ca, "stranger", ["spiffe://cluster.local/ns/x/sa/y"])
    try:
        with pytest.raises(grpc.RpcError) as refused:
            stranger.Approve(pb.ApproveRequest(namespace=world.ns, name="payments"), timeout=10)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    finally:
        channel.close()
