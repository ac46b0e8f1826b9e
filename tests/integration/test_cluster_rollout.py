"""The controller's reconcile against the real API server and a real Prometheus holding
Istio-named series (scraped from a stand-in for the sidecars)."""

from __future__ import annotations

import json
import re

import pytest

from meshctl.domain.spec import GROUP, VERSION

from .cluster_world import ADMIN_ROUTE, Driver, phase, rollout, seed_service, weights

pytestmark = [pytest.mark.kube, pytest.mark.cluster, pytest.mark.prometheus]
STEPS = [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 50}, {"analysis": {}}]


@pytest.fixture
def world(kube, cluster, namespace, istio_metrics):
    exporter, url = istio_metrics
    seed_service(kube, namespace)
    exporter.set(namespace, "web", "web-canary", rps=40, error_rate=0.0, latency_ms=5)
    driver = Driver(kube, namespace, url)
    driver.kube.create(GROUP, VERSION, namespace, "rollouts", rollout(namespace, "web:1", STEPS))
    driver.until(phase("Healthy"))  # first sight adopts the running Deployment as stable
    return driver, exporter


def start(driver: Driver, image: str) -> None:
    driver.kube.merge_patch(GROUP, VERSION, driver.ns, "rollouts", "web",
                            {"spec": {"template": {"spec": {"containers": [
                                {"name": "web", "image": image}]}}}})


def test_passing_canary_ends_healthy_with_the_new_version_stable(world):
    driver, _ = world
    start(driver, "web:2")
    obj = driver.until(phase("Healthy"))
    status = obj["status"]
    assert status["weights"]["stable"] == 100 and status["weights"]["canary"] == 0
    stable = driver.deployment("web")
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == "web:2"
    assert stable["spec"]["template"]["metadata"]["labels"]["meshctl.io/track"] == "stable"
    assert driver.deployment("web-canary")["spec"]["replicas"] == 0
    vs = driver.vs()
    assert weights(vs) == {"stable": 100, "canary": 0}
    assert vs["spec"]["http"][0] == ADMIN_ROUTE  # the route meshctl does not manage
    passed = [r for r in status["analysis"] if r["verdict"] == "Passing"]
    assert {r["name"] for r in passed} == {"step-1", "step-3"}


def test_failing_slo_returns_traffic_to_stable_and_degrades(world):
    driver, exporter = world
    exporter.set(driver.ns, "web", "web-canary", error_rate=0.2)
    start(driver, "web:3")
    obj = driver.until(phase("Degraded"))
    status = obj["status"]
    assert weights(driver.vs()) == {"stable": 100, "canary": 0}
    assert status["abort"]["reason"] == "AnalysisFailed"
    measured = re.search(r"availability(?:-fast)?: .*?([0-9.]+) (?:does not meet result >= "
                         r"0.9999|meets failure condition result < 0.9998)", status["message"])
    assert measured and float(measured.group(1)) < 0.9  # the measurement behind the decision
    assert driver.deployment("web")["spec"]["template"]["spec"]["containers"][0]["image"] == "web:1"
    # the canary is scaled down after abortScaleDownDelaySeconds, not before
    assert driver.deployment("web-canary")["spec"]["replicas"] > 0
    driver.until(lambda o: driver.deployment("web-canary")["spec"]["replicas"] == 0, timeout=20)


