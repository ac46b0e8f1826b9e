"""One gated rollout end to end in the test world: the real controller (as its
ServiceAccount) drives a Rollout with a deployment window before each increase and a
four-eyes approval before promotion; three people (ServiceAccounts with real tokens) start
and approve it through the CLI; the cluster tier runs the Pods. The history's audit trail
and the events name each identity; the test prints the timeline (`pytest -s`)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from meshctl.cli.main import cli
from meshctl.domain.spec import GROUP, VERSION

from .running_controller import RunningController

pytestmark = [pytest.mark.kube, pytest.mark.cluster, pytest.mark.prometheus]


def meshctl(kubeconfig: str, namespace: str, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--kubeconfig", kubeconfig, "-n", namespace, *args])


def test_a_gated_rollout_waits_for_two_approvals_and_records_who(kube, cluster, namespace,
                                                                 istio_metrics):
    _, url = istio_metrics
    kube.request("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles", {
        "metadata": {"name": "release"},
        "rules": [{"apiGroups": [GROUP], "resources": ["rollouts"],
                   "verbs": ["get", "list", "watch", "update", "patch"]},
                  {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["list"]},
                  {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}]})
    kube.request("POST",
                 f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings", {
                     "metadata": {"name": "release"},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                 "name": "release"},
                     "subjects": [{"kind": "Group",
                                   "name": f"system:serviceaccounts:{namespace}"}]})
    people = {}
    for name in ("ann", "bob", "cem"):
        kube.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                     {"metadata": {"name": name}})
        people[name] = str(kube.service_account_kubeconfig(namespace, name))
    user = {n: f"system:serviceaccount:{namespace}:{n}" for n in people}

    with RunningController(kube, namespace, url,
                           steps=[{"setWeight": 25}, {"setWeight": 50}]) as c:
        kube.request("PATCH", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/rollouts/web", {
            "spec": {"gates": [
                {"name": "change-window", "at": ["beforeIncrease"], "window": {
                    "timeZone": "Europe/Stockholm",
                    "freezes": [{"start": "2020-12-20", "end": "2021-01-06",
                                 "reason": "year-end"}]}},
                {"name": "cab", "at": ["beforePromotion"], "approval": {
                    "count": 2, "groups": [f"system:serviceaccounts:{namespace}"],
                    "forbidStarter": True}}]}},
            content_type="application/merge-patch+json")
        started = meshctl(people["ann"], namespace, "rollout", "start", "web",
                          "--image", "web:2")
        assert started.exit_code == 0, started.output
        c.wait_for(lambda o: "waiting for gate cab" in (o.get("status") or {}).get(
            "message", ""), timeout=120, what="the approval gate")
        assert c.weights() == {"stable": 50, "canary": 50}

        refused = meshctl(people["ann"], namespace, "rollout", "approve", "web")
        assert refused.exit_code == 2 and "four eyes" in refused.output
        for who, comment in (("bob", "CAB-1042 risk low"), ("cem", "ops on call")):
            done = meshctl(people[who], namespace, "rollout", "approve", "web",
                           "--comment", comment)
            assert done.exit_code == 0, done.output
        c.wait_for(lambda o: (o.get("status") or {}).get("phase") == "Healthy", timeout=120,
                   what="promotion after two approvals")
        assert c.image() == "web:2"

        shown = meshctl(people["ann"], namespace, "-o", "json", "rollout", "history", "web")
        assert shown.exit_code == 0, shown.output
        found = json.loads(shown.stdout)
    audit = [(a["action"], a["by"]) for a in found["audit"]]
    assert audit[0] == ("start", user["ann"])
    assert ("approve", user["bob"]) in audit and ("approve", user["cem"]) in audit
    passed = [a for a in found["audit"] if a["action"] == "gate-passed"
              and a["detail"].startswith("cab ")]
    assert passed and set(passed[0]["by"].split(", ")) == {user["bob"], user["cem"]}
    started = next(e for e in found["events"] if e["reason"] == "RolloutStarted")
    assert started["message"].endswith(f"({user['ann']} via kubernetes)")
    reasons = [e["reason"] for e in found["events"]]
    assert reasons.count("Approved") >= 1 and "GatePassed" in reasons
    assert reasons.index("GatePassed") < len(reasons) - 1
    print("\nTimeline of the gated rollout (events, then the audit trail):")
    for e in found["events"]:
        print(f"  {e['time']}  {e['type']:<7} {e['reason']:<18} {e['message']}")
    for a in found["audit"]:
        print(f"  {a['time']}  {a['action']:<12} by {a['by'] or '-'} via {a['via']}"
              f"{'  # ' + a['comment'] if a['comment'] else ''}"
              f"{'  ' + a['detail'] if a['detail'] else ''}")
