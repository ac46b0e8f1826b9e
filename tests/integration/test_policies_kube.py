"""Zero trust against the real API server of the test world (Istio's CRD schemas installed).

What a fake could not tell us: that every generated object passes Istio's real schemas and
CEL rules and comes back exactly as written (so a second pass writes nothing), that the audit
reads the cluster the way the unit tests assume, and that convergence leaves other people's
objects alone.
"""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from meshctl.adapters.files import dump_yaml, read_documents
from meshctl.adapters.kube import Kube
from meshctl.cli.main import cli
from meshctl.domain.keys import ORIGINAL_TLS
from meshctl.domain.measurements import NoData, Value
from meshctl.domain.policies import desired_policies, owned
from meshctl.domain.routers.istio import baseline_destination_rule
from meshctl.domain.spec import Rollout
from meshctl.domain.validation import load_document
from meshctl.ops.policies import AUDITED, audit_cluster, cleanup, converge, gate, observe, plan
from tests.unit.test_policies import (
    FRONTEND,
    ORDERS,
    SEEDS,
    ap,
    clean_world,
    dr,
    principal_rule,
    rollout_from,
    secured_document,
    secured_examples,
    seed_id,
    subset,
)
from testworld.kube import KubeWorld

pytestmark = pytest.mark.kube

Obj = dict[str, Any]


@pytest.fixture
def adapter(kube: KubeWorld) -> Iterator[Kube]:
    with Kube.from_kubeconfig(kube.kubeconfig_path) as k:
        yield k


@pytest.fixture
def root(kube: KubeWorld) -> Iterator[str]:
    """A root namespace of this test's own, so mesh-wide policies stay with the test."""
    name = kube.create_namespace()
    yield name
    kube.delete_namespace(name)


def create(adapter: Kube, obj: Obj) -> Obj:
    group, version, plural = AUDITED[obj["kind"]]
    return adapter.create(group, version, obj["metadata"]["namespace"], plural, obj)


def get(adapter: Kube, kind: str, namespace: str, name: str) -> Obj:
    group, version, plural = AUDITED[kind]
    return adapter.get(group, version, namespace, plural, name)


def rollouts_in(path: Path, namespace: str) -> list[Rollout]:
    out = []
    for doc in read_documents(str(path)):
        body = copy.deepcopy(doc.body)
        body["metadata"]["namespace"] = namespace
        value = load_document(body)
        if isinstance(value, Rollout) and value.spec.security is not None:
            out.append(value)
    return out


def user_destination_rule(rollout: Rollout) -> Obj | None:
    rule = baseline_destination_rule(rollout) if rollout.spec.traffic_routing else None
    if rule is not None:
        rule["spec"]["subsets"].append(subset("canary", "canary"))
    return rule


def assert_stored_as_written(adapter: Kube, rollout: Rollout, skipped: tuple[str, ...] = ()) -> None:
    for obj in desired_policies(rollout).objects:
        if obj["metadata"]["name"] in skipped:
            continue
        stored = get(adapter, obj["kind"], rollout.namespace, obj["metadata"]["name"])
        assert stored["spec"] == obj["spec"], obj["metadata"]["name"]
        assert owned(stored, rollout.name)


def written(outcomes: list[Any]) -> list[tuple[str, str]]:
    return [(o.action.verb.value, o.action.name) for o in outcomes if o.written]


# --- generated objects against the real schemas ------------------------------------------


@pytest.mark.parametrize("path", secured_examples(), ids=lambda p: p.name)
def test_every_generated_object_is_created_and_stored_as_written(adapter, namespace, path):
    for rollout in rollouts_in(path, namespace):
        rule = user_destination_rule(rollout)
        if rule is not None:
            create(adapter, rule)

        first = converge(adapter, rollout)

        assert all(o.written for o in first if o.action.writes), first
        assert_stored_as_written(adapter, rollout)
        if rule is not None:
            stored = get(adapter, "DestinationRule", namespace, rule["metadata"]["name"])
            assert stored["spec"]["trafficPolicy"] == {"tls": {"mode": "ISTIO_MUTUAL"}}
        assert written(converge(adapter, rollout)) == [], "a second pass writes nothing"


def test_host_level_routing_and_every_kind_of_source_are_accepted(adapter, namespace):
    """Managed DestinationRules per host; principals, namespaces, methods, paths, ports."""
    rollout = rollout_from({
        "trafficRouting": {"istio": {"virtualService": {"name": "orders"},
                                     "stableService": "orders-stable",
                                     "canaryService": "orders-canary"}},
        "security": {"allow": [
            {"from": [{"namespace": "web", "serviceAccount": "frontend"}, {"namespace": "batch"},
                      {"serviceAccount": "cron"}],
             "methods": ["GET", "HEAD"], "paths": ["/v1/*", "/healthz"], "ports": [8080, 9090]},
        ]},
    }, namespace)

    outcomes = converge(adapter, rollout)

    assert sorted(written(outcomes)) == sorted([
        ("create", "orders-meshctl-mtls"), ("create", "orders-meshctl-tls"),
        ("create", "orders-meshctl-tls-stable"), ("create", "orders-meshctl-tls-canary"),
        ("create", "orders-meshctl-deny-all"), ("create", "orders-meshctl-allow-0")])
    assert_stored_as_written(adapter, rollout)
    assert written(converge(adapter, rollout)) == []


