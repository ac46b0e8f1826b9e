"""From a Rollout's analysis references to the resolved metrics the engine runs.

An ``analysis`` with no templates checks the Rollout's SLO: p95 latency under
``slo.latencyP95`` and availability at least ``slo.availability`` over ``slo.window``,
each guarded by ``slo.minRequests`` so that too little traffic is no data, never a pass,
and first measured one window after the step began:

    (<p95 query>) and on() (<requests query> >= 20)   -> empty below 20 requests -> NoData

Beside them runs a *fast availability check*, a guard (:class:`ResolvedMetric` ``guard``): the
availability counted over a short window (:func:`fast_window`) that never reaches back
before the run started (:meth:`ResolvedMetric.query_at`), measured twice every ``slo.interval``
(:data:`FAST_CHECKS_PER_INTERVAL`) from the first half interval on, failing when the error
ratio is more than ``HARD_FAILURE_FACTOR`` times the SLO's error budget, with the same
``minRequests`` guard over the same span. It can only fail the run, so a hard failure
(errors far above the SLO, with enough requests) rolls back on the first scrapes that show
it instead of waiting for the latency window; the windowed metrics still decide every pass.
What the user trades: a short span is noisy, and only ``minRequests`` keeps a handful of
unlucky requests from rolling back a good version.

Templates get their args (the template's defaults, overridden by the Rollout's) plus
``namespace``, ``service``, ``workload`` (the canary's), ``stableWorkload`` and ``window``,
all escaped for PromQL by :func:`meshctl.domain.queries.render`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from meshctl.domain import envoy_samples, queries
from meshctl.domain.analysis import ResolvedMetric
from meshctl.domain.conditions import Condition
from meshctl.domain.engine import ResolvedAnalysis
from meshctl.domain.judge import JudgeQuery, JudgeSettings, ResolvedJudge
from meshctl.domain.problems import InvalidSpec, Problem
from meshctl.domain.providers import ProviderKind, envoy_query
from meshctl.domain.routers import backend_of
from meshctl.domain.routers.backend import MeshKind
from meshctl.domain.schedule import ANALYSIS_KINDS, schedule
from meshctl.domain.spec import AnalysisTemplate, Arg, Provider, Rollout, SloMetrics, TemplateRef


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
    stable_cluster: str = ""  # the same for stable (the judge's baseline)
    # A fresh baseline's workload and cluster (spec.judge.baseline: fresh); "" without one.
    baseline_workload: str = ""
    baseline_cluster: str = ""

    @classmethod
    def of(cls, rollout: Rollout, mesh: MeshKind) -> Target:
        fresh = rollout.spec.fresh_baseline
        if mesh is MeshKind.ENVOY:
            return cls(mesh, rollout.namespace, rollout.spec.service, "canary", "stable",
                       baseline_workload="baseline" if fresh else "")
        ref = rollout.spec.workload_ref
        base = ref.name if ref is not None else rollout.spec.service
        return cls(mesh, rollout.namespace, rollout.spec.service, f"{base}-canary", base,
                   _canary_cluster(rollout), _stable_cluster(rollout),
                   f"{base}-baseline" if fresh else "", _baseline_cluster(rollout))

    def baseline(self) -> Target:
        """The same names for what the canary is compared with: a fresh baseline when the
        Rollout has one, else the stable version."""
        if self.baseline_workload:
            return dataclasses.replace(self, workload=self.baseline_workload,
                                       canary_cluster=self.baseline_cluster)
        return dataclasses.replace(self, workload=self.stable_workload,
                                   canary_cluster=self.stable_cluster)

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


def _stable_cluster(rollout: Rollout) -> str:
    """The stable version's cluster name as :func:`_canary_cluster` names the canary's, from
    the backend's Envoy shape: ``stable|web.shop.svc.cluster.local`` or ``|web.shop.svc...``."""
    backend = backend_of(rollout)
    if backend is None or backend.envoy_shape is None:
        return ""
    subset, host = backend.envoy_shape(rollout).stable
    return f"{subset}|{host}.{rollout.namespace}.svc.cluster.local" if host else ""


def _baseline_cluster(rollout: Rollout) -> str:
    """A fresh baseline's cluster name, the same way: ``baseline|web.shop.svc.cluster.local``
    ("" without one)."""
    backend = backend_of(rollout)
    if backend is None or backend.envoy_shape is None:
        return ""
    found = backend.envoy_shape(rollout).baseline
    if found is None:
        return ""
    subset, host = found
    return f"{subset}|{host}.{rollout.namespace}.svc.cluster.local"


