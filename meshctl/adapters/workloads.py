"""Workloads over a real cluster: the stable Deployment and the ``<name>-canary``
Deployment meshctl clones from it.

Translate, never decide: the Deployments to write come from :mod:`meshctl.domain.workloads`.
"""

from __future__ import annotations

import contextlib

from meshctl.adapters.errors import AlreadyExists, NotFound
from meshctl.adapters.kube import Kube, Object
from meshctl.domain.engine import DesiredWorkloads, WorkloadState
from meshctl.domain.spec import Rollout
from meshctl.domain.workloads import (
    canary_deployment,
    canary_name,
    promoted_template,
    workload_state,
)

APPS = ("apps", "v1")


class KubeWorkloads:
    """Workloads over the stable Deployment and the ``<name>-canary`` Deployment."""

    def __init__(self, kube: Kube, rollout: Rollout) -> None:
        self.kube, self.rollout = kube, rollout
        ref = rollout.spec.workload_ref
        assert ref is not None
        self.stable_name = ref.name
        self.canary_name = canary_name(ref.name)

    def _get(self, name: str) -> Object | None:
        return self.kube.get_or_none(*APPS, self.rollout.namespace, "deployments", name)

    def observe(self) -> tuple[WorkloadState, WorkloadState]:
        return workload_state(self._get(self.stable_name)), workload_state(self._get(self.canary_name))

    def apply(self, desired: DesiredWorkloads) -> None:
        template = self.rollout.spec.template
        stable = self._get(self.stable_name)
        if stable is None or template is None:
            return
        ns = self.rollout.namespace
        canary = self._get(self.canary_name)
        if desired.canary_revision is not None and (desired.canary_replicas > 0 or canary):
            want = canary_deployment(stable, template, desired.canary_replicas, self.rollout.name)
            created = False
            if canary is None:
                try:
                    self.kube.create(*APPS, ns, "deployments", want)
                    created = True
                except AlreadyExists:  # a read from a cache that had not seen it yet
                    pass
            if not created and (canary is None
                                or canary["spec"].get("replicas") != want["spec"]["replicas"]
                                or workload_state(canary).revision != desired.canary_revision):
                self.kube.update_with_retry(*APPS, ns, "deployments", self.canary_name,
                                            lambda d: {**d, "spec": {**d["spec"], **{
                                                "replicas": want["spec"]["replicas"],
                                                "template": want["spec"]["template"]}}})
        if workload_state(stable).revision != desired.stable_revision and \
                desired.stable_revision == desired.canary_revision:
            new_template = promoted_template(template)
            self.kube.update_with_retry(*APPS, ns, "deployments", self.stable_name,
                                        lambda d: {**d, "spec": {**d["spec"],
                                                                 "template": new_template}})

    def delete_canary(self) -> None:
        with contextlib.suppress(NotFound):
            self.kube.delete(*APPS, self.rollout.namespace, "deployments", self.canary_name)
