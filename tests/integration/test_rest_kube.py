"""The CLI's standard-library client (RestKube) against the real API server: the same
objects and the same errors as the full client (Kube), for every call the CLI makes."""

from __future__ import annotations

import base64
import json
import threading

import pytest
import yaml

from meshctl.adapters.errors import Conflict, Forbidden, Invalid, NotFound
from meshctl.adapters.kube import Kube
from meshctl.adapters.rest import RestKube, endpoint_from_kubeconfig
from meshctl.domain.spec import GROUP, VERSION

from .cluster_world import rollout

pytestmark = pytest.mark.kube


@pytest.fixture
def clients(kube, namespace):
    quick = RestKube.connect(kube.kubeconfig_path)
    assert quick is not None
    full = Kube.from_kubeconfig(kube.kubeconfig_path)
    full.create(GROUP, VERSION, namespace, "rollouts", rollout(namespace, "web:1",
                                                              [{"setWeight": 50}]))
    yield quick, full
    quick.close()
    full.close()


def test_reads_answer_what_the_full_client_answers(clients, namespace):
    quick, full = clients
    assert quick.get(GROUP, VERSION, namespace, "rollouts", "web") == \
        full.get(GROUP, VERSION, namespace, "rollouts", "web")
    assert quick.list(GROUP, VERSION, namespace, "rollouts") == \
        full.list(GROUP, VERSION, namespace, "rollouts")
    items, version = quick.list_all(GROUP, VERSION, "rollouts")
    assert any(i["metadata"]["namespace"] == namespace for i in items) and version
    assert quick.get_or_none(GROUP, VERSION, namespace, "rollouts", "nope") is None
    with pytest.raises(NotFound):
        quick.get(GROUP, VERSION, namespace, "rollouts", "nope")


def test_writes_and_their_errors(clients, namespace):
    quick, full = clients
    patched = quick.merge_patch(GROUP, VERSION, namespace, "rollouts", "web",
                                {"metadata": {"annotations": {"a": "1"}}})
    assert patched["metadata"]["annotations"]["a"] == "1"
    updated = quick.update_with_retry(GROUP, VERSION, namespace, "rollouts", "web",
                                      lambda o: {**o, "spec": {**o["spec"], "paused": True}})
    assert updated.changed and updated.object["spec"]["paused"] is True
    unchanged = quick.update_with_retry(GROUP, VERSION, namespace, "rollouts", "web", lambda o: o)
    assert not unchanged.changed
    stale = dict(full.get(GROUP, VERSION, namespace, "rollouts", "web"))
    quick.merge_patch(GROUP, VERSION, namespace, "rollouts", "web", {"spec": {"paused": False}})
    with pytest.raises(Conflict):
        quick.replace(GROUP, VERSION, namespace, "rollouts", stale)
    with pytest.raises(Invalid):
        quick.merge_patch(GROUP, VERSION, namespace, "rollouts", "web",
                          {"spec": {"strategy": {"canary": {"steps": [{"setWeight": 300}]}}}})
    applied = quick.apply(GROUP, VERSION, namespace, "rollouts",
                          rollout(namespace, "web:2", [{"setWeight": 30}]), force=True)
    assert applied["spec"]["template"]["spec"]["containers"][0]["image"] == "web:2"
    assert any(m["manager"] == "meshctl" and m["operation"] == "Apply"
               for m in applied["metadata"]["managedFields"])


def test_watch_sees_each_change_then_ends_when_the_server_does(clients, namespace):
    quick, full = clients
    start = quick.get(GROUP, VERSION, namespace, "rollouts", "web")["metadata"]["resourceVersion"]
    seen: list[str] = []

    def follow() -> None:
        for kind, obj in quick.watch(GROUP, VERSION, "rollouts", start, 2, namespace=namespace,
                                     field_selector="metadata.name=web"):
            seen.append(f"{kind} {obj['metadata'].get('annotations', {}).get('n')}")

    reader = threading.Thread(target=follow)
    reader.start()
    for n in ("1", "2"):
        full.merge_patch(GROUP, VERSION, namespace, "rollouts", "web",
                         {"metadata": {"annotations": {"n": n}}})
    reader.join(10)
    assert not reader.is_alive()  # ended with the server's timeout
    assert seen == ["MODIFIED 1", "MODIFIED 2"]


def test_a_forbidden_identity_gets_forbidden(kube, namespace):
    token_config = kube.service_account_kubeconfig(namespace, "default")
    quick = RestKube.connect(token_config)
    assert quick is not None  # a bearer token
    with quick, pytest.raises(Forbidden):
        quick.get(GROUP, VERSION, namespace, "rollouts", "web")


