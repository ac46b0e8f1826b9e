"""The metric providers' registry: a provider kind (:mod:`meshctl.domain.providers`) to its
adapter, one per (kind, address), kept for the life of the process that asked."""

from __future__ import annotations

from collections.abc import Callable

from meshctl.adapters.web import EnvoyStatsProvider, WebProvider
from meshctl.domain.ports import MetricProvider
from meshctl.domain.providers import ProviderKind

Prometheus = Callable[[str | None], MetricProvider]


class Providers:
    """``source(kind, address)``: Prometheus through the caller's own factory (the
    controller's or the local run's, with its default address); the others built here.
    ``envoy_admin``: where the Envoy an ``envoy`` metric without an address reads is (the
    local mesh's), asked when such a metric is measured."""

    def __init__(self, prometheus: Prometheus,
                 envoy_admin: Callable[[], str] | None = None) -> None:
        self.prometheus = prometheus
        self.envoy_admin = envoy_admin
        self._made: dict[tuple[ProviderKind, str], MetricProvider] = {}

    def source(self, kind: ProviderKind, address: str | None) -> MetricProvider:
        if kind is ProviderKind.PROMETHEUS:
            return self.prometheus(address)
        target = address
        if target is None and kind is ProviderKind.ENVOY and self.envoy_admin is not None:
            target = self.envoy_admin()
        if target is None:
            raise ValueError(f"a {kind.value} metric needs an address here (no local mesh "
                             "Envoy to default to)")
        key = (kind, target)
        if key not in self._made:
            self._made[key] = (EnvoyStatsProvider(target) if kind is ProviderKind.ENVOY
                               else WebProvider(target))
        return self._made[key]
