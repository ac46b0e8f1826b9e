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

from bench.results import machine, write_section  # noqa: E402
from meshctl.adapters.cluster import IstioRouter  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=120)
    parser.add_argument("--debounce", default=None, help="PILOT_DEBOUNCE_AFTER for istiod")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    began = time.monotonic()
    with KubeWorld() as kube:
        kube_up = time.monotonic() - began
        with IstioWorld(kube, debounce=args.debounce) as istio:
            tier_up = time.monotonic() - began
            ns = kube.create_namespace("bench-istio")
            seed(kube, istio, ns)
            target = rollout(ns)
            plane = IstiodDataPlane(Istiod(istio.istiod_debug_url))
            router = IstioRouter(Kube.from_kubeconfig(kube.kubeconfig_path), target, plane)

            def at_envoy(split: TrafficSplit) -> bool:
                return splits_in(istio.envoy_routes(), target, "primary") == [split]

            router.apply(TrafficSplit(Weights(90, 10)))  # the canary subset, once
            wait_for(lambda: at_envoy(TrafficSplit(Weights(90, 10))))
            envoy_s, observed_s = [], []
            rng = random.Random(10)
            current = 10
            for _ in range(args.changes):
                canary = rng.choice([w for w in range(0, 101, 5) if w != current])
                split = TrafficSplit(Weights.canary_at(canary))
                began_change = time.perf_counter()
                router.apply(split)
                envoy_s.append(time.perf_counter() - began_change
                               + wait_for(lambda s=split: at_envoy(s)))
                observed_s.append(time.perf_counter() - began_change
                                  + wait_for(lambda s=split: router.observed() == s))
                current = canary
    ms = [v * 1000 for v in envoy_s]
    seen = [v * 1000 for v in observed_s]
    debounce = args.debounce or "100ms (default)"
    text = (f"{SECTION}\n\n`bench/istio_propagation.py`: the test world's kube-apiserver, "
            "istiod (`pilot-discovery`, Istio 1.31-dev) and an Envoy 1.40 gateway it "
            "programs; a subset-level service with two real backends. "
            f"{len(ms)} weight changes; istiod `PILOT_DEBOUNCE_AFTER` {debounce}. "
            "Start: `IstioRouter.apply()` (the reconcile pass writes its decision). End: the "
            "gateway Envoy's `/config_dump` has the weights (polled every 5 ms); then "
            "the controller's view through istiod's debug API agrees.\n\n"
            f"Machine: {machine()}; {time.strftime('%Y-%m-%d')}.\n\n"
            "| measure | p50 | p99 | max | target |\n| --- | ---: | ---: | ---: | --- |\n"
            f"| decision to weight applied at Envoy | {statistics.median(ms):.0f} ms | "
            f"{pct(ms, 0.99):.0f} ms | {max(ms):.0f} ms | p99 under 300 ms: "
            f"{'met' if pct(ms, 0.99) < 300 else 'not met'} |\n"
            f"| decision to observed through istiod | {statistics.median(seen):.0f} ms | "
            f"{pct(seen, 0.99):.0f} ms | {max(seen):.0f} ms | |\n\n"
            "| bring-up | seconds |\n| --- | ---: |\n"
            f"| etcd + kube-apiserver + CRDs | {kube_up:.1f} |\n"
            f"| istiod ready (process start to `/ready`) | {istio.timings['istiod']:.1f} |\n"
            f"| Envoy gateway programmed (listener live) | {istio.timings['envoy']:.1f} |\n"
            f"| the whole Istio tier | {tier_up:.1f} |\n")
    print(text)
    if not args.no_write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
