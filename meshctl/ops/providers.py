"""The metric providers' registry: a provider kind (:mod:`meshctl.domain.providers`) to its
adapter, one per (kind, address), kept for the life of the process that asked; and the
judge's sample sources: Prometheus (range queries), or a recorder of an Envoy's stats."""

from __future__ import annotations

import threading
from collections.abc import Callable

from meshctl.adapters.envoy_samples import EnvoySampleRecorder
from meshctl.adapters.web import EnvoyStatsProvider, WebProvider
from meshctl.domain import envoy_samples
from meshctl.domain.engine import ResolvedAnalysis
from meshctl.domain.judge import ResolvedJudge
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
        self._recorders: dict[tuple[str, float, float, float], EnvoySampleRecorder] = {}
        self._lock = threading.Lock()

    def source(self, kind: ProviderKind, address: str | None) -> MetricProvider:
        if kind is ProviderKind.PROMETHEUS:
            return self.prometheus(address)
        target = self._address(kind, address)
        key = (kind, target)
        if key not in self._made:
            self._made[key] = (EnvoyStatsProvider(target) if kind is ProviderKind.ENVOY
                               else WebProvider(target))
        return self._made[key]

    def _address(self, kind: ProviderKind, address: str | None) -> str:
        target = address
        if target is None and kind is ProviderKind.ENVOY and self.envoy_admin is not None:
            target = self.envoy_admin()
        if target is None:
            raise ValueError(f"a {kind.value} metric needs an address here (no local mesh "
                             "Envoy to default to)")
        return target

    def samples(self, kind: ProviderKind, address: str | None, judge: ResolvedJudge) -> object:
        """Where ``judge`` takes its samples: Prometheus, or a recorder of the Envoy's stats
        (started here if :meth:`prepare` did not start it earlier)."""
        if kind is not ProviderKind.ENVOY:
            return self.source(kind, address)
        target = self._address(kind, address)
        period = envoy_samples.poll_period(judge.window, judge.step)
        key = (target, judge.window, period, envoy_samples.kept_span(judge.lookback,
                                                                      judge.window, period))
        stats = {stat for m in judge.metrics for q in (m.canary_query, m.baseline_query)
                 for stat in envoy_samples.parse(q).stats}
        with self._lock:
            recorder = self._recorders.get(key)
            if recorder is None:
                recorder = self._recorders[key] = EnvoySampleRecorder(
                    target, stats, judge.window, period, key[3]).start()
        recorder.watch(stats)
        return recorder

    def prepare(self, plans: ResolvedAnalysis) -> None:
        """Start recording for every judge of ``plans`` that reads Envoy, so that its
        lookback has filled by the time it first judges."""
        for metrics in (*plans.steps.values(), plans.background):
            for metric in metrics:
                if metric.judge is not None and metric.kind is ProviderKind.ENVOY:
                    self.samples(metric.kind, metric.address, metric.judge)

    def close(self) -> None:
        """Stop the recorders (their readings are gone)."""
        with self._lock:
            recorders, self._recorders = list(self._recorders.values()), {}
        for recorder in recorders:
            recorder.stop()
