"""Zero trust, pure: the policies a Rollout's security asks for, the plan that converges a
namespace to them, the audit rules and the mTLS gate. Tables of plain values.

The seeded misconfigurations (``SEEDS``) and the clean world are functions of the namespace
and the root namespace, so the integration tests create the same objects in the real API
server and expect the same findings.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from meshctl.adapters.files import dump_all, read_documents
from meshctl.domain.audit import (
    Finding,
    Scope,
    Severity,
    audit,
    effective_mode,
    findings_for,
    fqdn,
    inventory,
    mtls_gate,
)
from meshctl.domain.measurements import Error, NoData, Value
from meshctl.domain.policies import (
    DesiredPolicies,
    Verb,
    borrowed_by,
    converged,
    desired_policies,
    diff,
    pod_labels,
    policy_plan,
    spec_hash,
    with_mutual_tls,
    without_mutual_tls,
)
from meshctl.domain.spec import Rollout
from meshctl.domain.validation import load_document
from meshctl.ops.policies import offline_plan

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"
SECURED = REPO / "rollouts" / "secured.yaml"
Obj = dict[str, Any]


# --- builders ----------------------------------------------------------------------------


def secured_document(namespace: str = "shop") -> Obj:
    doc = copy.deepcopy(read_documents(str(SECURED))[0].body)
    doc["metadata"]["namespace"] = namespace
    return doc


def secured_rollout(namespace: str = "shop") -> Rollout:
    value = load_document(secured_document(namespace))
    assert isinstance(value, Rollout)
    return value


def rollout_from(spec_changes: dict[str, Any], namespace: str = "shop") -> Rollout:
    doc = secured_document(namespace)
    doc["spec"].update(spec_changes)
    value = load_document(doc)
    assert isinstance(value, Rollout)
    return value


def _meta(namespace: str, name: str) -> Obj:
    return {"name": name, "namespace": namespace}


def pa(namespace: str, name: str, mode: str | None = None, selector: Obj | None = None,
       ports: Obj | None = None) -> Obj:
    spec: Obj = {}
    if selector:
        spec["selector"] = {"matchLabels": selector}
    if mode:
        spec["mtls"] = {"mode": mode}
    if ports:
        spec["portLevelMtls"] = {str(p): {"mode": m} for p, m in ports.items()}
    return {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": _meta(namespace, name), "spec": spec}


def ap(namespace: str, name: str, selector: Obj | None = None, action: str | None = None,
       rules: list[Obj] | None = None) -> Obj:
    spec: Obj = {}
    if selector:
        spec["selector"] = {"matchLabels": selector}
    if action:
        spec["action"] = action
    if rules is not None:
        spec["rules"] = rules
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": _meta(namespace, name), "spec": spec}


def dr(namespace: str, name: str, host: str, tls: str | None = None,
       subsets: list[Obj] | None = None) -> Obj:
    spec: Obj = {"host": host}
    if tls:
        spec["trafficPolicy"] = {"tls": {"mode": tls}}
    if subsets is not None:
        spec["subsets"] = subsets
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": _meta(namespace, name), "spec": spec}


def subset(name: str, track: str, tls: str | None = None) -> Obj:
    out: Obj = {"name": name, "labels": {"meshctl.io/track": track}}
    if tls:
        out["trafficPolicy"] = {"tls": {"mode": tls}}
    return out


def vs(namespace: str, name: str, host: str, subsets: list[str]) -> Obj:
    route = [{"destination": {"host": host, "subset": s}, "weight": 100 if i == 0 else 0}
             for i, s in enumerate(subsets)]
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": _meta(namespace, name),
            "spec": {"hosts": [host], "http": [{"name": "http", "route": route}]}}


def principal_rule(*principals: str, ports: list[str] | None = None) -> Obj:
    rule: Obj = {"from": [{"source": {"principals": list(principals)}}]}
    if ports:
        rule["to"] = [{"operation": {"ports": ports}}]
    return rule


FRONTEND = "cluster.local/ns/web/sa/frontend"
ORDERS = {"app": "orders"}
BILLING = {"app": "billing"}


def clean_world(ns: str, root: str) -> list[Obj]:
    """The secured Rollout with meshctl's policies applied, its DestinationRule (both subsets,
    ISTIO_MUTUAL), its VirtualService, and a mesh-wide STRICT PeerAuthentication."""
    rollout = secured_rollout(ns)
    return [
        secured_document(ns),
        *desired_policies(rollout).objects,
        dr(ns, "orders", "orders", "ISTIO_MUTUAL",
           [subset("stable", "stable"), subset("canary", "canary")]),
        vs(ns, "orders", "orders", ["stable", "canary"]),
        pa(root, "default", "STRICT"),
    ]


def _replace(world: list[Obj], name: str, kind: str, new: Obj | None) -> list[Obj]:
    out = [o for o in world if (o["kind"], o["metadata"]["name"]) != (kind, name)]
    return out + ([new] if new is not None else [])


World = Callable[[str, str], list[Obj]]


def _plus(*extra: Callable[[str, str], Obj]) -> World:
    return lambda ns, root: clean_world(ns, root) + [make(ns, root) for make in extra]


def _swap(kind: str, name: str, make: Callable[[str, str], Obj | None],
          *extra: Callable[[str, str], Obj]) -> World:
    return lambda ns, root: _replace(clean_world(ns, root), name, kind, make(ns, root)) + [
        e(ns, root) for e in extra]


# (rule, severity, sentence, world, every rule the world should raise)
SEEDS: list[tuple[str, Severity, str, World, set[str]]] = [
    ("mtls-permissive", Severity.MEDIUM, "a mesh-wide PERMISSIVE PeerAuthentication",
     _swap("PeerAuthentication", "default", lambda ns, root: pa(root, "default", "PERMISSIVE")),
     {"mtls-permissive"}),
    ("mtls-disabled", Severity.HIGH, "a namespace-wide DISABLE PeerAuthentication",
     _plus(lambda ns, root: pa(ns, "default", "DISABLE")), {"mtls-disabled"}),
    ("mtls-permissive", Severity.MEDIUM, "a workload PERMISSIVE PeerAuthentication",
     _plus(lambda ns, root: pa(ns, "billing", "PERMISSIVE", BILLING)), {"mtls-permissive"}),
    ("port-mtls-disabled", Severity.HIGH, "a port-level DISABLE",
     _plus(lambda ns, root: pa(ns, "billing", "STRICT", BILLING, {9090: "DISABLE"})),
     {"port-mtls-disabled"}),
    ("rollout-not-strict", Severity.HIGH,
     "the Rollout's pods fall back to a mesh-wide PERMISSIVE (meshctl's PeerAuthentication gone)",
     lambda ns, root: _replace(_replace(clean_world(ns, root), "orders-meshctl-mtls",
                                        "PeerAuthentication", None),
                               "default", "PeerAuthentication", pa(root, "default", "PERMISSIVE")),
     {"rollout-not-strict", "mtls-permissive", "identity-on-plaintext"}),
    ("dr-tls-conflict", Severity.HIGH, "the canary subset of the Rollout's DR is DISABLE",
     _swap("DestinationRule", "orders", lambda ns, root: dr(
         ns, "orders", "orders", "ISTIO_MUTUAL",
         [subset("stable", "stable"), subset("canary", "canary", "DISABLE")])),
     {"dr-tls-conflict"}),
    ("dr-tls-conflict", Severity.HIGH, "a DR by FQDN with SIMPLE TLS towards STRICT pods",
     _plus(lambda ns, root: dr(ns, "orders-edge", f"orders.{ns}.svc.cluster.local", "SIMPLE")),
     {"dr-tls-conflict"}),
    ("dr-tls-disabled", Severity.MEDIUM, "a DR DISABLE towards PERMISSIVE pods",
     _plus(lambda ns, root: dr(ns, "billing", "billing", "DISABLE"),
           lambda ns, root: pa(ns, "billing", "PERMISSIVE", BILLING)),
     {"dr-tls-disabled", "mtls-permissive"}),
    ("missing-default-deny", Severity.HIGH, "the Rollout's deny-all is gone",
     _swap("AuthorizationPolicy", "orders-meshctl-deny-all", lambda ns, root: None),
     {"missing-default-deny"}),
    ("missing-default-deny", Severity.LOW, "ALLOW policies without a default-deny",
     _plus(lambda ns, root: ap(ns, "billing", BILLING, "ALLOW", [principal_rule(FRONTEND)])),
     {"missing-default-deny"}),
    ("allow-all", Severity.HIGH, "an empty ALLOW rule",
     _plus(lambda ns, root: ap(ns, "open", ORDERS, "ALLOW", [{}])), {"allow-all"}),
    ("wildcard-source", Severity.MEDIUM, "principals '*'",
     _plus(lambda ns, root: ap(ns, "anyone", ORDERS, "ALLOW", [principal_rule("*")])),
     {"wildcard-source"}),
    ("allow-any-source", Severity.LOW, "an ALLOW rule without from",
     _plus(lambda ns, root: ap(ns, "health", ORDERS, "ALLOW",
                               [{"to": [{"operation": {"paths": ["/healthz"]}}]}])),
     {"allow-any-source"}),
    ("identity-on-plaintext", Severity.HIGH, "a principal rule for DISABLE pods",
     _plus(lambda ns, root: pa(ns, "billing", "DISABLE", BILLING),
           lambda ns, root: ap(ns, "billing", BILLING, "ALLOW", [principal_rule(FRONTEND)])),
     {"identity-on-plaintext", "mtls-disabled", "missing-default-deny"}),
    ("identity-on-plaintext", Severity.MEDIUM, "a principal rule on a PERMISSIVE port",
     _plus(lambda ns, root: pa(ns, "billing", "STRICT", BILLING, {8080: "PERMISSIVE"}),
           lambda ns, root: ap(ns, "billing", BILLING, "ALLOW",
                               [principal_rule(FRONTEND, ports=["8080"])])),
     {"identity-on-plaintext", "port-mtls-permissive", "missing-default-deny"}),
    ("deny-bypassed-by-plaintext", Severity.HIGH, "DENY by namespace where plaintext is accepted",
     _plus(lambda ns, root: pa(ns, "billing", "PERMISSIVE", BILLING),
           lambda ns, root: ap(ns, "billing-deny", BILLING, "DENY",
                               [{"from": [{"source": {"namespaces": ["untrusted"]}}]}])),
     {"deny-bypassed-by-plaintext", "mtls-permissive"}),
    ("deny-bypassed-by-plaintext", Severity.LOW, "DENY by principal under STRICT",
     _plus(lambda ns, root: ap(ns, "orders-deny", ORDERS, "DENY",
                               [principal_rule("cluster.local/ns/web/sa/legacy")])),
     {"deny-bypassed-by-plaintext"}),
    ("selector-misses-track", Severity.HIGH, "a policy on the canary pods only",
     _plus(lambda ns, root: pa(ns, "orders-canary", "STRICT",
                               {**ORDERS, "meshctl.io/track": "canary"})),
     {"selector-misses-track"}),
    ("selector-misses-track", Severity.HIGH, "a deny-all on the stable pods only",
     _swap("AuthorizationPolicy", "orders-meshctl-deny-all",
           lambda ns, root: ap(ns, "orders-meshctl-deny-all",
                               {**ORDERS, "meshctl.io/track": "stable"})),
     {"selector-misses-track", "missing-default-deny"}),
    ("selector-misses-track", Severity.MEDIUM, "a selector on a version label",
     _plus(lambda ns, root: pa(ns, "billing-v1", "STRICT", {**BILLING, "version": "v1"})),
     {"selector-misses-track"}),
    ("unknown-subset", Severity.HIGH, "the VirtualService routes to a subset the DR lacks",
     _swap("DestinationRule", "orders", lambda ns, root: dr(
         ns, "orders", "orders", "ISTIO_MUTUAL", [subset("stable", "stable")])),
     {"unknown-subset"}),
    ("unknown-subset", Severity.HIGH, "a subset of a host with no DestinationRule",
     _plus(lambda ns, root: vs(ns, "billing", "billing", ["v1"])), {"unknown-subset"}),
]


def seed_id(seed: tuple[str, Severity, str, World, set[str]]) -> str:
    return f"{seed[0]}:{seed[1].value}:{seed[2]}"


# --- generated policies ------------------------------------------------------------------


def secured_examples() -> list[Path]:
    found = []
    for path in sorted((REPO / "rollouts").glob("*.yaml")):
        docs = read_documents(str(path))
        if any(isinstance(d.body, dict) and (d.body.get("spec") or {}).get("security")
               for d in docs):
            found.append(path)
    return found


def _rollouts_of(path: Path) -> list[Rollout]:
    values = [load_document(d.body) for d in read_documents(str(path))]
    return [v for v in values if isinstance(v, Rollout) and v.spec.security is not None]


def test_there_is_a_secured_example():
    assert SECURED in secured_examples()


@pytest.mark.parametrize("path", secured_examples(), ids=lambda p: p.name)
def test_generated_policies_match_the_golden_file(path):
    """Every object meshctl would write for the example (against a namespace holding only the
    Rollout's own DestinationRule). MESHCTL_UPDATE_GOLDEN=1 rewrites the file."""
    written = [a.object for r in _rollouts_of(path) for a in offline_plan(r) if a.writes]
    text = dump_all(written)
    golden = GOLDEN / f"policies-{path.stem}.yaml"
    if os.environ.get("MESHCTL_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.is_file(), f"no golden file {golden.name}: run with MESHCTL_UPDATE_GOLDEN=1"
    assert text == golden.read_text()


def test_policies_are_named_labelled_and_select_both_tracks():
    rollout = secured_rollout()
    objects = desired_policies(rollout).objects
    assert [o["metadata"]["name"] for o in objects] == [
        "orders-meshctl-mtls", "orders-meshctl-deny-all", "orders-meshctl-allow-0",
        "orders-meshctl-allow-1"]
    for obj in objects:
        assert obj["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "meshctl",
                                             "meshctl.io/rollout": "orders"}
        selector = obj["spec"]["selector"]["matchLabels"]
        for track in ("stable", "canary"):
            assert selector.items() <= pod_labels(rollout, track).items()


def test_the_allow_rule_becomes_principals_and_an_operation():
    allow = desired_policies(secured_rollout()).objects[2]
    assert allow["spec"]["rules"] == [{
        "from": [{"source": {"principals": ["cluster.local/ns/web/sa/frontend"]}}],
        "to": [{"operation": {"methods": ["GET", "POST"], "paths": ["/api/*"],
                              "ports": ["8080"]}}],
    }]


def test_namespace_only_and_service_account_only_sources():
    """A namespace alone is a namespaces rule; a service account alone lives in the Rollout's
    namespace."""
    rollout = rollout_from({"security": {"allow": [{"from": [
        {"namespace": "monitoring"}, {"serviceAccount": "batch"}]}]}})
    allow = desired_policies(rollout).objects[-1]
    assert allow["spec"]["rules"] == [{"from": [
        {"source": {"principals": ["cluster.local/ns/shop/sa/batch"]}},
        {"source": {"namespaces": ["monitoring"]}},
    ]}]


def test_host_level_routing_gets_managed_destination_rules_per_host():
    rollout = rollout_from({"trafficRouting": {"istio": {
        "virtualService": {"name": "orders"}, "stableService": "orders-stable",
        "canaryService": "orders-canary"}}})
    desired = desired_policies(rollout)
    rules = [o for o in desired.objects if o["kind"] == "DestinationRule"]
    assert [(o["metadata"]["name"], o["spec"]["host"]) for o in rules] == [
        ("orders-meshctl-tls", "orders"), ("orders-meshctl-tls-stable", "orders-stable"),
        ("orders-meshctl-tls-canary", "orders-canary")]
    assert all(o["spec"]["trafficPolicy"] == {"tls": {"mode": "ISTIO_MUTUAL"}} for o in rules)
    assert desired.borrowed_destination_rule is None


def test_no_security_no_objects():
    doc = secured_document()
    del doc["spec"]["security"]
    rollout = load_document(doc)
    assert isinstance(rollout, Rollout)
    assert desired_policies(rollout) == DesiredPolicies("orders", "shop")


# --- the borrowed DestinationRule ----------------------------------------------------------


@pytest.mark.parametrize("tls", [
    None,
    {"mode": "DISABLE"},
    {"mode": "SIMPLE", "sni": "orders.example", "caCertificates": "/etc/ca.pem"},
])
def test_borrowed_tls_is_set_then_given_back_exactly(tls):
    original = dr("shop", "orders", "orders", subsets=[subset("stable", "stable")])
    if tls is not None:
        original["spec"]["trafficPolicy"] = {"tls": tls, "connectionPool": {"tcp": {}}}
    secured = with_mutual_tls(original, "orders")
    assert secured["spec"]["trafficPolicy"]["tls"]["mode"] == "ISTIO_MUTUAL"
    assert "caCertificates" not in secured["spec"]["trafficPolicy"]["tls"]
    assert with_mutual_tls(secured, "orders") == secured, "a second pass changes nothing"
    assert without_mutual_tls(secured, "someone-else") == secured
    assert without_mutual_tls(secured, "orders") == original


def test_a_hostile_tls_record_is_no_ones_and_left_alone():
    """Anyone who may edit the DestinationRule may write this annotation: a value that does
    not parse (or nests past the parser's depth) is borrowed by no Rollout, not a crash."""
    for raw in ("[" * 100_000, "not json", "[]"):
        found = dr("shop", "orders", "orders", "DISABLE")
        found["metadata"]["annotations"] = {"meshctl.io/original-tls": raw}
        assert borrowed_by(found) is None
        assert without_mutual_tls(found, "orders") == found


def test_already_mutual_is_not_touched():
    original = dr("shop", "orders", "orders", "ISTIO_MUTUAL")
    assert with_mutual_tls(original, "orders") == original


# --- the plan ----------------------------------------------------------------------------


def live(obj: Obj, **metadata: Any) -> Obj:
    """An object as the API server returns it: with server metadata."""
    out = copy.deepcopy(obj)
    out["metadata"].update({"resourceVersion": "7", "uid": "u-1",
                            "creationTimestamp": "2024-01-01T00:00:00Z", **metadata})
    return out


def verbs(actions) -> list[tuple[str, str, str]]:
    return [(a.verb.value, a.kind, a.name) for a in actions]


def test_plan_on_an_empty_namespace_creates_everything():
    desired = desired_policies(secured_rollout())
    user_rule = dr("shop", "orders", "orders", subsets=[subset("stable", "stable")])
    assert verbs(policy_plan(desired, [user_rule])) == [
        ("create", "PeerAuthentication", "orders-meshctl-mtls"),
        ("create", "AuthorizationPolicy", "orders-meshctl-deny-all"),
        ("create", "AuthorizationPolicy", "orders-meshctl-allow-0"),
        ("create", "AuthorizationPolicy", "orders-meshctl-allow-1"),
        ("update", "DestinationRule", "orders"),
    ]


def converged_namespace() -> list[Obj]:
    desired = desired_policies(secured_rollout())
    user_rule = with_mutual_tls(dr("shop", "orders", "orders"), "orders")
    return [live(o) for o in (*desired.objects, user_rule)]


def test_plan_of_a_converged_namespace_writes_nothing():
    actions = policy_plan(desired_policies(secured_rollout()), converged_namespace())
    assert {a.verb for a in actions} == {Verb.UNCHANGED}
    assert not any(a.writes for a in actions)


def test_drift_is_corrected_and_named_as_drift():
    world = converged_namespace()
    world[0]["spec"]["mtls"]["mode"] = "PERMISSIVE"  # someone edits meshctl's PeerAuthentication
    actions = policy_plan(desired_policies(secured_rollout()), world)
    update = next(a for a in actions if a.verb is Verb.UPDATE)
    assert update.name == "orders-meshctl-mtls"
    assert [str(c) for c in update.changes] == ['spec.mtls.mode: "PERMISSIVE" -> "STRICT"']
    assert update.reason.startswith("drift")
    fixed = converged(world[0], update.object)
    assert fixed["spec"]["mtls"]["mode"] == "STRICT"
    assert fixed["metadata"]["resourceVersion"] == "7", "server metadata is kept"


def test_a_changed_security_block_updates_and_deletes():
    world = converged_namespace()
    fewer = rollout_from({"security": {"allow": [
        {"from": [{"namespace": "web", "serviceAccount": "checkout"}]}]}})
    actions = policy_plan(desired_policies(fewer), world)
    assert [(a.verb.value, a.name) for a in actions if a.writes] == [
        ("update", "orders-meshctl-allow-0"), ("delete", "orders-meshctl-allow-1")]
    assert next(a for a in actions if a.writes).reason == "the Rollout's security changed"


def test_objects_of_others_are_never_changed():
    """A foreign object holding meshctl's name is skipped; another Rollout's objects and
    unlabelled objects are neither updated nor deleted."""
    desired = desired_policies(secured_rollout())
    foreign = live(ap("shop", "orders-meshctl-deny-all", ORDERS, "ALLOW", [{}]))
    other_rollout = live(copy.deepcopy(desired.objects[2]))
    other_rollout["metadata"].update(name="payments-meshctl-allow-0")
    other_rollout["metadata"]["labels"]["meshctl.io/rollout"] = "payments"
    team = live(ap("shop", "team-policy", ORDERS, "ALLOW", [principal_rule(FRONTEND)]))
    actions = policy_plan(desired, [foreign, other_rollout, team])
    touched = {a.name for a in actions if a.writes}
    assert touched.isdisjoint({"orders-meshctl-deny-all", "payments-meshctl-allow-0",
                               "team-policy"})
    skip = next(a for a in actions if a.name == "orders-meshctl-deny-all")
    assert skip.verb is Verb.SKIP and "not meshctl's" in skip.reason


def test_removing_security_deletes_and_restores():
    world = converged_namespace()
    nothing = DesiredPolicies("orders", "shop")
    actions = policy_plan(nothing, world)
    assert sorted(verbs(actions)) == sorted([
        ("delete", "PeerAuthentication", "orders-meshctl-mtls"),
        ("delete", "AuthorizationPolicy", "orders-meshctl-deny-all"),
        ("delete", "AuthorizationPolicy", "orders-meshctl-allow-0"),
        ("delete", "AuthorizationPolicy", "orders-meshctl-allow-1"),
        ("restore", "DestinationRule", "orders"),
    ])
    restore = next(a for a in actions if a.verb is Verb.RESTORE)
    assert restore.object is not None and "trafficPolicy" not in restore.object["spec"]


def test_diff_and_hash():
    assert diff({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}})[0].path == "b.c"
    assert [c.path for c in diff({"a": [1]}, {})] == ["a"]
    assert spec_hash({"a": 1, "b": 2}) == spec_hash({"b": 2, "a": 1})


# --- the audit ---------------------------------------------------------------------------


def test_a_clean_world_has_no_findings():
    assert audit(clean_world("shop", "istio-system")) == []


def test_nothing_in_nothing_found():
    assert audit([]) == []


@pytest.mark.parametrize("seed", SEEDS, ids=seed_id)
def test_each_rule_is_found_on_its_seeded_misconfiguration(seed):
    rule, severity, _, world, expected = seed
    findings = audit(world("shop", "istio-system"))
    assert {f.rule for f in findings} == expected, [f.message for f in findings]
    assert any(f.rule == rule and f.severity is severity for f in findings), findings
    for finding in findings:
        assert finding.message and finding.fix and finding.name


@pytest.mark.parametrize("host, namespace, expected", [
    ("orders", "shop", "orders.shop.svc.cluster.local"),
    ("orders.shop.svc", "web", "orders.shop.svc.cluster.local"),
    ("orders.shop.svc.cluster.local", "web", "orders.shop.svc.cluster.local"),
    ("api.example.com", "shop", "api.example.com"),
])
def test_hosts_resolve_as_istio_resolves_them(host, namespace, expected):
    assert fqdn(host, namespace) == expected


def test_a_short_host_in_another_namespace_is_another_service():
    """``orders`` in namespace web is orders.web, not the STRICT orders.shop."""
    world = [*clean_world("shop", "istio-system"),
             dr("web", "orders", "orders", "DISABLE"), pa("web", "default", "PERMISSIVE")]
    rules = {(f.rule, f.namespace) for f in audit(world)}
    assert ("dr-tls-conflict", "web") not in rules
    assert ("dr-tls-disabled", "web") in rules


def test_a_wildcard_host_reaches_every_known_service_below_it():
    world = [*clean_world("shop", "istio-system"),
             dr("istio-system", "all-plaintext", "*.local", "DISABLE")]
    conflict = next(f for f in audit(world) if f.rule == "dr-tls-conflict")
    assert conflict.hosts == ("orders.shop.svc.cluster.local",)


def test_deployment_labels_show_a_version_selector_misses_the_canary():
    """The stable Deployment says version v1, the Rollout's new template v2: a policy on
    version v1 covers the stable pods only."""
    def template(version: str) -> Obj:
        return {"metadata": {"labels": {**ORDERS, "version": version}}}

    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta("shop", "orders"),
                  "spec": {"template": template("v1")}}
    rollout = secured_document()
    rollout["spec"]["template"] = template("v2")
    world = [*_replace(clean_world("shop", "istio-system"), "orders", "Rollout", rollout),
             deployment, ap("shop", "v1-only", {**ORDERS, "version": "v1"}, "ALLOW",
                            [principal_rule(FRONTEND)])]
    found = [f for f in audit(world) if f.rule == "selector-misses-track"]
    assert [(f.name, f.severity) for f in found] == [("v1-only", Severity.HIGH)]
    assert "stable pods of Rollout orders" in found[0].message


