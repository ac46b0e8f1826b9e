"""The dashboard against the real API server: rollouts listed from the watch, status
changes and deletions seen without a list per poll, and the JSON API over them."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

import pytest

from meshctl.ops.connect import connect
from meshctl.ops.rollouts import ClusterRollouts
from meshctl.ops.watched import WatchedRollouts
from meshctl.web.dashboard import Dashboard, server

pytestmark = pytest.mark.kube
PATH = "/apis/meshctl.io/v1alpha1/namespaces/{ns}/rollouts"


def rollout(ns: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"service": name, "workloadRef": {"name": name},
                     "strategy": {"canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}}}}


def set_weights(kube: Any, ns: str, name: str, canary: int) -> None:
    kube.request("PATCH", PATH.format(ns=ns) + f"/{name}/status",
                 {"status": {"phase": "Paused", "pauseReason": "PausedAtStep",
                             "weights": {"stable": 100 - canary, "canary": canary}}},
                 content_type="application/merge-patch+json")


def eventually(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_listed_from_the_watch_and_served(kube, namespace):
    for name in ("a", "b"):
        kube.request("POST", PATH.format(ns=namespace), rollout(namespace, name))
    client, _ = connect(str(kube.kubeconfig_path), None, namespace)
    watch_client, _ = connect(str(kube.kubeconfig_path), None, namespace)
    rollouts = ClusterRollouts(client)
    watched = WatchedRollouts(rollouts, watch_client, namespace, watch_seconds=2)
    httpd = server(Dashboard(watched, None, namespace))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        assert watched.wait_synced(15)
        assert [v.name for v in watched.list(namespace)] == ["a", "b"]
        # Given a status written at the API server, Then the list shows it (from the watch)
        set_weights(kube, namespace, "b", 30)
        assert eventually(lambda: watched.list(namespace)[1].weights.canary == 30)
        # a Rollout created and one deleted are seen too
        kube.request("POST", PATH.format(ns=namespace), rollout(namespace, "c"))
        kube.request("DELETE", PATH.format(ns=namespace) + "/a")
        assert eventually(lambda: [v.name for v in watched.list(namespace)] == ["b", "c"])
        url = f"http://127.0.0.1:{httpd.server_address[1]}/api/rollouts"
        with urllib.request.urlopen(url, timeout=10) as resp:
            rows = json.loads(resp.read())["rollouts"]
        assert [(r["name"], r["weights"]["canary"], r["gates"]) for r in rows] == [
            ("b", 30, "PausedAtStep"), ("c", 0, "")]
        with urllib.request.urlopen(url + f"/{namespace}/b", timeout=10) as resp:
            one = json.loads(resp.read())
        assert one["revisions"][0]["role"] == "current"  # the history, from the cluster
        assert one["rollout"]["weights"]["canary"] == 30 and one["canAct"] is False
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
        watched.close(timeout=5)  # the watch in flight ends within its 2 s
        rollouts.close()


def test_the_dashboard_command_serves_the_cluster_and_acts_with_its_token(kube, namespace):
    """`meshctl dashboard` as a user starts it: the URL and the login link on stderr; the
    list from the cluster; an abort with the token recorded on the Rollout; Ctrl-C ends it
    with exit 0."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    kube.request("POST", PATH.format(ns=namespace), rollout(namespace, "web"))
    set_weights(kube, namespace, "web", 10)
    meshctl = str(Path(sys.executable).parent / "meshctl")
    process = subprocess.Popen([meshctl, "--kubeconfig", str(kube.kubeconfig_path), "-n",
                                namespace, "dashboard", "--port", "0"],
                               stderr=subprocess.PIPE, text=True)
    try:
        lines = [process.stderr.readline() for _ in range(2)]
        assert lines[1].startswith("to act"), lines
        base = lines[0].split()[1].rstrip("/")
        token = lines[1].split("token=")[1].split()[0]
        with urllib.request.urlopen(base + "/api/rollouts", timeout=10) as resp:
            assert [r["name"] for r in json.loads(resp.read())["rollouts"]] == ["web"]
        request = urllib.request.Request(
            f"{base}/api/rollouts/{namespace}/web/abort", method="POST",
            headers={"X-Meshctl-Action": "1", "Cookie": f"meshctl_dashboard={token}"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert json.loads(resp.read())["action"] == "abort"
        stored = kube.request("GET", PATH.format(ns=namespace) + "/web")
        assert stored["metadata"]["annotations"].get("meshctl.io/intent-abort")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()  # never left running into the next test
            process.wait()
            code = None
        said = process.stderr.read()
        process.stderr.close()
    assert code == 0, f"exit {code} after SIGINT; stderr after the first lines:\n{said}"
