"""Controller idle cost: CPU and writes of a controller holding N Rollouts that do nothing.

The controller runs as its own process (``meshctl controller run``, as the
``meshctl-controller`` ServiceAccount) against the test world's real kube-apiserver, so its
CPU is read from ``/proc/<pid>/stat`` and nothing else (the API server, etcd, the cluster
tier's controllers and hollow nodes) is counted. Once every Rollout is Healthy and a
settle period has passed, it measures over ``--idle-seconds``: CPU seconds per minute,
resident memory, and every write (resourceVersion of the Rollouts, VirtualServices,
DestinationRules, the generation of the Deployments, the Events, the Leases).

    nice python -m bench.controller_idle [--rollouts 1000] [--idle-seconds 120]
        [--replicas 1] [--controller-args '...'] [--no-write]

``--replicas 0`` gives every Deployment no Pods: the cluster tier's hollow nodes hold about
a hundred Pods each, so 10,000 Rollouts fit this machine only that way; the controller
holds, watches and adopts the same objects (a Deployment of 0 replicas is available).

After the idle window, 50 canaries start at once (``svc-0`` to ``svc-49``, which have one
Pod each whatever ``--replicas`` says, so each canary's Pod must become ready): seconds
from the first template write to all 50 at their first weight in the VirtualService.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.controller_scale import (
    CANARIES,
    phases,
    resource_versions,
    service_objects,
    start_canaries,
)
from bench.results import stamp, write_section
from meshctl.adapters.kube import Kube
from testworld.cluster import ClusterTier
from testworld.kube import KubeWorld

HEADING = "## Controller idle cost"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def lagging(admin: Kube, ns: str) -> int:
    """Deployments the cluster tier has not made ready yet (each status change is one the
    controller is told of: the world is not idle until there are none)."""
    return sum(1 for d in admin.list("apps", "v1", ns, "deployments")
               if (d.get("status") or {}).get("observedGeneration") != d["metadata"]["generation"]
               or (d.get("status") or {}).get("readyReplicas", 0) != d["spec"].get("replicas", 1))


def counts(admin: Kube, ns: str) -> dict[str, str]:
    out = resource_versions(admin, ns)
    out["events"] = str(len(_events(admin, ns)))
    for lease in _leases(admin):
        out[f"lease/{lease['metadata']['name']}"] = lease["metadata"]["resourceVersion"]
    return out


def _events(admin: Kube, ns: str) -> list[Any]:
    from kubernetes import client

    return list(client.CoreV1Api(admin.api_client).list_namespaced_event(ns).items)


def _leases(admin: Kube) -> list[dict[str, Any]]:
    return admin.list("coordination.k8s.io", "v1", "meshctl-system", "leases")


def controller_process(world: KubeWorld, ns: str, log: Path, extra: list[str]) -> Any:
    sa = world.service_account_kubeconfig("meshctl-system", "meshctl-controller")
    meshctl = str(Path(sys.executable).parent / "meshctl")
    argv = [meshctl, "--kubeconfig", str(sa), "-n", ns, "controller", "run",
            "--trust-stored-weights", "--prometheus-url", "http://127.0.0.1:9",
            "--health-addr", "127.0.0.1:0", *extra]
    return subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT)


def measure(n: int, idle_seconds: float, extra: list[str], nodes: int,
            replicas: int = 1) -> dict[str, Any]:
    result: dict[str, Any] = {"rollouts": n, "controller_args": extra, "replicas": replicas}
    with KubeWorld() as world, ClusterTier(world, nodes=nodes), \
            tempfile.TemporaryDirectory() as tmp:
        ns = world.create_namespace("idle")
        admin = Kube.from_kubeconfig(world.kubeconfig_path)
        began = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: world.apply(service_objects(
                ns, i, max(replicas, 1) if i < CANARIES else replicas)), range(n)))
        result["create_seconds"] = round(time.monotonic() - began, 1)
        proc = controller_process(world, ns, Path(tmp) / "controller.log", extra)
        try:
            began = time.monotonic()
            while phases(admin, ns).get("Healthy", 0) < n:
                if proc.poll() is not None:
                    raise SystemExit((Path(tmp) / "controller.log").read_text()[-3000:])
                time.sleep(2.0)
                if time.monotonic() - began > 1800:
                    raise SystemExit(f"not all adopted: {phases(admin, ns)}")
            result["adopt_all_seconds"] = round(time.monotonic() - began, 1)
            result["adopt_cpu_seconds"] = round(cpu_seconds(proc.pid), 1)
            while lagging(admin, ns):
                time.sleep(2.0)
            result["world_ready_seconds"] = round(time.monotonic() - began, 1)
            time.sleep(15)  # the last status writes and events settle
            before, cpu_before, t0 = counts(admin, ns), cpu_seconds(proc.pid), time.monotonic()
            time.sleep(idle_seconds)
            cpu_after, t1, after = cpu_seconds(proc.pid), time.monotonic(), counts(admin, ns)
            minutes = (t1 - t0) / 60
            changed = sorted(k for k in after if after[k] != before.get(k))
            result["idle_seconds"] = round(t1 - t0, 1)
            result["idle_cpu_seconds_per_minute"] = round((cpu_after - cpu_before) / minutes, 3)
            result["idle_changed"] = [k for k in changed if not k.startswith("lease/")]
            result["lease_renewed"] = [k for k in changed if k.startswith("lease/")]
            result["events_before_after"] = [before["events"], after["events"]]
            result["rss_mb"] = rss_mb(proc.pid)
            result["canaries_to_first_weight_seconds"] = start_canaries(
                admin, ns, min(CANARIES, n))
        finally:
            proc.kill()
            proc.wait()
    return result


def section(results: list[dict[str, Any]]) -> str:
    rows = ["| Rollouts | Pods per Deployment | controller flags | CPU per idle minute | "
            "writes while idle (besides Lease renewals) | RSS | all adopted in | "
            f"{CANARIES} canaries started at once, all at their first weight |",
            "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        flags = " ".join(r["controller_args"]) or "(defaults)"
        rows.append(f"| {r['rollouts']:,} | {r.get('replicas', 1)} | `{flags}` | "
                    f"{r['idle_cpu_seconds_per_minute']:.2f} s "
                    f"| {len(r['idle_changed'])} | {r['rss_mb']:.0f} MB | "
                    f"{r['adopt_all_seconds']:.0f} s | "
                    f"{r['canaries_to_first_weight_seconds']:.1f} s |")
    idle = results[0]["idle_seconds"]
    return "\n".join([
        HEADING, "",
        f"`nice python -m bench.controller_idle {' '.join(sys.argv[1:])}`".replace(" `", "`")
        + ": the controller as its own process "
        "(`meshctl controller run`, as its ServiceAccount) against the test world's real "
        "kube-apiserver; after every Rollout is Healthy, the cluster tier (real Deployment controller, "
        "scheduler, kubemark hollow nodes) has every Deployment ready (with 0 Pods per "
        "Deployment: available at once; hollow nodes hold about a hundred Pods each), and 15 s "
        "of settling, its CPU "
        f"(utime + stime from /proc) over {idle:.0f} s, per minute. Target: at most 0.5 s "
        "per idle minute at 1,000 Rollouts, and no writes but Lease renewals. Then "
        f"{CANARIES} canaries start at once (a new template for each of {CANARIES} Rollouts "
        "whose Deployments have one Pod, so each canary's Pod must become ready), timed from "
        "the first write to every one at its first weight; target at 10,000 Rollouts: "
        "within 10 s.", "",
        stamp(), "", *rows, "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rollouts", type=int, nargs="+", default=[1000])
    parser.add_argument("--idle-seconds", type=float, default=120.0)
    parser.add_argument("--controller-args", default="",
                        help="extra flags for `meshctl controller run`, e.g. "
                        "'--resync-seconds 30' to see what a periodic resync costs")
    parser.add_argument("--nodes", type=int, default=6, help="hollow nodes")
    parser.add_argument("--replicas", type=int, nargs="+", default=None,
                        help="Pods per Deployment, one per --rollouts value (default 1 each)")
    parser.add_argument("--no-write", action="store_true", help="print JSON only")
    args = parser.parse_args()
    extra = args.controller_args.split()
    replicas = args.replicas or [1] * len(args.rollouts)
    if len(replicas) != len(args.rollouts):
        parser.error("give one --replicas value per --rollouts value")
    results = [measure(n, args.idle_seconds, extra, args.nodes, r)
               for n, r in zip(args.rollouts, replicas, strict=True)]
    json.dump(results, sys.stdout, indent=2)
    print()
    if not args.no_write:
        write_section(HEADING, section(results))


if __name__ == "__main__":
    main()