@pytest.mark.parametrize("policies, port, mode", [
    ([], None, "PERMISSIVE"),
    ([pa("istio-system", "default", "STRICT")], None, "STRICT"),
    ([pa("istio-system", "default", "STRICT"), pa("shop", "default", "PERMISSIVE")], None,
     "PERMISSIVE"),
    ([pa("shop", "default", "DISABLE"), pa("shop", "w", "STRICT", ORDERS)], None, "STRICT"),
    ([pa("shop", "default", "DISABLE"), pa("shop", "w", "UNSET", ORDERS)], None, "DISABLE"),
    ([pa("shop", "w", "STRICT", ORDERS, {8080: "PERMISSIVE"})], 8080, "PERMISSIVE"),
    ([pa("shop", "w", "STRICT", ORDERS, {8080: "PERMISSIVE"})], 9090, "STRICT"),
])
def test_effective_mode_follows_istio_precedence(policies, port, mode):
    inv = inventory(policies)
    assert effective_mode(inv, "shop", {**ORDERS, "meshctl.io/track": "canary"}, port)[0] == mode


# --- the gate ----------------------------------------------------------------------------


def test_findings_for_a_rollout_are_about_its_service_or_pods():
    rollout = secured_rollout()
    mesh_disabled = pa("istio-system", "default", "DISABLE")  # meshctl's STRICT overrides it
    world = [*_replace(clean_world("shop", "istio-system"), "default", "PeerAuthentication",
                       mesh_disabled),
             pa("shop", "billing", "DISABLE", BILLING),  # another workload
             dr("shop", "orders-edge", "orders", "SIMPLE")]  # its host
    mine = findings_for(audit(world, rollouts=[rollout]), rollout)
    assert {(f.rule, f.name) for f in mine} == {("dr-tls-conflict", "orders-edge")}


