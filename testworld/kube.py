"""A real Kubernetes API server for tests and benchmarks: etcd + kube-apiserver on loopback.

``testworld/build-kube.sh`` (run by ``make testenv``) builds the server binary and
fetches Istio's and the Gateway API's CRDs into ``.cache/``; etcd is the Debian
``etcd-server`` package.
:class:`KubeWorld` starts both on free loopback ports with a throw-away data directory, with
RBAC on, real TLS, ServiceAccount token signing and an admin identity (a client certificate
in ``system:masters``), then installs Istio's and the Gateway API's CRDs, meshctl's CRDs
(``manifests/crds/``) and meshctl's RBAC (``manifests/rbac/``)::

    with KubeWorld() as world:
        api = world.api_client()                  # kubernetes.client.ApiClient, admin
        ns = world.create_namespace("demo")
        world.apply({"apiVersion": "v1", "kind": "ConfigMap", ...})
        sa = world.service_account_client("meshctl-system", "meshctl-controller")

On its own the world has no controller-manager and no nodes: nothing creates Pods,
ReplicaSets or default ServiceAccounts. :class:`testworld.cluster.ClusterTier` adds them.

Environment: ``MESHCTL_KUBE_APISERVER`` and ``MESHCTL_ETCD`` name the binaries explicitly;
``MESHCTL_KEEP_WORLD=1`` keeps the data directory (and its logs) after ``stop()``.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from meshctl.localmesh.procs import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
KUBE_VERSION = os.environ.get("KUBE_VERSION", "v1.34.4")
FIELD_MANAGER = "meshctl-testworld"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

# Apply order: what other objects live in or refer to comes first.
_KIND_ORDER = {
    "Namespace": 0,
    "CustomResourceDefinition": 1,
    "ServiceAccount": 2,
    "ClusterRole": 3,
    "Role": 3,
    "ClusterRoleBinding": 4,
    "RoleBinding": 4,
}


class WorldUnavailable(RuntimeError):
    """The world cannot run here (a binary is missing) or failed to start."""


class ApiError(RuntimeError):
    """An error answer of the API server to one of the world's own raw requests."""

    def __init__(self, status: int, body: dict[str, Any], method: str, path: str) -> None:
        message = body.get("message") or json.dumps(body)
        super().__init__(f"{method} {path}: {status} {message}")
        self.status = status
        self.body = body


# -- binaries ---------------------------------------------------------------------------------


def find_kube_apiserver(root: Path = REPO_ROOT) -> Path:
    """The kube-apiserver built by ``testworld/build-kube.sh``."""
    explicit = os.environ.get("MESHCTL_KUBE_APISERVER")
    candidates = [Path(explicit)] if explicit else []
    candidates.append(root / ".cache" / "kube" / KUBE_VERSION / "kube-apiserver")
    candidates.extend(sorted((root / ".cache" / "kube").glob("v*/kube-apiserver"), reverse=True))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise WorldUnavailable(
        f"no kube-apiserver binary in {root / '.cache' / 'kube'}: run `make testenv` "
        "(testworld/build-kube.sh) to build it"
    )


def find_etcd() -> Path:
    explicit = os.environ.get("MESHCTL_ETCD") or shutil.which("etcd")
    if explicit and Path(explicit).is_file():
        return Path(explicit)
    raise WorldUnavailable("no etcd: run `make testenv` (installs the Debian etcd-server package)")


def find_istio_crds(root: Path = REPO_ROOT) -> Path:
    path = root / ".cache" / "istio" / "crds.yaml"
    if not path.is_file():
        raise WorldUnavailable(f"no Istio CRDs at {path}: run `make testenv`")
    return path


def find_gateway_api_crds(root: Path = REPO_ROOT) -> Path:
    path = root / ".cache" / "gateway-api" / "crds.yaml"
    if not path.is_file():
        raise WorldUnavailable(f"no Gateway API CRDs at {path}: run `make testenv`")
    return path


# -- certificates -----------------------------------------------------------------------------


