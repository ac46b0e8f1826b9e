"""``rollout plan``: resolve the analysis and lay out the schedule, writing nothing. The run's
mesh (``istio``: a cluster, whatever backend the spec routes with; ``local``) picks the
backend whose objects each step shows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshctl.domain.problems import InvalidSpec
from meshctl.domain.resolve import resolve_analysis
from meshctl.domain.rollout_plan import rollout_plan
from meshctl.domain.routers import backend_for
from meshctl.domain.routers.backend import Found, MeshKind
from meshctl.domain.spec import AnalysisTemplate, Rollout


class PlanError(Exception):
    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


def plan_for(rollout: Rollout, templates: Mapping[str, AnalysisTemplate], mesh: str,
             found: Found | None = None) -> dict[str, Any]:
    """``found``: the traffic backend's live objects (in the order of its refs); without
    them the plan starts from the objects the backend assumes."""
    backend = backend_for(rollout, mesh)
    try:
        plans = resolve_analysis(rollout, templates,
                                 backend.telemetry if backend is not None else MeshKind.ISTIO)
    except InvalidSpec as exc:
        raise PlanError([str(p) for p in exc.problems]) from exc
    return rollout_plan(rollout, plans, backend, found=found)
