"""Job release gates on the real API server, created by the controller's own ServiceAccount
(its real RBAC). The test world runs no kubelet that could run a Job's Pod to its end (when
other tests have started the cluster tier, kube-controller-manager's Job controller makes
the Pod and counts it active, and a hollow node keeps it running): the test sets each Job's
final status through the API's status subresource exactly as the Job controller would when
the Pod succeeds or fails (nothing active any more), and says so here. What is under test is
meshctl's side: the Job it creates (template, arguments, owner, labels), created once, and
the verdict it reads back."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from meshctl.adapters.kube import Kube
from meshctl.domain.engine import Observation, gates_due
from meshctl.domain.phases import Phase
from meshctl.domain.spec import GROUP, VERSION, Rollout
from meshctl.domain.validation import load_document
from meshctl.ops.gates import GateJudge
from tests.unit.sim import Sim
from testworld.kube import ApiError

pytestmark = [pytest.mark.kube]


def rollout_doc() -> dict[str, Any]:
    return {
        "apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "payments"},
        "spec": {"service": "payments", "workloadRef": {"name": "payments"},
                 "trafficRouting": {"istio": {
                     "virtualService": {"name": "payments"},
                     "destinationRule": {"name": "payments", "stableSubset": "stable",
                                         "canarySubset": "canary"}}},
                 "gates": [{"name": "compliance", "at": ["beforeTraffic"], "job": {"template": {
                     "backoffLimit": 0,
                     "template": {"spec": {"restartPolicy": "Never", "containers": [{
                         "name": "check", "image": "registry.example/pci-check:1.8",
                         "args": ["--rollout=$(ROLLOUT)", "--revision=$(REVISION)",
                                  "--step=$(STEP)"]}]}}}}}],
                 "strategy": {"canary": {"steps": [{"setWeight": 20}, {"setWeight": 60}]}}}}


@dataclasses.dataclass
class JobSim(Sim):
    rollout: Rollout | None = None
    judge: GateJudge | None = None

    def observation(self) -> Observation:
        obs = super().observation()
        assert self.rollout is not None and self.judge is not None
        return dataclasses.replace(obs, gate_reports=self.judge.judge(
            self.rollout, self.status, gates_due(self.spec, self.status), self.now))


class JobWorld:
    def __init__(self, kube: Any, namespace: str) -> None:
        self.kube, self.ns = kube, namespace
        created = kube.request("POST", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/rollouts",
                               rollout_doc())
        self.uid = created["metadata"]["uid"]
        found = load_document(created)
        assert isinstance(found, Rollout)
        self.rollout = found
        self.controller = Kube.from_kubeconfig(
            kube.service_account_kubeconfig("meshctl-system", "meshctl-controller"))

    def sim(self) -> JobSim:
        return JobSim(self.rollout.spec, rollout=self.rollout,
                      judge=GateJudge(None, self.controller, self.uid))

    def jobs(self) -> list[dict[str, Any]]:
        found = self.kube.request("GET", f"/apis/batch/v1/namespaces/{self.ns}/jobs")
        return list(found["items"])

    def finish(self, name: str, succeeded: bool) -> None:
        """What the Job controller writes when the Job's one Pod ends (no kubelet here).
        Once another test has started the cluster tier, the real Job controller writes this
        Job's status too (its start, its Pod active on a hollow node): the write is made
        from the status it holds now, and made again from a fresh read when it lost a race
        with that controller (409, or 422 from a status that changed under it)."""
        for attempt in range(5):
            job = self.kube.request("GET", f"/apis/batch/v1/namespaces/{self.ns}/jobs/{name}")
            try:
                self._finish(job, succeeded)
                return
            except ApiError as exc:
                if exc.status not in (409, 422) or attempt == 4:
                    raise
                time.sleep(0.2)

    def _finish(self, job: dict[str, Any], succeeded: bool) -> None:
        name = job["metadata"]["name"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        started = (job.get("status") or {}).get("startTime") or now
        base = {"status": "True", "lastProbeTime": now, "lastTransitionTime": now}
        if succeeded:
            status = {"startTime": started, "completionTime": now, "succeeded": 1, "active": 0,
                      "ready": 0,
                      "conditions": [{**base, "type": "SuccessCriteriaMet",
                                      "reason": "CompletionsReached"},
                                     {**base, "type": "Complete",
                                      "reason": "CompletionsReached"}]}
        else:
            status = {"startTime": started, "failed": 1, "active": 0, "ready": 0,
                      "conditions": [{**base, "type": "FailureTarget",
                                      "reason": "BackoffLimitExceeded",
                                      "message": "Job has reached the specified backoff limit"},
                                     {**base, "type": "Failed",
                                      "reason": "BackoffLimitExceeded",
                                      "message": "Job has reached the specified backoff limit"}]}
        self.kube.request("PATCH", f"/apis/batch/v1/namespaces/{self.ns}/jobs/{name}/status",
                          {"metadata": {"resourceVersion": job["metadata"]["resourceVersion"]},
                           "status": status}, content_type="application/merge-patch+json")


@pytest.fixture
def world(kube, namespace) -> Iterator[JobWorld]:
    found = JobWorld(kube, namespace)
    yield found
    found.controller.close()


def test_the_job_is_created_once_owned_by_the_rollout_with_its_arguments(world):
    sim = world.sim().run(passes=4)
    jobs = world.jobs()
    assert len(jobs) == 1
    job = jobs[0]
    assert job["metadata"]["ownerReferences"] == [{
        "apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout", "name": "payments",
        "uid": world.uid, "controller": True}]
    assert job["metadata"]["labels"]["meshctl.io/rollout"] == "payments"
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["--rollout=payments", "--revision=v2", "--step=0"]
    assert sim.status.phase is Phase.PROGRESSING
    assert f"Job {job['metadata']['name']} running" in sim.status.message
    assert all(w.weights.canary == 0 for w in sim.writes)


def test_a_completed_job_passes_the_gate_and_traffic_moves(world):
    sim = world.sim().run(passes=3)
    world.finish(world.jobs()[0]["metadata"]["name"], succeeded=True)
    sim.run()
    assert sim.status.phase is Phase.HEALTHY
    assert "completed" in sim.status.gate("compliance@beforeTraffic#0").message
    assert len(world.jobs()) == 1


def test_a_failed_job_ends_the_rollout_before_any_traffic_moves(world):
    sim = world.sim().run(passes=3)
    world.finish(world.jobs()[0]["metadata"]["name"], succeeded=False)
    sim.run()
    assert sim.status.phase is Phase.DEGRADED and sim.status.abort.reason == "GateFailed"
    assert "failed: Job has reached the specified backoff limit" in sim.status.message
    assert all(w.weights.canary == 0 for w in sim.writes)
