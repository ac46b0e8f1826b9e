"""Istio tier: a weight decision to the weight applied at Envoy through istiod, and the time
to bring the tier up. Target (issue 10): p99 under 300 ms with istiod's default debounce.

    .venv/bin/python bench/istio_propagation.py [--changes 120] [--debounce 10ms] [--no-write]

The test world's etcd + kube-apiserver, istiod (pilot-discovery) and one Envoy gateway it
programs (testworld/istio.py), a subset-level service with two real backends. Each change:
``IstioRouter.apply()`` (what a reconcile pass does with its decision: the VirtualService
write) is the start; the end is the gateway Envoy's own ``/config_dump`` showing the new
weights (polled every 5 ms), and, separately, the controller's view through istiod's debug
API (``IstiodDataPlane``: acknowledged and generated routes) agreeing.

Writes bench/RESULTS.md, section "Istio tier" (other sections are kept).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import stamp, write_section  # noqa: E402
from meshctl.adapters.istio import IstioRouter  # noqa: E402
from meshctl.adapters.istiod import Istiod, IstiodDataPlane  # noqa: E402
from meshctl.adapters.kube import Kube  # noqa: E402
from meshctl.domain.dataplane import splits_in  # noqa: E402
from meshctl.domain.spec import Rollout  # noqa: E402
from meshctl.domain.traffic import TrafficSplit, Weights  # noqa: E402
from meshctl.domain.validation import load_document  # noqa: E402
from testworld.istio import GATEWAY, IstioWorld  # noqa: E402
from testworld.kube import KubeWorld  # noqa: E402

SECTION = "## Istio tier: weight propagation through istiod"


def rollout(ns: str) -> Rollout:
    found = load_document({
        "apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"service": "web", "workloadRef": {"name": "web"},
                 "trafficRouting": {"istio": {
                     "virtualService": {"name": "web", "routes": ["primary"]},
                     "destinationRule": {"name": "web", "stableSubset": "stable",
                                         "canarySubset": "canary"}}},
                 "strategy": {"canary": {"steps": [{"setWeight": 10}]}}}})
    assert isinstance(found, Rollout)
    return found


def seed(kube: KubeWorld, istio: IstioWorld, ns: str) -> None:
    istio.subset_service(ns, "web", {"stable": istio.backend("v1"), "canary": istio.backend("v2")})
    kube.apply([
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": "web", "namespace": ns},
         "spec": {"host": "web", "subsets": [
             {"name": "stable", "labels": {"meshctl.io/track": "stable"}}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": "web", "namespace": ns},
         "spec": {"hosts": ["web"], "gateways": [GATEWAY], "http": [
             {"name": "primary", "route": [{"destination": {"host": "web", "subset": "stable"}}]}]}},
    ])


def wait_for(check: object, timeout: float = 30.0, interval: float = 0.005) -> float:
    began = time.perf_counter()
    while not check():  # type: ignore[operator]
        if time.perf_counter() - began > timeout:
            raise SystemExit("timed out waiting for the weights at the data plane")
        time.sleep(interval)
    return time.perf_counter() - began


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def propagation(kube: KubeWorld, istio: IstioWorld, changes: int) -> tuple[list[float], ...]:
    """(decision to Envoy, decision to observed through istiod), in ms, per change."""
    ns = kube.create_namespace(f"bench-istio-{time.monotonic_ns() % 10**6}")
    seed(kube, istio, ns)
    target = rollout(ns)
    plane = IstiodDataPlane(Istiod(istio.istiod_debug_url))
    router = IstioRouter(Kube.from_kubeconfig(kube.kubeconfig_path), target, plane)

    def at_envoy(split: TrafficSplit) -> bool:
        return splits_in(istio.envoy_routes(), target, "primary") == [split]

    router.apply(TrafficSplit(Weights(90, 10)))  # the canary subset, once
    wait_for(lambda: at_envoy(TrafficSplit(Weights(90, 10))))
    envoy_ms, observed_ms = [], []
    rng = random.Random(10)
    current = 10
    for _ in range(changes):
        canary = rng.choice([w for w in range(0, 101, 5) if w != current])
        split = TrafficSplit(Weights.canary_at(canary))
        began = time.perf_counter()
        router.apply(split)
        wait_for(lambda s=split: at_envoy(s))
        envoy_ms.append((time.perf_counter() - began) * 1000)
        wait_for(lambda s=split: router.observed() == s)
        observed_ms.append((time.perf_counter() - began) * 1000)
        current = canary
    return envoy_ms, observed_ms


def rows(debounce: str, envoy_ms: list[float], observed_ms: list[float]) -> str:
    p99 = pct(envoy_ms, 0.99)
    target = f"p99 under 300 ms: {'met' if p99 < 300 else 'not met'}" if not debounce else ""
    label = f"`PILOT_DEBOUNCE_AFTER` {debounce or '100ms (default)'}"
    return (f"| {label} | decision to weight applied at Envoy | "
            f"{statistics.median(envoy_ms):.0f} ms | {p99:.0f} ms | {max(envoy_ms):.0f} ms | "
            f"{target} |\n"
            f"| {label} | decision to observed through istiod | "
            f"{statistics.median(observed_ms):.0f} ms | {pct(observed_ms, 0.99):.0f} ms | "
            f"{max(observed_ms):.0f} ms | |\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=120)
    parser.add_argument("--debounce", action="append", default=None,
                        help="PILOT_DEBOUNCE_AFTER for istiod (repeatable; default: istiod's "
                        "own, then 10ms)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    debounces = args.debounce or ["", "10ms"]
    table = ""
    began = time.monotonic()
    with KubeWorld() as kube:
        kube_up = time.monotonic() - began
        for i, debounce in enumerate(debounces):
            with IstioWorld(kube, debounce=debounce or None) as istio:
                if i == 0:
                    tier_up, timings = time.monotonic() - began, dict(istio.timings)
                table += rows(debounce, *propagation(kube, istio, args.changes))
    text = (f"{SECTION}\n\n`bench/istio_propagation.py`: the test world's kube-apiserver, "
            "istiod (`pilot-discovery`, Istio 1.31-dev) and an Envoy 1.40 gateway it "
            "programs; a subset-level service with two real backends; "
            f"{args.changes} weight changes per row. Start: `IstioRouter.apply()` (a reconcile "
            "pass writes its decision). End: the gateway Envoy's own `/config_dump` has the "
            "weights (polled every 5 ms); and, after it, the controller's view through "
            "istiod's debug API (`/debug/syncz` + generated routes) agrees.\n\n"
            f"{stamp()}\n\n"
            "| istiod | measure | p50 | p99 | max | target |\n"
            "| --- | --- | ---: | ---: | ---: | --- |\n" + table + "\n"
            "| bring-up | seconds |\n| --- | ---: |\n"
            f"| etcd + kube-apiserver + CRDs | {kube_up:.1f} |\n"
            f"| istiod ready (process start to `/ready`) | {timings['istiod']:.1f} |\n"
            f"| Envoy gateway programmed (listener live) | {timings['envoy']:.1f} |\n"
            f"| the whole Istio tier | {tier_up:.1f} |\n")
    print(text)
    if not args.no_write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
