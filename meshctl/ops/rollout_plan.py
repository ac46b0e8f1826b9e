"""``rollout plan``: resolve the analysis and lay out the schedule, writing nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshctl.domain.problems import InvalidSpec
from meshctl.domain.resolve import MeshKind, resolve_analysis
from meshctl.domain.rollout_plan import rollout_plan
from meshctl.domain.routers.backend import Found
from meshctl.domain.spec import AnalysisTemplate, Rollout


class PlanError(Exception):
    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


def plan_for(rollout: Rollout, templates: Mapping[str, AnalysisTemplate], mesh: str,
             found: Found | None = None) -> dict[str, Any]:
    """``found``: the traffic backend's live objects (in the order of its refs); without
    them the plan starts from the objects the backend assumes."""
    kind = MeshKind.ENVOY if mesh == "local" else MeshKind.ISTIO
    try:
        plans = resolve_analysis(rollout, templates, kind)
    except InvalidSpec as exc:
        raise PlanError([str(p) for p in exc.problems]) from exc
    with_objects = kind is MeshKind.ISTIO and rollout.spec.traffic_routing is not None
    return rollout_plan(rollout, plans, found=found, with_objects=with_objects)
