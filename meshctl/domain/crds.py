"""The CustomResourceDefinitions, generated from the spec and status classes.

``manifests/crds/*.yaml`` are written from :func:`crds` by ``make crds``; a test fails when
they differ, so the model and the schema cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from meshctl.domain.fields import openapi_schema
from meshctl.domain.keys import MANAGER, PART_OF
from meshctl.domain.spec import GROUP, VERSION, AnalysisTemplateSpec, RolloutSpec
from meshctl.domain.status import RolloutStatus


def _crd(kind: str, plural: str, short: list[str], spec: dict[str, Any],
         status: dict[str, Any] | None, columns: list[dict[str, Any]]) -> dict[str, Any]:
    properties: dict[str, Any] = {"spec": spec}
    version: dict[str, Any] = {"name": VERSION, "served": True, "storage": True}
    if status is not None:
        properties["status"] = status
        version["subresources"] = {"status": {}}
    version["schema"] = {"openAPIV3Schema": {
        "type": "object", "required": ["spec"], "properties": properties,
    }}
    if columns:
        version["additionalPrinterColumns"] = columns
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}",
                     "labels": {PART_OF: MANAGER}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                      "singular": kind.lower(), "shortNames": short, "categories": ["meshctl"]},
            "versions": [version],
        },
    }


def _column(name: str, path: str, type_: str = "string") -> dict[str, Any]:
    return {"name": name, "type": type_, "jsonPath": path}


def crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD object."""
    rollout = _crd(
        "Rollout", "rollouts", ["mro"], openapi_schema(RolloutSpec), openapi_schema(RolloutStatus),
        [_column("Phase", ".status.phase"), _column("Step", ".status.currentStep", "integer"),
         _column("Stable", ".status.weights.stable", "integer"),
         _column("Canary", ".status.weights.canary", "integer"),
         _column("Age", ".metadata.creationTimestamp", "date")],
    )
    template = _crd("AnalysisTemplate", "analysistemplates", ["mat"],
                    openapi_schema(AnalysisTemplateSpec), None, [])
    return {"rollouts.yaml": rollout, "analysistemplates.yaml": template}
