"""Controller reaction under load: N Rollouts managed, 50 of them moving, and 200 timed runs.

The controller runs as its own process (``meshctl controller run``) against the test world's
real kube-apiserver. Two loads keep 50 Rollouts moving in the background (``--loads``):

- ``steps``: each goes through a canary of three weights with 2 s pauses and is promoted,
  and gets its next template 30 s after the one before, once Healthy (a release train
  whose pace does not grow with the controller's speed);
- ``restarts``: a new template for one of them every 0.1 s, so each is restarted every 5 s
  (each restart replaces its canary's Pod: mostly work for the cluster tier).

Meanwhile each timed run takes one other Rollout and measures, from the API server
accepting the write (the PATCH returned) to a watch on the VirtualServices seeing the result:

- template change -> the first canary weight in the VirtualService; and, apart, from the
  canary Deployment seen ready by a watch (the cluster tier's hollow kubelets run the Pods)
  to that weight, which is the controller's own part;
- abort intent (annotation) -> 100% stable in the VirtualService.

With one Rollout (``--rollouts 1``) nothing else moves: each run is a new template and then
an abort of that same Rollout.

Then the controller's own reconcile histogram (upper bucket bounds) over the whole run.

With ``--py-spy PATH`` (a py-spy binary; not a meshctl dependency) the controller is
sampled during the timed runs and the section says where its CPU went (:mod:`bench.profile`).

    nice python -m bench.controller_load [--rollouts 1 1000] [--loads steps restarts]
        [--runs 200] [--py-spy PATH] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.controller_idle import controller_process, cpu_seconds, lagging
from bench.controller_scale import percentiles, phases, service_objects
from bench.profile import Sampler, table
from bench.results import stamp, write_section
from meshctl.adapters.errors import AdapterError
from meshctl.adapters.kube import Kube
from meshctl.adapters.rest import controller_client
from meshctl.cli.controller import run as run_command
from meshctl.domain.spec import GROUP, VERSION
from testworld import cluster
from testworld.cluster import ClusterTier
from testworld.kube import KubeWorld

HEADING = "## Controller reaction under load"
WORKERS = next(p.default for p in run_command.params if p.name == "workers")  # its default
MOVING = 50
MOVING_STEPS = [{"setWeight": 10}, {"pause": {"duration": "2s"}}, {"setWeight": 30},
                {"pause": {"duration": "2s"}}, {"setWeight": 60}, {"pause": {"duration": "2s"}}]
RELEASE_EVERY = 30.0
LOADS = {"steps": f"{MOVING} Rollouts go through their steps (10%, 30%, 60%, 2 s pauses), "
                  f"each getting its next template {RELEASE_EVERY:.0f} s after the one before "
                  "(once Healthy)",
         "restarts": f"{MOVING} Rollouts get a new template every 0.1 s between them (each "
                     "restarted every 5 s)"}


# the controller's writes, as the API server times them (apiserver_request_duration_seconds)
API_WRITES = {
    "api_virtualservice_put": ('resource="virtualservices"', 'verb="PUT"'),
    "api_rollout_status_patch": ('resource="rollouts"', 'subresource="status"', 'verb="PATCH"'),
}

# the same writes as the controller times them (meshctl_api_request_duration_seconds)
CALLS = {
    "call_virtualservice_put": ('resource="virtualservices"', 'verb="PUT"'),
    "call_rollout_status_patch": ('resource="rollouts/status"', 'verb="PATCH"'),
}


def canary_weight(vs: dict[str, Any]) -> int:
    for route in vs["spec"].get("http", []):
        if route.get("name") == "primary":
            return sum(int(d.get("weight", 0)) for d in route.get("route", [])
                       if d["destination"].get("subset") == "canary")
    return 0


class Seen:
    """A watch on every object of one kind in the namespace, remembering when each change
    arrived, so a run asks when a condition first held after a moment (the watch thread
    stamps each event as it comes: a run that starts waiting late is not charged for it)."""

    def __init__(self, kube: Kube, ns: str, group: str, version: str, plural: str) -> None:
        self.kube, self.ns, self.kind = kube, ns, (group, version, plural)
        self._cond = threading.Condition()
        self._seen: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:  # a loaded API server may drop the watch: list and follow again
            try:
                self._follow()
            except Exception:  # the world stopping ends it as well
                time.sleep(1.0)

    def _follow(self) -> None:
        items, version = self.kube.list_all(*self.kind)
        with self._cond:
            for item in items:
                self._add(item)
        while True:
            for kind, obj in self.kube.watch(*self.kind, version, 300, namespace=self.ns,
                                             bookmarks=True):
                version = obj["metadata"].get("resourceVersion") or version
                if kind in ("ADDED", "MODIFIED"):
                    with self._cond:
                        self._add(obj)
                        self._cond.notify_all()

    def _add(self, obj: dict[str, Any]) -> None:
        self._seen.setdefault(obj["metadata"]["name"], []).append((time.monotonic(), obj))

    def latest(self, name: str) -> dict[str, Any] | None:
        with self._cond:
            history = self._seen.get(name)
            return history[-1][1] if history else None

    def when(self, name: str, test: Any, since: float, timeout: float = 120.0) -> float:
        """Monotonic time at which an object ``name`` that passes ``test`` first arrived
        after ``since`` (the latest one before it counts too, stamped ``since``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                history = self._seen.get(name, [])
                before = [obj for at, obj in history if at <= since][-1:]
                if before and test(before[0]):
                    return since
                for at, obj in history:
                    if at > since and test(obj):
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{name}: {history[-1][1] if history else None}")
                self._cond.wait(left)


def ready_with(image: str) -> Any:
    """A test that a Deployment of ``image`` has a ready Pod of its current generation."""
    def test(deployment: dict[str, Any]) -> bool:
        spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
        containers = (spec.get("template") or {}).get("spec", {}).get("containers", [{}])
        return (containers[0].get("image") == image and spec.get("replicas", 0) > 0
                and status.get("observedGeneration") == deployment["metadata"]["generation"]
                and status.get("readyReplicas", 0) >= 1)
    return test


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def churn(admin: Kube, ns: str, stop: threading.Event) -> None:
    """Keeps ``MOVING`` Rollouts moving: a new template for one of them every 0.1 s."""
    n = 0
    while not stop.is_set():
        n += 1
        patch(admin, ns, f"svc-{n % MOVING}", {"spec": {
            "template": {"spec": {"containers": [{"name": "app", "image": f"app:c{n}"}]}}}})
        stop.wait(0.1)


def stepping(admin: Kube, ns: str, rollouts: Seen, stop: threading.Event,
             started: list[float]) -> None:
    """Keeps ``MOVING`` Rollouts going through their steps: each one Healthy at its current
    spec (its status has seen the latest generation) gets the next template, at most once
    every ``RELEASE_EVERY`` seconds, so the load does not grow with the controller's speed
    (``started``: when each was given)."""
    n, last = 0, [time.monotonic() - RELEASE_EVERY * i / MOVING for i in range(MOVING)]
    while not stop.is_set():
        for i in range(MOVING):
            obj = rollouts.latest(f"svc-{i}")
            status = (obj or {}).get("status") or {}
            if obj and status.get("phase") == "Healthy" and \
                    status.get("observedGeneration") == obj["metadata"]["generation"] and \
                    time.monotonic() - last[i] >= RELEASE_EVERY:
                last[i] = time.monotonic()
                n += 1
                patch(admin, ns, f"svc-{i}", {"spec": {"template": {"spec": {
                    "containers": [{"name": "app", "image": f"app:s{n}"}]}}}})
                started.append(time.monotonic())
        stop.wait(0.2)


def cores_by_group(seconds: dict[str, float], elapsed: float) -> dict[str, float]:
    """CPU seconds of each process over ``elapsed``, as cores, the hollow nodes summed."""
    out: dict[str, float] = {}
    for name, used in seconds.items():
        group = "hollow nodes" if name.startswith("hollow-node-") else name
        out[group] = out.get(group, 0.0) + used / elapsed
    return {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def patch(admin: Any, ns: str, name: str, body: dict[str, Any]) -> None:
    """A merge patch of a Rollout, sent again when the loaded API server does not answer."""
    for attempt in range(5):
        try:
            admin.merge_patch(GROUP, VERSION, ns, "rollouts", name, body)
            return
        except AdapterError:
            if attempt == 4:
                raise
            time.sleep(1.0)


def settled(admin: Any, ns: str, n: int) -> bool:
    """Every Rollout Healthy and every Deployment ready (a check the loaded API server does
    not answer in time counts as not yet)."""
    try:
        return phases(admin, ns).get("Healthy", 0) >= n and not lagging(admin, ns)
    except AdapterError:
        return False


def measure(n: int, load: str, runs: int, nodes: int, workers: int, py_spy: str | None = None,
            profile_out: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"rollouts": n, "runs": runs, "workers": workers}
    alone = n < MOVING + runs  # too few to keep 50 moving: one Rollout, alone
    with KubeWorld() as world, ClusterTier(world, nodes=nodes) as tier, \
            tempfile.TemporaryDirectory() as tmp:
        ns = world.create_namespace("load")
        admin = controller_client(world.kubeconfig_path)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: world.apply(
                cluster.service_objects(ns, i, MOVING_STEPS) if load == "steps" and
                i < MOVING and not alone else service_objects(ns, i)), range(n)))
        log = Path(tmp) / "controller.log"
        proc = controller_process(world, ns, log, ["--workers", str(workers)])
        moving = threading.Event()
        try:
            while not settled(admin, ns, n):
                time.sleep(max(2.0, n / 500))
            url = re.search(r"health on (\S+)", log.read_text())
            assert url is not None, log.read_text()[-2000:]
            seen = Seen(controller_client(world.kubeconfig_path), ns,
                        "networking.istio.io", "v1", "virtualservices")
            deployments = Seen(controller_client(world.kubeconfig_path), ns,
                               "apps", "v1", "deployments")
            time.sleep(3)
            releases: list[float] = []
            if not alone and load == "steps":
                rollouts = Seen(controller_client(world.kubeconfig_path), ns, GROUP, VERSION,
                                "rollouts")
                threading.Thread(target=stepping, args=(admin, ns, rollouts, moving,
                                                        releases), daemon=True).start()
                time.sleep(RELEASE_EVERY + 5)  # all 50 moving before the timed runs
            elif not alone:
                threading.Thread(target=churn, args=(admin, ns, moving), daemon=True).start()
                time.sleep(5)
            start_ms, ready_ms, abort_ms = [], [], []
            sampler = Sampler(py_spy, proc.pid, Path(profile_out or Path(tmp) / "controller.raw"))

            def start(name: str, image: str) -> None:
                patch(admin, ns, name, {"spec": {"template": {
                    "spec": {"containers": [{"name": "app", "image": image}]}}}})
                accepted = time.monotonic()
                marked = deployments.when(f"{name}-canary", ready_with(image), accepted)
                weighted = seen.when(name, lambda vs: canary_weight(vs) > 0, accepted)
                start_ms.append((weighted - accepted) * 1000)
                ready_ms.append((weighted - marked) * 1000)

            def abort(name: str, mark: str) -> None:
                patch(admin, ns, name, {"metadata": {
                    "annotations": {"meshctl.io/intent-abort": mark}}})
                accepted = time.monotonic()
                abort_ms.append((seen.when(name, lambda vs: canary_weight(vs) == 0,
                                           accepted) - accepted) * 1000)

            before = urllib.request.urlopen(url.group(1) + "/metrics").read().decode()
            api_before = world.request("GET", "/metrics", timeout=120)
            pids = {**world.pids(), **tier.pids(), "the controller": proc.pid,
                    "the benchmark": os.getpid()}
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            timed_from = time.monotonic()
            with sampler:
                if alone:
                    for i in range(runs):
                        start("svc-0", f"app:r{i}")
                        abort("svc-0", f"bench-{i}")
                        while phases(admin, ns).get("Degraded", 0) < 1:
                            time.sleep(0.05)  # the abort done: the next template starts anew
                else:
                    for i in range(MOVING, MOVING + runs):
                        start(f"svc-{i}", "app:2")
                    for i in range(MOVING, MOVING + runs):
                        abort(f"svc-{i}", f"bench-{i}")
            timed = result["timed_seconds"] = round(time.monotonic() - timed_from, 1)
            result["cpu_cores"] = cores_by_group(
                {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}, timed)
            result["moving"] = 0 if alone else MOVING
            result["load"] = "" if alone else load
            if releases:  # each release given during the timed runs
                result["releases_per_minute"] = round(
                    sum(1 for at in releases if at >= timed_from) * 60
                    / (time.monotonic() - timed_from), 1)
                result["moving_phases"] = {}
                for i in range(MOVING):
                    phase = ((rollouts.latest(f"svc-{i}") or {}).get("status") or {}).get(
                        "phase", "none")
                    result["moving_phases"][phase] = result["moving_phases"].get(phase, 0) + 1
            if sampler.recorded:
                result["profile"] = table(sampler.raw, sampler.rate)
            moving.set()
            text = urllib.request.urlopen(url.group(1) + "/metrics").read().decode()
            result["template_to_first_weight_ms"] = {
                "p50": round(pct(start_ms, 0.5), 1), "p99": round(pct(start_ms, 0.99), 1)}
            result["canary_ready_to_first_weight_ms"] = {
                "p50": round(pct(ready_ms, 0.5), 1), "p99": round(pct(ready_ms, 0.99), 1)}
            result["abort_to_stable_ms"] = {
                "p50": round(pct(abort_ms, 0.5), 1), "p99": round(pct(abort_ms, 0.99), 1)}
            result["reconcile"] = percentiles(text, "meshctl_reconcile_duration_seconds")
            result["reconcile_cpu"] = percentiles(text, "meshctl_reconcile_cpu_seconds")
            result["reconcile_timed"] = percentiles(text, "meshctl_reconcile_duration_seconds",
                                                    since=before)
            result["reconcile_api_timed"] = percentiles(text, "meshctl_reconcile_api_seconds",
                                                        since=before)
            result["reconcile_cpu_timed"] = percentiles(text, "meshctl_reconcile_cpu_seconds",
                                                        since=before)
            for key, labels in CALLS.items():
                result[key] = percentiles(text, "meshctl_api_request_duration_seconds", labels,
                                          since=before)
            result["queue_wait_urgent"] = percentiles(text, "meshctl_queue_wait_seconds",
                                                      'urgent="true"', since=before)
            api = world.request("GET", "/metrics", timeout=120)
            for key, labels in API_WRITES.items():
                result[key] = percentiles(api, "apiserver_request_duration_seconds", labels,
                                          since=api_before)
        finally:
            moving.set()
            proc.kill()
            proc.wait()
    return result