def high(rule: str) -> Finding:
    return Finding("DestinationRule", "shop", "x", rule, Severity.HIGH, "bad", "fix",
                   Scope.HOST, (), ("orders.shop.svc.cluster.local",))


def medium() -> Finding:
    return Finding("PeerAuthentication", "shop", "y", "mtls-permissive", Severity.MEDIUM, "meh",
                   "fix")


@pytest.mark.parametrize("findings, share, is_open, fragment", [
    ([], Value(1.0), True, "all canary traffic is mutual TLS"),
    ([medium()], Value(1.0), True, "all canary traffic"),
    ([], Value(0.97), False, "3.00% of canary requests are not mutual TLS"),
    ([], Value(0.0), False, "100.00%"),
    ([high("dr-tls-conflict")], Value(1.0), False, "dr-tls-conflict on DestinationRule shop/x"),
    ([high("a"), high("b")], Value(1.0), False, "(and 1 more)"),
    ([], NoData("no requests in 1m"), False, "no canary traffic to check (no requests in 1m)"),
    ([], Error("prometheus: 503"), False, "unknown: prometheus: 503"),
    ([high("a")], NoData(), False, "a on DestinationRule"),
], ids=["all-mtls", "medium-does-not-block", "some-plaintext", "all-plaintext",
        "high-finding", "several-high", "no-traffic-closes", "error-closes", "high-beats-no-data"])
