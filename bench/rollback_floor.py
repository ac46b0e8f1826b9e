"""Rollback floor on the local mesh: from a fault starting to 100% stable at the Envoy.

The demo's rollout (10% canary, background analysis from step 1, 1 s measurements over a
4 s window, ``minRequests`` 10, 60 requests/s, so about 6 requests/s to the canary) with
real Envoy, meshctl's xDS server and Prometheus scraping every 1 s. Three faults:

- a hard failure while the canary already serves: half of its requests fail, 3 s (plus
  i/runs s in run i, so the runs meet it at different points of the scrape interval) into
  step 1 (far above the 99.9% SLO, with enough requests); the fast availability check
  should roll back within 2 s;
- the same hard failure from the first request of step 1: the check counts only since
  its run began, so it waits until the canary has had ``minRequests`` requests (10 at
  6/s: 1.7 s) and Prometheus has scraped them;
- the demo's breach: +85 ms and 5% errors: one error every ~3 s to the canary, which
  the fast check fails on when one falls in its span, else the latency window decides.

    nice python -m bench.rollback_floor [--runs 6] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.results import stamp, write_section
from meshctl.localmesh.mesh import SampleApp
from meshctl.ops.demo import run_scenario

HEADING = "## Rollback floor"
FAULTS: dict[str, dict[str, Any]] = {
    "hard failure: 50% errors, 3 s (+ i/runs s) into the step": {"fault": {"error_rate": 0.5},
                                                    "fault_delay": 3.0},
    "hard failure: 50% errors from the step's first request": {"fault": {"error_rate": 0.5}},
    "demo breach: +85 ms, 5% errors": {"fault": {"latency_ms": 85.0, "error_rate": 0.05}},
}


def rollbacks(fault: dict[str, Any], runs: int) -> list[float]:
    """A delayed fault starts a further i/runs s later in run i: the scrapes and the
    measurements keep the same phase from run to run, so without it every run would meet
    the fault at the same point of the scrape interval."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            spread = dict(fault)
            if "fault_delay" in spread:
                spread["fault_delay"] += i / runs
            scenario = run_scenario(f"floor-{i}", "rolled_back", SampleApp("v3", latency_ms=5.0),
                                    lambda d: None, lambda e: None, Path(tmp),
                                    fault_at_step=1, **spread)
            if scenario.time_to_rollback_seconds is not None:
                times.append(scenario.time_to_rollback_seconds)
    return times


def section(results: dict[str, list[float]], runs: int) -> str:
    rows = ["| fault | runs rolled back | seconds | median | target |",
            "| --- | ---: | --- | ---: | --- |"]
    for name, times in results.items():
        median = statistics.median(times) if times else float("nan")
        target = "under 2 s: " + ("met" if times and max(times) < 2 else "**not met**") \
            if name.startswith("hard failure: 50% errors, 3 s") else "-"
        rows.append(f"| {name} | {len(times)} of {runs} | "
                    f"{', '.join(f'{t:.2f}' for t in times)} | {median:.2f} s | {target} |")
    return "\n".join([
        HEADING, "",
        "`nice python -m bench.rollback_floor`: the demo's rollout on the local mesh (real "
        "Envoy, meshctl's xDS server, Prometheus scraping Envoy every 1 s; 10% canary, "
        "background analysis every 1 s over a 4 s window, minRequests 10, 60 requests/s); "
        "from the fault starting to 100% stable applied at the Envoy (read on each pass, "
        "every 0.25 s at most).", "",
        stamp(), "",
        *rows, "",
        "A hard failure is caught by the fast availability check: twice every measurement "
        "interval (every 0.5 s), the canary's availability counted since the later of its run's "
        "start and four intervals ago (sample differences with PromQL's `@`, no rate "
        "extrapolation), failing above twice the error budget once the canary has had "
        "minRequests requests in that span. What it counts runs from each counter's "
        "first scrape after the span began to its last scrape, so up to two scrapes less "
        "than the span: at 6 requests/s, a span of two intervals held fewer than "
        "minRequests most of the time and the check seldom answered (the windowed "
        "availability then caught hard failures); four hold about 20. What a rollback "
        "waits for: the canary's first failed request (at 6 requests/s with half failing, "
        "a third of a second after the fault on average, and more than a second in one "
        "fault of twenty), the next 1 s scrape (Envoy's admin endpoint serves live "
        "counters), the next fast measurement (every half interval: at most 0.5 s; "
        "measured once an interval, three runs gave 1.30, 2.33 and 1.32 s) and one pass. "
        "The runs' delayed faults start i/runs s apart, so they meet the scrape at "
        "different points of its interval. From "
        "the step's first request it must also wait for minRequests (10 requests at 6/s)."
        " The user trades noise for speed: the span is short, and only minRequests keeps "
        "a few unlucky requests from rolling back a good version (raise it for services "
        "with bursty errors): here one 5xx among 20 requests in the span is a 5% "
        "error ratio, far above twice the 0.1% budget. So the demo's breach (one error "
        "every ~3 s to the canary) is caught by the fast check when an error falls in a "
        "span with enough requests, and otherwise by the latency window (p95 over 4 s, "
        "first measured one window after the "
        "run began).", "", "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--no-write", action="store_true", help="print JSON only")
    args = parser.parse_args()
    results = {name: rollbacks(fault, args.runs) for name, fault in FAULTS.items()}
    json.dump(results, sys.stdout, indent=2)
    print()
    if not args.no_write:
        write_section(HEADING, section(results, args.runs))


if __name__ == "__main__":
    main()