def test_invalid_rollout_gets_the_condition_and_nothing_is_written(world):
    driver, _ = world
    vs_before = driver.vs()
    driver.kube.merge_patch(GROUP, VERSION, driver.ns, "rollouts", "web", {"spec": {
        "template": {"spec": {"containers": [{"name": "web", "image": "web:9"}]}},
        "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["nope"]}}}}})
    driver.once()
    obj = driver.get()
    condition = next(c for c in obj["status"]["conditions"] if c["type"] == "InvalidSpec")
    assert condition["status"] == "True"
    assert "route 'nope' is not in VirtualService web" in condition["message"]
    assert driver.vs()["spec"] == vs_before["spec"]
    assert driver.deployment("web-canary") is None


def test_other_writers_keep_their_routes_and_lose_the_weights(world):
    driver, _ = world
    start(driver, "web:4")
    driver.until(lambda o: o["status"].get("currentStep") == 1)
    vs = driver.vs()
    vs["spec"]["http"][0]["timeout"] = "3s"  # someone edits the unmanaged route
    primary = vs["spec"]["http"][1]
    primary["route"][0]["weight"], primary["route"][1]["weight"] = 50, 50  # and the weights
    driver.kube.replace("networking.istio.io", "v1", driver.ns, "virtualservices", vs)
    driver.once()
    fixed = driver.vs()
    assert weights(fixed) == {"stable": 80, "canary": 20}
    assert fixed["spec"]["http"][0]["timeout"] == "3s"
    events = driver.kube.list("events.k8s.io", "v1", driver.ns, "events")
    assert any(e.get("reason") == "TrafficCorrected" for e in events)


def test_the_canarys_traffic_taken_away_by_hand_is_not_sent_back_but_aborts(world):
    """An on-call engineer (or a GitOps sync) writes the managed route back to 100% stable
    mid-canary: meshctl does not put the canary's weight back; it aborts, and says why."""
    driver, _ = world
    start(driver, "web:6")
    driver.until(lambda o: o["status"].get("currentStep") == 1)
    vs = driver.vs()
    primary = vs["spec"]["http"][1]
    primary["route"][0]["weight"], primary["route"][1]["weight"] = 100, 0
    driver.kube.replace("networking.istio.io", "v1", driver.ns, "virtualservices", vs)
    for _ in range(3):
        driver.once()
        assert weights(driver.vs()) == {"stable": 100, "canary": 0}
    status = driver.until(phase("Degraded"))["status"]
    assert status["abort"]["reason"] == "TrafficWithdrawn"
    assert "meshctl last wrote stable/canary" in status["abort"]["message"]
    assert weights(driver.vs()) == {"stable": 100, "canary": 0}


def test_deleting_the_rollout_restores_the_virtual_service_it_found(world):
    driver, _ = world
    original = driver.vs()["spec"]
    start(driver, "web:5")
    driver.until(lambda o: o["status"].get("currentStep") == 1)
    assert driver.vs()["spec"] != original
    driver.kube.delete(GROUP, VERSION, driver.ns, "rollouts", "web")
    driver.once()
    vs = driver.vs()
    assert vs["spec"] == original
    assert "meshctl.io/original-spec" not in (vs["metadata"].get("annotations") or {})
    assert driver.deployment("web-canary") is None
    assert driver.kube.get_or_none(GROUP, VERSION, driver.ns, "rollouts", "web") is None
    dr = driver.get("destinationrules", "web", "networking.istio.io", "v1")
    assert [s["name"] for s in dr["spec"]["subsets"]] == ["stable"]
    assert json.dumps(dr)  # the restored DR is a plain object


def test_blue_green_cuts_over_and_switches_back_on_the_real_objects(world):
    driver, exporter = world
    driver.kube.merge_patch(GROUP, VERSION, driver.ns, "rollouts", "web", {"spec": {
        "strategy": {"canary": None, "blueGreen": {
            "previewRoute": {"name": "preview", "match": [
                {"headerName": "x-preview", "headerValue": {"exact": "1"}}]},
            "postPromotionAnalysis": {}, "scaleDownDelaySeconds": 30}},
        "template": {"spec": {"containers": [{"name": "web", "image": "web:6"}]}}}})
    obj = driver.until(phase("Paused"))
    assert obj["status"]["pauseReason"] == "AwaitingPromotion"
    vs = driver.vs()
    assert vs["spec"]["http"][1]["name"] == "meshctl-primary-preview"  # before the weights
    assert vs["spec"]["http"][1]["match"] == [{"headers": {"x-preview": {"exact": "1"}}}]
    assert weights(vs) == {"stable": 100, "canary": 0}
    exporter.set(driver.ns, "web", "web-canary", error_rate=0.3)  # green breaks after cut-over
    driver.kube.merge_patch(GROUP, VERSION, driver.ns, "rollouts", "web", {"metadata": {
        "annotations": {"meshctl.io/intent-promote": "p1"}}})
    driver.until(lambda o: weights(driver.vs()) == {"stable": 0, "canary": 100})
    obj = driver.until(phase("Degraded"))
    assert weights(driver.vs()) == {"stable": 100, "canary": 0}  # switched back in one write
    assert obj["status"]["abort"]["reason"] == "AnalysisFailed"
    blue = driver.deployment("web")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert blue == "web:1"  # the old version was kept warm, never replaced
    exporter.set(driver.ns, "web", "web-canary", error_rate=0.0)


def test_mutual_tls_gate_holds_while_canary_traffic_is_plaintext(world):
    driver, exporter = world
    exporter.set(driver.ns, "web", "web-canary", mtls=False)
    driver.kube.merge_patch(GROUP, VERSION, driver.ns, "rollouts", "web", {"spec": {
        "security": {"mtls": "STRICT", "requireMutualTLS": True,
                     "allow": [{"from": [{"namespace": driver.ns, "serviceAccount": "frontend"}]}]},
        "template": {"spec": {"containers": [{"name": "web", "image": "web:7"}]}}}})
    obj = driver.until(lambda o: "held by the mutual TLS gate" in o["status"].get("message", ""))
    held_at = obj["status"]["currentStep"]
    assert held_at < 3
    gate = next(c for c in obj["status"]["conditions"] if c["type"] == "MutualTLS")
    assert gate["status"] == "False"
    kinds = {p["kind"] for plural in ("peerauthentications", "authorizationpolicies")
             for p in driver.kube.list("security.istio.io", "v1", driver.ns, plural)}
    assert kinds == {"PeerAuthentication", "AuthorizationPolicy"}  # converged with the rollout
    for _ in range(3):
        driver.once()
    assert driver.get()["status"]["currentStep"] == held_at  # still held
    exporter.set(driver.ns, "web", "web-canary", mtls=True)
    driver.until(lambda o: o["status"].get("currentStep", 0) > held_at, timeout=60)
    exporter.set(driver.ns, "web", "web-canary", mtls=True)


def test_a_first_rollout_for_a_deployment_running_another_image_goes_out_as_a_canary(
        kube, cluster, namespace, istio_metrics):
    """The Deployment runs web:1 and the Rollout made for it already says web:2. First
    sight must not write web:2 into the stable Deployment (100% at once, no analysis):
    stable keeps running web:1, labelled in place, and web:2 starts as a canary at 0%."""
    exporter, url = istio_metrics
    seed_service(kube, namespace)
    exporter.set(namespace, "web", "web-canary", rps=40, error_rate=0.0, latency_ms=5)
    driver = Driver(kube, namespace, url)
    driver.kube.create(GROUP, VERSION, namespace, "rollouts", rollout(namespace, "web:2", STEPS))
    obj = driver.until(lambda o: (driver.deployment("web-canary") or {}).get("status", {})
                       .get("readyReplicas", 0) >= 1)
    status = obj["status"]
    assert status["phase"] in ("Progressing", "Paused")
    assert status["stableRevision"] != status["currentRevision"]
    stable = driver.deployment("web")
    assert stable is not None
    pod = stable["spec"]["template"]
    assert [c["image"] for c in pod["spec"]["containers"]] == ["web:1"]
    assert pod["metadata"]["labels"]["meshctl.io/track"] == "stable"
    assert pod["metadata"]["labels"]["meshctl.io/revision"] == status["stableRevision"]
    canary = driver.deployment("web-canary")
    assert canary is not None
    assert [c["image"] for c in canary["spec"]["template"]["spec"]["containers"]] == ["web:2"]
    assert weights(driver.vs())["stable"] >= 80  # at most the first step's 20%
    done = driver.until(phase("Healthy"))  # and it walks the steps like any release
    assert done["status"]["stableRevision"] == done["status"]["currentRevision"]
    assert [c["image"] for c in driver.deployment("web")["spec"]["template"]["spec"][
        "containers"]] == ["web:2"]


def test_a_deployment_of_someone_else_at_the_canarys_name_is_never_touched(
        kube, cluster, namespace, istio_metrics):
    """The user already runs a Deployment called web-canary. meshctl would make its canary
    under that name: the Rollout is invalid and says so, and neither a pass nor deleting the
    Rollout changes that Deployment."""
    _, url = istio_metrics
    seed_service(kube, namespace)
    theirs = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "web-canary", "namespace": namespace},
              "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "other"}},
                       "template": {"metadata": {"labels": {"app": "other"}},
                                    "spec": {"containers": [{"name": "o", "image": "o:1"}]}}}}
    kube.apply([theirs])
    driver = Driver(kube, namespace, url)
    before = driver.deployment("web-canary")
    assert before is not None
    driver.kube.create(GROUP, VERSION, namespace, "rollouts", rollout(namespace, "web:2", STEPS))
    for _ in range(3):
        driver.once()
    status = driver.get()["status"]
    condition = next(c for c in status["conditions"] if c["type"] == "InvalidSpec")
    assert condition["status"] == "True"
    assert ("spec.workloadRef.name: Deployment web-canary exists and is not made by meshctl"
            in condition["message"])
    after = driver.deployment("web-canary")
    assert after is not None
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["template"] == before["spec"]["template"]
    stable = driver.deployment("web")
    assert stable is not None
    assert "meshctl.io/track" not in stable["spec"]["template"]["metadata"]["labels"]
    driver.kube.delete(GROUP, VERSION, namespace, "rollouts", "web")
    driver.once()
    assert driver.kube.get_or_none(GROUP, VERSION, namespace, "rollouts", "web") is None
    assert driver.deployment("web-canary") is not None


