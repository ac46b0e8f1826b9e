"""Local-mesh benchmarks: weight propagation, split accuracy, rollback speed.

    python -m bench.local_mesh [--rollbacks 3] [--propagations 200]

- weight propagation: from the decision (``router.apply`` called) to Envoy applying the
  split (its ACK; then confirmed in ``/config_dump``), p50/p99 over many changes;
- split accuracy: the share of requests each version gets at several weights, against the
  99% binomial interval;
- rollback speed: the demo's SLO-breach scenario (1 s scrape): from the fault starting to
  100% stable at the Envoy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from meshctl.domain.traffic import TrafficSplit, Weights
from meshctl.localmesh.load import binomial_interval, run_load
from meshctl.localmesh.mesh import LocalMesh, SampleApp
from meshctl.ops.demo import run_scenario


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def propagation(count: int) -> dict[str, Any]:
    apply_ms, confirm_ms = [], []
    with LocalMesh(prometheus=False) as mesh:
        for i in range(count):
            split = TrafficSplit(Weights.canary_at((i * 7) % 101))
            began = time.perf_counter()
            mesh.router.apply(split)  # returns on Envoy's ACK
            acked = time.perf_counter()
            while mesh.router.observed() != split:
                pass
            confirmed = time.perf_counter()
            apply_ms.append((acked - began) * 1000)
            confirm_ms.append((confirmed - began) * 1000)
    return {"changes": count,
            "ack_ms": {"p50": round(pct(apply_ms, 0.5), 2), "p99": round(pct(apply_ms, 0.99), 2)},
            "confirmed_in_config_dump_ms": {"p50": round(pct(confirm_ms, 0.5), 2),
                                            "p99": round(pct(confirm_ms, 0.99), 2)}}


def accuracy(requests: int) -> list[dict[str, Any]]:
    rows = []
    with LocalMesh(stable=SampleApp("v1", latency_ms=0), canary=SampleApp("v2", latency_ms=0),
                   prometheus=False) as mesh:
        for canary in (1, 10, 25, 50, 90):
            mesh.router.apply(TrafficSplit(Weights.canary_at(canary)))
            stats = run_load(mesh.url, requests, concurrency=4)
            got = stats.by_version.get("v2", 0)
            low, high = binomial_interval(stats.answered, canary / 100, 0.99)
            rows.append({"canary_weight": canary, "requests": stats.answered, "canary": got,
                         "interval_99": [low, high], "inside": low <= got <= high})
    return rows


def rollbacks(count: int) -> dict[str, Any]:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(count):
            scenario = run_scenario(f"breach-{i}", "rolled_back", SampleApp("v3", latency_ms=5.0),
                                    lambda d: None, lambda e: None, Path(tmp),
                                    fault_at_step=1, fault={"latency_ms": 85.0, "error_rate": 0.05})
            if scenario.time_to_rollback_seconds is not None:
                times.append(scenario.time_to_rollback_seconds)
    return {"runs": count, "seconds": times,
            "median": statistics.median(times) if times else None,
            "max": max(times) if times else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rollbacks", type=int, default=3)
    parser.add_argument("--propagations", type=int, default=200)
    parser.add_argument("--requests", type=int, default=4000)
    args = parser.parse_args()
    out = {"weight_propagation": propagation(args.propagations),
           "split_accuracy": accuracy(args.requests),
           "rollback": rollbacks(args.rollbacks)}
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
