"""Rollback floor on the local mesh: from a fault starting to 100% stable at the Envoy.

The demo's rollout (10% canary, background analysis from step 1, 1 s measurements over a
4 s window, ``minRequests`` 10, 60 requests/s) with real Envoy, meshctl's xDS server and
Prometheus scraping every 1 s. Two faults:

- a hard failure: half of the canary's requests fail (far above the 99.9% SLO); the fast
  availability check should roll back within 2 s;
- the demo's breach: +85 ms and 5% errors. At 6 canary requests/s a 5% error rate gives
  one error every ~3 s, so this one is decided by the latency window, as before.

    nice python -m bench.rollback_floor [--runs 3] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.results import machine, write_section
from meshctl.localmesh.mesh import SampleApp
from meshctl.ops.demo import run_scenario

HEADING = "## Rollback floor"
FAULTS = {
    "hard failure: 50% errors": {"error_rate": 0.5},
    "demo breach: +85 ms, 5% errors": {"latency_ms": 85.0, "error_rate": 0.05},
}


def rollbacks(fault: dict[str, float], runs: int) -> list[float]:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            scenario = run_scenario(f"floor-{i}", SampleApp("v3", latency_ms=5.0),
                                    lambda d: None, lambda e: None, Path(tmp),
                                    fault_at_step=1, fault=fault)
            if scenario.time_to_rollback_seconds is not None:
                times.append(scenario.time_to_rollback_seconds)
    return times


def section(results: dict[str, list[float]], runs: int) -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = ["| fault | runs rolled back | seconds | median | target |",
            "| --- | ---: | --- | ---: | --- |"]
    for name, times in results.items():
        median = statistics.median(times) if times else float("nan")
        target = "under 2 s: " + ("met" if times and max(times) < 2 else "**not met**") \
            if name.startswith("hard") else "-"
        rows.append(f"| {name} | {len(times)} of {runs} | "
                    f"{', '.join(f'{t:.2f}' for t in times)} | {median:.2f} s | {target} |")
    return "\n".join([
        HEADING, "",
        "`nice python -m bench.rollback_floor`: the demo's rollout on the local mesh (real "
        "Envoy, meshctl's xDS server, Prometheus scraping Envoy every 1 s; 10% canary, "
        "background analysis every 1 s over a 4 s window, minRequests 10, 60 requests/s); "
        "from the fault starting to 100% stable applied at the Envoy (read on each pass, "
        "every 0.25 s at most).", "",
        f"Machine: {machine()}. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average "
        f"{load} (1, 5, 15 min) at the end.", "",
        *rows, "",
        "A hard failure is caught by the fast availability check (the availability over "
        "two measurement intervals, first measured once those have passed, failing above "
        "twice the error budget with at least minRequests requests): its 2 s window, "
        "Envoy's 1 s stats flush and 1 s scrape, one pass. The demo's breach sends one error every "
        "~3 s to the canary, too few for the fast check, so it still waits for the latency "
        "window (p95 over 4 s, first measured one window after the run began).", "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print JSON only")
    args = parser.parse_args()
    results = {name: rollbacks(fault, args.runs) for name, fault in FAULTS.items()}
    json.dump(results, sys.stdout, indent=2)
    print()
    if not args.no_write:
        write_section(HEADING, section(results, args.runs))


if __name__ == "__main__":
    main()
