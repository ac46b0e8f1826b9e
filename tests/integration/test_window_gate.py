"""A deployment window on the real API server, with the reconcile pass's clock set by the
test: closed, the rollout holds before its first traffic increase and says when the window
opens; once the clock reaches the window, the weight is written. The controller's passes run
as its ServiceAccount (cluster_world.Driver)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from meshctl.domain.spec import GROUP, VERSION

from .cluster_world import Driver, phase, rollout, seed_service, weights

pytestmark = [pytest.mark.kube, pytest.mark.cluster, pytest.mark.prometheus]
SATURDAY = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)  # 13:00 in Stockholm, a Saturday
MONDAY_OPEN = datetime(2026, 12, 7, 8, 30, tzinfo=UTC)  # 09:30 in Stockholm


def test_a_closed_window_holds_the_first_increase_until_it_opens(kube, cluster, namespace,
                                                                   istio_metrics):
    exporter, url = istio_metrics
    seed_service(kube, namespace)
    exporter.set(namespace, "web", "web-canary", rps=40, error_rate=0.0, latency_ms=5)
    driver = Driver(kube, namespace, url)
    doc = rollout(namespace, "web:1", [{"setWeight": 20}, {"pause": {}}])
    doc["spec"]["gates"] = [{"name": "office-hours", "at": ["beforeIncrease"], "window": {
        "timeZone": "Europe/Stockholm",
        "windows": [{"days": ["Mon", "Tue", "Wed", "Thu", "Fri"],
                     "start": "09:00", "end": "17:00"}]}}]
    driver.kube.create(GROUP, VERSION, namespace, "rollouts", doc)
    driver.clock = lambda: SATURDAY
    driver.until(phase("Healthy"))  # adoption moves no traffic: no window needed
    driver.kube.merge_patch(GROUP, VERSION, namespace, "rollouts", "web", {"spec": {"template": {
        "spec": {"containers": [{"name": "web", "image": "web:2"}]}}}})

    held = driver.until(lambda o: "opens" in (o.get("status") or {}).get("message", ""))
    for _ in range(3):  # more passes on Saturday change nothing
        driver.once()
    held = driver.get()
    assert "opens Mon 2026-12-07 09:00 Europe/Stockholm" in held["status"]["message"]
    assert held["status"]["phase"] == "Progressing"
    assert weights(driver.vs()) == {"stable": 100}  # the canary's subset not even routed

    driver.clock = lambda: MONDAY_OPEN
    moved = driver.until(lambda o: (o.get("status") or {}).get("weights", {}).get("canary") == 20)
    assert weights(driver.vs()) == {"stable": 80, "canary": 20}
    verdicts = {g["name"]: g for g in moved["status"]["gates"]}
    assert verdicts["office-hours"]["verdict"] == "Passed"
