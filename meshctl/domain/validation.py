"""Turning a parsed YAML document into a valid Rollout or AnalysisTemplate, or every problem.

Structural checks (types, bounds, unknown keys) come from the field metadata; the rules here
span fields. Each problem names its path and the fix. Nothing here touches a cluster: checks
against live objects (a route that must exist, a subset the DestinationRule must have) are
each traffic backend's (:mod:`meshctl.domain.routers`), and PromQL that Prometheus must
accept is checked by the shell. Each backend checks its own part of the spec here too.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from meshctl.domain import envoy_samples, jsonpath
from meshctl.domain.conditions import Condition
from meshctl.domain.durations import format_duration
from meshctl.domain.fields import from_json
from meshctl.domain.judge import BUILTIN_JUDGE_METRICS
from meshctl.domain.notifications import sink_problems
from meshctl.domain.problems import InvalidSpec, Problem
from meshctl.domain.providers import ProviderKind
from meshctl.domain.release_gates import gate_problems
from meshctl.domain.routers import BACKENDS, DEFAULT_BACKEND, LOCAL_MESH, chosen_key, routing_keys
from meshctl.domain.spec import (
    API_VERSION,
    AnalysisTemplate,
    AnalysisTemplateSpec,
    HeaderRouteSpec,
    Metadata,
    Rollout,
    RolloutSpec,
)
from meshctl.domain.traffic import MAX_BASELINE_WEIGHT

ROLLOUT_KINDS = ("Rollout", "AnalysisTemplate")
S = TypeVar("S")


def load_document(doc: Any) -> Rollout | AnalysisTemplate:
    """Parse and validate one document; raises InvalidSpec with every problem."""
    if not isinstance(doc, Mapping):
        raise InvalidSpec([Problem("", "not a Rollout or AnalysisTemplate document (a mapping)")])
    problems: list[Problem] = []
    kind = doc.get("kind")
    if doc.get("apiVersion") != API_VERSION:
        problems.append(Problem("apiVersion", f"must be {API_VERSION}, got {doc.get('apiVersion')!r}"))
    if kind not in ROLLOUT_KINDS:
        problems.append(Problem("kind", f"must be Rollout or AnalysisTemplate, got {kind!r}"))
        raise InvalidSpec(problems)
    metadata = _metadata(doc.get("metadata"), problems)
    if kind == "Rollout":
        spec = _spec(RolloutSpec, doc, rollout_problems, problems)
        if problems or spec is None or metadata is None:
            raise InvalidSpec(problems)
        return Rollout(metadata, spec)
    tspec = _spec(AnalysisTemplateSpec, doc, template_problems, problems)
    if problems or tspec is None or metadata is None:
        raise InvalidSpec(problems)
    return AnalysisTemplate(metadata, tspec)


def _spec(cls: type[S], doc: Mapping[str, Any], rules: Callable[[S], Iterable[Problem]],
          problems: list[Problem]) -> S | None:
    """``doc.spec`` parsed into ``cls`` and checked by ``rules``; problems are appended."""
    spec, found = from_json(cls, doc.get("spec"), "spec")
    problems += found
    if spec is not None:
        problems += list(rules(spec))
    return spec


def _metadata(raw: Any, problems: list[Problem]) -> Metadata | None:
    """Only the fields meshctl reads; the API server's own metadata keys are allowed."""
    if not isinstance(raw, Mapping):
        problems.append(Problem("metadata", "is required: give at least metadata.name"))
        return None
    wanted = {k: raw[k] for k in ("name", "namespace", "generation", "annotations") if k in raw}
    value, found = from_json(Metadata, wanted, "metadata")
    problems += found
    return value


def rollout_problems(spec: RolloutSpec) -> Iterator[Problem]:
    """Rules across fields of a structurally valid spec."""
    yield from _strategy_problems(spec)
    yield from _routing_problems(spec)
    yield from _security_problems(spec)
    yield from BACKENDS[LOCAL_MESH].spec_problems(spec)
    yield from _judge_problems(spec)
    yield from _judge_provider_problems(spec)
    yield from gate_problems(spec.gates, local=spec.local is not None)
    yield from sink_problems(spec.notifications)
    if spec.workload_ref is None and spec.local is None:
        yield Problem("spec.workloadRef", "is required (or spec.local for a run on the local mesh)")
    if spec.slo.availability_ratio > 1:
        yield Problem("spec.slo.availability", "must be at most 100%")


