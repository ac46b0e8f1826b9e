"""Moved to :mod:`meshctl.domain.routers.istio` (the Istio traffic backend); these names
stay importable from here for the modules not yet moved onto the registry."""

from __future__ import annotations

from meshctl.domain.routers.istio import (
    HEADER_ROUTE_PREFIX,
    ISTIO_NETWORKING,
    TRACK_LABEL,
    apply_split,
    baseline_destination_rule,
    baseline_virtual_service,
    canary_subset_is_borrowed,
    managed_route_names,
    mesh_problems,
    read_split,
    restored_virtual_service,
    uses_canary,
    with_canary_subset,
    without_canary_subset,
)

__all__ = ["HEADER_ROUTE_PREFIX", "ISTIO_NETWORKING", "TRACK_LABEL", "apply_split",
           "baseline_destination_rule", "baseline_virtual_service", "canary_subset_is_borrowed",
           "managed_route_names", "mesh_problems", "read_split", "restored_virtual_service",
           "uses_canary", "with_canary_subset", "without_canary_subset"]
