"""The dashboard with many rollouts in the cluster (the test world's real kube-apiserver and
etcd), seen through Debian's headless Chromium.

Measures: the list page's load time (navigation to every row drawn) and the JSON list
endpoint behind it; and update latency, from a status write at the API server until the
list page, and a rollout's page, show it (the pages poll every second: the goal is 2 s).

    python -m bench.dashboard [--rollouts 1000] [--runs 5] [--no-write]

Writes bench/RESULTS.md, section "Dashboard" (other sections are kept).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from bench.results import stamp, write_section
from meshctl.ops.connect import connect
from meshctl.ops.rollouts import ClusterRollouts
from meshctl.ops.watched import WatchedRollouts
from meshctl.web.dashboard import Dashboard, server
from testworld.kube import KubeWorld

SECTION = "## Dashboard"
PATH = "/apis/meshctl.io/v1alpha1/namespaces/{ns}/rollouts"


def rollout(ns: str, i: int) -> dict[str, Any]:
    return {
        "apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": f"svc-{i:04d}", "namespace": ns},
        "spec": {"service": f"svc-{i:04d}", "workloadRef": {"name": f"svc-{i:04d}"},
                 "trafficRouting": {"istio": {"virtualService": {"name": f"svc-{i:04d}"}}},
                 "strategy": {"canary": {"steps": [{"setWeight": 10}, {"analysis": {}},
                                                   {"setWeight": 50}]}}},
    }


def status(canary: int) -> dict[str, Any]:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"status": {
        "phase": "Progressing", "currentStep": 1, "stableRevision": "a1", "currentRevision": "b2",
        "weights": {"stable": 100 - canary, "canary": canary,
                    "observed": {"stable": 100 - canary, "canary": canary}},
        "analysis": [{"name": "step-1", "startedAt": at, "step": 1, "metrics": [
            {"name": "latency-p95", "measurements": [
                {"at": at, "outcome": "Successful", "value": 12.5}]},
            {"name": "availability", "measurements": [
                {"at": at, "outcome": "Successful", "value": 1.0}]}]}],
    }}


def write_status(world: KubeWorld, ns: str, i: int, canary: int) -> None:
    world.request("PATCH", PATH.format(ns=ns) + f"/svc-{i:04d}/status", status(canary),
                  content_type="application/merge-patch+json")


def seed(world: KubeWorld, ns: str, count: int) -> float:
    began = time.monotonic()

    def one(i: int) -> None:
        world.request("POST", PATH.format(ns=ns), rollout(ns, i))
        write_status(world, ns, i, 10)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(count)))
    return time.monotonic() - began


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1200,900"):
        options.add_argument(arg)
    os.environ.setdefault("SE_OFFLINE", "true")
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def until(check: Callable[[], Any], timeout: float = 30.0, every: float = 0.02) -> float:
    """Seconds until ``check()`` is true (raises after ``timeout``)."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise TimeoutError("the page did not show it")
        time.sleep(every)
    return time.monotonic() - began


def summary(values: list[float]) -> str:
    return (f"median {statistics.median(values) * 1000:.0f} ms, "
            f"max {max(values) * 1000:.0f} ms (n={len(values)})")


def measure(world: KubeWorld, ns: str, count: int, runs: int) -> dict[str, Any]:
    kube, _ = connect(str(world.kubeconfig_path), None, ns)
    watch_kube, _ = connect(str(world.kubeconfig_path), None, ns)
    rollouts = ClusterRollouts(kube)
    watched = WatchedRollouts(rollouts, watch_kube, ns)  # as `meshctl dashboard` does
    watched.wait_synced(60)
    httpd = server(Dashboard(watched, None, ns))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    chrome = browser()
    out: dict[str, Any] = {}
    try:
        api = []
        for _ in range(runs):
            began = time.monotonic()
            with urllib.request.urlopen(url + "/api/rollouts", timeout=30) as resp:
                resp.read()
            api.append(time.monotonic() - began)
        rows = "return document.querySelectorAll('#rollouts tbody tr').length"
        loads = []
        for _ in range(runs):
            chrome.get("about:blank")
            began = time.monotonic()
            chrome.get(url + "/")
            until(lambda: chrome.execute_script(rows) == count)
            loads.append(time.monotonic() - began)
        target = count // 2
        cell = (f"var r = document.querySelector(\"tr[data-rollout='{ns}/svc-{target:04d}'] "
                "td.written\"); return r ? r.textContent : ''")
        listed = []
        for run in range(runs):
            canary = 20 + run
            began = time.monotonic()
            write_status(world, ns, target, canary)
            until(lambda c=canary: chrome.execute_script(cell) == f"{100 - c}/{c}")
            listed.append(time.monotonic() - began)
        chrome.get(f"{url}/rollouts/{ns}/svc-{target:04d}")
        field = ("var r = document.querySelector(\"td[data-field='Weights written']\"); "
                 "return r ? r.textContent : ''")
        until(lambda: chrome.execute_script(field) != "")
        single = []
        for run in range(runs):
            canary = 40 + run
            began = time.monotonic()
            write_status(world, ns, target, canary)
            until(lambda c=canary: chrome.execute_script(field) == f"{100 - c}/{c}")
            single.append(time.monotonic() - began)
        out = {"api": api, "load": loads, "list_update": listed, "page_update": single}
    finally:
        chrome.quit()
        httpd.shutdown()
        thread.join()
        httpd.server_close()
        watched.close()
        rollouts.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    world = KubeWorld().start()
    try:
        ns = world.create_namespace("bench-dashboard")
        seeded = seed(world, ns, args.rollouts)
        found = measure(world, ns, args.rollouts, args.runs)
    finally:
        world.stop()
    lines = [
        SECTION, "",
        f"`python -m bench.dashboard --rollouts {args.rollouts} --runs {args.runs}`: "
        f"{args.rollouts} Rollouts with a status (two measurements each) in the test world's "
        "kube-apiserver; `meshctl dashboard` (cluster mode: listed from a watch) on 127.0.0.1; "
        "Debian's headless Chromium through Selenium. The pages poll every second.", "",
        f"{stamp()} Seeding {args.rollouts} Rollouts took {seeded:.0f} s.", "",
        "| what | goal | result |", "| --- | --- | --- |",
        f"| list page load (navigation until all {args.rollouts} rows are drawn) | < 1 s | "
        f"{summary(found['load'])} |",
        f"| `GET /api/rollouts` ({args.rollouts} rows as JSON), the first (no view "
        f"remembered yet) | - | {found['api'][0] * 1000:.0f} ms |",
        f"| `GET /api/rollouts`, then (from the watch; views remembered by "
        f"resourceVersion) | - | {summary(found['api'][1:])} |",
        f"| status write -> the list page shows it | < 2 s | {summary(found['list_update'])} |",
        f"| status write -> the rollout's page shows it | < 2 s | "
        f"{summary(found['page_update'])} |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
