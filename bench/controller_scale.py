"""Controller scale: N Rollouts on one controller against the real API server.

Measures, in one run: time until every Rollout is adopted (Healthy), reconcile time
percentiles (from the controller's own histogram, upper bucket bounds), the controller's
resident memory, and the writes an idle controller makes per Rollout over two resyncs
(target: 0). Then starts a canary on 50 of them and measures reconcile time under load.

    python -m bench.controller_scale [--rollouts 1000] [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from meshctl.adapters.istiod import StoredWeights
from meshctl.adapters.kube import Kube
from meshctl.controller.manager import Manager
from meshctl.domain.spec import GROUP, VERSION
from testworld.kube import KubeWorld


def service_objects(ns: str, i: int) -> list[dict[str, Any]]:
    name = f"svc-{i}"
    template = {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": name, "namespace": ns},
         "spec": {"hosts": [name], "http": [{"name": "primary", "route": [
             {"destination": {"host": name, "subset": "stable"}}]}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": name, "namespace": ns},
         "spec": {"host": name, "subsets": [{"name": "stable",
                                              "labels": {"meshctl.io/track": "stable"}}]}},
        {"apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
         "metadata": {"name": name, "namespace": ns},
         "spec": {"service": name, "workloadRef": {"name": name}, "template": template,
                  "trafficRouting": {"istio": {
                      "virtualService": {"name": name, "routes": ["primary"]},
                      "destinationRule": {"name": name, "stableSubset": "stable",
                                          "canarySubset": "canary"}}},
                  "strategy": {"canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}}}},
    ]


def kubelet(world: KubeWorld, ns: str, stop: Any) -> None:
    """Marks Deployments ready whose status lags their spec (there is no real kubelet)."""
    admin = Kube.from_kubeconfig(world.kubeconfig_path)
    while not stop.is_set():
        for item in admin.list("apps", "v1", ns, "deployments"):
            status = item.get("status") or {}
            if status.get("readyReplicas", 0) != item["spec"].get("replicas", 1) or \
                    status.get("observedGeneration") != item["metadata"]["generation"]:
                world.mark_deployment_ready(ns, item["metadata"]["name"])
        stop.wait(1.0)


def percentiles(text: str, name: str) -> dict[str, float]:
    """p50/p99 upper bounds from a Prometheus histogram exposition (all label sets)."""
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = line.split('le="')[1].split('"')[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    total = buckets.get(float("inf"), 0.0)
    out = {}
    for q in (0.5, 0.9, 0.99):
        out[f"p{int(q * 100)}"] = next(b for b in sorted(buckets) if buckets[b] >= q * total)
    out["count"] = total
    return out


def resource_versions(kube: Kube, ns: str) -> dict[str, str]:
    """What identifies a write by the controller: resourceVersion of its objects, and the
    generation of Deployments (the bench's stand-in kubelet writes their status)."""
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
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--resync", type=float, default=15.0)
    args = parser.parse_args()
    n = args.rollouts
    result: dict[str, Any] = {"rollouts": n, "workers": args.workers}
    with KubeWorld() as world:
        ns = world.create_namespace("scale")
        admin = Kube.from_kubeconfig(world.kubeconfig_path)
        began = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: world.apply(service_objects(ns, i)), range(n)))
        result["create_seconds"] = round(time.monotonic() - began, 1)
        stop = multiprocessing.get_context("fork").Event()
        # the stand-in kubelet runs in a process of its own (forked before the controller
        # starts any thread), so it does not share the controller's interpreter lock
        ready = multiprocessing.get_context("fork").Process(
            target=kubelet, args=(world, ns, stop), daemon=True)
        ready.start()
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        controller = Kube.from_kubeconfig(world.service_account_kubeconfig(
            "meshctl-system", "meshctl-controller"))
        manager = Manager(controller, prometheus_url="http://127.0.0.1:9",
                          data_plane=StoredWeights(), identity="bench",
                          namespace=ns, workers=args.workers, resync_seconds=args.resync,
                          renew_seconds=2.0).start()
        began = time.monotonic()
        while phases(admin, ns).get("Healthy", 0) < n:
            time.sleep(1.0)
            if time.monotonic() - began > 1800:
                raise SystemExit(f"not all adopted: {phases(admin, ns)}")
        result["adopt_all_seconds"] = round(time.monotonic() - began, 1)
        result["reconcile_adoption"] = percentiles(manager.metrics.exposition().decode(),
                                                   "meshctl_reconcile_duration_seconds")
        time.sleep(3)  # let the last status writes and events settle
        before = resource_versions(admin, ns)
        idle = 2 * args.resync + 2
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
        # a canary on 50 of them
        for i in range(min(50, n)):
            admin.merge_patch(GROUP, VERSION, ns, "rollouts", f"svc-{i}", {"spec": {"template": {
                "spec": {"containers": [{"name": "app", "image": "app:2"}]}}}})
        began = time.monotonic()
        while phases(admin, ns).get("Paused", 0) < min(50, n):
            time.sleep(1.0)
            if time.monotonic() - began > 600:
                break
        result["canary_50_to_first_pause_seconds"] = round(time.monotonic() - began, 1)
        result["reconcile_all"] = percentiles(manager.metrics.exposition().decode(),
                                              "meshctl_reconcile_duration_seconds")
        # ru_maxrss is KiB on Linux: the peak of this process (controller + the bench's lists)
        result["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        result["rss_before_controller_mb"] = round(base_rss / 1024, 1)
        manager.stop()
        stop.set()
        ready.join(timeout=10)
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
