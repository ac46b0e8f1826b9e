"""The cluster tier of the test world: kube-controller-manager, kube-scheduler and kubemark
hollow nodes beside a running :class:`testworld.kube.KubeWorld`, so Deployments get real
ReplicaSets and Pods, Pods are scheduled and become Ready, and EndpointSlices follow them::

    with KubeWorld() as world, ClusterTier(world, nodes=3):
        world.apply(deployment)               # the Deployment controller makes Pods

``testworld/build-kube.sh`` (run by ``make testenv``) builds the three binaries next to
kube-apiserver. A hollow node is kubemark's ``--morph=kubelet``: the real kubelet code with a
fake container runtime. What that means for a test:

* Probes never run; every container is reported ready once started. A Pod that must stay
  not-Ready (or become Ready late) carries a readiness gate (``spec.readinessGates``), and the
  test sets that condition through the status subresource (:func:`set_pod_condition`), as a
  real system's gate controller would.
* Every Pod gets the same IP (the fake runtime's constant), containers never exit, and
  ``kubectl logs``/``exec`` do not work. There is no kube-proxy.
* A hollow node reports 1 CPU and 3840Mi, so Pods here request no resources.

Every component runs as the world's admin (``system:masters``): the API server runs RBAC
only (no Node authorizer), and the components' own identities add nothing a test checks.
Stock kubemark puts its root directory and its runtime socket under ``/tmp`` whatever its
flags; :meth:`ClusterTier.stop` removes the ones each of its nodes opened.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import time
from pathlib import Path
from typing import Any

from testworld.kube import (
    KUBE_VERSION,
    REPO_ROOT,
    KubeWorld,
    WorldUnavailable,
    _free_port,
    _Process,
    _wait,
)

COMPONENTS = ("kube-controller-manager", "kube-scheduler", "kubemark")
MAX_PODS_PER_NODE = 250
_ROOT_DIR_PREFIX = "/tmp/hollow-kubelet."
_RUNTIME_SOCKET_GLOB = "kubelet_remote_*.sock"


def find_component(name: str, root: Path = REPO_ROOT) -> Path:
    """A binary built by ``testworld/build-kube.sh`` (``.cache/kube/<version>/<name>``)."""
    path = root / ".cache" / "kube" / KUBE_VERSION / name
    if path.is_file() and os.access(path, os.X_OK):
        return path
    raise WorldUnavailable(
        f"no {name} binary at {path}: run `make testenv` (testworld/build-kube.sh) to build it"
    )


def rss_mib(pid: int) -> float:
    """Resident memory of a process, in MiB (from /proc; 0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _unix_socket_paths(pid: int) -> list[str]:
    """Paths of the unix sockets a process holds open (its fds' inodes in /proc/net/unix)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return []
    return [f[7] for f in (line.split() for line in lines) if len(f) >= 8 and f[6] in inodes]


def _listener_pid(path: Path) -> int | None:
    """The pid of the process listening on a unix socket file (SO_PEERCRED), if any."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except OSError:
            return None
    return int(struct.unpack("3i", creds)[0])


def _kubemark_temp(pids: set[int]) -> set[Path]:
    """What stock kubemark made under /tmp for these hollow nodes: each one's root directory
    (``/tmp/hollow-kubelet.<random>``, found from the sockets it holds open) and its runtime's
    socket (``/tmp/kubelet_remote_<random>.sock``, found by asking who listens on it)."""
    found = set()
    for pid in pids:
        for path in _unix_socket_paths(pid):
            if path.startswith(_ROOT_DIR_PREFIX):
                found.add(Path("/tmp") / Path(path).relative_to("/tmp").parts[0])
    for path in Path("/tmp").glob(_RUNTIME_SOCKET_GLOB):
        if _listener_pid(path) in pids:
            found.add(path)
    return found


class ClusterTier:
    """kube-controller-manager, kube-scheduler and ``nodes`` hollow nodes for a running world.

    ``start()`` returns once every node is Ready and the ``default`` namespace has its
    ServiceAccount (the controllers are working); ``stop()`` stops them and removes what they
    left; ``startup_seconds`` says how long ``start()`` took.
    """

    def __init__(self, world: KubeWorld, nodes: int = 3, root: Path = REPO_ROOT) -> None:
        self.world = world
        self.nodes = nodes
        self.root = root
        self.node_names = [f"hollow-node-{i}" for i in range(nodes)]
        self._processes: list[_Process] = []
        self._nodes: list[_Process] = []
        self._temp: set[Path] = set()
        self.startup_seconds = 0.0

    def __enter__(self) -> ClusterTier:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> ClusterTier:
        began = time.monotonic()
        binaries = {name: find_component(name, self.root) for name in COMPONENTS}
        self.dir = self.world._dir() / "cluster"
        self.dir.mkdir(exist_ok=True)
        try:
            self._start_controller_manager(binaries["kube-controller-manager"])
            self._start_scheduler(binaries["kube-scheduler"])
            for name in self.node_names:
                self._start_node(binaries["kubemark"], name)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop the nodes, the scheduler and the controller-manager; remove kubemark's /tmp
        entries. Safe to call twice."""
        self._temp |= _kubemark_temp(self._node_pids())
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()
        self._nodes.clear()
        for path in self._temp:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        self._temp.clear()

    def _node_pids(self) -> set[int]:
        return {p.popen.pid for p in self._nodes if p.popen.poll() is None}

    def rss_mib(self) -> dict[str, float]:
        """Resident memory of each process of the tier, in MiB."""
        return {p.name: rss_mib(p.popen.pid) for p in self._processes}

    def pids(self) -> dict[str, int]:
        """Each process of the tier by name (``hollow-node-<i>`` for the nodes)."""
        return {p.name: p.popen.pid for p in self._processes}

    # -- processes ------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> _Process:
        process = _Process(name, argv, self.dir / f"{name}.log")
        self._processes.append(process)
        return process

    def _start_controller_manager(self, binary: Path) -> None:
        pki = self.world.pki
        self._spawn("kube-controller-manager", [
            str(binary),
            f"--kubeconfig={self.world.kubeconfig_path}",
            "--bind-address=127.0.0.1",
            f"--secure-port={_free_port()}",
            f"--cert-dir={self.dir / 'kcm-certs'}",
            # else it creates /usr/libexec/kubernetes/kubelet-plugins/volume/exec
            f"--flex-volume-plugin-dir={self.dir / 'flexvolume'}",
            "--allocate-node-cidrs=true",
            "--cluster-cidr=10.244.0.0/16",
            "--node-cidr-mask-size=24",
            "--service-cluster-ip-range=10.0.0.0/24",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca}",
            "--use-service-account-credentials",
            "--leader-elect=false",
            # upstream's 20/30 makes a few hundred Pods wait on the client's rate limit
            "--kube-api-qps=100",
            "--kube-api-burst=200",
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
            "--profiling=false",
            "--v=1",
        ])

    def _start_scheduler(self, binary: Path) -> None:
        self._spawn("kube-scheduler", [
            str(binary),
            f"--kubeconfig={self.world.kubeconfig_path}",
            "--bind-address=127.0.0.1",
            f"--secure-port={_free_port()}",
            f"--cert-dir={self.dir / 'scheduler-certs'}",
            "--leader-elect=false",
            "--kube-api-qps=100",
            "--kube-api-burst=200",
            "--profiling=false",
            "--v=1",
        ])

    def _start_node(self, binary: Path, name: str) -> None:
        node = self._spawn(name, [
            str(binary),
            "--morph=kubelet",
            f"--name={name}",
            f"--kubeconfig={self.world.kubeconfig_path}",
            f"--kubelet-port={_free_port()}",
            "--kubelet-read-only-port=0",
            # the default dials containerd's socket for images
            "--use-host-image-service=false",
            f"--max-pods={MAX_PODS_PER_NODE}",
            "--kube-api-qps=50",
            "--kube-api-burst=100",
            "--v=1",
        ])
        self._nodes.append(node)

    def _wait_ready(self) -> None:
        def ready() -> bool:
            for process in self._processes:
                process.check_alive()
            # recorded as they appear: a node that dies still has its files removed
            self._temp |= _kubemark_temp(self._node_pids())
            nodes = self.world.request("GET", "/api/v1/nodes")["items"]
            ready_nodes = {
                n["metadata"]["name"] for n in nodes
                if n["spec"].get("podCIDR") and _condition(n, "Ready") == "True"
            }
            if not set(self.node_names) <= ready_nodes:
                return False
            self.world.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
            return True

        _wait("the hollow nodes to be Ready", ready, 120, interval=0.25)


def _condition(obj: dict[str, Any], kind: str) -> str | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return None


def set_pod_condition(world: KubeWorld, namespace: str, pod: str, kind: str, status: bool) -> None:
    """Set one Pod condition (a readiness gate's) through the status subresource, as the
    controller that owns the gate would; the kubelet then recomputes the Pod's Ready."""
    world.request(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/pods/{pod}/status",
        {"status": {"conditions": [{"type": kind, "status": "True" if status else "False"}]}},
        content_type="application/strategic-merge-patch+json",
    )


def wait_available(kube: KubeWorld, ns: str, name: str, replicas: int,
                   timeout: float = 60.0) -> dict[str, Any]:
    """Wait until the Deployment controller reports ``replicas`` of the current spec
    available; returns the Deployment."""
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"
    deadline = time.monotonic() + timeout
    while True:
        obj: dict[str, Any] = kube.request("GET", path)
        status = obj.get("status") or {}
        if status.get("observedGeneration") == obj["metadata"]["generation"] and \
                status.get("updatedReplicas") == status.get("availableReplicas") == replicas:
            return obj
        if time.monotonic() > deadline:
            raise AssertionError(f"Deployment {name} not available: {status}")
        time.sleep(0.2)


def subset_service(ns: str, name: str, template: dict[str, Any], replicas: int = 1,
                   routes_before: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """A service routed by subsets, as meshctl finds it before its first rollout: its
    Deployment, a VirtualService whose route ``primary`` sends all to the ``stable`` subset
    (after ``routes_before``, if any), and a DestinationRule with only that subset."""
    primary = {"name": "primary", "route": [{"destination": {"host": name, "subset": "stable"}}]}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                  "template": template}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": name, "namespace": ns},
         "spec": {"hosts": [name], "http": [*(routes_before or []), primary]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": name, "namespace": ns},
         "spec": {"host": name, "subsets": [{"name": "stable",
                                              "labels": {"meshctl.io/track": "stable"}}]}},
    ]


def service_objects(ns: str, i: int, steps: list[dict[str, Any]], replicas: int = 1,
                    **spec: Any) -> list[dict[str, Any]]:
    """One service of a many-Rollout world, ``svc-<i>``: its Deployment (``replicas``),
    VirtualService, DestinationRule and a Rollout with ``steps`` (plus any other Rollout
    ``spec`` fields)."""
    name = f"svc-{i}"
    template = {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    return [
        *subset_service(ns, name, template, replicas),
        {"apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
         "metadata": {"name": name, "namespace": ns},
         "spec": {"service": name, "workloadRef": {"name": name}, "template": template,
                  **spec,
                  "trafficRouting": {"istio": {
                      "virtualService": {"name": name, "routes": ["primary"]},
                      "destinationRule": {"name": name, "stableSubset": "stable",
                                          "canarySubset": "canary"}}},
                  "strategy": {"canary": {"steps": steps}}}},
    ]
