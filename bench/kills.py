"""Crash safety in numbers: kills and faults, and what they broke (goal: nothing).

Against the test world's real kube-apiserver with its cluster tier (Deployment controller,
scheduler, hollow nodes: real Pods and readiness) and a real Prometheus, with
``meshctl controller run`` as its own process (testworld/kills.py):

- failpoints x kills: for each failpoint, a canary (and a failing canary, rolled back)
  during which the controller is killed at that failpoint every time it is reached, up to
  ``--per-failpoint`` times, and started again;
- random kills: one canary with ``--random-kills`` seeded SIGKILLs;
- faults: kube-apiserver restarted mid-canary; Prometheus stopped (SIGKILL, then started
  again on its port and data), or hung (SIGSTOP: slower than any query timeout), during
  analysis: the rollout pauses and resumes by itself; the local mesh's Envoy SIGKILLed
  mid-run (restarted by the run; the split measured through it afterwards);
- the local mesh: ``meshctl rollout run --mesh local`` ended at each failpoint in turn and
  SIGKILLed at random.

Each row counts steps repeated, steps skipped, unsafe states (weight on a canary with no
ready pods, or the canary scaled to 0 under weight) and inconsistent end states. Writes the
section "Crash safety: kills and faults" of bench/RESULTS.md (through bench/results.py).

    python -m bench.kills [--per-failpoint 3] [--random-kills 20] [--seed 12]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.results import stamp, write_section
from meshctl.localmesh.prometheus import Prometheus, ScrapeTarget
from meshctl.ops.failpoints import NAMES
from testworld.cluster import ClusterTier
from testworld.istio_exporter import IstioExporter
from testworld.kills import (
    LOCAL_FAILPOINTS,
    Findings,
    Run,
    apiserver_restart_run,
    envoy_kill_run,
    failpoint_run,
    local_kill_run,
    prometheus_fault_run,
    random_kill_run,
)
from testworld.kube import KubeWorld

HEADING = "## Crash safety: kills and faults"
# Never reached in that scenario. These Rollouts have no fresh baseline: its failpoint is
# killed at in tests/integration/test_fresh_baseline_cluster.py.
NOT_IN = {"canary": {"abort", "baseline-scaled"}, "rollback": {"promotion", "baseline-scaled"}}


def row(scenario: str, run: Run, seconds: float) -> str:
    f = run.findings
    ok = "yes" if f.clean else "NO: " + "; ".join(f.notes)[:200]
    if f.clean and run.missed and not run.kills:
        ok = "not killed: the failpoint was never reached"
    fired = f" ({', '.join(sorted(set(run.fired)))})" if run.fired else ""
    return (f"| {scenario}{fired} | {run.kills} | {f.repeated} | {f.skipped} | {f.unsafe} | "
            f"{f.inconsistent} | {seconds:.0f} s | {ok} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-failpoint", type=int, default=3)
    parser.add_argument("--random-kills", type=int, default=20)
    parser.add_argument("--local-kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--no-write", action="store_true", help="Print, do not write RESULTS.md.")
    args = parser.parse_args()
    rows: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="meshctl-bench-kills-"))

    def timed(scenario: str, go: Callable[[], Run]) -> None:
        """Run one scenario; one that does not finish is a row too (inconsistent end)."""
        began = time.monotonic()
        try:
            run = go()
        except AssertionError as exc:
            run = Run(Findings(inconsistent=1, notes=[f"did not finish: {exc}"]))
        rows.append(row(scenario, run, time.monotonic() - began))
        print(rows[-1], file=sys.stderr, flush=True)

    with KubeWorld() as world, ClusterTier(world, nodes=2), IstioExporter() as exporter:
        prometheus = Prometheus([ScrapeTarget("istio", exporter.address)], workdir=work)
        prometheus.start()
        try:
            for scenario, error_rate in (("canary", 0.0), ("rollback", 0.5)):
                for point in NAMES:
                    if point in NOT_IN[scenario]:
                        continue
                    ns = world.create_namespace(f"kills-{scenario}-{point}")
                    exporter.set(ns, "web", "web", rps=40, error_rate=0.0, latency_ms=5)
                    exporter.set(ns, "web", "web-canary", rps=40, error_rate=error_rate,
                                 latency_ms=5)
                    timed(f"controller, {scenario}, killed at `{point}` each time",
                          lambda ns=ns, point=point, scenario=scenario: failpoint_run(
                              world, ns, prometheus.url, work, (point,) * args.per_failpoint,
                              rollback=scenario == "rollback", stop_at_miss=True))
            ns = world.create_namespace("kills-random")
            exporter.set(ns, "web", "web", rps=40, error_rate=0.0, latency_ms=5)
            exporter.set(ns, "web", "web-canary", rps=40, error_rate=0.0, latency_ms=5)
            timed(f"controller, canary, {args.random_kills} random SIGKILLs (seed {args.seed})",
                  lambda: random_kill_run(world, ns, prometheus.url, work, args.seed,
                                          args.random_kills))
            ns = world.create_namespace("faults-apiserver")
            exporter.set(ns, "web", "web", rps=40, error_rate=0.0, latency_ms=5)
            exporter.set(ns, "web", "web-canary", rps=40, error_rate=0.0, latency_ms=5)
            timed("fault: kube-apiserver SIGKILLed mid-canary, back 3 s later (same etcd)",
                  lambda: apiserver_restart_run(world, ns, prometheus.url, work))
            for fault in ("stopped", "hung"):
                ns = world.create_namespace(f"faults-prometheus-{fault}")
                exporter.set(ns, "web", "web", rps=40, error_rate=0.0, latency_ms=5)
                exporter.set(ns, "web", "web-canary", rps=40, error_rate=0.0, latency_ms=5)
                own = Prometheus([ScrapeTarget("istio", exporter.address)],
                                 workdir=work / f"p-{fault}")
                own.start()
                try:
                    timed(f"fault: Prometheus {fault} during analysis (pauses; resumes "
                          "by itself when it answers)",
                          lambda own=own, fault=fault, ns=ns: prometheus_fault_run(
                              world, ns, own, work, fault))
                finally:
                    own.stop()
        finally:
            prometheus.stop()
    timed("fault: Envoy SIGKILLed under `rollout run --mesh local` at 50/50 (restarted on "
          "its ports; split measured after)",
          lambda: envoy_kill_run(work / "envoy-kill" / "state", work / "envoy-kill.log").run)
    timed(f"`rollout run --mesh local`, each failpoint in turn + {args.local_kills} random "
          f"SIGKILLs (seed {args.seed})",
          lambda: local_kill_run(work / "local", work / "local.log", LOCAL_FAILPOINTS,
                                 args.local_kills, args.seed))
    text = "\n".join([
        HEADING, "",
        "`python -m bench.kills`: `meshctl controller run` as its own process on the test "
        "world's real kube-apiserver (real Prometheus scraping Istio-named series), killed "
        "by failpoints (`MESHCTL_FAILPOINTS`, `os._exit` mid-pass) or SIGKILL and started "
        "again; judged from the VirtualService, Deployment and Rollout writes seen through "
        "watches and the Rollout's `WeightChanged` events (testworld/kills.py). Goal: 0 in "
        "every column.",
        "", stamp(), "",
        "| scenario | kills | steps repeated | steps skipped | unsafe states | inconsistent "
        "end | time | clean |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        *rows, "",
    ])
    print(text)
    if not args.no_write:
        write_section(HEADING, text)


if __name__ == "__main__":
    main()
