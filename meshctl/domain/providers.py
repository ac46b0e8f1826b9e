"""Metric providers by kind: where a metric's numbers come from.

One small interface for all (:class:`meshctl.domain.ports.MetricProvider`: ``measure(query,
timeout)``), chosen by kind; each kind reads its spec section as an (``address``, ``query``)
pair the shell hands to that kind's adapter:

- ``prometheus``: a PromQL instant query at the controller's Prometheus or ``address``;
  queries are also checked (parsed by Prometheus) before they run;
- ``envoy``: one stat read directly from an Envoy's admin endpoint (``address``, by default
  the local mesh's Envoy): a counter or gauge by its full name, or a histogram's quantile
  (``query`` = ``<histogram>:P<quantile>``, e.g. ``cluster.canary.upstream_rq_time:P95``);
  for proxies without Istio's telemetry and for the local mesh without Prometheus;
- ``web``: GET ``address`` (a URL) and read the number at a JSONPath (``query``; the subset
  of :mod:`meshctl.domain.jsonpath`).

The shell's registry (:mod:`meshctl.ops.providers`) maps each kind to its adapter; a new kind
is one spec section, one entry here and one adapter.
"""

from __future__ import annotations

from enum import Enum


class ProviderKind(str, Enum):
    PROMETHEUS = "prometheus"
    ENVOY = "envoy"
    WEB = "web"


def envoy_query(stat: str, quantile: float | None) -> str:
    """The envoy kind's query: ``cluster.canary.upstream_rq_5xx`` as is; a histogram with a
    quantile: ``cluster.canary.upstream_rq_time:P95``."""
    return stat if quantile is None else f"{stat}:P{quantile:g}"


def split_envoy_query(query: str) -> tuple[str, float | None]:
    """The inverse of :func:`envoy_query`: ``"h:P99.5"`` -> ``("h", 99.5)``."""
    stat, sep, quantile = query.rpartition(":P")
    if not sep:
        return query, None
    return stat, float(quantile)
