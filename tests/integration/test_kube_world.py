"""The Kubernetes adapter against the real API server of the test world.

What a fake could not tell us: that the Istio and meshctl schemas reject bad objects (422),
that a stale resourceVersion is a 409 the adapter retries, and that the controller's RBAC
allows what it needs and denies Secrets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from meshctl.adapters.errors import Conflict, Forbidden, Invalid, translated
from meshctl.adapters.kube import Kube
from testworld.kube import KUBE_VERSION, KubeWorld

pytestmark = pytest.mark.kube

REPO = Path(__file__).resolve().parents[2]
ROLLOUT_CRD = REPO / "manifests" / "crds" / "rollouts.yaml"
VS = ("networking.istio.io", "v1", "virtualservices")
CONTROLLER = ("meshctl-system", "meshctl-controller")
CONTROLLER_USER = "system:serviceaccount:meshctl-system:meshctl-controller"


def virtual_service(name: str, stable: Any = 100, canary: Any = 0, hosts: Any = None) -> dict:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {
            "hosts": [name] if hosts is None else hosts,
            "http": [
                {
                    "name": "primary",
                    "route": [
                        {"destination": {"host": name, "subset": "stable"}, "weight": stable},
                        {"destination": {"host": name, "subset": "canary"}, "weight": canary},
                    ],
                }
            ],
        },
    }


def weights(vs: dict) -> list[int]:
    return [route["weight"] for route in vs["spec"]["http"][0]["route"]]


@pytest.fixture
def adapter(kube: KubeWorld) -> Iterator[Kube]:
    with Kube.from_kubeconfig(kube.kubeconfig_path) as k:
        yield k


# -- schemas --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "vs", "field"),
    [
        ("a weight must be an integer", virtual_service("reviews", stable="ten"), "weight"),
        ("hosts must be a list", virtual_service("reviews", hosts="reviews"), "hosts"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_istio_schema_rejects_a_wrongly_typed_virtual_service(
    adapter: Kube, namespace: str, case: str, vs: dict, field: str
) -> None:
    with pytest.raises(Invalid) as rejected:
        adapter.create(*VS[:2], namespace, VS[2], vs)

    assert rejected.value.status == 422, case
    assert any(field in cause.field for cause in rejected.value.causes), rejected.value.causes


def test_rollout_schema_rejects_a_weight_above_100(adapter: Kube, namespace: str) -> None:
    # Fails (never skips) until manifests/crds/rollouts.yaml exists: the world installs it.
    assert ROLLOUT_CRD.is_file(), f"meshctl's Rollout CRD is missing: {ROLLOUT_CRD}"
    rollout = {
        "apiVersion": "meshctl.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "reviews"},
        "spec": {
            "service": "reviews",
            "strategy": {"canary": {"steps": [{"setWeight": 120}]}},
        },
    }

    with pytest.raises(Invalid) as rejected:
        adapter.create("meshctl.io", "v1alpha1", namespace, "rollouts", rollout)

    assert rejected.value.status == 422
    assert any(
        cause.field.endswith("steps[0].setWeight") for cause in rejected.value.causes
    ), rejected.value.causes


def test_the_example_rollouts_are_accepted_by_the_crds(adapter: Kube, namespace: str) -> None:
    """rollouts/ doubles as documentation: every example must pass the real schema."""
    plurals = {"Rollout": "rollouts", "AnalysisTemplate": "analysistemplates"}
    examples = [
        doc
        for path in sorted((REPO / "rollouts").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("apiVersion") == "meshctl.io/v1alpha1"
    ]
    assert examples, "no example Rollouts in rollouts/"

    for doc in examples:  # one at a time: two examples may use the same name
        doc["metadata"].pop("namespace", None)
        plural = plurals[doc["kind"]]
        created = adapter.create("meshctl.io", "v1alpha1", namespace, plural, doc)
        assert created["metadata"]["uid"]
        adapter.delete("meshctl.io", "v1alpha1", namespace, plural, doc["metadata"]["name"])


# -- optimistic concurrency ---------------------------------------------------------------


def test_replace_with_a_stale_resource_version_is_a_conflict(
    adapter: Kube, namespace: str
) -> None:
    stale = adapter.create(*VS[:2], namespace, VS[2], virtual_service("reviews"))
    adapter.merge_patch(*VS[:2], namespace, VS[2], "reviews", {"metadata": {"labels": {"a": "b"}}})

    with pytest.raises(Conflict) as conflict:
        adapter.replace(*VS[:2], namespace, VS[2], stale)

    assert conflict.value.status == 409


def test_update_with_retry_rereads_after_a_concurrent_write(
    adapter: Kube, kube: KubeWorld, namespace: str
) -> None:
    """Given a writer that changes the VirtualService between our read and our write,
    the first PUT is a 409; the retry re-reads, and both changes survive."""
    adapter.create(*VS[:2], namespace, VS[2], virtual_service("reviews"))
    seen_versions: list[str] = []

    def shift_to_canary(vs: dict) -> dict:
        seen_versions.append(vs["metadata"]["resourceVersion"])
        if len(seen_versions) == 1:
            with Kube.from_kubeconfig(kube.kubeconfig_path, field_manager="other") as other:
                other.merge_patch(
                    *VS[:2], namespace, VS[2], "reviews", {"metadata": {"labels": {"team": "x"}}}
                )
        routes = vs["spec"]["http"][0]["route"]
        routes[0]["weight"], routes[1]["weight"] = 90, 10
        return vs

    updated = adapter.update_with_retry(*VS[:2], namespace, VS[2], "reviews", shift_to_canary)

    assert (updated.attempts, updated.changed) == (2, True)
    assert seen_versions[0] != seen_versions[1]
    stored = adapter.get(*VS[:2], namespace, VS[2], "reviews")
    assert weights(stored) == [90, 10]
    assert stored["metadata"]["labels"] == {"team": "x"}


def test_update_with_retry_writes_nothing_when_nothing_changes(
    adapter: Kube, namespace: str
) -> None:
    created = adapter.create(*VS[:2], namespace, VS[2], virtual_service("reviews"))

    updated = adapter.update_with_retry(*VS[:2], namespace, VS[2], "reviews", lambda vs: vs)

    assert (updated.attempts, updated.changed) == (1, False)
    assert updated.object["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_server_side_apply_records_meshctl_as_field_manager(
    adapter: Kube, namespace: str
) -> None:
    applied = adapter.apply(*VS[:2], namespace, VS[2], virtual_service("reviews", 80, 20))

    assert weights(applied) == [80, 20]
    managers = {entry["manager"] for entry in applied["metadata"]["managedFields"]}
    assert managers == {"meshctl"}


# -- RBAC of the controller -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("verb", "group", "resource", "allowed"),
    [
        ("patch", "networking.istio.io", "virtualservices", True),
        ("watch", "networking.istio.io", "destinationrules", True),
        ("update", "meshctl.io", "rollouts/status", True),
        ("create", "security.istio.io", "authorizationpolicies", True),
        ("create", "", "events", True),
        ("list", "events.k8s.io", "events", True),  # the gRPC API's History
        ("watch", "events.k8s.io", "events", False),
        ("get", "", "secrets", False),
        ("list", "", "secrets", False),
        ("get", "", "configmaps", False),
        ("delete", "meshctl.io", "rollouts", False),
        ("delete", "", "pods", False),
        ("create", "batch", "jobs", True),  # release gates: a job gate's Job
        ("delete", "batch", "jobs", False),  # deleted with its Rollout (owner reference)
    ],
)
def test_controller_role_is_least_privilege(
    kube: KubeWorld, namespace: str, verb: str, group: str, resource: str, allowed: bool
) -> None:
    kube.apply_file(REPO / "manifests" / "rbac")
    resource, _, subresource = resource.partition("/")
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=CONTROLLER_USER,
            groups=["system:serviceaccounts", "system:serviceaccounts:meshctl-system"],
            resource_attributes=client.V1ResourceAttributes(
                verb=verb,
                group=group,
                resource=resource,
                subresource=subresource or None,
                namespace=namespace,
            ),
        )
    )

    with kube.api_client() as api:
        answer = client.AuthorizationV1Api(api).create_subject_access_review(review)

    assert answer.status.allowed is allowed


def test_controller_token_patches_virtual_services_and_is_refused_secrets(
    adapter: Kube, kube: KubeWorld, namespace: str
) -> None:
    kube.apply_file(REPO / "manifests" / "rbac")
    adapter.create(*VS[:2], namespace, VS[2], virtual_service("reviews"))
    as_controller = Kube.from_kubeconfig(kube.service_account_kubeconfig(*CONTROLLER))

    patched = as_controller.merge_patch(
        *VS[:2], namespace, VS[2], "reviews", {"metadata": {"labels": {"by": "controller"}}}
    )
    with pytest.raises(Forbidden) as refused, translated():
        client.CoreV1Api(as_controller.api_client).list_namespaced_secret(namespace)

    assert patched["metadata"]["labels"] == {"by": "controller"}
    assert refused.value.status == 403
    as_controller.close()


def test_impersonating_the_controller_is_refused_secrets(kube: KubeWorld, namespace: str) -> None:
    kube.apply_file(REPO / "manifests" / "rbac")

    with kube.impersonate(CONTROLLER_USER) as api, pytest.raises(Forbidden), translated():
        client.CoreV1Api(api).read_namespaced_secret("anything", namespace)


# -- the world itself -----------------------------------------------------------------------


def test_server_reports_the_version_it_was_built_as(kube: KubeWorld) -> None:
    assert kube.request("GET", "/version")["gitVersion"] == KUBE_VERSION


def test_istio_crds_are_served(adapter: Kube, namespace: str) -> None:
    for group, version, plural in [
        VS,
        ("networking.istio.io", "v1", "destinationrules"),
        ("security.istio.io", "v1", "peerauthentications"),
        ("security.istio.io", "v1", "authorizationpolicies"),
    ]:
        assert adapter.list(group, version, namespace, plural) == []
