"""Kubernetes custom objects over the standard library's HTTPS, for the CLI's short commands.

Why a second way to the API server: importing the ``kubernetes`` package costs about 200 ms
and building its ``CustomObjectsApi`` about 80 ms more (version 37 validates every call with
pydantic), while ``meshctl rollout status`` must answer in under 400 ms. :class:`RestKube`
speaks the same few REST calls as :class:`meshctl.adapters.kube.Kube` (same method names,
same plain ``dict`` objects, same error tree) with ``http.client`` and ``ssl``.

It reads kubeconfigs that name an https server and authenticate with a client certificate
or a bearer token (or token file), and the in-cluster ServiceAccount; :meth:`RestKube.connect`
returns None for anything else (``exec`` and ``auth-provider`` plugins, basic auth,
impersonation, proxies, ``tls-server-name``, a multi-file ``KUBECONFIG``), and the caller
uses ``Kube``.

The controller talks to the API server through it too (:func:`controller_client`): under
load, the ``kubernetes`` client's call machinery (argument checks, model lookups, urllib3's
pool) took about half of the controller's CPU. Thread-safe: each thread keeps its own
kept-alive connection; each watch has one of its own.
"""

from __future__ import annotations

import base64
import builtins
import http.client
import json
import os
import ssl
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshctl.adapters.errors import (
    NotFound,
    PermanentError,
    TransientError,
    Unavailable,
    describe,
    from_http_status,
)
from meshctl.adapters.kube import (
    APPLY_PATCH,
    FIELD_MANAGER,
    MERGE_PATCH,
    Kube,
    Mutation,
    Object,
    Updated,
    request_budget,
    update,
)

IN_CLUSTER = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class Endpoint:
    """Where the API server is and how to prove who we are."""

    server: str
    namespace: str = "default"
    ca_pem: bytes | None = field(default=None, repr=False)
    insecure: bool = False
    cert_pem: bytes | None = field(default=None, repr=False)
    key_pem: bytes | None = field(default=None, repr=False)
    authorization: str | None = field(default=None, repr=False)


def _data_or_file(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        path = Path(os.path.expanduser(str(entry[key])))
        return (path if path.is_absolute() else base / path).read_bytes()
    return None


def endpoint_from_kubeconfig(path: str | Path | None, context: str | None) -> Endpoint | None:
    """The endpoint of ``context`` (default: the current one), or None when this client
    cannot use the kubeconfig (see the module docstring). Missing files raise OSError."""
    from meshctl.adapters.files import read_yaml

    if path is None:
        env = os.environ.get("KUBECONFIG", "")
        if os.pathsep in env.strip(os.pathsep):
            return None  # several files to merge: leave it to the full client
        path = env.strip(os.pathsep) or os.path.expanduser("~/.kube/config")
    config = read_yaml(str(path)) or {}
    base = Path(path).resolve().parent
    name = context or config.get("current-context")

    def named(kind: str, wanted: str | None) -> dict[str, Any]:
        found = next((e for e in config.get(kind) or [] if e.get("name") == wanted), None)
        return dict((found or {}).get(kind.rstrip("s")) or {})

    ctx = named("contexts", name)
    cluster, user = named("clusters", ctx.get("cluster")), named("users", ctx.get("user"))
    unsupported = ("exec", "auth-provider", "username", "impersonate", "impersonate-groups")
    if not cluster.get("server") or cluster.get("proxy-url") or cluster.get("tls-server-name") \
            or any(user.get(k) for k in unsupported):
        return None
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text(encoding="utf-8").strip()
    return Endpoint(
        server=str(cluster["server"]).rstrip("/"), namespace=ctx.get("namespace") or "default",
        ca_pem=_data_or_file(cluster, "certificate-authority", base),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        cert_pem=_data_or_file(user, "client-certificate", base),
        key_pem=_data_or_file(user, "client-key", base),
        authorization=f"Bearer {token}" if token else None,
    )


def endpoint_in_cluster() -> Endpoint | None:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port or not (IN_CLUSTER / "token").exists():
        return None
    host = f"[{host}]" if ":" in host else host
    return Endpoint(server=f"https://{host}:{port}",
                    namespace=(IN_CLUSTER / "namespace").read_text().strip() or "default",
                    ca_pem=(IN_CLUSTER / "ca.crt").read_bytes(),
                    authorization=f"Bearer {(IN_CLUSTER / 'token').read_text().strip()}")


def _ssl_context(endpoint: Endpoint) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cadata=endpoint.ca_pem.decode() if endpoint.ca_pem else None)
    if endpoint.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if endpoint.cert_pem and endpoint.key_pem:
        # ssl loads a key pair from files only: a private directory, removed at once
        with tempfile.TemporaryDirectory(prefix="meshctl-") as tmp:
            cert, key = Path(tmp) / "client.crt", Path(tmp) / "client.key"
            cert.write_bytes(endpoint.cert_pem)
            key.touch(mode=0o600)
            key.write_bytes(endpoint.key_pem)
            context.load_cert_chain(cert, key)
    return context