# --- audit from the cluster --------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS, ids=seed_id)
def test_audit_from_the_cluster_finds_each_seeded_rule(adapter, namespace, root, seed):
    rule, severity, _, world, expected = seed
    for obj in world(namespace, root):
        create(adapter, obj)

    findings = audit_cluster(adapter, namespace, root)

    assert {f.rule for f in findings} == expected, [f.message for f in findings]
    assert any(f.rule == rule and f.severity is severity for f in findings)


def test_audit_of_a_clean_namespace_finds_nothing(adapter, namespace, root):
    for obj in clean_world(namespace, root):
        create(adapter, obj)

    assert audit_cluster(adapter, namespace, root) == []


def test_audit_of_an_empty_namespace_finds_nothing(adapter, namespace, root):
    assert audit_cluster(adapter, namespace, root) == []


# --- convergence -------------------------------------------------------------------------


def merge_patch(kube: KubeWorld, obj: Obj, patch: Obj) -> None:
    """An edit by someone else (the test world's admin, not meshctl)."""
    kube.request("PATCH", kube.path_of(obj), patch,
                 content_type="application/merge-patch+json")


def test_convergence_corrects_drift_recreates_cleans_up_and_leaves_others_alone(
        kube, adapter, namespace):
    rollout = secured_rollout_in(namespace)
    user_rule = dr(namespace, "orders", "orders", subsets=[subset("stable", "stable")])
    original_policy = {"tls": {"mode": "SIMPLE", "sni": "orders.internal"}}
    user_rule["spec"]["trafficPolicy"] = original_policy
    create(adapter, user_rule)
    team = create(adapter, ap(namespace, "team-policy", ORDERS, "ALLOW",
                              [principal_rule(FRONTEND)]))
    squatter = create(adapter, ap(namespace, "orders-meshctl-allow-1", ORDERS, "ALLOW",
                                  [principal_rule("cluster.local/ns/ops/sa/debug")]))

    # Given a first pass: everything created, the squatter skipped, the DR borrowed.
    first = converge(adapter, rollout)
    assert sorted(written(first)) == sorted([
        ("create", "orders-meshctl-mtls"), ("create", "orders-meshctl-deny-all"),
        ("create", "orders-meshctl-allow-0"), ("update", "orders")])
    skipped = next(o for o in first if o.action.name == "orders-meshctl-allow-1")
    assert skipped.action.reason.startswith("exists and is not meshctl's")

    # When someone weakens meshctl's PeerAuthentication and deletes its deny-all...
    mtls = get(adapter, "PeerAuthentication", namespace, "orders-meshctl-mtls")
    merge_patch(kube, mtls, {"spec": {"mtls": {"mode": "PERMISSIVE"}}})
    adapter.delete("security.istio.io", "v1", namespace, "authorizationpolicies",
                   "orders-meshctl-deny-all")
    # ...and someone sets the borrowed field back.
    merge_patch(kube, user_rule, {"spec": {"trafficPolicy": {"tls": {"mode": "DISABLE"}}}})

    # Then the next pass puts all three back and says why.
    second = converge(adapter, rollout)
    assert sorted(written(second)) == sorted([
        ("update", "orders-meshctl-mtls"), ("create", "orders-meshctl-deny-all"),
        ("update", "orders")])
    drift = next(o for o in second if o.action.name == "orders-meshctl-mtls")
    assert drift.action.reason.startswith("drift")
    assert [str(c) for c in drift.action.changes] == ['spec.mtls.mode: "PERMISSIVE" -> "STRICT"']
    assert_stored_as_written(adapter, rollout, skipped=("orders-meshctl-allow-1",))
    assert written(converge(adapter, rollout)) == []

    # When the Rollout is deleted, meshctl's objects go and the DR gets its TLS back.
    cleaned = cleanup(adapter, rollout)
    assert sorted(written(cleaned)) == sorted([
        ("delete", "orders-meshctl-mtls"), ("delete", "orders-meshctl-deny-all"),
        ("delete", "orders-meshctl-allow-0"), ("restore", "orders")])
    assert [o for o in observe(adapter, namespace) if owned(o, "orders")] == []
    restored = get(adapter, "DestinationRule", namespace, "orders")
    assert restored["spec"]["trafficPolicy"] == original_policy
    assert ORIGINAL_TLS not in (restored["metadata"].get("annotations") or {})

    # Others' objects were never written.
    for before in (team, squatter):
        after = get(adapter, "AuthorizationPolicy", namespace, before["metadata"]["name"])
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def secured_rollout_in(namespace: str) -> Rollout:
    value = load_document(secured_document(namespace))
    assert isinstance(value, Rollout)
    return value