class _Pki:
    """A throw-away CA, the server's serving certificate, an admin client certificate and
    the ServiceAccount token signing key, all written as PEM files into ``directory``."""

    def __init__(self, directory: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        self._x509 = x509
        directory.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        validity = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=2))

        def key() -> ec.EllipticCurvePrivateKey:
            return ec.generate_private_key(ec.SECP256R1())

        def name(common: str, org: str | None = None) -> x509.Name:
            attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
            if org:
                attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
            return x509.Name(attrs)

        def write_key(path: Path, k: ec.EllipticCurvePrivateKey) -> Path:
            path.write_bytes(
                k.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            path.chmod(0o600)
            return path

        ca_key = key()
        ca_name = name("meshctl-testworld-ca")
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(validity[0])
            .not_valid_after(validity[1])
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )

        def issue(
            subject: x509.Name,
            usage: x509.ObjectIdentifier,
            sans: list[x509.GeneralName] | None = None,
        ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
            k = key()
            builder = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(ca_name)
                .public_key(k.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(validity[0])
                .not_valid_after(validity[1])
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            )
            if sans:
                builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            return builder.sign(ca_key, hashes.SHA256()), k

        server_sans: list[x509.GeneralName] = [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"),
            x509.DNSName("kubernetes.default.svc.cluster.local"),
        ]
        server_cert, server_key = issue(
            name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, server_sans
        )
        admin_cert, admin_key = issue(
            name("meshctl-testworld-admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH
        )
        sa_key = key()

        def pem(cert: x509.Certificate) -> bytes:
            return cert.public_bytes(serialization.Encoding.PEM)

        self.ca_pem = pem(ca_cert)
        self.admin_cert_pem = pem(admin_cert)
        self.admin_key_pem = admin_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.ca = directory / "ca.crt"
        self.ca.write_bytes(self.ca_pem)
        self.server_cert = directory / "apiserver.crt"
        self.server_cert.write_bytes(pem(server_cert))
        self.server_key = write_key(directory / "apiserver.key", server_key)
        self.admin_cert = directory / "admin.crt"
        self.admin_cert.write_bytes(self.admin_cert_pem)
        self.admin_key = write_key(directory / "admin.key", admin_key)
        self.sa_key = write_key(directory / "sa.key", sa_key)
        self.sa_pub = directory / "sa.pub"
        self.sa_pub.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


# -- processes --------------------------------------------------------------------------------


def _free_port() -> int:
    return free_port("127.0.0.1")


def _with_parent(argv: list[str]) -> list[str]:
    """``argv`` run so that the child gets SIGTERM if the test process dies (Linux only):
    util-linux's ``setpriv --pdeathsig`` sets the signal, then execs the command (same pid).

    The signal fires when the *thread* that started the child exits, so start the world
    from a thread that lives as long as it does (pytest's main thread does). Not a
    ``preexec_fn``: that makes Python fork() and run fork handlers in the child, and grpcio's
    (loaded by the tests' gRPC servers) abort it now and then."""
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


class _Process:
    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                _with_parent(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise WorldUnavailable(
                f"{self.name} exited with {code}; last lines of {self.log}:\n{_tail(self.log)}"
            )

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout)


def _wait(what: str, check: Any, timeout: float, interval: float = 0.1) -> Any:
    """Call ``check()`` until it returns a truthy value; its exceptions count as 'not yet'
    except WorldUnavailable, which aborts."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except WorldUnavailable:
            raise
        except Exception as exc:  # not ready yet
            last = exc
        else:
            if result:
                return result
        time.sleep(interval)
    raise WorldUnavailable(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


# -- the world --------------------------------------------------------------------------------


class KubeWorld:
    """etcd + kube-apiserver with RBAC, TLS, ServiceAccount tokens and the CRDs installed.

    ``start()``/``stop()`` (or use it as a context manager). Every port is a free loopback
    port and every file lives in a temporary directory removed by ``stop()``.
    """

    def __init__(
        self,
        root: Path = REPO_ROOT,
        *,
        kube_apiserver: Path | None = None,
        etcd: Path | None = None,
        istio_crds: Path | None = None,
        install_meshctl_manifests: bool = True,
        start_timeout: float = 120.0,
    ) -> None:
        self.root = root
        self._kube_apiserver = kube_apiserver
        self._etcd = etcd
        self._istio_crds = istio_crds
        self._install_meshctl = install_meshctl_manifests
        self._start_timeout = start_timeout
        self._processes: list[_Process] = []
        self._discovery: dict[str, dict[str, tuple[str, bool]]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._pki: _Pki | None = None
        self.workdir: Path | None = None
        self.server = ""
        self.startup_seconds = 0.0
        self.timings: dict[str, float] = {}  # seconds per start-up step

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> KubeWorld:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> KubeWorld:
        """Start etcd and kube-apiserver, wait for /readyz, install the CRDs and RBAC.
        Raises WorldUnavailable (with the servers' last log lines) if anything fails."""
        began = time.monotonic()
        kube_apiserver = self._kube_apiserver or find_kube_apiserver(self.root)
        etcd = self._etcd or find_etcd()
        istio_crds = self._istio_crds or find_istio_crds(self.root)
        # etcd fsyncs every write: on tmpfs that costs nothing.
        shm = Path("/dev/shm")
        base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
        self.workdir = Path(tempfile.mkdtemp(prefix="meshctl-kube-", dir=base))
        atexit.register(self.stop)
        try:
            with self._timed("pki"):
                self._pki = _Pki(self._dir() / "pki")
            with self._timed("etcd"):
                self._start_etcd(etcd)
            with self._timed("kube-apiserver"):
                self._start_apiserver(kube_apiserver)
            with self._timed("install"):
                self._write_kubeconfig()
                self._install(istio_crds)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    @contextlib.contextmanager
    def _timed(self, step: str) -> Iterator[None]:
        began = time.monotonic()
        yield
        self.timings[step] = time.monotonic() - began

    @property
    def pki(self) -> _Pki:
        if self._pki is None:
            raise WorldUnavailable("the world is not running")
        return self._pki

    def pids(self) -> dict[str, int]:
        """The world's processes by name: ``etcd`` and ``kube-apiserver``."""
        return {p.name: p.popen.pid for p in self._processes}

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd; remove the data directory."""
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()
        self._ssl, self._pki = None, None
        self._discovery.clear()
        if self.workdir is not None and not os.environ.get("MESHCTL_KEEP_WORLD"):
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def _dir(self) -> Path:
        if self.workdir is None:
            raise WorldUnavailable("the world is not running")
        return self.workdir

    def _start_etcd(self, etcd: Path) -> None:
        client_port, peer_port = _free_port(), _free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        process = _Process(
            "etcd",
            [
                str(etcd),
                "--name=world",
                f"--data-dir={self._dir() / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=world={peer}",
                "--initial-cluster-state=new",
                "--logger=zap",
                "--log-level=warn",
                # One member: no peers to wait for, so elect it at once.
                "--heartbeat-interval=20",
                "--election-timeout=200",
            ],
            self._dir() / "etcd.log",
        )
        self._processes.append(process)

        def healthy() -> bool:
            process.check_alive()
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")

        _wait("etcd /health", healthy, 30)

    def restart_apiserver(self, down_seconds: float = 0.0) -> None:
        """SIGKILL kube-apiserver, wait ``down_seconds``, start it again on the same port
        with the same etcd (so every kubeconfig stays valid and every object is kept)."""
        old = next(p for p in self._processes if p.name == "kube-apiserver")
        old.popen.kill()
        old.popen.wait(10)
        self._processes.remove(old)
        time.sleep(down_seconds)
        binary = self._kube_apiserver or find_kube_apiserver(self.root)
        self._start_apiserver(binary, port=int(self.server.rsplit(":", 1)[1]))

    def _start_apiserver(self, binary: Path, port: int | None = None) -> None:
        port = port or _free_port()
        self.server = f"https://127.0.0.1:{port}"
        pki = self.pki
        argv = [
            str(binary),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self._dir() / 'pki'}",
            f"--tls-cert-file={pki.server_cert}",
            f"--tls-private-key-file={pki.server_key}",
            f"--client-ca-file={pki.ca}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--v=1",
        ]
        process = _Process("kube-apiserver", argv, self._dir() / "kube-apiserver.log")
        self._processes.append(process)

        def ready() -> bool:
            process.check_alive()
            self.request("GET", "/readyz")
            return True

        _wait("kube-apiserver /readyz", ready, self._start_timeout, interval=0.25)

    def _write_kubeconfig(self) -> None:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        self.kubeconfig_path = self._dir() / "kubeconfig"
        self._write_kubeconfig_file(
            self.kubeconfig_path,
            "admin",
            {
                "client-certificate-data": b64(self.pki.admin_cert_pem),
                "client-key-data": b64(self.pki.admin_key_pem),
            },
        )

    def _write_kubeconfig_file(self, path: Path, user: str, credentials: dict[str, str]) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "testworld",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": base64.b64encode(self.pki.ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": user, "context": {"cluster": "testworld", "user": user}}],
            "current-context": user,
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def _install(self, istio_crds: Path) -> None:
        objects = list(_load_yaml(istio_crds))
        objects += list(_load_yaml(find_gateway_api_crds(self.root)))
        crd_dir = self.root / "manifests" / "crds"
        rbac_dir = self.root / "manifests" / "rbac"
        if self._install_meshctl:
            objects += _load_dir(crd_dir)
        self.apply(objects)
        self.wait_for_crds(
            obj["metadata"]["name"] for obj in objects if obj["kind"] == "CustomResourceDefinition"
        )
        if self._install_meshctl:
            self.apply(_load_dir(rbac_dir))

    # -- raw requests as admin --------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            context = ssl.create_default_context(cafile=str(self.pki.ca))
            context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
            self._ssl = context
        return self._ssl

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Any:
        """One HTTPS request as the admin; returns the decoded JSON answer (or text).
        Raises ApiError for an error status."""
        url = self.server + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        req.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(req, context=self._context(), timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = {"message": raw.decode(errors="replace")}
            raise ApiError(exc.code, parsed, method, path) from None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    # -- applying manifests ---------------------------------------------------------------

    def _resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        """(plural, namespaced) of a kind, from discovery; re-read once on a miss."""
        for fresh in (False, True):
            if fresh or api_version not in self._discovery:
                prefix = "/api/" if "/" not in api_version else "/apis/"
                listing = self.request("GET", prefix + api_version)
                self._discovery[api_version] = {
                    r["kind"]: (r["name"], r["namespaced"])
                    for r in listing["resources"]
                    if "/" not in r["name"]
                }
            found = self._discovery[api_version].get(kind)
            if found:
                return found
        raise ApiError(404, {"message": f"no {kind} in {api_version}"}, "GET", api_version)

    def path_of(self, obj: dict[str, Any], namespace: str | None = None) -> str:
        """The REST path of an object (``/apis/<group>/<version>/namespaces/<ns>/<plural>/<n>``)."""
        api_version, kind = obj["apiVersion"], obj["kind"]
        plural, namespaced = _wait(
            f"{kind} in discovery", lambda: self._resource(api_version, kind), 30, 0.2
        )
        prefix = "/api/" if "/" not in api_version else "/apis/"
        ns = namespace or obj["metadata"].get("namespace") or "default"
        scope = f"/namespaces/{ns}" if namespaced else ""
        return f"{prefix}{api_version}{scope}/{plural}/{obj['metadata']['name']}"

    def apply(
        self, objects: dict[str, Any] | Iterable[dict[str, Any]], namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """Server-side apply (as field manager ``meshctl-testworld``, forced) of one object or
        many, in dependency order (Namespaces and CRDs first). Returns what the server stored."""
        items = [objects] if isinstance(objects, dict) else list(objects)
        items.sort(key=lambda o: _KIND_ORDER.get(o.get("kind", ""), 9))
        applied = []
        for obj in items:
            applied.append(
                self.request(
                    "PATCH",
                    self.path_of(obj, namespace),
                    obj,
                    content_type="application/apply-patch+yaml",
                    query={"fieldManager": FIELD_MANAGER, "force": "true"},
                )
            )
        return applied

    def apply_file(self, path: Path | str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Apply every document of a YAML file, or of every *.yaml file of a directory."""
        path = Path(path)
        objects = _load_dir(path) if path.is_dir() else list(_load_yaml(path))
        return self.apply(objects, namespace)

    def wait_for_crds(self, names: Iterable[str], timeout: float = 60.0) -> None:
        """Wait until each CRD is Established (its API is served)."""
        for name in names:

            def established(crd: str = name) -> bool:
                obj = self.request(
                    "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}"
                )
                conditions = obj.get("status", {}).get("conditions", [])
                return any(
                    c["type"] == "Established" and c["status"] == "True" for c in conditions
                )

            _wait(f"CRD {name} Established", established, timeout)

    # -- clients --------------------------------------------------------------------------

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` as the admin (group system:masters)."""
        from kubernetes import config

        return config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig_path), persist_config=False
        )

    def service_account_token(
        self, namespace: str, name: str, expiration_seconds: int = 3600
    ) -> str:
        """A token for a ServiceAccount from the TokenRequest API (the SA must exist)."""
        answer = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration_seconds},
            },
        )
        return str(answer["status"]["token"])

    def service_account_kubeconfig(self, namespace: str, name: str) -> Path:
        """A kubeconfig that authenticates as the ServiceAccount with a fresh token."""
        token = self.service_account_token(namespace, name)
        path = self._dir() / f"kubeconfig-{namespace}-{name}"
        return self._write_kubeconfig_file(path, f"{namespace}-{name}", {"token": token})

    def service_account_client(self, namespace: str, name: str) -> Any:
        """A ``kubernetes.client.ApiClient`` authenticated as the ServiceAccount (a real
        bearer token, so authentication and RBAC run exactly as for a pod)."""
        from kubernetes import config

        path = self.service_account_kubeconfig(namespace, name)
        return config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(path), persist_config=False
        )

    def impersonate(self, user: str, group: str | None = None) -> Any:
        """An admin ``ApiClient`` that impersonates ``user`` (and one ``group``), e.g.
        ``system:serviceaccount:<ns>:<name>``. The server checks RBAC as that user."""
        client = self.api_client()
        client.set_default_header("Impersonate-User", user)
        if group is not None:
            client.set_default_header("Impersonate-Group", group)
        return client

    # -- namespaces and workloads ---------------------------------------------------------

    def create_namespace(
        self, name: str | None = None, labels: dict[str, str] | None = None
    ) -> str:
        """Create a namespace (a fresh random name by default) and its ``default``
        ServiceAccount (unless the cluster tier's controller-manager already has)."""
        name = name or f"t-{uuid.uuid4().hex[:10]}"
        self.request(
            "POST",
            "/api/v1/namespaces",
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": labels or {}},
            },
        )
        try:
            self.request(
                "POST",
                f"/api/v1/namespaces/{name}/serviceaccounts",
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
            )
        except ApiError as exc:
            if exc.status != 409:  # the cluster tier's controller made it first
                raise
        return name

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace. Without the cluster tier's namespace controller it stays
        Terminating and its objects stay in etcd; that is harmless to other tests."""
        with contextlib.suppress(ApiError):
            self.request("DELETE", f"/api/v1/namespaces/{name}")


def _load_yaml(path: Path) -> Iterator[dict[str, Any]]:
    with path.open() as stream:
        for doc in yaml.safe_load_all(stream):
            if isinstance(doc, dict) and doc.get("kind"):
                if doc["kind"].endswith("List") and "items" in doc:
                    yield from doc["items"]
                else:
                    yield doc


def _load_dir(directory: Path) -> list[dict[str, Any]]:
    if not directory.is_dir():
        return []
    return [obj for path in sorted(directory.glob("*.y*ml")) for obj in _load_yaml(path)]
