"""Every rendered query of a Rollout, asked of the metrics source that will run it: a query
Prometheus rejects makes the spec invalid, with the metric's field path and Prometheus's own
message (``meshctl lint --prometheus-url``, and the controller before each pass).

A source that cannot be asked (down, slow) proves nothing about a query: the check says so
(``unreachable``) and finds no problem; the controller goes on (its measurements will find
the source unavailable), ``lint`` exits 5.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableSet
from dataclasses import dataclass
from datetime import datetime

from meshctl.domain.analysis import ResolvedMetric
from meshctl.domain.engine import ResolvedAnalysis
from meshctl.domain.ports import QueryChecker
from meshctl.domain.problems import InvalidSpec, Problem
from meshctl.domain.providers import ProviderKind
from meshctl.domain.resolve import resolve_analysis
from meshctl.domain.routers.backend import MeshKind
from meshctl.domain.spec import AnalysisTemplate, Rollout

CHECK_TIMEOUT = 5.0
MAX_REMEMBERED = 4096


@dataclass(frozen=True)
class QueryReport:
    problems: tuple[Problem, ...] = ()
    unreachable: str = ""  # why a source could not be asked ("" when every one answered)


def rendered(plans: ResolvedAnalysis, now: datetime
             ) -> Iterator[tuple[ResolvedMetric, str, str]]:
    """Each metric with a query it would run now (a metric counting from a moment: from
    ``now``) and that query's field path, every (address, query) once."""
    seen: set[tuple[str | None, str]] = set()
    for metric in _metrics(plans):
        if metric.kind is not ProviderKind.PROMETHEUS:
            continue  # only Prometheus parses queries
        for query, path in _queries(metric, now):
            if (metric.address, query) not in seen:
                seen.add((metric.address, query))
                yield metric, query, path


def _metrics(plans: ResolvedAnalysis) -> Iterable[ResolvedMetric]:
    for index in sorted(plans.steps):
        yield from plans.steps[index]
    yield from plans.background


def _queries(metric: ResolvedMetric, now: datetime) -> list[tuple[str, str]]:
    """A metric's query; the judge's: each of its metrics' for the canary and the baseline."""
    path = metric.field or f"metric {metric.name}"
    if metric.judge is None:
        return [(metric.query_at(now, now), path)]
    return [(q, m.field or path) for m in metric.judge.metrics
            for q in (m.canary_query, m.baseline_query)]


def check_queries(plans: ResolvedAnalysis, sources: Callable[[str | None], object], now: datetime,
                  accepted: MutableSet[tuple[str | None, str]] | None = None,
                  timeout: float = CHECK_TIMEOUT) -> QueryReport:
    """Ask each metric's source whether it accepts the metric's queries. ``accepted``
    remembers queries a source accepted (the controller keeps one across passes, so a valid
    Rollout costs its queries once). A source that does not answer is not asked again in
    this check: one ``timeout`` at most is spent waiting for sources that are down."""
    problems: list[Problem] = []
    unreachable = ""
    down: set[str | None] = set()
    for metric, query, path in rendered(plans, now):
        key = (metric.address, query)
        if (accepted is not None and key in accepted) or metric.address in down:
            continue
        source = sources(metric.address)
        if not isinstance(source, QueryChecker):
            continue  # a source that cannot parse queries (a web or Envoy provider)
        check = source.check_query(query, timeout)
        if check.accepted:
            if accepted is not None:
                if len(accepted) >= MAX_REMEMBERED:
                    accepted.clear()
                accepted.add(key)
        elif not check.reachable:
            unreachable = unreachable or check.message
            down.add(metric.address)
        else:
            problems.append(Problem(path,
                                    f"Prometheus rejects the query of metric {metric.name!r}: "
                                    f"{check.message}; fix the query"))
    return QueryReport(tuple(problems), unreachable)


@dataclass(frozen=True)
class LintReport:
    problems: tuple[str, ...] = ()  # "<file>: <field path>: <message>"
    unreachable: str = ""


def lint_queries(rollouts: Iterable[tuple[str, Rollout]],
                 templates: Mapping[str, AnalysisTemplate], prometheus_url: str,
                 now: datetime) -> LintReport:
    """``meshctl lint --prometheus-url``: each Rollout's analysis resolved (for the mesh its
    spec is for: the local mesh's Envoy names with ``spec.local`` and no traffic routing,
    else Istio's) and every rendered query asked of Prometheus."""
    from meshctl.adapters.prometheus import PrometheusProvider

    providers: dict[str | None, PrometheusProvider] = {}

    def source(address: str | None) -> PrometheusProvider:
        key = address or prometheus_url
        if key not in providers:
            providers[key] = PrometheusProvider(key)
        return providers[key]

    problems: list[str] = []
    unreachable = ""
    try:
        for where, rollout in rollouts:
            local = rollout.spec.local is not None and rollout.spec.traffic_routing is None
            try:
                plans = resolve_analysis(rollout, templates,
                                         MeshKind.ENVOY if local else MeshKind.ISTIO)
            except InvalidSpec as exc:
                problems += [f"{where}: {p}" for p in exc.problems]
                continue
            report = check_queries(plans, source, now)
            problems += [f"{where}: {p}" for p in report.problems]
            unreachable = unreachable or report.unreachable
    finally:
        for provider in providers.values():
            provider.close()
    return LintReport(tuple(problems), unreachable)
