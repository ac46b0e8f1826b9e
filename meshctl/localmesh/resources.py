"""Translate a :class:`~meshctl.domain.traffic.TrafficSplit` to Envoy v3 resources and back.

The local mesh has one service. Its Envoy gets:

- one ``Listener`` on ``127.0.0.1:<port>`` whose ``HttpConnectionManager`` takes its routes
  from RDS (over ADS) under the name :data:`ROUTE_NAME`;
- one ``RouteConfiguration`` with one virtual host (``*``) holding, in order, one route per
  :class:`~meshctl.domain.traffic.HeaderRoute` (all its header matchers must hold; it sends
  to the canary cluster regardless of weight) and then the route :data:`WEIGHTED_ROUTE` with
  ``weighted_clusters`` stable/canary (integers summing to 100) and, when mirroring, a
  ``request_mirror_policies`` entry sending ``mirror_percent`` % of copies to the canary;
- one ``STATIC`` ``Cluster`` per version with its endpoint inline (``load_assignment``),
  so no EDS is needed: the endpoints of a local mesh are fixed when it starts.

:func:`route_config_to_split` is the inverse of :func:`route_config`; the router uses it to
read the split Envoy is applying from its ``/config_dump``. Both are the local traffic
backend's (:mod:`meshctl.domain.routers.local`, which also shows the route configuration in
``rollout plan --mesh local``), carried here to and from Envoy's messages.

Pure translation: no I/O. Everything here is deterministic, so the same split always yields
byte-identical resources (the xDS server relies on that to tell "changed" from "same").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshctl.domain.routers import local
from meshctl.domain.traffic import TrafficSplit
from meshctl.localmesh import _protos as pb

LISTENER_NAME = "meshctl_ingress"
ROUTE_NAME = local.ROUTE_NAME
WEIGHTED_ROUTE = local.WEIGHTED_ROUTE

TYPE_LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
TYPE_ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
TYPE_CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
TYPE_ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


@dataclass(frozen=True)
class Upstream:
    """Where one version listens: a cluster name and a loopback (or other) address."""

    cluster: str
    host: str
    port: int


@dataclass(frozen=True)
class MeshLayout:
    """The fixed shape of a local mesh: the listener port and the two upstreams."""

    listener_port: int
    stable: Upstream
    canary: Upstream
    listener_address: str = "127.0.0.1"
    baseline: Upstream | None = None  # a fresh baseline's (a third cluster)

    def upstreams(self) -> list[Upstream]:
        return [self.stable, self.canary, *([self.baseline] if self.baseline else [])]


def _ads_source() -> Any:
    return pb.config_source_pb2.ConfigSource(
        ads=pb.config_source_pb2.AggregatedConfigSource(),
        resource_api_version=pb.config_source_pb2.ApiVersion.V3,
    )


def listener(layout: MeshLayout) -> Any:
    """The HTTP listener; its routes come from RDS over ADS."""
    hcm = pb.http_connection_manager_pb2.HttpConnectionManager(
        stat_prefix="meshctl",
        rds=pb.http_connection_manager_pb2.Rds(config_source=_ads_source(), route_config_name=ROUTE_NAME),
        http_filters=[
            pb.http_connection_manager_pb2.HttpFilter(
                name="envoy.filters.http.router", typed_config=_pack(pb.router_pb2.Router())
            )
        ],
    )
    return pb.listener_pb2.Listener(
        name=LISTENER_NAME,
        address=_socket_address(layout.listener_address, layout.listener_port),
        filter_chains=[
            pb.listener_components_pb2.FilterChain(
                filters=[
                    pb.listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=_pack(hcm),
                    )
                ]
            )
        ],
    )


def cluster(upstream: Upstream) -> Any:
    """A STATIC cluster with its single endpoint inline."""
    endpoint = pb.endpoint_components_pb2.LbEndpoint(
        endpoint=pb.endpoint_components_pb2.Endpoint(address=_socket_address(upstream.host, upstream.port))
    )
    return pb.cluster_pb2.Cluster(
        name=upstream.cluster,
        type=pb.cluster_pb2.Cluster.STATIC,
        connect_timeout=pb.duration_pb2.Duration(seconds=1),
        load_assignment=pb.endpoint_pb2.ClusterLoadAssignment(
            cluster_name=upstream.cluster,
            endpoints=[pb.endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
        ),
    )


def route_config(split: TrafficSplit, layout: MeshLayout) -> Any:
    """The RouteConfiguration that makes Envoy apply ``split``: the local backend's
    (:func:`meshctl.domain.routers.local.route_configuration`) as a message."""
    body = local.route_configuration(split, layout.stable.cluster, layout.canary.cluster)
    return pb.json_format.ParseDict(body, pb.route_pb2.RouteConfiguration())


def route_config_to_split(config: Any, layout: MeshLayout) -> TrafficSplit:
    """Read back the split a RouteConfiguration applies (inverse of :func:`route_config`).

    Raises ValueError if the configuration was not written by :func:`route_config`.
    """
    body = pb.json_format.MessageToDict(config, preserving_proto_field_name=True)
    return local.split_of(body, layout.stable.cluster, layout.canary.cluster)


def route_config_from_json(data: Mapping[str, Any]) -> Any:
    """Parse a RouteConfiguration as Envoy's admin ``/config_dump`` prints it."""
    body = {k: v for k, v in data.items() if k != "@type"}
    return pb.json_format.ParseDict(body, pb.route_pb2.RouteConfiguration(), ignore_unknown_fields=True)


def _socket_address(host: str, port: int) -> Any:
    return pb.address_pb2.Address(socket_address=pb.address_pb2.SocketAddress(address=host, port_value=port))


def _pack(message: Any) -> Any:
    packed = pb.any_pb2.Any()
    packed.Pack(message)
    return packed