def test_a_removed_allow_rule_is_deleted(adapter, namespace):
    rollout = secured_rollout_in(namespace)
    converge(adapter, rollout)
    fewer = rollout_from({"security": {"allow": [
        {"from": [{"namespace": "web", "serviceAccount": "frontend"}]}]}}, namespace)

    assert [(a.verb.value, a.name) for a in plan(adapter, fewer) if a.writes] == [
        ("update", "orders-meshctl-allow-0"), ("delete", "orders-meshctl-allow-1")]
    assert sorted(written(converge(adapter, fewer))) == [
        ("delete", "orders-meshctl-allow-1"), ("update", "orders-meshctl-allow-0")]


# --- the gate ----------------------------------------------------------------------------


def test_the_gate_reads_the_cluster(adapter, namespace, root):
    for obj in clean_world(namespace, root):
        create(adapter, obj)
    rollout = secured_rollout_in(namespace)

    assert gate(adapter, rollout, Value(1.0), root) == (True, "all canary traffic is mutual TLS")
    assert gate(adapter, rollout, NoData(), root)[0] is False  # no traffic proves nothing
    assert gate(adapter, rollout, Value(0.5), root)[0] is False

    create(adapter, dr(namespace, "orders-edge", "orders", "SIMPLE"))
    opened, reason = gate(adapter, rollout, Value(1.0), root)
    assert not opened
    assert reason.startswith("dr-tls-conflict on DestinationRule")


# --- the command line --------------------------------------------------------------------


def run(kube: KubeWorld, *args: str):
    return CliRunner().invoke(cli, ["--kubeconfig", str(kube.kubeconfig_path), *args])


@pytest.fixture
def rollout_file(tmp_path: Path, namespace: str) -> Path:
    path = tmp_path / "rollout.yaml"
    path.write_text(dump_yaml(secured_document(namespace)))
    return path


def test_cli_apply_then_plan_then_audit(kube, adapter, namespace, root, rollout_file):
    create(adapter, user_destination_rule(secured_rollout_in(namespace)))

    applied = run(kube, "policy", "apply", "-f", str(rollout_file))
    assert applied.exit_code == 0, applied.output
    assert applied.output.count("create") == 4

    planned = run(kube, "-o", "json", "policy", "plan", "-f", str(rollout_file))
    assert planned.exit_code == 0, planned.output
    actions = json.loads(planned.output)["rollouts"][0]["actions"]
    assert {a["action"] for a in actions} == {"unchanged"}

    clean = run(kube, "policy", "audit", "-n", namespace, "--root-namespace", root)
    assert clean.exit_code == 0, clean.output
    assert clean.output.strip() == "no findings"

    create(adapter, ap(namespace, "health", ORDERS, "ALLOW",
                       [{"to": [{"operation": {"paths": ["/healthz"]}}]}]))
    low = run(kube, "-o", "json", "policy", "audit", "-n", namespace, "--root-namespace", root)
    assert low.exit_code == 0, "a low finding is below the default --fail-on high"
    assert json.loads(low.output)["summary"] == {"low": 1, "medium": 0, "high": 0}
    failing = run(kube, "policy", "audit", "-n", namespace, "--root-namespace", root,
                  "--fail-on", "low")
    assert failing.exit_code == 1
    assert "allow-any-source" in failing.output


def test_cli_audit_of_all_namespaces_fails_on_a_high_finding(kube, adapter, namespace, root):
    create(adapter, ap(namespace, "open", ORDERS, "ALLOW", [{}]))

    result = run(kube, "-o", "json", "policy", "audit", "-A", "--root-namespace", root)

    assert result.exit_code == 1, result.output
    found = json.loads(result.output)["findings"]
    assert {"kind": "AuthorizationPolicy", "namespace": namespace, "name": "open"} in [
        f["object"] for f in found]


def test_cli_unreachable_cluster_is_exit_5_in_one_line(tmp_path, rollout_file):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "kubeconfig"
    config.write_text(dump_yaml({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                  "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
    }))

    for args in (["policy", "audit", "-n", "default"], ["policy", "apply", "-f", str(rollout_file)]):
        result = CliRunner().invoke(cli, ["--kubeconfig", str(config), *args])
        assert result.exit_code == 5, result.output
        error, hint = result.stderr.strip().splitlines()  # the error, then how to fix it
        assert error.startswith("error: cannot reach the cluster:") and hint.startswith("hint: ")
        assert "Traceback" not in result.output


def test_cli_invalid_input_is_exit_2(kube, tmp_path):
    doc = secured_document()
    doc["spec"]["security"]["allow"][0]["from"] = [{}]
    bad = tmp_path / "bad.yaml"
    bad.write_text(dump_yaml(doc))

    result = run(kube, "policy", "apply", "-f", str(bad))

    assert result.exit_code == 2
    assert "spec.security.allow[0].from[0]: set namespace, serviceAccount or both" in result.stderr


def test_cli_apply_into_a_missing_namespace_is_exit_2(kube, tmp_path):
    path = tmp_path / "rollout.yaml"
    path.write_text(dump_yaml(secured_document("no-such-namespace")))

    result = run(kube, "policy", "apply", "-f", str(path))

    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: not found:")
    assert len(result.stderr.strip().splitlines()) == 1
