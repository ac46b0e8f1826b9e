"""From a Rollout's analysis references to the resolved metrics the engine runs.

An ``analysis`` with no templates checks the Rollout's SLO: p95 latency under
``slo.latencyP95`` and availability at least ``slo.availability`` over ``slo.window``,
each guarded by ``slo.minRequests`` so that too little traffic is no data, never a pass,
and first measured one window after the step began:

    (<p95 query>) and on() (<requests query> >= 20)   -> empty below 20 requests -> NoData

Beside them runs a *fast availability check*, a guard (:class:`ResolvedMetric` ``guard``): the
availability counted over a short window (:func:`fast_window`) that never reaches back
before the run started (:meth:`ResolvedMetric.query_at`), measured every ``slo.interval`` from
the first one on, failing when the error ratio is more than ``HARD_FAILURE_FACTOR`` times
the SLO's error budget, with the same ``minRequests`` guard over the same span. It can only
fail the run, so a hard failure (errors far above the SLO, with enough requests) rolls back
on the first scrapes that show it instead of waiting for the latency window; the windowed
metrics still decide every pass. What the user trades: a short span is noisy, and only
``minRequests`` keeps a handful of unlucky requests from rolling back a good version.

Templates get their args (the template's defaults, overridden by the Rollout's) plus
``namespace``, ``service``, ``workload`` (the canary's), ``stableWorkload`` and ``window``,
all escaped for PromQL by :func:`meshctl.domain.queries.render`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from meshctl.domain import queries
from meshctl.domain.analysis import ResolvedMetric
from meshctl.domain.conditions import Condition
from meshctl.domain.engine import ResolvedAnalysis
from meshctl.domain.problems import InvalidSpec, Problem
from meshctl.domain.routers import backend_of
from meshctl.domain.routers.backend import MeshKind
from meshctl.domain.schedule import ANALYSIS_KINDS, schedule
from meshctl.domain.spec import AnalysisTemplate, Arg, Rollout, SloMetrics, TemplateRef


@dataclass(frozen=True)
class Target:
    """Names the built-in queries select the canary by."""

    mesh: MeshKind
    namespace: str
    service: str
    workload: str  # istio: the canary Deployment; envoy: the canary cluster
    stable_workload: str
    # istio: "<subset>|<host FQDN>" of the canary's Envoy cluster outbound|<port>|<subset>|<host>
    canary_cluster: str = ""

    @classmethod
    def of(cls, rollout: Rollout, mesh: MeshKind) -> Target:
        if mesh is MeshKind.ENVOY:
            return cls(mesh, rollout.namespace, rollout.spec.service, "canary", "stable")
        ref = rollout.spec.workload_ref
        base = ref.name if ref is not None else rollout.spec.service
        return cls(mesh, rollout.namespace, rollout.spec.service, f"{base}-canary", base,
                   _canary_cluster(rollout))

    def variables(self, window: str) -> dict[str, str]:
        found = {"namespace": self.namespace, "service": self.service, "workload": self.workload,
                 "cluster": self.workload, "stableWorkload": self.stable_workload,
                 "window": window}
        if self.canary_cluster:
            found["canaryCluster"] = self.canary_cluster
        return found


def _canary_cluster(rollout: Rollout) -> str:
    """How Istio names the canary in a proxy's cluster names, after the port (the backend
    knows): ``canary|web.shop.svc.cluster.local`` (a subset) or ``|web-canary.shop.svc...``."""
    backend = backend_of(rollout)
    return backend.canary_cluster(rollout) if backend is not None else ""


HARD_FAILURE_FACTOR = 2.0


def fast_window(window_seconds: float, interval_seconds: float) -> str:
    """The fast check's span: two measurement intervals, at most the SLO window. It counts
    from the run's start until the run is that old (so it never reads errors from before
    its run: a retry right after a failure would otherwise fail again on the old errors).

    ``fast_window(4, 1) == "2s"``; ``fast_window(60, 10) == "20s"``;
    ``fast_window(60, 0.5) == "1s"``; ``fast_window(1.5, 1) == "1500ms"``."""
    seconds = min(window_seconds, 2 * interval_seconds)
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def hard_failure_ratio(availability: float) -> float:
    """The availability under which the fast check fails: the error ratio over
    ``HARD_FAILURE_FACTOR`` times the budget. 99.9% -> 0.998 (0.2% errors); 99% -> 0.98."""
    return max(0.0, 1.0 - HARD_FAILURE_FACTOR * (1.0 - availability))


def slo_metrics(rollout: Rollout, target: Target) -> tuple[ResolvedMetric, ...]:
    slo = rollout.spec.slo
    latency, availability, requests = _slo_templates(target.mesh, slo.metrics)
    variables = target.variables(slo.window.text)

    def guarded(template: queries.QueryTemplate, over: dict[str, str] = variables) -> str:
        query = template.render(over)
        if slo.min_requests <= 0:
            return query
        return f"({query}) and on() ({requests.render(over)} >= {slo.min_requests})"

    # The first measurement waits one window, so the rate covers traffic the step sent.
    common = {"interval": slo.interval.seconds, "count": slo.count,
              "initial_delay": slo.window.seconds, "failure_limit": slo.failure_limit,
              "inconclusive_limit": slo.inconclusive_limit}
    ms = slo.latency_p95.seconds * 1000
    return (
        ResolvedMetric(name="latency-p95", query=guarded(latency),
                   success=Condition.parse(f"result < {ms:g}"), **common),  # type: ignore[arg-type]
        ResolvedMetric(name="availability", query=guarded(availability),
                   success=Condition.parse(f"result >= {slo.availability_ratio:g}"),
                   **common),  # type: ignore[arg-type]
        _fast_check(rollout, target),
    )


def _fast_check(rollout: Rollout, target: Target) -> ResolvedMetric:
    """The fast availability check (see the module docstring)."""
    slo = rollout.spec.slo
    availability, requests = _since_templates(target.mesh, slo.metrics)
    text = availability.text
    if slo.min_requests > 0:
        text = f"({text}) and on() ({requests.text} >= {slo.min_requests})"
    variables = target.variables(slo.window.text)
    shown = queries.render(text.replace("{{since}}", "$since").replace("{{span}}", "$span"),
                           variables)
    span = queries.parse_duration(fast_window(slo.window.seconds, slo.interval.seconds))
    return ResolvedMetric(name="availability-fast", query=shown, template=text,
                      variables=tuple(sorted(variables.items())), since_window=span,
                      failure=Condition.parse(
                          f"result < {hard_failure_ratio(slo.availability_ratio):g}"),
                      interval=slo.interval.seconds, count=slo.count,
                      initial_delay=slo.interval.seconds, failure_limit=slo.failure_limit,
                      guard=True)


def _since_templates(mesh: MeshKind, metrics: SloMetrics) -> tuple[queries.QueryTemplate, ...]:
    """(availability, requests) counted since a moment, for the same series as
    :func:`_slo_templates`."""
    if mesh is MeshKind.ENVOY:
        return queries.ENVOY_AVAILABILITY_SINCE, queries.ENVOY_REQUESTS_SINCE
    if metrics is SloMetrics.ENVOY:
        return queries.ISTIO_ENVOY_AVAILABILITY_SINCE, queries.ISTIO_ENVOY_REQUESTS_SINCE
    return queries.ISTIO_AVAILABILITY_SINCE, queries.ISTIO_REQUESTS_SINCE


def _slo_templates(mesh: MeshKind, metrics: SloMetrics) -> tuple[queries.QueryTemplate, ...]:
    """(latency, availability, requests) templates: the local mesh's Envoy clusters, the
    proxies' Envoy clusters in Istio, or Istio's standard metrics."""
    if mesh is MeshKind.ENVOY:
        return queries.ENVOY_LATENCY_P95, queries.ENVOY_AVAILABILITY, queries.ENVOY_REQUESTS
    if metrics is SloMetrics.ENVOY:
        return (queries.ISTIO_ENVOY_LATENCY_P95, queries.ISTIO_ENVOY_AVAILABILITY,
                queries.ISTIO_ENVOY_REQUESTS)
    return queries.ISTIO_LATENCY_P95, queries.ISTIO_AVAILABILITY, queries.ISTIO_REQUESTS


def template_metrics(ref_path: str, refs: tuple[TemplateRef, ...], args: tuple[Arg, ...],
                     templates: Mapping[str, AnalysisTemplate], rollout: Rollout,
                     target: Target) -> Iterator[ResolvedMetric | Problem]:
    given = {a.name: a.value for a in args if a.value is not None}
    for i, ref in enumerate(refs):
        path = f"{ref_path}.templates[{i}].templateName"
        template = templates.get(ref.template_name)
        if template is None:
            yield Problem(path, f"AnalysisTemplate {ref.template_name!r} not found in "
                          f"namespace {rollout.namespace}; create it or fix the name")
            continue
        values = {a.name: a.value for a in template.spec.args if a.value is not None}
        values.update(given)
        missing = [a.name for a in template.spec.args if a.name not in values]
        if missing:
            yield Problem(f"{ref_path}.args", f"AnalysisTemplate {ref.template_name} needs "
                          f"args {', '.join(missing)}; add them with a value")
            continue
        variables = {**target.variables(rollout.spec.slo.window.text),
                     **{f"args.{k}": v for k, v in values.items()}}
        for metric in template.spec.metrics:
            prom = metric.provider.prometheus
            try:
                query = queries.render(prom.query, variables)
            except ValueError as exc:
                yield Problem(f"{ref_path}.args", f"{ref.template_name}/{metric.name}: {exc}")
                continue
            yield ResolvedMetric(
                name=metric.name, query=query, address=prom.address,
                timeout=prom.timeout.seconds,
                success=Condition.parse(metric.success_condition) if metric.success_condition else None,
                failure=Condition.parse(metric.failure_condition) if metric.failure_condition else None,
                interval=metric.interval.seconds, count=metric.count,
                failure_limit=metric.failure_limit, inconclusive_limit=metric.inconclusive_limit,
                consecutive_error_limit=metric.consecutive_error_limit,
                initial_delay=metric.initial_delay.seconds if metric.initial_delay else 0.0,
                min_samples=metric.min_samples,
            )


def resolve_analysis(rollout: Rollout, templates: Mapping[str, AnalysisTemplate],
                   mesh: MeshKind) -> ResolvedAnalysis:
    """Every analysis of the rollout resolved; raises InvalidSpec naming each problem."""
    target = Target.of(rollout, mesh)
    problems: list[Problem] = []

    def resolve(path: str, refs: tuple[TemplateRef, ...], args: tuple[Arg, ...],
                background: bool) -> tuple[ResolvedMetric, ...]:
        if not refs:
            plans = slo_metrics(rollout, target)
            # background checks run until the rollout ends
            return tuple(_background(p) for p in plans) if background else plans
        out = []
        for item in template_metrics(path, refs, args, templates, rollout, target):
            if isinstance(item, Problem):
                problems.append(item)
            else:
                out.append(item if not background else _background(item))
        return tuple(out)

    steps = {}
    strategy = rollout.spec.strategy
    base = "spec.strategy.canary.steps" if strategy.canary else "spec.strategy.blueGreen"
    for step in schedule(rollout.spec):
        if step.kind in ANALYSIS_KINDS:
            ref = step.analysis
            assert ref is not None
            path = f"{base}[{step.index}].analysis" if strategy.canary else f"{base}.{step.kind.value}"
            steps[step.index] = resolve(path, ref.templates, ref.args, False)
    background: tuple[ResolvedMetric, ...] = ()
    start = 0
    if strategy.canary is not None and strategy.canary.analysis is not None:
        bg = strategy.canary.analysis
        background = resolve("spec.strategy.canary.analysis", bg.templates, bg.args, True)
        start = bg.starting_step
    if problems:
        raise InvalidSpec(problems)
    return ResolvedAnalysis(steps=steps, background=background, background_from=start)


def _background(plan: ResolvedMetric) -> ResolvedMetric:
    return dataclasses.replace(plan, count=None)
