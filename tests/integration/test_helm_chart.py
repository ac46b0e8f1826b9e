"""The Helm chart (manifests/helm/meshctl) with the real helm: it lints, renders what
manifests/ holds (kustomize), and what it renders installs on the test world's API server,
where the controller started from the rendered Deployment's arguments runs a rollout and
serves the gRPC API from the mounted certificate files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshctl.adapters.kube import Kube
from meshctl.api.client import RemoteRollouts
from meshctl.domain.spec import GROUP, VERSION
from meshctl.localmesh.procs import free_port
from meshctl.ops.rollouts import ClusterRollouts
from testworld.certs import CertificateAuthority

from .cluster_world import rollout, seed_service
from .conftest import servers_unavailable
from .running_controller import STEPS

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "manifests/helm/meshctl"
HELM = ROOT / ".cache/helm/v4.3.2/helm"
MOUNT = "/etc/meshctl/grpc"


@pytest.fixture(scope="module")
def helm() -> Path:
    if not os.access(HELM, os.X_OK):
        servers_unavailable(f"{HELM.relative_to(ROOT)} missing: run make testenv")
    return HELM


def render(helm: Path, *sets: str, namespace: str = "meshctl-system") -> list[dict[str, Any]]:
    args = [str(helm), "template", "meshctl", str(CHART), "--namespace", namespace]
    for each in sets:
        args += ["--set", each]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def test_helm_lint_passes(helm):
    done = subprocess.run([str(helm), "lint", "--strict", str(CHART)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_kustomize_is_the_chart_rendered_with_its_defaults(helm, tmp_path):
    """manifests/ is written by `make manifests` from the chart; a hand edit or a chart
    change without re-rendering fails here."""
    subprocess.run(["bash", str(ROOT / "hack/render-manifests.sh"), str(tmp_path)], check=True,
                   env={**os.environ, "HELM": str(helm)}, timeout=120)
    rendered = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.yaml"))
    committed = sorted(p.relative_to(ROOT / "manifests")
                       for p in (ROOT / "manifests").rglob("*.yaml") if "helm" not in p.parts)
    assert rendered == committed
    for path in rendered:
        assert (tmp_path / path).read_text() == (ROOT / "manifests" / path).read_text(), \
            f"manifests/{path} differs from the chart: run make manifests"


@pytest.mark.parametrize(("sets", "expected"), [
    ((), ["ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding", "Service",
          "ServiceAccount"]),
    (("watchNamespace=shop",), ["Deployment", "Role", "Role", "RoleBinding", "RoleBinding",
                                "Service", "ServiceAccount"]),  # nothing cluster-wide
    (("serviceMonitor.enabled=true", "createNamespace=true", "istiod.debugUrl=",
      "trustStoredWeights=true"),
     ["ClusterRole", "ClusterRoleBinding", "Deployment", "Namespace", "Role", "RoleBinding",
      "Service", "ServiceAccount", "ServiceMonitor"]),
])
def test_values_choose_the_objects(helm, sets, expected):
    assert kinds(render(helm, *sets)) == expected


def test_values_reach_the_controller_arguments(helm):
    objects = render(helm, "replicas=3", "watchNamespace=shop", "prometheusUrl=http://p:9090",
                     "istiod.debugUrl=https://istiod.istio-system:15014",
                     "grpc.readers={dashboard}", "resources.limits.memory=1Gi")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 3
    assert {"--namespace=shop", "--grpc-reader=dashboard", "--grpc-addr=0.0.0.0:9443"} \
        <= set(container["args"])
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MESHCTL_PROMETHEUS_URL"] == "http://p:9090"
    assert env["MESHCTL_ISTIOD_DEBUG_URL"] == "https://istiod.istio-system:15014"
    token = next(v for v in pod["volumes"] if v["name"] == "istiod-token")
    assert token["projected"]["sources"][0]["serviceAccountToken"]["audience"] == "istio-ca"
    assert container["resources"]["limits"]["memory"] == "1Gi"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    # the image's user is the one the pod runs as
    user = [line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines()
            if line.startswith("USER ")]
    assert user == [f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"]
    secret = next(v for v in pod["volumes"] if v["name"] == "grpc-tls")["secret"]
    assert secret["secretName"] == "meshctl-grpc-tls"


@pytest.mark.parametrize(("sets", "message"), [
    (["grpc.operators=null"], "grpc.readers or grpc.operators"),
    (["trustStoredWeights=true"], "exactly one of istiod.debugUrl"),
    (["istiod.debugUrl="], "exactly one of istiod.debugUrl"),
])
def test_values_that_cannot_run_are_refused_at_render(helm, sets, message):
    args = [str(helm), "template", "meshctl", str(CHART)]
    for each in sets:
        args += ["--set", each]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and message in done.stderr


# --- installed on the test world ----------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """Distinct free ports (:func:`free_port`'s, drawn until none is given twice)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def local_args(args: list[str], cert_dir: Path, health: int, grpc: int) -> list[str]:
    """The Deployment's arguments, as this machine can run them: listen on loopback ports,
    read the certificate Secret's files from where the test wrote them."""
    out = []
    for arg in args:
        if arg.startswith("--health-addr="):
            arg = f"--health-addr=127.0.0.1:{health}"
        elif arg.startswith("--grpc-addr="):
            arg = f"--grpc-addr=127.0.0.1:{grpc}"
        out.append(arg.replace(MOUNT, str(cert_dir)))
    return out


@pytest.fixture
def installed(kube, cluster, namespace, helm, istio_metrics, tmp_path
              ) -> Iterator[dict[str, Any]]:
    exporter, url = istio_metrics
    exporter.set(namespace, "web", "web-canary", rps=40, error_rate=0.0, latency_ms=5)
    system = kube.create_namespace()
    # no istiod in this world: the controller proceeds on the stored weights
    objects = render(helm, f"watchNamespace={namespace}", f"prometheusUrl={url}",
                     "grpc.readers={dashboard}", "istiod.debugUrl=", "trustStoredWeights=true",
                     namespace=system)
    kube.apply(objects)  # server-side apply of every rendered object
    yield {"objects": objects, "system": system, "namespace": namespace}


@pytest.mark.kube
@pytest.mark.cluster
@pytest.mark.prometheus
def test_the_rendered_chart_installs_and_its_controller_runs_a_rollout(kube, installed, tmp_path):
    ns, system = installed["namespace"], installed["system"]
    deployment = next(o for o in installed["objects"] if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    # the Secret's files (tls.crt, tls.key, ca.crt), as the volume would mount them
    ca = CertificateAuthority()
    server = ca.issue("meshctl-controller", dns=["localhost"], ips=["127.0.0.1"], server=True)
    cert, key = server.write(tmp_path / "server")
    cert.rename(tmp_path / "tls.crt")
    key.rename(tmp_path / "tls.key")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    health, grpc_port = free_ports(2)
    env = {**os.environ, **{e["name"]: e["value"] for e in container["env"] if "value" in e},
           "POD_NAME": "chart-test"}
    as_controller = kube.service_account_kubeconfig(system, "meshctl-controller")
    seed_service(kube, ns)
    admin = Kube.from_kubeconfig(kube.kubeconfig_path)
    admin.create(GROUP, VERSION, ns, "rollouts", rollout(ns, "web:1", STEPS))
    args = local_args(container["args"], tmp_path, health, grpc_port)
    process = subprocess.Popen([str(Path(sys.executable).parent / "meshctl"), "--kubeconfig",
                                str(as_controller), *args], env=env, stderr=subprocess.PIPE,
                               text=True)
    try:
        try:
            wait_phase(admin, ns, "Healthy", process)
        except AssertionError:
            process.kill()
            raise AssertionError(process.communicate(timeout=30)[1][-4000:]) from None
        ClusterRollouts(admin).start(ns, "web", "web:2")
        found = wait_phase(admin, ns, "Healthy", process, image="web:2")
        weights = found["status"]["weights"]
        assert (weights["stable"], weights["canary"]) == (100, 0)
        client = ca.issue("dashboard")
        client_cert, client_key = client.write(tmp_path / "dashboard")
        remote = RemoteRollouts(f"127.0.0.1:{grpc_port}", str(client_cert), str(client_key),
                                str(tmp_path / "ca.crt"))
        try:
            assert [v.name for v in remote.list(ns)] == ["web"]
        finally:
            remote.close()
    finally:
        process.kill()
        _, stderr = process.communicate(timeout=30)
        admin.close()
    assert "Traceback" not in stderr, stderr[-3000:]


def wait_phase(admin: Kube, ns: str, phase: str, process: subprocess.Popen[str],
               image: str | None = None, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the controller exited"
        obj = admin.get(GROUP, VERSION, ns, "rollouts", "web")
        status = obj.get("status") or {}
        seen = status.get("observedGeneration") == obj["metadata"]["generation"]
        if status.get("phase") == phase and seen and (image is None or _image(admin, ns) == image):
            return obj
        time.sleep(0.3)
    last = admin.get(GROUP, VERSION, ns, "rollouts", "web").get("status")
    raise AssertionError(f"not {phase} in {timeout}s: {last}")


def _image(admin: Kube, ns: str) -> str:
    found = admin.get("apps", "v1", ns, "deployments", "web")
    return str(found["spec"]["template"]["spec"]["containers"][0]["image"])


def test_the_controller_may_read_only_the_gate_signing_secrets_it_is_given(helm):
    """Release gates: by default no rule names Secrets; with gateSigningSecrets, `get` on
    exactly those names and nothing else."""
    def secret_rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        role = next(o for o in objects if o["kind"] == "ClusterRole")
        return [r for r in role["rules"] if "secrets" in r["resources"]]

    assert secret_rules(render(helm)) == []
    assert secret_rules(render(helm, "gateSigningSecrets={risk-webhook}")) == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["risk-webhook"],
         "verbs": ["get"]}]


def test_controller_wide_notification_sinks_become_notify_arguments(helm):
    def args(objects: list[dict[str, Any]]) -> list[str]:
        deployment = next(o for o in objects if o["kind"] == "Deployment")
        return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])

    assert not [a for a in args(render(helm)) if a.startswith("--notify")]
    found = args(render(helm, "notifications={https://bus.example/e,slack=https://h.example/x}"))
    assert [a for a in found if a.startswith("--notify")] == [
        "--notify=https://bus.example/e", "--notify=slack=https://h.example/x"]