def _strategy_problems(spec: RolloutSpec) -> Iterator[Problem]:
    strategy = spec.strategy
    if (strategy.canary is None) == (strategy.blue_green is None):
        yield Problem("spec.strategy", "give exactly one of canary or blueGreen")
        return
    if strategy.blue_green is not None:
        route = strategy.blue_green.preview_route
        if route is not None:
            yield from _header_route_problems(route, "spec.strategy.blueGreen.previewRoute")
        return
    assert strategy.canary is not None
    base = "spec.strategy.canary"
    last_weight, last_path = 0, ""
    for i, step in enumerate(strategy.canary.steps):
        path = f"{base}.steps[{i}]"
        keys = [k for k in ("set_weight", "pause", "analysis", "set_header_route", "set_mirror")
                if getattr(step, k) is not None]
        if len(keys) != 1:
            yield Problem(path, "give exactly one of setWeight, pause, analysis, "
                          "setHeaderRoute, setMirror per step")
            continue
        if step.set_weight is not None:
            if step.set_weight < last_weight:
                yield Problem(f"{path}.setWeight", f"{step.set_weight} is below {last_weight} at "
                              f"{last_path}; weights may only grow (use abort to go back)")
            last_weight, last_path = step.set_weight, f"{path}.setWeight"
        if step.set_header_route is not None:
            yield from _header_route_problems(step.set_header_route, f"{path}.setHeaderRoute")
    background = strategy.canary.analysis
    steps = len(strategy.canary.steps)
    if background is not None and steps and background.starting_step >= steps:
        yield Problem(f"{base}.analysis.startingStep",
                      f"{background.starting_step} is past the last step; use 0..{steps - 1}")


def _header_route_problems(route: HeaderRouteSpec, path: str) -> Iterator[Problem]:
    for j, match in enumerate(route.match):
        value = match.header_value
        given = [v for v in (value.exact, value.prefix, value.regex) if v is not None]
        where = f"{path}.match[{j}].headerValue"
        if len(given) != 1:
            yield Problem(where, "give exactly one of exact, prefix, regex")
        elif value.regex is not None:
            try:
                re.compile(value.regex)
            except re.error as exc:
                yield Problem(f"{where}.regex", f"does not compile: {exc}")
        if match.header_name != match.header_name.lower():
            yield Problem(f"{path}.match[{j}].headerName", "use lower case; Envoy matches lower case")


