"""The dashboard and the report in a real browser: Debian's headless Chromium driven by
Selenium through Debian's chromedriver (nothing downloaded at test time), against the local
mesh during a real rollout (real Envoy, Prometheus and traffic). Screenshots go to
``artifacts/dashboard/`` (ignored by git)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from meshctl.domain.traffic import TrafficSplit
from meshctl.localmesh.load import LoadGenerator
from meshctl.localmesh.mesh import LocalMesh, SampleApp
from meshctl.localmesh.procs import LocalMeshError
from meshctl.ops.demo import demo_rollout
from meshctl.ops.local import LocalRollout
from meshctl.ops.rollouts import LocalRollouts
from meshctl.ops.timelines import local_timeline
from meshctl.web.dashboard import Dashboard, server
from meshctl.web.report import report

from ..integration.conftest import servers_unavailable
from ..unit.test_dashboard import seed

pytestmark = [pytest.mark.envoy, pytest.mark.prometheus]

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard"
# A pause step at the end holds the rollout at 60/40 for the abort from the page.
STEPS: list[dict[str, Any]] = [{"setWeight": 10}, {"analysis": {}}, {"setWeight": 40},
                               {"pause": {}}]


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver is None:
        servers_unavailable("chromium and chromedriver are needed (testworld/setup.sh installs "
                            "them from Debian)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1200,1400", "--disable-gpu"):
        options.add_argument(arg)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not fetch anything
    try:
        chrome = webdriver.Chrome(service=Service(driver), options=options)
    except WebDriverException as exc:
        servers_unavailable(f"chromium did not start: {exc.msg}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield chrome
    finally:
        chrome.quit()


def until(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.25)


def chart_values(browser: webdriver.Chrome, script: str) -> Any:
    return browser.execute_script(f"var c = window.meshctlCharts; return c ? ({script}) : null;")


WRITTEN = "c.weights.data[1].filter(function (v) { return v !== null; })"
METRIC_POINTS = ("Object.keys(c.metrics).map(function (k) { return [k, c.metrics[k].data[1]"
                 ".filter(function (v) { return v !== null; }).length]; })")


def phase_shown(browser: webdriver.Chrome) -> str:
    cells = browser.find_elements(By.CSS_SELECTOR, "td[data-field='Phase']")
    return cells[0].text if cells else ""


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[LocalMesh, str, str]]:
    """A healthy canary rolling out on the local mesh under load, reconciled in a thread,
    with a dashboard over its state directory: (mesh, dashboard URL, login token)."""
    mesh = LocalMesh(stable=SampleApp("v1", latency_ms=5.0), canary=SampleApp("v2", latency_ms=5.0))
    try:
        mesh.start()
    except LocalMeshError as exc:
        servers_unavailable(str(exc))
    stable, canary = mesh.stable_app, mesh.canary_app
    # a healthy canary: a loose latency limit, so a loaded machine does not roll it back
    rollout = demo_rollout("web", f"{stable.host}:{stable.port}", f"{canary.host}:{canary.port}",
                           steps=STEPS, slo={"latencyP95": "1s"})
    run = LocalRollout(rollout, {}, mesh, tmp_path, stable_revision="v1", canary_revision="v2")
    stop = threading.Event()

    def drive() -> None:
        while not stop.is_set():
            decision = run.reconcile()
            stop.wait(min(max(decision.requeue_after or 0.25, 0.05), 0.25))

    httpd = server(Dashboard(LocalRollouts(tmp_path), "t0ken", "demo", mesh.prometheus_url))
    threads = [threading.Thread(target=drive),
               threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1})]
    load = LoadGenerator(mesh.url, rate=60, concurrency=4).start()
    for thread in threads:
        thread.start()
    try:
        yield mesh, f"http://127.0.0.1:{httpd.server_address[1]}", "t0ken"
    finally:
        stop.set()
        httpd.shutdown()
        for thread in threads:
            thread.join()
        httpd.server_close()
        load.stop()
        mesh.stop()


def test_the_dashboard_follows_a_rollout_and_an_abort_from_it_rolls_back(
        browser: webdriver.Chrome, live: tuple[LocalMesh, str, str], tmp_path: Path) -> None:
    mesh, url, token = live
    # Given an operator logged in with the token, on the rollout's page
    browser.get(f"{url}/login?token={token}")
    browser.get(f"{url}/rollouts/demo/web")
    # Then the weight line moves (10%, then 40%) and each SLO metric has points, live
    until("the canary weight line to reach 40", lambda: 40 in (chart_values(browser, WRITTEN) or []),
          timeout=90)
    assert 10 in chart_values(browser, WRITTEN)
    points = dict(until("points on each SLO metric chart", lambda: all(
        n > 0 for _, n in chart_values(browser, METRIC_POINTS) or [("", 0)])
        and chart_values(browser, METRIC_POINTS)))
    assert {"latency-p95", "availability"} <= set(points)
    until("the pause to show", lambda: phase_shown(browser).startswith("Paused"))
    browser.save_screenshot(str(ARTIFACTS / "rollout-paused.png"))
    # When the operator aborts from the page and confirms
    browser.find_element(By.ID, "action-abort").click()
    until("the confirmation", lambda: browser.find_element(By.ID, "confirm").is_displayed())
    browser.find_element(By.ID, "confirm-ok").click()
    # Then the rollout is rolled back: Degraded on the page, 100% stable at the Envoy
    until("Degraded on the page", lambda: phase_shown(browser).startswith("Degraded"))
    assert mesh.router.observed() == TrafficSplit.stable_only()
    until("the weight line back at 0", lambda: chart_values(browser, WRITTEN)[-1] == 0)
    browser.save_screenshot(str(ARTIFACTS / "rollout-aborted.png"))
    # And a caller without the token sees the same page with no action buttons
    browser.delete_all_cookies()
    browser.refresh()
    until("the page to load", lambda: phase_shown(browser).startswith("Degraded"))
    time.sleep(1.5)  # a poll or two: buttons would have appeared by now
    assert browser.find_elements(By.CSS_SELECTOR, "#actions button") == []
    browser.save_screenshot(str(ARTIFACTS / "rollout-read-only.png"))
    browser.get(f"{url}/")
    until("the list row", lambda: browser.find_elements(By.CSS_SELECTOR, "tr[data-rollout='demo/web']"))
    browser.save_screenshot(str(ARTIFACTS / "list.png"))


def test_the_report_opens_offline_and_shows_its_charts(browser: webdriver.Chrome,
                                                       tmp_path: Path) -> None:
    seed(tmp_path)
    path = tmp_path / "report.html"
    path.write_text(report([(local_timeline(tmp_path, "demo", "web"), None)]), "utf-8")
    browser.set_network_conditions(offline=True, latency=0, download_throughput=0,
                                   upload_throughput=0)
    try:
        browser.get(path.as_uri())
        charts = until("the charts", lambda: browser.execute_script(
            "var c = window.meshctlCharts; return c && c.length ? "
            "[c[0].weights.data[1].length, Object.keys(c[0].metrics)] : null;"))
        canvases = browser.find_elements(By.CSS_SELECTOR, "#charts-0 canvas")
        browser.save_screenshot(str(ARTIFACTS / "report.png"))
    finally:
        browser.delete_network_conditions()
    assert charts[0] >= 2 and charts[1] == ["latency-p95"]
    assert len(canvases) == 2  # the weights and the one metric