# The judge's latency is a mean of Envoy's request times, recorded in whole milliseconds:
# a difference of the means under one millisecond is not one it can show.
LATENCY_RESOLUTION_MS = 1.0
HARD_FAILURE_FACTOR = 2.0
FAST_SPAN_INTERVALS = 4  # the fast check's span, in measurement intervals (see fast_window)
# How often the fast check is measured per measurement interval. Its floor is a scrape, the
# wait for its next measurement and a pass: at a 1 s scrape and a 1 s interval, measuring
# every interval left the worst case just over 2 s; every half interval it is about 1.5 s.
# The price is one more measurement (in a cluster, a status write) per interval while a
# step is analysed.
FAST_CHECKS_PER_INTERVAL = 2


def fast_window(window_seconds: float, interval_seconds: float) -> str:
    """The fast check's span: four measurement intervals, at most the SLO window. It counts
    from the run's start until the run is that old (so it never reads errors from before
    its run: a retry right after a failure would otherwise fail again on the old errors).

    What it counts is less than the span: from each counter's first scrape after the span
    began to its last scrape, up to two scrape intervals less. Over two intervals at a 1 s
    scrape that left about a second of traffic, fewer than ``minRequests`` at the demo's
    rate, and the check seldom answered; four leave room. A longer span does not slow it:
    a hard failure is many times the threshold, so a second of it fails the whole span.

    ``fast_window(4, 1) == "4s"``; ``fast_window(60, 10) == "40s"``;
    ``fast_window(60, 0.5) == "2s"``; ``fast_window(1.5, 1) == "1500ms"``."""
    seconds = min(window_seconds, FAST_SPAN_INTERVALS * interval_seconds)
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
        ResolvedMetric(name="latency-p95", query=guarded(latency), field="spec.slo.latencyP95",
                   success=Condition.parse(f"result < {ms:g}"), **common),  # type: ignore[arg-type]
        ResolvedMetric(name="availability", query=guarded(availability),
                   field="spec.slo.availability",
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
    every = slo.interval.seconds / FAST_CHECKS_PER_INTERVAL
    return ResolvedMetric(name="availability-fast", query=shown, template=text,
                      field="spec.slo.availability",
                      variables=tuple(sorted(variables.items())), since_window=span,
                      failure=Condition.parse(
                          f"result < {hard_failure_ratio(slo.availability_ratio):g}"),
                      interval=every, count=slo.count, initial_delay=every,
                      failure_limit=slo.failure_limit, guard=True)


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


def judge_metric(rollout: Rollout, target: Target) -> ResolvedMetric | list[Problem]:
    """The comparative judge as one metric of each SLO analysis step: its value is the
    judge's score, passing at ``passScore``, failing under ``marginalScore``, in between
    neither (inconclusive: a person decides). It is measured as the SLO's metrics are
    (``interval``, ``count``, the same limits), first once its lookback has filled."""
    spec, slo = rollout.spec.judge, rollout.spec.slo
    assert spec is not None
    window = spec.window or slo.window
    canary, baseline = target.variables(window.text), target.baseline().variables(window.text)
    kind = spec.provider.kind
    if kind is ProviderKind.ENVOY and target.mesh is not MeshKind.ENVOY:
        return [Problem("spec.judge.provider.kind", "envoy samples are read from the local "
                        "mesh's Envoy (meshctl rollout run --mesh local); in a cluster use "
                        "prometheus")]
    render = envoy_samples.render if kind is ProviderKind.ENVOY else queries.render
    latency, errors = _judge_templates(target.mesh, slo.metrics, kind)
    metrics = [JudgeQuery("latency", render(latency, canary), render(latency, baseline),
                          resolution=LATENCY_RESOLUTION_MS),
               JudgeQuery("error-ratio", render(errors, canary), render(errors, baseline))]
    problems = []
    for i, m in enumerate(spec.metrics):
        try:
            metrics.append(JudgeQuery(m.name, render(m.query, canary), render(m.query, baseline),
                                      m.direction, f"spec.judge.metrics[{i}].query"))
        except ValueError as exc:
            problems.append(Problem(f"spec.judge.metrics[{i}].query", str(exc)))
    if problems:
        return problems
    settings = JudgeSettings(min_samples=spec.min_samples, tolerance=spec.tolerance_ratio,
                             significance=spec.significance, pass_score=spec.pass_score,
                             marginal_score=spec.marginal_score)
    judge = ResolvedJudge(tuple(metrics), settings, lookback=spec.lookback.seconds,
                          window=window.seconds,
                          step=spec.step.seconds if spec.step else window.seconds,
                          source=kind.value,
                          baseline=spec.baseline.value)
    return ResolvedMetric(
        name="judge", query=judge.describe(), field="spec.judge", judge=judge,
        kind=kind, address=spec.provider.address,
        success=Condition.parse(f"result >= {spec.pass_score}"),
        failure=Condition.parse(f"result < {spec.marginal_score}"),
        interval=slo.interval.seconds, count=slo.count, initial_delay=spec.lookback.seconds,
        failure_limit=slo.failure_limit, inconclusive_limit=slo.inconclusive_limit)


def _judge_templates(mesh: MeshKind, metrics: SloMetrics, kind: ProviderKind
                     ) -> tuple[str, str]:
    """(mean latency, error ratio) for the judge, from the same series as the SLO's (or
    the same stats read from Envoy directly)."""
    if kind is ProviderKind.ENVOY:
        return envoy_samples.LATENCY_MEAN, envoy_samples.ERROR_RATIO
    if mesh is MeshKind.ENVOY:
        found = queries.ENVOY_LATENCY_MEAN, queries.ENVOY_ERROR_RATIO
    elif metrics is SloMetrics.ENVOY:
        found = queries.ISTIO_ENVOY_LATENCY_MEAN, queries.ISTIO_ENVOY_ERROR_RATIO
    else:
        found = queries.ISTIO_LATENCY_MEAN, queries.ISTIO_ERROR_RATIO
    return found[0].text, found[1].text


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
        for j, metric in enumerate(template.spec.metrics):
            try:
                kind, address, query, timeout = _provider(metric.provider, variables)
            except ValueError as exc:
                yield Problem(f"{ref_path}.args", f"{ref.template_name}/{metric.name}: {exc}")
                continue
            if kind is ProviderKind.ENVOY and address is None and target.mesh is MeshKind.ISTIO:
                yield Problem(f"{ref_path}.templates[{i}]", f"AnalysisTemplate "
                              f"{ref.template_name}: spec.metrics[{j}].provider.envoy.address "
                              "is required in a cluster (an Envoy admin host:port; only the "
                              "local mesh has a default)")
                continue
            yield ResolvedMetric(
                name=metric.name, query=query, address=address, kind=kind,
                field=(f"{ref_path}.templates[{i}] (AnalysisTemplate {ref.template_name}: "
                       f"spec.metrics[{j}].provider.{_QUERY_FIELD[kind]})"),
                timeout=timeout,
                success=Condition.parse(metric.success_condition) if metric.success_condition else None,
                failure=Condition.parse(metric.failure_condition) if metric.failure_condition else None,
                interval=metric.interval.seconds, count=metric.count,
                failure_limit=metric.failure_limit, inconclusive_limit=metric.inconclusive_limit,
                consecutive_error_limit=metric.consecutive_error_limit,
                initial_delay=metric.initial_delay.seconds if metric.initial_delay else 0.0,
                min_samples=metric.min_samples,
            )


_QUERY_FIELD = {ProviderKind.PROMETHEUS: "prometheus.query", ProviderKind.ENVOY: "envoy.stat",
                ProviderKind.WEB: "web.jsonPath"}


def _provider(provider: Provider, variables: dict[str, str]
              ) -> tuple[ProviderKind, str | None, str, float]:
    """(kind, address, query, timeout) of a metric's provider (see
    :mod:`meshctl.domain.providers`); a PromQL query gets its variables, escaped."""
    if provider.envoy is not None:
        envoy = provider.envoy
        return (ProviderKind.ENVOY, envoy.address, envoy_query(envoy.stat, envoy.quantile),
                envoy.timeout.seconds)
    if provider.web is not None:
        return ProviderKind.WEB, provider.web.url, provider.web.json_path, provider.web.timeout.seconds
    prom = provider.prometheus
    assert prom is not None  # validation: exactly one provider
    return (ProviderKind.PROMETHEUS, prom.address, queries.render(prom.query, variables),
            prom.timeout.seconds)


def resolve_analysis(rollout: Rollout, templates: Mapping[str, AnalysisTemplate],
                   mesh: MeshKind) -> ResolvedAnalysis:
    """Every analysis of the rollout resolved; raises InvalidSpec naming each problem."""
    target = Target.of(rollout, mesh)
    problems: list[Problem] = []
    judged: tuple[ResolvedMetric, ...] = ()
    if rollout.spec.judge is not None:
        found = judge_metric(rollout, target)
        if isinstance(found, ResolvedMetric):
            judged = (found,)
        else:
            problems += found

    def resolve(path: str, refs: tuple[TemplateRef, ...], args: tuple[Arg, ...],
                background: bool) -> tuple[ResolvedMetric, ...]:
        if not refs:
            plans = slo_metrics(rollout, target)
            # background checks run until the rollout ends; the judge runs in steps only
            return tuple(_background(p) for p in plans) if background else plans + judged
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
            plans = resolve(path, ref.templates, ref.args, False)
            if not 0 < step.traffic.weights.canary < 100:
                # the judge compares versions serving side by side: with all the traffic
                # on one, the other has no samples (it would only ever be no data)
                plans = tuple(p for p in plans if p.judge is None)
            steps[step.index] = plans
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