def test_mtls_gate(findings, share, is_open, fragment):
    opened, reason = mtls_gate(findings, share)
    assert opened is is_open
    assert fragment in reason


def test_no_traffic_opens_the_mtls_gate_only_when_the_spec_says_so():
    opened, reason = mtls_gate([], NoData("no requests in 1m"), opens_without_traffic=True)
    assert opened and "no canary traffic to check" in reason
    opened, reason = mtls_gate([], NoData("no requests in 1m"))
    assert not opened and "mtlsGateOpensWithoutTraffic" in reason


def test_the_cli_spells_the_domain_values():
    """The policy command writes severities and the root namespace out to stay cheap to
    import; they must be the domain's."""
    import meshctl.cli.policy as policy_cli
    from meshctl.domain.audit import ROOT_NAMESPACE

    assert [s.value for s in Severity] == policy_cli.SEVERITIES
    assert policy_cli.ROOT_NAMESPACE == ROOT_NAMESPACE


# --- the command line, offline -----------------------------------------------------------


def run(*args: str):
    from click.testing import CliRunner

    from meshctl.cli.main import cli

    return CliRunner().invoke(cli, list(args))


def test_offline_plan_lists_what_would_be_written():
    result = run("-o", "json", "policy", "plan", "--offline", "-f", str(SECURED))
    assert result.exit_code == 0, result.output
    actions = json.loads(result.output)["rollouts"][0]["actions"]
    assert [(a["action"], a["name"], a["borrowed"]) for a in actions] == [
        ("create", "orders-meshctl-mtls", False), ("create", "orders-meshctl-deny-all", False),
        ("create", "orders-meshctl-allow-0", False), ("create", "orders-meshctl-allow-1", False),
        ("update", "orders", True)]