def refused(kube, driver: Driver, url: str, name: str, workload: str) -> tuple[Driver, str]:
    """Create a second Rollout ``name`` of Deployment ``workload`` on web's route, run two
    passes of it: it must be marked invalid. Its driver and the InvalidSpec message."""
    second = rollout(driver.ns, f"{name}:1", STEPS)
    second["metadata"]["name"] = name
    second["spec"]["workloadRef"] = {"name": workload}
    driver.kube.create(GROUP, VERSION, driver.ns, "rollouts", second)
    other = Driver(kube, driver.ns, url, name=name)
    for _ in range(2):
        other.once()
    condition = next(c for c in other.get()["status"]["conditions"]
                     if c["type"] == "InvalidSpec")
    assert condition["status"] == "True"
    return other, condition["message"]


def test_a_second_rollout_of_the_same_deployment_is_refused_and_deleting_it_changes_nothing(
        world, kube, istio_metrics):
    """Rollout web manages Deployment web (its first pass labels the Deployment so). A
    second Rollout naming the same Deployment would roll its own template out over web's
    releases: it is invalid and writes nothing, and deleting it mid-release leaves web's
    routes, subsets and canary alone. Deleting web gives the Deployment up."""
    driver, _ = world
    _, url = istio_metrics
    stable = driver.deployment("web")
    assert stable is not None
    assert stable["metadata"]["labels"]["meshctl.io/rollout"] == "web"
    other, message = refused(kube, driver, url, "web-b", "web")
    assert "spec.workloadRef.name: Deployment web is managed by Rollout 'web'" in message
    assert driver.deployment("web")["metadata"]["generation"] == stable["metadata"]["generation"]
    assert driver.deployment("web-canary") is None

    start(driver, "web:2")
    driver.until(lambda o: o["status"].get("currentStep") == 1)
    vs, dr = driver.vs(), driver.get("destinationrules", "web", "networking.istio.io", "v1")
    assert weights(vs) == {"stable": 80, "canary": 20}
    driver.kube.delete(GROUP, VERSION, driver.ns, "rollouts", "web-b")
    assert other.once().deleted
    assert other.kube.get_or_none(GROUP, VERSION, driver.ns, "rollouts", "web-b") is None
    assert driver.vs()["spec"] == vs["spec"]
    assert driver.get("destinationrules", "web", "networking.istio.io", "v1")["spec"] == \
        dr["spec"]
    canary = driver.deployment("web-canary")
    assert canary is not None and canary["spec"]["replicas"] > 0
    assert driver.deployment("web")["metadata"]["labels"]["meshctl.io/rollout"] == "web"

    driver.kube.delete(GROUP, VERSION, driver.ns, "rollouts", "web")
    driver.once()
    assert "meshctl.io/rollout" not in (driver.deployment("web")["metadata"].get("labels") or {})


