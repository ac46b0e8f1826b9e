"""A rollout's :class:`~meshctl.domain.timeline.Timeline` from where meshctl keeps its
records: in a cluster, the Rollout's status, its events and its metrics' thresholds (from the
spec and the AnalysisTemplates); for a local run, the state directory's status, samples,
events and thresholds files. With a Prometheus address, each metric's query over the
rollout's span fills the line between the judged measurements (best effort: a Prometheus
that does not answer leaves the measurements alone).

May: read. May not: write anything, or show what a Secret or a kubeconfig holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meshctl.adapters.errors import AdapterError
from meshctl.adapters.prometheus import PrometheusProvider
from meshctl.domain.problems import InvalidSpec
from meshctl.domain.resolve import resolve_analysis
from meshctl.domain.routers import backend_of
from meshctl.domain.routers.backend import MeshKind
from meshctl.domain.spec import GROUP, VERSION, Rollout
from meshctl.domain.status import RolloutStatus
from meshctl.domain.timeline import EventRecord, Point, Sample, Timeline, thresholds_of, timeline
from meshctl.domain.validation import load_document
from meshctl.ops.connect import Objects
from meshctl.ops.failures import Failure, RolloutError, translated
from meshctl.ops.history import events_of
from meshctl.ops.lifecycle import load_templates
from meshctl.ops.state import state_paths, timeline_paths
from meshctl.ops.views import PLURAL

RANGE_POINTS = 240  # a range query's resolution: about this many points over the span


def parse_time(text: str) -> datetime | None:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _records(rows: Iterable[Mapping[str, Any]]) -> list[EventRecord]:
    out = []
    for row in rows:
        at = parse_time(str(row.get("at") or row.get("time") or ""))
        if at is not None:
            out.append(EventRecord(at, str(row.get("type", "")), str(row.get("reason", "")),
                                   str(row.get("message", ""))))
    return out


def cluster_timeline(kube: Objects, namespace: str, name: str, now: datetime | None = None,
                     prometheus: str | None = None) -> Timeline:
    """The timeline of the Rollout ``namespace/name`` in the cluster."""
    with translated():
        obj = kube.get(GROUP, VERSION, namespace, PLURAL, name)
        events = kube.list("events.k8s.io", "v1", namespace, "events")
        templates = load_templates(kube, namespace)  # type: ignore[arg-type]
    status = _status(obj.get("status"))
    thresholds: dict[str, tuple[float | None, str]] = {}
    try:
        rollout = load_document(obj)
        if isinstance(rollout, Rollout):
            backend = backend_of(rollout)
            telemetry = backend.telemetry if backend is not None else MeshKind.ISTIO
            thresholds = thresholds_of(resolve_analysis(rollout, templates, telemetry))
    except InvalidSpec:
        pass  # an invalid spec has no thresholds to draw; its status still shows
    records = _records({"at": e.time, "type": e.type, "reason": e.reason, "message": e.message}
                       for e in events_of(obj, events))
    now = now or datetime.now(UTC)
    ranges = _ranges(prometheus, status, records, now)
    return timeline(namespace, name, status, records, now, thresholds, ranges=ranges)


def local_timeline(state_dir: Path, namespace: str, name: str, now: datetime | None = None,
                   prometheus: str | None = None) -> Timeline:
    """The timeline of a local run of ``namespace/name`` kept in ``state_dir``."""
    status_path, _ = state_paths(state_dir, namespace, name)
    samples_path, events_path, thresholds_path = timeline_paths(state_dir, namespace, name)
    try:
        status = _status(json.loads(status_path.read_text("utf-8")))
    except FileNotFoundError:
        raise RolloutError(Failure.NOT_FOUND, f"no local run of {namespace}/{name} in "
                           f"{state_dir} (meshctl rollout run keeps it there)") from None
    except (OSError, ValueError) as exc:
        raise RolloutError(Failure.UNAVAILABLE, f"cannot read {status_path}: {exc}") from exc
    records = _records(_lines(events_path))
    samples = [s for s in (_sample(row) for row in _lines(samples_path)) if s is not None]
    thresholds = {k: (v[0], str(v[1])) for k, v in _json(thresholds_path).items()
                  if isinstance(v, list) and len(v) == 2}
    now = now or datetime.now(UTC)
    ranges = _ranges(prometheus, status, records, now, samples)
    return timeline(namespace, name, status, records, now, thresholds, samples, ranges)


def _status(raw: Any) -> RolloutStatus:
    try:
        return RolloutStatus.from_json(raw)
    except InvalidSpec:
        return RolloutStatus()  # a damaged status: an empty chart, not a failure


def _lines(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _sample(row: Mapping[str, Any]) -> Sample | None:
    at = parse_time(str(row.get("at", "")))
    if at is None:
        return None
    observed = row.get("observedCanary")
    return Sample(at, str(row.get("phase", "")), int(row.get("step", 0)),
                  int(row.get("stable", 100)), int(row.get("canary", 0)),
                  None if observed is None else int(observed))


def _ranges(prometheus: str | None, status: RolloutStatus, records: list[EventRecord],
            now: datetime, samples: Iterable[Sample] = ()) -> dict[str, list[Point]]:
    """Each metric's query over the rollout's span, from its latest run (a query counting
    from a moment has no meaning over a range and is left out)."""
    if prometheus is None:
        return {}
    queries: dict[str, str] = {}
    for run in sorted(status.analysis, key=lambda r: r.started_at):
        for metric in run.metrics:
            if metric.query and not any(mark in metric.query for mark in ("{{", "$")):
                queries[metric.name] = metric.query
    moments = [r.at for r in records] + [s.at for s in samples] + [
        r.started_at for r in status.analysis]
    if not queries or not moments:
        return {}
    start, end = min(moments).timestamp(), now.timestamp()
    step = max((end - start) / RANGE_POINTS, 1.0)
    provider = PrometheusProvider(prometheus)
    out: dict[str, list[Point]] = {}
    try:
        for name, query in queries.items():
            try:
                values = provider.range(query, start, end, step)
            except AdapterError:
                continue
            out[name] = [Point(datetime.fromtimestamp(t, UTC), v) for t, v in values]
    finally:
        provider.close()
    return out