def section(results: list[dict[str, Any]]) -> str:
    rows = ["| Rollouts managed | moving meanwhile | measure | p50 | p99 | target |",
            "| ---: | ---: | --- | ---: | ---: | --- |"]
    for r in results:
        goal = "p99 under 50 ms" if r["rollouts"] == 1 else "p99 under 100 ms"
        head = f"| {r['rollouts']:,} | {r['moving']}{' ' + r['load'] if r['load'] else ''} |"
        rec = r["reconcile"]
        for key, what, target in (
                ("template_to_first_weight_ms", "template change -> first canary weight", ""),
                ("canary_ready_to_first_weight_ms",
                 "canary seen ready -> first canary weight (the controller's part)", goal),
                ("abort_to_stable_ms", "abort -> 100% stable", goal)):
            rows.append(f"{head} {what} | {r[key]['p50']} ms | {r[key]['p99']} ms | "
                        f"{target} |")
        rows.append(f"{head} reconcile pass, all {rec['count']:.0f} passes (adoption at the "
                    f"start included) | {rec['p50'] * 1000:.0f} ms | {rec['p99'] * 1000:.0f} ms | "
                    f"{'p99 under 100 ms' if r['rollouts'] >= 1000 else ''} |")
        for key, what in (
                ("reconcile_timed", f"reconcile pass, the {r['reconcile_timed']['count']:.0f} "
                                    "during the timed runs"),
                ("reconcile_api_timed", "... of which its calls to the API server (each call's "
                                        "wall time: sent, answered, decoded)"),
                ("reconcile_cpu_timed", "... of which its own CPU (its thread's CPU time)")):
            rows.append(f"{head} {what} | {r[key]['p50'] * 1000:g} ms | "
                        f"{r[key]['p99'] * 1000:g} ms | |")
        for server, client, what in (
                ("api_virtualservice_put", "call_virtualservice_put",
                 "a VirtualService write (PUT)"),
                ("api_rollout_status_patch", "call_rollout_status_patch",
                 "a Rollout status write (PATCH)")):
            api, call = r[server], r[client]
            rows.append(f"{head} {what}, the {call['count']:.0f} during the timed runs: as the "
                        "controller waited for it / the API server's own time (its "
                        "`apiserver_request_duration_seconds`) | "
                        f"{call['p50'] * 1000:g} / {api['p50'] * 1000:g} ms | "
                        f"{call['p99'] * 1000:g} / {api['p99'] * 1000:g} ms | |")
        wait = r["queue_wait_urgent"]
        rows.append(f"{head} an urgent key (new template, abort, canary ready) waiting for a "
                    f"worker (one of the {r['workers']}, or the one kept for such keys), the "
                    f"{wait['count']:.0f} during the timed runs (histogram bucket bounds) | "
                    f"{wait['p50'] * 1000:g} ms | "
                    f"{wait['p99'] * 1000:g} ms | |")
    profiled = [r for r in results if r.get("profile")]
    return "\n".join([
        HEADING, "",
        f"`nice python -m bench.controller_load {' '.join(sys.argv[1:])}`".replace(" `", "`")
        + ": the controller as its own process against the test world's real kube-apiserver "
        "(API server, etcd, the cluster tier's controllers and hollow nodes, and the "
        "benchmark share the 2 cores). With many Rollouts, the timed runs take other "
        f"Rollouts while {MOVING} move: with the load `steps`, {LOADS['steps']}; with "
        f"`restarts`, {LOADS['restarts']}. With one Rollout, nothing else moves and each run "
        "is a new template and then an abort of it. "
        f"Each row is {results[0]['runs']} timed runs, each timed from the PATCH returning "
        "to a watch seeing the VirtualService "
        "change. From the template change, the time includes the cluster tier making the "
        "canary's Pod ready (the Deployment controller, the scheduler and a hollow kubelet); "
        "the controller's part starts when a watch on the Deployments sees the canary's "
        "ready (each watch event is stamped as it arrives). The controller runs with "
        f"{results[0]['workers']} workers, and one more kept for aborts, new templates and "
        "canaries just ready.", "",
        stamp(), "", *rows, "",
        *[f"CPU during the timed runs at {r['rollouts']:,} Rollouts"
          f"{' with `' + r['load'] + '`' if r['load'] else ''}, in cores (utime + stime from "
          "/proc over the runs' wall time; the machine has 2): "
          + ", ".join(f"{name} {cores:.2f}" for name, cores in r["cpu_cores"].items()) + "."
          for r in results],
        "",
        *[f"With `steps` at {r['rollouts']:,} Rollouts, the {MOVING} moving ones were given "
          f"{r['releases_per_minute']:g} new templates a minute during the timed runs (each "
          f"once the one before was Healthy; phases at the end: "
          f"{', '.join(f'{k} {v}' for k, v in sorted(r['moving_phases'].items()))})."
          for r in results if r.get("releases_per_minute") is not None],
        "",
        *([f"Where the controller's CPU went during the timed runs at "
           f"{profiled[0]['rollouts']:,} Rollouts (py-spy, 100 samples/s of its threads "
           "running Python):", "", *profiled[0]["profile"], ""] if profiled else []),
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rollouts", type=int, nargs="+", default=[1, 1000])
    parser.add_argument("--loads", nargs="+", choices=sorted(LOADS),
                        default=["steps", "restarts"],
                        help="what keeps the 50 moving with many Rollouts (each a run)")
    parser.add_argument("--runs", type=int, default=200,
                        help="timed runs per row (p99 of 50 would be the slowest one)")
    parser.add_argument("--nodes", type=int, default=6, help="hollow nodes")
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help="the controller's --workers (its default)")
    parser.add_argument("--py-spy", help="a py-spy binary: sample the controller and report "
                        "where its CPU went")
    parser.add_argument("--profile-out", help="keep py-spy's raw samples in this file")
    parser.add_argument("--no-write", action="store_true", help="print JSON only")
    args = parser.parse_args()
    results = [measure(n, load, args.runs, args.nodes, args.workers, args.py_spy,
                       args.profile_out)
               for n in args.rollouts
               for load in (args.loads if n >= MOVING + args.runs else args.loads[:1])]
    json.dump(results, sys.stdout, indent=2)
    print()
    if not args.no_write:
        write_section(HEADING, section(results))


if __name__ == "__main__":
    main()
