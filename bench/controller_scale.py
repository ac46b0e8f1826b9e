"""Controller scale: N Rollouts on one controller against the real API server, with real
Pods: the test world's cluster tier (kube-controller-manager, kube-scheduler and kubemark
hollow nodes) runs every Deployment, one replica each.

Measures, in one run: the cluster tier's bring-up and each hollow node's memory; time until
every Deployment is available; time until every Rollout is adopted (Healthy; adoption
labels the stable template, so each Deployment rolls its Pod); reconcile time percentiles
(from the controller's own histogram, upper bucket bounds); the controller's resident
memory; and the writes an idle controller makes per Rollout over two resyncs (target: 0).
Then starts a canary on 50 of them and measures how long until they reach their first pause.

    python -m bench.controller_scale [--rollouts 1000] [--workers 2] [--nodes 6]
        [--cap-minutes 100] [--no-write]

``--cap-minutes`` bounds the whole run: past it, the section says what was measured and what
the run was waiting for when it stopped.

Writes bench/RESULTS.md, section "Controller scale" (other sections are kept).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.results import stamp, write_section
from meshctl.adapters.errors import AdapterError
from meshctl.adapters.istiod import StoredWeights
from meshctl.adapters.kube import Kube
from meshctl.adapters.rest import controller_client
from meshctl.controller.manager import Manager
from meshctl.domain.spec import GROUP, VERSION
from testworld import cluster
from testworld.cluster import ClusterTier
from testworld.kube import ApiError, KubeWorld

SECTION = "## Controller scale"
LOAD: list[float] = []  # the 1-minute load average, sampled while the benchmark waits
DEADLINE = [float("inf")]  # time.monotonic() past which the run stops (--cap-minutes)
POLL = [1.0]  # seconds between checks: a list of 10,000 objects is not free


CANARIES = 50  # started at once after the idle measurement
# meshctl's writes on adoption, as the API server times them (its own
# apiserver_request_duration_seconds: from the request's arrival to its answer)
API_ADOPTION = {
    "api_rollout_patch": ('resource="rollouts"', 'subresource=""', 'verb="PATCH"'),
    "api_deployment_put": ('resource="deployments"', 'subresource=""', 'verb="PUT"'),
    "api_rollout_status_patch": ('resource="rollouts"', 'subresource="status"',
                                 'verb="PATCH"'),
}
WRITES = ("POST", "PUT", "PATCH", "DELETE")


class Capped(Exception):
    """The run reached --cap-minutes while waiting for what the message names."""


def service_objects(ns: str, i: int, replicas: int = 1) -> list[dict[str, Any]]:
    """A service whose Rollout waits at 10% in an indefinite pause once started."""
    return cluster.service_objects(ns, i, [{"setWeight": 10}, {"pause": {}}], replicas)


def available(kube: Kube, ns: str) -> int:
    """Deployments whose controller reports their current spec available."""
    count = 0
    for item in kube.list("apps", "v1", ns, "deployments"):
        status = item.get("status") or {}
        if status.get("observedGeneration") == item["metadata"]["generation"] and \
                status.get("availableReplicas", 0) == status.get("updatedReplicas", -1) == \
                item["spec"].get("replicas", 1):
            count += 1
    return count


def running_pods(world: KubeWorld, ns: str) -> int:
    pods = world.request("GET", f"/api/v1/namespaces/{ns}/pods", timeout=120)["items"]
    return sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running")


def wait_until(what: str, done: Any, timeout: float) -> float:
    """Seconds until ``done()``; a check the loaded API server does not answer in time
    counts as not yet."""
    began = time.monotonic()
    while True:
        LOAD.append(os.getloadavg()[0])
        try:
            if done():
                return round(time.monotonic() - began, 1)
        except (AdapterError, ApiError, OSError) as exc:
            print(f"{what}: check failed, retrying: {exc}", file=sys.stderr)
        if time.monotonic() - began > timeout:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        if time.monotonic() > DEADLINE[0]:
            raise Capped(what)
        time.sleep(POLL[0])


def percentiles(text: str, name: str, label: str | tuple[str, ...] = "",
                since: str = "") -> dict[str, float]:
    """p50/p99 upper bounds from a Prometheus histogram exposition (all label sets, or
    those with ``label``, e.g. ``urgent="true"``, or with every label of a tuple; with
    ``since``, an earlier exposition, only what was observed after it)."""
    buckets = _buckets(text, name, label)
    for bound, count in _buckets(since, name, label).items():
        buckets[bound] -= count
    total = buckets.get(float("inf"), 0.0)
    out = {}
    for q in (0.5, 0.9, 0.99):
        out[f"p{int(q * 100)}"] = next(b for b in sorted(buckets) if buckets[b] >= q * total)
    out["count"] = total
    return out


def calls(text: str) -> dict[str, int]:
    """The controller's calls to the API server so far, by verb and resource (from its
    ``meshctl_api_request_duration_seconds``)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("meshctl_api_request_duration_seconds_count{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            out[f"{labels['verb']} {labels['resource']}"] = int(float(line.rsplit(" ", 1)[1]))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _buckets(text: str, name: str, label: str | tuple[str, ...]) -> dict[float, float]:
    buckets: dict[float, float] = {}
    labels = (label,) if isinstance(label, str) else label
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{") and all(one in line for one in labels):
            le = line.split('le="')[1].split('"')[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return buckets


def writes(text: str, since: str) -> dict[str, int]:
    """Write requests the API server answered (its ``apiserver_request_total``) between two
    expositions, by verb and resource, most first: every client's, the cluster tier's too."""
    def counts(exposition: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in exposition.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            if labels.get("verb") not in WRITES:
                continue
            what = labels.get("resource", "")
            if labels.get("subresource"):
                what += "/" + labels["subresource"]
            key = f"{labels['verb']} {what}"
            out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
        return out

    after, before = counts(text), counts(since)
    diff = {k: int(v - before.get(k, 0.0)) for k, v in after.items()}
    return dict(sorted(((k, v) for k, v in diff.items() if v > 0), key=lambda kv: -kv[1]))


def resource_versions(kube: Kube, ns: str) -> dict[str, str]:
    """What identifies a write by the controller: resourceVersion of its objects, and the
    generation of Deployments (their status is the Deployment controller's to write)."""
    out = {}
    for group, version, plural in ((GROUP, VERSION, "rollouts"),
                                   ("networking.istio.io", "v1", "virtualservices"),
                                   ("networking.istio.io", "v1", "destinationrules"),
                                   ("apps", "v1", "deployments")):
        for item in kube.list(group, version, ns, plural):
            meta = item["metadata"]
            mark = meta["generation"] if plural == "deployments" else meta["resourceVersion"]
            out[f"{plural}/{meta['name']}"] = str(mark)
    return out


def phases(kube: Kube, ns: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in kube.list(GROUP, VERSION, ns, "rollouts"):
        phase = (item.get("status") or {}).get("phase", "none")
        counts[phase] = counts.get(phase, 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--resync", type=float, default=15.0)
    parser.add_argument("--nodes", type=int, default=6, help="hollow nodes")
    parser.add_argument("--cap-minutes", type=float, default=None,
                        help="stop waiting after this long and report what was measured")
    parser.add_argument("--no-write", action="store_true", help="leave bench/RESULTS.md")
    args = parser.parse_args()
    if args.cap_minutes is not None:
        DEADLINE[0] = time.monotonic() + args.cap_minutes * 60
    POLL[0] = max(1.0, args.rollouts / 1000)
    result: dict[str, Any] = {"rollouts": args.rollouts, "workers": args.workers,
                              "nodes": args.nodes, "cap_minutes": args.cap_minutes}
    try:
        measure(args.rollouts, args.workers, args.resync, args.nodes, result)
    except Capped as exc:
        result["capped_waiting_for"] = str(exc)
    json.dump(result, sys.stdout, indent=2)
    print()
    if not args.no_write:
        text = report(result) if "capped_waiting_for" not in result else capped_report(result)
        if args.rollouts > 1000:  # its own section: the 1,000 figures stay
            heading = f"{SECTION}, {args.rollouts:,} Rollouts"
            write_section(heading, text.replace(SECTION, heading, 1))
        else:
            write_section(SECTION, text)


def measure(n: int, workers: int, resync: float, nodes: int, result: dict[str, Any]) -> None:
    """Fills ``result`` as it goes (a capped run keeps what it measured)."""
    with KubeWorld() as world, ClusterTier(world, nodes=nodes) as tier:
        result["cluster_tier_up_seconds"] = round(tier.startup_seconds, 1)
        result["idle_node_rss_mb"] = node_rss(tier)
        ns = world.create_namespace("scale")
        admin = controller_client(world.kubeconfig_path)
        began = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: world.apply(service_objects(ns, i)), range(n)))
        result["create_seconds"] = round(time.monotonic() - began, 1)
        result["deployments_available_seconds"] = round(result["create_seconds"] + wait_until(
            "every Deployment available", lambda: available(admin, ns) >= n, 3600), 1)
        wait_until("every Pod Running", lambda: running_pods(world, ns) >= n, 600)
        result["pods_running"] = running_pods(world, ns)  # Ready comes a moment before Running
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result["rss_before_controller_mb"] = round(base_rss / 1024, 1)
        controller = controller_client(world.service_account_kubeconfig(
            "meshctl-system", "meshctl-controller"))
        api_before = world.request("GET", "/metrics", timeout=120)
        collections = FullCollections()
        manager = Manager(controller, prometheus_url="http://127.0.0.1:9",
                          data_plane=StoredWeights(), identity="bench",
                          namespace=ns, workers=workers, resync_seconds=resync,
                          renew_seconds=2.0).start()
        try:
            with collections:
                watch(manager, admin, world, tier, ns, n, resync, api_before, result)
            result["full_collections"] = collections.summary()
        finally:
            result["max_rss_mb"] = round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
            if LOAD:
                result["load_1m"] = {"min": min(LOAD), "max": max(LOAD),
                                     "mean": round(sum(LOAD) / len(LOAD), 1)}
            manager.stop()


class FullCollections:
    """CPython's full (generation 2) collections in this process while it is entered, each
    timed by ``gc.callbacks`` (every thread waits for the GIL meanwhile)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._began = 0.0

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._began)

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.pauses) or [0.0]
        return {"count": len(self.pauses), "max_ms": round(ordered[-1] * 1000),
                "median_ms": round(ordered[len(ordered) // 2] * 1000),
                "total_s": round(sum(self.pauses), 2)}


def watch(manager: Manager, admin: Any, world: KubeWorld, tier: ClusterTier, ns: str, n: int,
          resync: float, api_before: str, result: dict[str, Any]) -> None:
    """From the controller's start (``api_before``: the API server's metrics just before
    it): adoption, idle writes, 50 canaries."""
    result["adopt_all_seconds"] = wait_until(
        "every Rollout adopted", lambda: phases(admin, ns).get("Healthy", 0) >= n, 3600)
    adopted = manager.metrics.exposition().decode()
    result["reconcile_adoption"] = percentiles(adopted, "meshctl_reconcile_duration_seconds")
    result["reconcile_api_adoption"] = percentiles(adopted, "meshctl_reconcile_api_seconds")
    result["calls_adoption"] = calls(adopted)
    api = world.request("GET", "/metrics", timeout=120)
    for key, labels in API_ADOPTION.items():
        result[key] = percentiles(api, "apiserver_request_duration_seconds", labels,
                                  since=api_before)
    result["writes_adoption"] = writes(api, api_before)
    result["rolled_pods_available_seconds"] = round(result["adopt_all_seconds"] + wait_until(
        "every adopted Deployment available", lambda: available(admin, ns) >= n, 3600), 1)
    time.sleep(3)  # let the last status writes and events settle
    before = resource_versions(admin, ns)
    idle = 2 * resync + 2
    time.sleep(idle)
    after = resource_versions(admin, ns)
    changed = sorted(k for k in after if after[k] != before.get(k))
    result["idle_seconds"] = idle
    result["idle_writes"] = len(changed)
    result["idle_writes_per_rollout"] = len(changed) / n
    result["idle_changed_examples"] = changed[:5]
    reconciles_before = percentiles(manager.metrics.exposition().decode(),
                                    "meshctl_reconcile_duration_seconds")["count"]
    result["idle_reconciles"] = reconciles_before - result["reconcile_adoption"]["count"]
    canaries = min(CANARIES, n)
    result["canary_50_to_first_weight_seconds"] = start_canaries(admin, ns, canaries)
    result["canary_50_to_first_pause_seconds"] = round(
        result["canary_50_to_first_weight_seconds"] + wait_until(
            "the canaries' first pause",
            lambda: phases(admin, ns).get("Paused", 0) >= canaries, 900), 1)
    ended = manager.metrics.exposition().decode()
    result["reconcile_all"] = percentiles(ended, "meshctl_reconcile_duration_seconds")
    result["reconcile_api_all"] = percentiles(ended, "meshctl_reconcile_api_seconds")
    result["pods_running_at_end"] = running_pods(world, ns)
    result["loaded_node_rss_mb"] = node_rss(tier)
    result["tier_rss_mb"] = {k: round(v) for k, v in tier.rss_mib().items()
                             if not k.startswith("hollow-node")}


def start_canaries(admin: Any, ns: str, canaries: int) -> float:
    """A new template for ``svc-0`` ... at once (each gets a canary Deployment whose Pods
    must become ready); seconds from the first write to every one at its first weight."""
    names = [f"svc-{i}" for i in range(canaries)]
    began = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda name: admin.merge_patch(
            GROUP, VERSION, ns, "rollouts", name, {"spec": {"template": {
                "spec": {"containers": [{"name": "app", "image": "app:2"}]}}}}), names))
    waiting = set(names)

    def all_weighted() -> bool:
        for name in sorted(waiting):
            vs = admin.get("networking.istio.io", "v1", ns, "virtualservices", name)
            if canary_weight(vs) > 0:
                waiting.discard(name)
        return not waiting

    wait_until("the canaries' first weight", all_weighted, 900)
    return round(time.monotonic() - began, 1)


def canary_weight(vs: dict[str, Any]) -> int:
    return sum(int(d.get("weight", 0)) for route in vs["spec"].get("http", [])
               for d in route.get("route", []) if d["destination"].get("subset") == "canary")


def capped_report(r: dict[str, Any]) -> str:
    """The section of a run stopped by --cap-minutes: what it measured, what it waited for."""
    n = r["rollouts"]
    skip = {"rollouts", "workers", "nodes", "cap_minutes", "capped_waiting_for"}
    rows = [f"| {k.replace('_', ' ')} | {v} |" for k, v in r.items() if k not in skip]
    return "\n".join([
        SECTION, "",
        f"`python -m bench.controller_scale --rollouts {n} --workers {r['workers']} --nodes "
        f"{r['nodes']} --cap-minutes {r['cap_minutes']:g}` against the test world (real "
        "kube-apiserver and etcd, kube-controller-manager, kube-scheduler and kubemark hollow "
        "nodes, all on the same cores as the benchmark and the controller). **Stopped at the "
        f"cap of {r['cap_minutes']:g} minutes while waiting for {r['capped_waiting_for']}**; "
        "what it measured until then:", "",
        stamp(), "",
        "| measure | value |", "| --- | --- |", *rows, "",
    ])


def node_rss(tier: ClusterTier) -> list[float]:
    """Resident memory of each hollow node, MiB."""
    return sorted(round(v) for k, v in tier.rss_mib().items() if k.startswith("hollow-node"))


def report(r: dict[str, Any]) -> str:
    def pcts(key: str) -> str:
        p = r[key]
        return f"{p['p50'] * 1000:.0f} ms / {p['p90'] * 1000:.0f} ms / {p['p99'] * 1000:.0f} ms"

    n, nodes = r["rollouts"], r["nodes"]
    p99_ms = r["reconcile_all"]["p99"] * 1000
    idle_rss, loaded_rss = r["idle_node_rss_mb"], r["loaded_node_rss_mb"]
    load = r["load_1m"]
    gcs = r["full_collections"]
    per_rollout = ", ".join(f"{call} {count / n:.2g}" for call, count in
                            r["calls_adoption"].items()
                            if call.split()[0] not in ("GET", "LIST") and count >= n / 10)
    busiest = ", ".join(f"{call} {count:,}" for call, count in
                        list(r["writes_adoption"].items())[:6])
    return (
        f"{SECTION}\n\n"
        f"`python -m bench.controller_scale --rollouts {n} --workers {r['workers']} "
        f"--nodes {nodes}` against the test world: real kube-apiserver v1.34.4 and etcd, and "
        f"its cluster tier (kube-controller-manager, kube-scheduler and {nodes} kubemark "
        "hollow nodes: the Deployment controller makes every Pod, the scheduler places it "
        "and a hollow kubelet runs it). Everything, the benchmark and the controller "
        "included, shares the same cores. The controller runs in the benchmark process as "
        "the `meshctl-controller` ServiceAccount, reading from its watch caches, resync "
        f"(from the cache) every 15 s. Each service's Deployment has one replica: "
        f"{r['pods_running']:,} Pods running before adoption, {r['pods_running_at_end']:,} at "
        "the end (with the 50 canaries). Reconcile times are the controller's own histogram "
        "(upper bucket bounds); a pass's calls to the API server are the wall time of its "
        "requests (sent, answered, decoded), summed per pass.\n\n"
        f"{stamp()} During the run the 1-minute load average was "
        f"{load['min']:.0f}-{load['max']:.0f} (mean {load['mean']:.0f}).\n\n"
        f"| measure | {n:,} Rollouts | target |\n| --- | ---: | --- |\n"
        f"| cluster tier up (controller-manager, scheduler, {nodes} nodes Ready) | "
        f"{r['cluster_tier_up_seconds']} s | |\n"
        f"| create {n:,} services (Deployment, VirtualService, DestinationRule, Rollout) | "
        f"{r['create_seconds']} s | |\n"
        f"| ... every Deployment available (its Pod Running and Ready) | "
        f"{r['deployments_available_seconds']} s | |\n"
        f"| all {n:,} adopted (Healthy) | {r['adopt_all_seconds']} s | |\n"
        f"| ... every adopted Deployment's rolled Pod available again | "
        f"{r['rolled_pods_available_seconds']} s | |\n"
        f"| reconcile p50 / p90 / p99, all passes ({r['reconcile_all']['count']:,.0f}) | "
        f"{pcts('reconcile_all')} | p99 under 100 ms: "
        f"{'met' if p99_ms < 100 else '**not met**'} |\n"
        f"| ... of which the pass's calls to the API server | {pcts('reconcile_api_all')} | |\n"
        f"| reconcile p50 / p90 / p99 during adoption | {pcts('reconcile_adoption')} | |\n"
        f"| ... of which the pass's calls to the API server | "
        f"{pcts('reconcile_api_adoption')} | |\n"
        f"| the controller's writes during adoption, per Rollout | {per_rollout} | |\n"
        f"| ... as the API server timed them itself (`apiserver_request_duration_seconds`, "
        f"p50 / p90 / p99): PATCH rollouts (the finalizer) | {pcts('api_rollout_patch')} | |\n"
        f"| ... PUT deployments (meshctl's labels; the Deployment controller's revision "
        f"annotations too) | {pcts('api_deployment_put')} | |\n"
        f"| ... PATCH rollouts/status | {pcts('api_rollout_status_patch')} | |\n"
        f"| every client's writes the API server answered during adoption "
        f"({sum(r['writes_adoption'].values()):,}), the most frequent | {busiest} | |\n"
        f"| full garbage collections in the process (controller and benchmark) from the "
        f"controller's start to the end, each holding the GIL (`gc.callbacks`; the "
        f"controller freezes its long-lived heap every 10 s) | {gcs['count']}: median "
        f"{gcs['median_ms']} ms, max {gcs['max_ms']} ms, {gcs['total_s']} s in all | |\n"
        f"| writes per idle Rollout over {r['idle_seconds']:.0f} s (two resyncs, "
        f"{r['idle_reconciles']:,.0f} passes) | {r['idle_writes_per_rollout']:g} | 0: "
        f"{'met' if r['idle_writes'] == 0 else '**not met**'} |\n"
        f"| peak resident memory of the controller's process (with the benchmark's lists) | "
        f"{r['max_rss_mb']:.0f} MB ({r['rss_before_controller_mb']:.0f} MB before the "
        f"controller started) | under 300 MB: {'met' if r['max_rss_mb'] < 300 else '**not met**'} |\n"
        f"| 50 canaries started at once, to their first weight (canary Pods ready) | "
        f"{r['canary_50_to_first_weight_seconds']} s | within 10 s at 10,000 |\n"
        f"| ... to their first pause | {r['canary_50_to_first_pause_seconds']} s | |\n"
        f"| each hollow node's resident memory, idle / at the end | "
        f"{min(idle_rss)}-{max(idle_rss)} MB / {min(loaded_rss)}-{max(loaded_rss)} MB | |\n"
        f"| kube-controller-manager / kube-scheduler resident memory at the end | "
        f"{r['tier_rss_mb']['kube-controller-manager']} MB / "
        f"{r['tier_rss_mb']['kube-scheduler']} MB | |\n\n"
    )


if __name__ == "__main__":
    main()