class RestKube:
    """The subset of :class:`meshctl.adapters.kube.Kube` the CLI uses, same signatures."""

    def __init__(self, endpoint: Endpoint, *, field_manager: str = FIELD_MANAGER,
                 timeout_seconds: float = 30.0, max_attempts: int = 5,
                 max_backoff_seconds: float = 2.0) -> None:
        self.endpoint = endpoint
        self.field_manager = field_manager
        self.timeout_seconds = timeout_seconds
        # A time.monotonic() instant no request may outlast (a command's --timeout).
        self.deadline: float | None = None
        self.max_attempts = max_attempts
        self.max_backoff_seconds = max_backoff_seconds
        url = urllib.parse.urlsplit(endpoint.server)
        if url.scheme != "https" or not url.hostname:
            raise PermanentError(f"{endpoint.server}: only https:// API servers are supported")
        self._host, self._port = url.hostname, url.port or 443
        self._prefix = url.path.rstrip("/")
        self._context = _ssl_context(endpoint)
        self._local = threading.local()  # .connection: this thread's kept-alive connection
        self._lock = threading.Lock()
        self._connections: builtins.list[http.client.HTTPSConnection] = []

    @classmethod
    def connect(cls, kubeconfig: str | Path | None = None, context: str | None = None,
                **options: Any) -> RestKube | None:
        """A client like :meth:`Kube.connect` picks (in-cluster in a pod when nothing is
        named), or None when only the full client can use the configuration."""
        from meshctl.adapters.files import FileProblem

        try:
            in_pod = kubeconfig is None and context is None and not os.environ.get("KUBECONFIG")
            endpoint = endpoint_in_cluster() if in_pod else None
            endpoint = endpoint or endpoint_from_kubeconfig(kubeconfig, context)
            return None if endpoint is None else cls(endpoint, **options)
        except (OSError, ValueError, ssl.SSLError, FileProblem) as exc:
            raise PermanentError(f"cannot load the kubeconfig: {exc}") from exc

    @property
    def namespace(self) -> str:
        return self.endpoint.namespace

    def close(self) -> None:
        """Close every thread's kept-alive connection (a thread's next call opens another)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    @property
    def _connection(self) -> http.client.HTTPSConnection | None:
        return getattr(self._local, "connection", None)

    @_connection.setter
    def _connection(self, connection: http.client.HTTPSConnection | None) -> None:
        self._local.connection = connection
        if connection is not None:
            with self._lock:
                self._connections.append(connection)

    def request_timeout(self, seconds: float | None = None) -> float:
        """As :meth:`Kube.request_timeout`."""
        return request_budget(seconds or self.timeout_seconds, self.deadline)

    def __enter__(self) -> RestKube:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the one request ------------------------------------------------------------------

    def _open(self, timeout: float) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self._host, self._port, context=self._context,
                                           timeout=timeout)

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "meshctl"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.endpoint.authorization:
            headers["Authorization"] = self.endpoint.authorization
        return headers

    def _send(self, connection: http.client.HTTPSConnection, method: str, path: str,
              body: Any, content_type: str | None) -> http.client.HTTPResponse:
        data = None if body is None else json.dumps(body).encode()
        try:
            connection.request(method, self._prefix + path, body=data,
                               headers=self._headers(content_type))
            return connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise Unavailable(describe(exc)) from exc

    def request(self, method: str, path: str, body: Any = None,
                content_type: str | None = None) -> Any:
        """One call; the decoded JSON answer, or the error tree's exception.

        A kept-alive connection the server closed while it was idle fails the next call
        before any answer: that call is sent once more on a new connection."""
        timeout = request_budget(self.timeout_seconds, self.deadline)
        reused = self._connection is not None
        try:
            status, reason, raw = self._exchange(method, path, body, content_type, timeout,
                                                 last=not reused)
        except _Closed:
            status, reason, raw = self._exchange(method, path, body, content_type, timeout,
                                                 last=True)
        if status >= 400:
            raise from_http_status(status, raw, reason)
        return json.loads(raw) if raw else {}

    def _exchange(self, method: str, path: str, body: Any, content_type: str | None,
                  timeout: float, last: bool) -> tuple[int, str, bytes]:
        """One request and its answer; a connection closed under it raises ``_Closed``
        (worth one more try on a new connection) unless this is the ``last`` try."""
        connection = self._connection
        if connection is None:
            connection = self._connection = self._open(timeout)
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        data = None if body is None else json.dumps(body).encode()
        try:
            connection.request(method, self._prefix + path, body=data,
                               headers=self._headers(content_type))
            response = connection.getresponse()
            raw = response.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            self._drop(connection)
            if last:
                raise Unavailable(describe(exc)) from exc
            raise _Closed() from exc
        except (OSError, http.client.HTTPException) as exc:
            self._drop(connection)
            raise Unavailable(describe(exc)) from exc
        if response.will_close:
            self._drop(connection)
        return response.status, response.reason, raw

    def _drop(self, connection: http.client.HTTPSConnection) -> None:
        connection.close()
        self._local.connection = None
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)

    @staticmethod
    def _path(group: str, version: str, namespace: str | None, plural: str,
              name: str | None = None, **query: Any) -> str:
        where = f"/namespaces/{namespace}" if namespace is not None else ""
        root = f"/apis/{group}" if group else "/api"  # "": the core group
        path = f"{root}/{version}{where}/{plural}" + (f"/{name}" if name else "")
        params = {k: v for k, v in query.items() if v is not None}
        return path + ("?" + urllib.parse.urlencode(params) if params else "")

    # -- reads ----------------------------------------------------------------------------

    def get(self, group: str, version: str, namespace: str, plural: str, name: str) -> Object:
        return _as_object(self.request("GET", self._path(group, version, namespace, plural,
                                                          name)))

    def who_am_i(self) -> Object:
        """``userInfo`` as the API server authenticated this client (SelfSubjectReview)."""
        review = self.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                              {"apiVersion": "authentication.k8s.io/v1",
                               "kind": "SelfSubjectReview"})
        return _as_object(_as_object(review).get("status", {}).get("userInfo", {}))

    def get_or_none(self, group: str, version: str, namespace: str, plural: str,
                    name: str) -> Object | None:
        try:
            return self.get(group, version, namespace, plural, name)
        except NotFound:
            return None

    def list(self, group: str, version: str, namespace: str, plural: str,
             label_selector: str | None = None) -> builtins.list[Object]:
        found = self.request("GET", self._path(group, version, namespace, plural,
                                               labelSelector=label_selector))
        return [_as_object(item) for item in _as_object(found).get("items", [])]

    def list_all(self, group: str, version: str, plural: str,
                 label_selector: str | None = None, page_size: int = 500, *,
                 namespace: str | None = None) -> tuple[builtins.list[Object], str]:
        """As :meth:`Kube.list_all`: every namespace (or ``namespace``), read in pages of
        ``page_size`` that make one snapshot, and the list's resourceVersion."""
        items: builtins.list[Object] = []
        token: str | None = None
        while True:
            body = _as_object(self.request("GET", self._path(
                group, version, namespace, plural, labelSelector=label_selector,
                limit=page_size, **{"continue": token})))
            items += [_as_object(item) for item in body.get("items", [])]
            meta = body.get("metadata", {})
            token = meta.get("continue") or None
            if token is None:
                return items, str(meta.get("resourceVersion", ""))

    def watch(self, group: str, version: str, plural: str, resource_version: str,
              timeout_seconds: int = 60, *, namespace: str | None = None,
              field_selector: str | None = None,
              bookmarks: bool = False) -> Iterator[tuple[str, Object]]:
        """As :meth:`Kube.watch`: (type, object) changes until the server ends the watch;
        with ``bookmarks``, ``("BOOKMARK", {"metadata": {"resourceVersion": ...}})`` too."""
        path = self._path(group, version, namespace, plural, watch="true",
                          resourceVersion=resource_version, timeoutSeconds=timeout_seconds,
                          allowWatchBookmarks="true" if bookmarks else "false",
                          fieldSelector=field_selector)
        connection = self._open(request_budget(timeout_seconds + self.timeout_seconds,
                                               self.deadline))
        try:
            response = self._send(connection, "GET", path, None, None)
            if response.status >= 400:
                raise from_http_status(response.status, response.read(), response.reason)
            while True:
                try:
                    line = response.readline()
                except (OSError, http.client.HTTPException) as exc:
                    raise Unavailable(f"watch of {plural}: {describe(exc)}") from exc
                if not line:
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = str(event.get("type", "")), _as_object(event.get("object"))
                if kind == "ERROR":
                    raise (NotFound if obj.get("code") == 410 else TransientError)(
                        f"watch of {plural} ended: {obj.get('message', obj)}")
                if kind == "BOOKMARK" and not bookmarks:
                    continue
                yield kind, obj
        finally:
            connection.close()

    # -- writes ---------------------------------------------------------------------------

    def create(self, group: str, version: str, namespace: str, plural: str,
               body: Object) -> Object:
        path = self._path(group, version, namespace, plural, fieldManager=self.field_manager)
        return _as_object(self.request("POST", path, body, "application/json"))

    def merge_patch(self, group: str, version: str, namespace: str, plural: str, name: str,
                    patch: Object) -> Object:
        path = self._path(group, version, namespace, plural, name,
                          fieldManager=self.field_manager)
        return _as_object(self.request("PATCH", path, patch, MERGE_PATCH))

    def merge_patch_status(self, group: str, version: str, namespace: str, plural: str,
                           name: str, patch: Object) -> Object:
        """JSON merge patch of the ``status`` subresource."""
        path = self._path(group, version, namespace, plural, f"{name}/status",
                          fieldManager=self.field_manager)
        return _as_object(self.request("PATCH", path, patch, MERGE_PATCH))

    def delete(self, group: str, version: str, namespace: str, plural: str, name: str) -> None:
        self.request("DELETE", self._path(group, version, namespace, plural, name))

    def apply(self, group: str, version: str, namespace: str, plural: str, body: Object, *,
              force: bool = False) -> Object:
        name = str((body.get("metadata") or {})["name"])
        path = self._path(group, version, namespace, plural, name,
                          fieldManager=self.field_manager, force="true" if force else None)
        return _as_object(self.request("PATCH", path, body, APPLY_PATCH))

    def replace(self, group: str, version: str, namespace: str, plural: str,
                body: Object) -> Object:
        metadata = body.get("metadata") or {}
        if not metadata.get("resourceVersion"):
            raise PermanentError("replace needs metadata.resourceVersion (read, then write)")
        path = self._path(group, version, namespace, plural, str(metadata["name"]),
                          fieldManager=self.field_manager)
        return _as_object(self.request("PUT", path, body, "application/json"))

    def update_with_retry(self, group: str, version: str, namespace: str, plural: str,
                          name: str, mutate: Mutation) -> Updated:
        """As :meth:`Kube.update_with_retry`: read, mutate a copy, write with the version
        read; a transient failure (a Conflict above all) starts again from a fresh read,
        under the same retry policy (``max_attempts`` in all)."""
        return update(self, group, version, namespace, plural, name, mutate,
                      attempts=self.max_attempts, max_backoff=self.max_backoff_seconds)


class _Closed(Exception):
    """The server closed a kept-alive connection before answering."""


def controller_client(kubeconfig: str | Path | None = None, context: str | None = None,
                      **options: Any) -> Kube | RestKube:
    """The controller's client: :class:`RestKube` when the configuration allows it (see
    the module docstring), the ``kubernetes`` client otherwise (exec plugins...)."""
    quick = RestKube.connect(kubeconfig, context, **options)
    if quick is not None:
        return quick
    return Kube.connect(kubeconfig, context, **options)


def _as_object(value: object) -> Object:
    if not isinstance(value, dict):
        raise PermanentError(f"expected a JSON object from the API server, got {type(value)}")
    return value