@pytest.mark.parametrize("holder", ["gone", "moved"])
def test_a_claim_left_by_a_rollout_that_no_longer_holds_it_is_taken_over(
        kube, cluster, namespace, istio_metrics, holder):
    """A Rollout deleted without its finalizer (gone), or since pointed at another
    Deployment (moved), leaves its label on the Deployment: the next Rollout of that
    Deployment takes it over."""
    _, url = istio_metrics
    seed_service(kube, namespace)
    driver = Driver(kube, namespace, url)
    if holder == "moved":
        moved = rollout(namespace, "web:1", STEPS)
        moved["metadata"]["name"] = "moved"
        moved["spec"]["workloadRef"] = {"name": "elsewhere"}
        driver.kube.create(GROUP, VERSION, namespace, "rollouts", moved)
    driver.kube.merge_patch("apps", "v1", namespace, "deployments", "web",
                            {"metadata": {"labels": {"meshctl.io/rollout": holder}}})
    driver.kube.create(GROUP, VERSION, namespace, "rollouts", rollout(namespace, "web:1", STEPS))
    driver.until(phase("Healthy"))
    assert driver.deployment("web")["metadata"]["labels"]["meshctl.io/rollout"] == "web"


def test_a_stable_deployment_given_another_image_by_hand_is_reported_not_undone(world):
    """Someone runs `kubectl set image` on the stable Deployment: meshctl's labels stay, its
    Pods run another image that no step checked. The Rollout says so (the field and both
    images) without fighting the change; the next release replaces it and the report
    clears."""
    driver, _ = world
    routes = driver.vs()["spec"]
    driver.kube.merge_patch("apps", "v1", driver.ns, "deployments", "web",
                            {"spec": {"template": {"spec": {"containers": [
                                {"name": "web", "image": "web:hotfix"}]}}}})
    driver.once()
    condition = next(c for c in driver.get()["status"]["conditions"]
                     if c["type"] == "StableEdited")
    assert condition["status"] == "True"
    assert ("spec.template.spec.containers[0].image: web:hotfix, not web:1"
            in condition["message"])
    events = driver.kube.list("events.k8s.io", "v1", driver.ns, "events")
    assert [e.get("type") for e in events if e.get("reason") == "StableEdited"] == ["Warning"]
    image = driver.deployment("web")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "web:hotfix"  # another writer's change is not undone
    assert driver.vs()["spec"] == routes

    start(driver, "web:2")
    done = driver.until(phase("Healthy"))
    condition = next(c for c in done["status"]["conditions"] if c["type"] == "StableEdited")
    assert condition["status"] == "False"
    image = driver.deployment("web")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "web:2"