def _judge_problems(spec: RolloutSpec) -> Iterator[Problem]:
    judge = spec.judge
    if judge is None:
        return
    if spec.strategy.blue_green is not None:
        yield Problem("spec.judge", "compares a canary with stable while both serve traffic; "
                      "blue-green serves one version at a time: use a canary strategy, or "
                      "remove spec.judge")
    if judge.marginal_score > judge.pass_score:
        yield Problem("spec.judge.marginalScore", f"{judge.marginal_score} is above passScore "
                      f"{judge.pass_score}; use at most {judge.pass_score}")
    window = (judge.window or spec.slo.window).seconds
    step = judge.step.seconds if judge.step is not None else window
    fits = int((judge.lookback.seconds - window) // step) + 1 if judge.lookback.seconds >= window else 0
    if fits < judge.min_samples:
        yield Problem("spec.judge.lookback", f"{judge.lookback.text} holds {fits} sample(s) of "
                      f"window {format_duration(window)} every {format_duration(step)}, fewer "
                      f"than minSamples {judge.min_samples}; lengthen it to at least "
                      f"{format_duration(window + (judge.min_samples - 1) * step)} or lower "
                      "minSamples")
    names = [m.name for m in judge.metrics]
    for i, name in enumerate(names):
        if name in BUILTIN_JUDGE_METRICS or name in names[:i]:
            yield Problem(f"spec.judge.metrics[{i}].name", f"{name!r} is already a judge "
                          "metric; give it another name")
    if judge.fresh_baseline:
        yield from _fresh_baseline_problems(spec)


def _fresh_baseline_problems(spec: RolloutSpec) -> Iterator[Problem]:
    """A fresh baseline takes the canary's weight beside it, so no step may give the canary
    more than half, and the backend must route to a third destination."""
    field_path = "spec.judge.baseline"
    for i, step in enumerate(spec.strategy.canary.steps if spec.strategy.canary else ()):
        if step.set_weight is not None and step.set_weight > MAX_BASELINE_WEIGHT:
            yield Problem(f"spec.strategy.canary.steps[{i}].setWeight",
                          f"{step.set_weight} is above {MAX_BASELINE_WEIGHT}: with "
                          f"{field_path} fresh the baseline takes as much as the canary; use "
                          f"at most {MAX_BASELINE_WEIGHT} (promotion moves the rest)")
    key = chosen_key(spec)
    backends = [BACKENDS[k] for k in (key, LOCAL_MESH if spec.local is not None else None)
                if k is not None and k in BACKENDS]
    for backend in backends:
        if not backend.routes_baseline:
            yield Problem(field_path, f"fresh needs a third destination, which the "
                          f"{backend.key} backend cannot route; use istio routing with a "
                          "destinationRule, or baseline: stable")


ENVOY_ADMIN = re.compile(r"^[^\s:/]+:[0-9]{1,5}$")


def _judge_provider_problems(spec: RolloutSpec) -> Iterator[Problem]:
    """Where the judge's samples come from: Prometheus, or the local mesh's Envoy (whose
    judge metrics name Envoy stats, not PromQL)."""
    judge = spec.judge
    if judge is None or judge.provider.kind is ProviderKind.PROMETHEUS:
        return
    path = "spec.judge.provider"
    if judge.provider.kind is not ProviderKind.ENVOY:
        yield Problem(f"{path}.kind", f"{judge.provider.kind.value} reads one number, not "
                      "samples over time; use prometheus or envoy")
        return
    if spec.local is None:
        yield Problem(f"{path}.kind", "envoy samples are read from the local mesh's Envoy "
                      "(meshctl rollout run --mesh local, spec.local); in a cluster use "
                      "prometheus")
    if judge.provider.address is not None and not ENVOY_ADMIN.match(judge.provider.address):
        yield Problem(f"{path}.address", f"{judge.provider.address!r} is not an Envoy admin "
                      "address; give host:port, e.g. 127.0.0.1:9901")
    for i, metric in enumerate(judge.metrics):
        try:
            envoy_samples.render(metric.query, {"cluster": "canary", "workload": "canary"})
        except ValueError as exc:
            yield Problem(f"spec.judge.metrics[{i}].query", f"{exc}; PromQL needs "
                          f"{path}.kind prometheus")


def _security_problems(spec: RolloutSpec) -> Iterator[Problem]:
    """What the field bounds cannot say: a caller must name something, or Istio would read
    the rule as "any source" (the list itself must not be empty: see ``AllowRule.from_``)."""
    for i, rule in enumerate(spec.security.allow if spec.security is not None else ()):
        for j, source in enumerate(rule.from_):
            if not source.namespace and not source.service_account:
                yield Problem(f"spec.security.allow[{i}].from[{j}]",
                              "set namespace, serviceAccount or both")


def _routing_problems(spec: RolloutSpec) -> Iterator[Problem]:
    """Exactly one backend section (none for a local run), then that backend's own rules."""
    routing = spec.traffic_routing
    given = [f.metadata["json"] for f in dataclasses.fields(routing)
             if getattr(routing, f.name) is not None] if routing is not None else []
    if len(given) > 1:
        yield Problem("spec.trafficRouting", f"give one of {', '.join(given)}, not several")
        return
    if not given:
        if spec.local is None:
            others = ", ".join(k for k in routing_keys() if k != DEFAULT_BACKEND)
            yield Problem(f"spec.trafficRouting.{DEFAULT_BACKEND}",
                          f"is required (or {others}; or spec.local for a local run)")
        return
    backend = BACKENDS.get(given[0])
    if backend is not None:
        yield from backend.spec_problems(spec)


def template_problems(spec: AnalysisTemplateSpec) -> Iterator[Problem]:
    for i, metric in enumerate(spec.metrics):
        path = f"spec.metrics[{i}]"
        provider = metric.provider
        given = [k for k in ProviderKind if getattr(provider, k.value) is not None]
        if len(given) != 1:
            yield Problem(f"{path}.provider", "give exactly one of "
                          f"{', '.join(k.value for k in ProviderKind)}")
        if provider.web is not None:
            try:
                jsonpath.parse(provider.web.json_path)
            except ValueError as exc:
                yield Problem(f"{path}.provider.web.jsonPath", str(exc))
        for attr, key in (("success_condition", "successCondition"),
                          ("failure_condition", "failureCondition")):
            text = getattr(metric, attr)
            if text is not None:
                try:
                    Condition.parse(text)
                except ValueError as exc:
                    yield Problem(f"{path}.{key}", str(exc))
        if metric.success_condition is None and metric.failure_condition is None:
            yield Problem(path, "give successCondition or failureCondition (e.g. result < 50)")
    names = [m.name for m in spec.metrics]
    for name in sorted({n for n in names if names.count(n) > 1}):
        yield Problem("spec.metrics", f"metric name {name!r} is used twice; names must be unique")