@pytest.mark.parametrize("user", [
    {"exec": {"command": "aws", "apiVersion": "client.authentication.k8s.io/v1"}},
    {"auth-provider": {"name": "oidc"}},
    {"username": "admin", "password": "secret"},
])
def test_configurations_it_cannot_use_are_left_to_the_full_client(tmp_path, user):
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
              "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443"}}],
              "users": [{"name": "u", "user": user}],
              "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    assert endpoint_from_kubeconfig(path, None) is None


def test_relative_certificate_files_and_the_context_namespace(kube, tmp_path):
    config = yaml.safe_load(kube.kubeconfig_path.read_text())
    user = config["users"][0]["user"]
    (tmp_path / "admin.crt").write_bytes(base64.b64decode(
        user.pop("client-certificate-data")))
    (tmp_path / "admin.key").write_bytes(base64.b64decode(
        user.pop("client-key-data")))
    user.update({"client-certificate": "admin.crt", "client-key": "admin.key"})
    config["contexts"][0]["context"]["namespace"] = "shop"
    path = tmp_path / "config"
    path.write_text(json.dumps(config))
    quick = RestKube.connect(path)
    assert quick is not None and quick.namespace == "shop"
    with quick:
        assert quick.list_all(GROUP, VERSION, "rollouts")[1]


# -- the controller's calls (meshctl controller run talks through RestKube) --------------


def _named(ns: str, name: str, image: str) -> dict:
    body = rollout(ns, image, [{"setWeight": 50}])
    body["metadata"]["name"] = name
    return body


def test_create_status_patch_and_delete(clients, namespace):
    quick, full = clients
    created = quick.create(GROUP, VERSION, namespace, "rollouts", _named(namespace, "api", "a:1"))
    assert created["metadata"]["uid"]
    patched = quick.merge_patch_status(GROUP, VERSION, namespace, "rollouts", "api",
                                       {"status": {"phase": "Healthy"}})
    assert patched["status"]["phase"] == "Healthy"
    assert full.get(GROUP, VERSION, namespace, "rollouts", "api")["status"]["phase"] == "Healthy"
    quick.delete(GROUP, VERSION, namespace, "rollouts", "api")
    assert full.get_or_none(GROUP, VERSION, namespace, "rollouts", "api") is None
    with pytest.raises(NotFound):
        quick.delete(GROUP, VERSION, namespace, "rollouts", "api")


def test_list_all_reads_every_page_of_one_snapshot(clients, namespace):
    quick, full = clients
    for i in range(4):
        full.create(GROUP, VERSION, namespace, "rollouts", _named(namespace, f"p{i}", "a:1"))
    paged, version = quick.list_all(GROUP, VERSION, "rollouts", page_size=2, namespace=namespace)
    whole, _ = full.list_all(GROUP, VERSION, "rollouts", namespace=namespace)
    assert sorted(i["metadata"]["name"] for i in paged) == \
        sorted(i["metadata"]["name"] for i in whole) == ["p0", "p1", "p2", "p3", "web"]
    assert int(version) >= max(int(i["metadata"]["resourceVersion"]) for i in paged)


def test_watch_with_bookmarks_resumes_from_the_last_version_seen(clients, namespace):
    quick, full = clients
    _, start = quick.list_all(GROUP, VERSION, "rollouts", namespace=namespace)
    full.merge_patch(GROUP, VERSION, namespace, "rollouts", "web",
                     {"metadata": {"annotations": {"n": "1"}}})
    seen = [(kind, obj["metadata"]["resourceVersion"]) for kind, obj in
            quick.watch(GROUP, VERSION, "rollouts", start, 1, namespace=namespace,
                        bookmarks=True)]
    assert [k for k, _ in seen if k != "BOOKMARK"] == ["MODIFIED"]
    last = seen[-1][1]
    full.merge_patch(GROUP, VERSION, namespace, "rollouts", "web",
                     {"metadata": {"annotations": {"n": "2"}}})
    again = [obj["metadata"].get("annotations", {}).get("n") for kind, obj in
             quick.watch(GROUP, VERSION, "rollouts", last, 1, namespace=namespace,
                         bookmarks=True) if kind == "MODIFIED"]
    assert again == ["2"]  # nothing seen twice, nothing missed


def test_one_client_serves_many_threads_at_once(clients, namespace):
    quick, full = clients
    for i in range(6):
        full.create(GROUP, VERSION, namespace, "rollouts", _named(namespace, f"t{i}", "a:1"))
    failures: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for n in range(10):
                quick.merge_patch(GROUP, VERSION, namespace, "rollouts", f"t{i}",
                                  {"metadata": {"annotations": {"n": str(n)}}})
                got = quick.get(GROUP, VERSION, namespace, "rollouts", f"t{i}")
                assert got["metadata"]["annotations"]["n"] == str(n)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    assert all(full.get(GROUP, VERSION, namespace, "rollouts", f"t{i}")["metadata"]
               ["annotations"]["n"] == "9" for i in range(6))