def test_a_second_rollout_on_the_same_route_is_refused_and_deleting_it_leaves_the_route_alone(
        world, kube, istio_metrics):
    """Rollout web's first weight claims route primary of VirtualService web. Rollout shop
    (another Deployment) names the same route: it would overwrite web's weights, so it is
    invalid, and deleting it mid-release gives nothing of web's back. Deleting web releases
    the route."""
    driver, _ = world
    _, url = istio_metrics
    start(driver, "web:2")
    driver.until(lambda o: o["status"].get("currentStep") == 1)
    vs = driver.vs()
    assert json.loads(vs["metadata"]["annotations"]["meshctl.io/routes"]) == {"primary": "web"}
    dr = driver.get("destinationrules", "web", "networking.istio.io", "v1")
    other, message = refused(kube, driver, url, "shop", "shop")
    assert ("spec.trafficRouting.istio.virtualService.name: route 'primary' of "
            "VirtualService web is managed by Rollout 'web'" in message)
    driver.kube.delete(GROUP, VERSION, driver.ns, "rollouts", "shop")
    assert other.once().deleted
    assert driver.vs()["spec"] == vs["spec"]
    assert driver.vs()["metadata"]["annotations"] == vs["metadata"]["annotations"]
    assert driver.get("destinationrules", "web", "networking.istio.io", "v1")["spec"] == \
        dr["spec"]

    driver.kube.delete(GROUP, VERSION, driver.ns, "rollouts", "web")
    driver.once()
    assert "meshctl.io/routes" not in (driver.vs()["metadata"].get("annotations") or {})
