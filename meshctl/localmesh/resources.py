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
read the split Envoy is applying from its ``/config_dump``.

Pure translation: no I/O. Everything here is deterministic, so the same split always yields
byte-identical resources (the xDS server relies on that to tell "changed" from "same").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshctl.domain.traffic import HeaderMatch, HeaderRoute, MatchKind, TrafficSplit, Weights
from meshctl.localmesh import _protos as pb

LISTENER_NAME = "meshctl_ingress"
ROUTE_NAME = "meshctl_route"
WEIGHTED_ROUTE = "weighted"
VIRTUAL_HOST = "service"

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
    """The RouteConfiguration that makes Envoy apply ``split``.

    Header routes come first (Envoy takes the first matching route), then the weighted one.
    """
    routes = [_header_route(route, layout.canary.cluster) for route in split.header_routes]
    routes.append(_weighted_route(split, layout))
    return pb.route_pb2.RouteConfiguration(
        name=ROUTE_NAME,
        virtual_hosts=[pb.route_components_pb2.VirtualHost(name=VIRTUAL_HOST, domains=["*"], routes=routes)],
    )


def _weighted_route(split: TrafficSplit, layout: MeshLayout) -> Any:
    rc = pb.route_components_pb2
    action = rc.RouteAction(
        weighted_clusters=rc.WeightedCluster(
            clusters=[
                rc.WeightedCluster.ClusterWeight(
                    name=layout.stable.cluster,
                    weight=pb.wrappers_pb2.UInt32Value(value=split.weights.stable),
                ),
                rc.WeightedCluster.ClusterWeight(
                    name=layout.canary.cluster,
                    weight=pb.wrappers_pb2.UInt32Value(value=split.weights.canary),
                ),
            ]
        )
    )
    if split.mirror_percent > 0:
        action.request_mirror_policies.append(
            rc.RouteAction.RequestMirrorPolicy(
                cluster=layout.canary.cluster,
                runtime_fraction=pb.base_pb2.RuntimeFractionalPercent(
                    default_value=pb.percent_pb2.FractionalPercent(
                        numerator=split.mirror_percent,
                        denominator=pb.percent_pb2.FractionalPercent.HUNDRED,
                    )
                ),
            )
        )
    return rc.Route(name=WEIGHTED_ROUTE, match=rc.RouteMatch(prefix="/"), route=action)


def _header_route(route: HeaderRoute, canary_cluster: str) -> Any:
    rc = pb.route_components_pb2
    return rc.Route(
        name=route.name,
        match=rc.RouteMatch(prefix="/", headers=[_header_matcher(m) for m in route.matches]),
        route=rc.RouteAction(cluster=canary_cluster),
    )


def _header_matcher(match: HeaderMatch) -> Any:
    sm = pb.string_pb2.StringMatcher
    if match.kind is MatchKind.EXACT:
        string_match = sm(exact=match.value)
    elif match.kind is MatchKind.PREFIX:
        string_match = sm(prefix=match.value)
    else:
        string_match = sm(safe_regex=pb.regex_pb2.RegexMatcher(regex=match.value))
    return pb.route_components_pb2.HeaderMatcher(name=match.name, string_match=string_match)


def route_config_to_split(config: Any, layout: MeshLayout) -> TrafficSplit:
    """Read back the split a RouteConfiguration applies (inverse of :func:`route_config`).

    Raises ValueError if the configuration was not written by :func:`route_config`.
    """
    routes = [r for vh in config.virtual_hosts for r in vh.routes]
    weighted = [r for r in routes if r.name == WEIGHTED_ROUTE]
    if len(weighted) != 1:
        raise ValueError(f"route configuration {config.name!r} has no single {WEIGHTED_ROUTE!r}")
    action = weighted[0].route
    weights = {c.name: c.weight.value for c in action.weighted_clusters.clusters}
    mirror = 0
    for policy in action.request_mirror_policies:
        if policy.cluster == layout.canary.cluster:
            mirror = _percent(policy.runtime_fraction.default_value)
    header_routes = tuple(
        HeaderRoute(name=r.name, matches=tuple(_header_match(h) for h in r.match.headers))
        for r in routes
        if r.name != WEIGHTED_ROUTE and r.route.cluster == layout.canary.cluster
    )
    return TrafficSplit(
        weights=Weights(
            stable=weights.get(layout.stable.cluster, 0),
            canary=weights.get(layout.canary.cluster, 0),
        ),
        header_routes=header_routes,
        mirror_percent=mirror,
    )


def route_config_from_json(data: Mapping[str, Any]) -> Any:
    """Parse a RouteConfiguration as Envoy's admin ``/config_dump`` prints it."""
    body = {k: v for k, v in data.items() if k != "@type"}
    return pb.json_format.ParseDict(body, pb.route_pb2.RouteConfiguration(), ignore_unknown_fields=True)


def _header_match(matcher: Any) -> HeaderMatch:
    string_match = matcher.string_match
    kind = string_match.WhichOneof("match_pattern")
    if kind == "exact":
        return HeaderMatch(matcher.name, string_match.exact, MatchKind.EXACT)
    if kind == "prefix":
        return HeaderMatch(matcher.name, string_match.prefix, MatchKind.PREFIX)
    if kind == "safe_regex":
        return HeaderMatch(matcher.name, string_match.safe_regex.regex, MatchKind.REGEX)
    raise ValueError(f"header matcher on {matcher.name!r} uses {kind!r}, not written by meshctl")


def _percent(fraction: Any) -> int:
    scale = {
        pb.percent_pb2.FractionalPercent.HUNDRED: 1,
        pb.percent_pb2.FractionalPercent.TEN_THOUSAND: 100,
        pb.percent_pb2.FractionalPercent.MILLION: 10_000,
    }[fraction.denominator]
    return round(float(fraction.numerator) / scale)


def _socket_address(host: str, port: int) -> Any:
    return pb.address_pb2.Address(socket_address=pb.address_pb2.SocketAddress(address=host, port_value=port))


def _pack(message: Any) -> Any:
    packed = pb.any_pb2.Any()
    packed.Pack(message)
    return packed