def test_audit_of_files_reads_lists_and_fails_on_severity(tmp_path):
    """A ``kubectl get -o yaml`` List is unpacked; exit 1 only at or above --fail-on."""
    listed = {"apiVersion": "v1", "kind": "List", "items": [
        *clean_world("shop", "istio-system"),
        ap("shop", "health", ORDERS, "ALLOW", [{"to": [{"operation": {"paths": ["/h"]}}]}])]}
    path = tmp_path / "objects.yaml"
    path.write_text(dump_all([listed]))

    passing = run("policy", "audit", "-f", str(path))
    failing = run("policy", "audit", "-f", str(path), "--fail-on", "low")

    assert passing.exit_code == 0, passing.output
    assert "LOW    allow-any-source  AuthorizationPolicy shop/health" in passing.output
    assert passing.output.strip().endswith("1 finding(s): 0 high, 0 medium, 1 low")
    assert failing.exit_code == 1


@pytest.mark.parametrize("text, fragment", [
    ("kind: [unclosed", "YAML syntax error"),
    ("- a\n- list\n", "not a Kubernetes object"),
])
def test_audit_of_bad_files_is_exit_2_in_one_line(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = run("policy", "audit", "-f", str(path))
    assert result.exit_code == 2
    assert fragment in result.stderr and "Traceback" not in result.output
