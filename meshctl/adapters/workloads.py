"""Workloads over a real cluster: the stable Deployment, the ``<name>-canary``
Deployment meshctl clones from it, and a fresh baseline's ``<name>-baseline``.

Translate, never decide: the Deployments to write come from :mod:`meshctl.domain.workloads`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from meshctl.adapters.errors import AlreadyExists, NotFound
from meshctl.adapters.kube import Kube, Object
from meshctl.domain.engine import DesiredWorkloads, WorkloadState
from meshctl.domain.spec import Rollout
from meshctl.domain.workloads import (
    baseline_deployment,
    baseline_name,
    canary_deployment,
    canary_name,
    claimant,
    claimed,
    is_ours,
    labelled_in_place,
    promoted_template,
    running_revision,
    stable_revision,
    stable_state,
    workload_state,
)

APPS = ("apps", "v1")


class KubeWorkloads:
    """Workloads over the stable Deployment and the ``<name>-canary`` Deployment."""

    def __init__(self, kube: Kube, rollout: Rollout, owner_uid: str = "") -> None:
        """``owner_uid``: the Rollout's uid, the owner of a fresh baseline."""
        self.kube, self.rollout, self.owner_uid = kube, rollout, owner_uid
        ref = rollout.spec.workload_ref
        assert ref is not None
        self.stable_name = ref.name
        self.canary_name = canary_name(ref.name)
        self.baseline_name = baseline_name(ref.name)

    def _get(self, name: str) -> Object | None:
        return self.kube.get_or_none(*APPS, self.rollout.namespace, "deployments", name)

    def observe(self) -> tuple[WorkloadState, WorkloadState, WorkloadState]:
        # read even without spec.judge.baseline fresh: one turned off mid-rollout still has
        # weight until the next write takes it away, and goes only after that
        template = self.rollout.spec.template or {}
        return (stable_state(self._get(self.stable_name), template),
                workload_state(self._get(self.canary_name)),
                workload_state(self._get(self.baseline_name)))

    def apply(self, desired: DesiredWorkloads) -> None:
        template = self.rollout.spec.template
        stable = self._get(self.stable_name)
        if stable is None or template is None:
            return
        ns = self.rollout.namespace
        canary = self._get(self.canary_name)
        if canary is not None and not is_ours(canary, self.rollout.name):
            return  # someone else's Deployment at the canary's name: validation says so
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
        self._apply_baseline(stable, desired)
        running = stable_revision(stable, template)  # stable_state less the edit check
        if workload_state(stable).revision is None and running == desired.stable_revision:
            # first sight: label what runs, never write the Rollout's template over it
            self._write_stable(stable, lambda t: labelled_in_place(t, running_revision(t, template)))
        elif running != desired.stable_revision and \
                desired.stable_revision == desired.canary_revision:
            promoted = promoted_template(template)
            self._write_stable(stable, lambda _: promoted)
        elif claimant(stable) != self.rollout.name:
            self._write_stable(stable, lambda t: t)  # the claim alone: no Pod is replaced

    def _write_stable(self, seen: Object, new_template: Callable[[Object], Object]) -> None:
        """The stable Deployment's pod template, from the one stored (read afresh on a
        conflict), claimed for this Rollout in the same write. Not if another Rollout
        claimed it since ``seen`` was read: validation stops this one on its next pass."""
        name, before = self.rollout.name, claimant(seen)

        def change(d: Object) -> Object:
            if claimant(d) not in (None, name, before):
                return d
            mine = claimed(d, name)
            return {**mine, "spec": {**d["spec"],
                                     "template": new_template(d["spec"].get("template", {}))}}

        self.kube.update_with_retry(*APPS, self.rollout.namespace, "deployments",
                                    self.stable_name, change)

    def release(self) -> None:
        """The stable Deployment no longer claimed by this Rollout (it is being deleted):
        another Rollout may take it. Its Pods are not replaced."""
        name = self.rollout.name
        with contextlib.suppress(NotFound):
            self.kube.update_with_retry(
                *APPS, self.rollout.namespace, "deployments", self.stable_name,
                lambda d: claimed(d, None) if claimant(d) == name else d)

    def _apply_baseline(self, stable: Object, desired: DesiredWorkloads) -> None:
        """The fresh baseline at its replicas, or deleted when it should not run. Made (or
        given its template) only from a stable Deployment still at the baseline's revision:
        once promotion gives stable the new one, the baseline is only scaled."""
        found = self._get(self.baseline_name)
        if found is not None and not is_ours(found, self.rollout.name):
            return  # someone else's Deployment at the baseline's name: validation says so
        revision, replicas = desired.baseline_revision, desired.baseline_replicas
        if revision is None or replicas == 0:
            if found is not None:
                self._delete(self.baseline_name)
            return
        stable_at = workload_state(stable).revision in (None, revision)
        want = baseline_deployment(stable, revision, replicas, self.rollout.name, self.owner_uid)
        if found is None:
            if stable_at:
                with contextlib.suppress(AlreadyExists):  # a cache that had not seen it yet
                    self.kube.create(*APPS, self.rollout.namespace, "deployments", want)
            return
        fresh_template = stable_at and workload_state(found).revision != revision
        if found["spec"].get("replicas") == replicas and not fresh_template:
            return
        template = want["spec"]["template"] if fresh_template else found["spec"]["template"]
        self.kube.update_with_retry(*APPS, self.rollout.namespace, "deployments",
                                    self.baseline_name,
                                    lambda d: {**d, "spec": {**d["spec"], "replicas": replicas,
                                                             "template": template}})

    def _delete(self, name: str) -> None:
        """Delete a Deployment meshctl made for this Rollout (never another one)."""
        found = self._get(name)
        if found is None or not is_ours(found, self.rollout.name):
            return
        with contextlib.suppress(NotFound):
            self.kube.delete(*APPS, self.rollout.namespace, "deployments", name)

    def delete_canary(self) -> None:
        """The canary Deployment and a fresh baseline's (the Rollout is being deleted)."""
        self._delete(self.canary_name)
        self._delete(self.baseline_name)
