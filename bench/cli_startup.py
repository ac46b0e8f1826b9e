"""CLI start-up: wall time of `meshctl --help` and `meshctl rollout status NAME` (against the
test world's real kube-apiserver), each as a ratio to `python -c pass` measured in the same
run, interleaved, median of several runs. Targets (design, section 10): --help under
150 ms, status under 400 ms.

    .venv/bin/python bench/cli_startup.py [--runs 15] [--no-write]

Writes the table to bench/RESULTS.md, section "CLI start-up" (other sections are kept).
Needs the test world (`make testenv`).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import stamp, write_section  # noqa: E402
from testworld.kube import KubeWorld  # noqa: E402

SECTION = "## CLI start-up"
TARGETS_MS = {"meshctl --help": 150.0, "meshctl rollout status web": 400.0}


def rollout(namespace: str) -> dict[str, object]:
    return {
        "apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"service": "web", "workloadRef": {"name": "web"},
                 "template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}},
                 "trafficRouting": {"istio": {"virtualService": {"name": "web"},
                                              "stableService": "web",
                                              "canaryService": "web-canary"}},
                 "strategy": {"canary": {"steps": [{"setWeight": 20}, {"analysis": {}},
                                                   {"setWeight": 50}]}}},
    }


STATUS = {"phase": "Progressing", "currentStep": 1, "observedGeneration": 1,
          "weights": {"stable": 80, "canary": 20, "observed": {"stable": 80, "canary": 20}},
          "analysis": [{"name": "step-1", "startedAt": "2026-01-01T00:00:00Z", "metrics": [
              {"name": "availability", "measurements": [
                  {"at": "2026-01-01T00:00:05Z", "outcome": "Successful", "value": 1.0}]},
              {"name": "latency-p95", "measurements": [
                  {"at": "2026-01-01T00:00:05Z", "outcome": "Successful", "value": 7.5}]}]}],
          "message": "step 1 (analysis): 1 of 2 measurements taken"}


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr}")
    return took


def measure(commands: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():  # warm the page cache once, not counted
        timed(command)
    for _ in range(runs):
        for name, command in commands.items():  # interleaved: drift hits all alike
            samples[name].append(timed(command))
    return samples


def table(samples: dict[str, list[float]]) -> str:
    base = statistics.median(samples["python -c pass"])
    lines = ["| command | median | min | max | ratio to `python -c pass` | target | met |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, values in samples.items():
        median = statistics.median(values)
        target = TARGETS_MS.get(name)
        lines.append(
            f"| `{name}` | {median * 1000:.0f} ms | {min(values) * 1000:.0f} ms | "
            f"{max(values) * 1000:.0f} ms | {median / base:.1f}x | "
            f"{f'{target:.0f} ms' if target else '-'} | "
            f"{('yes' if median * 1000 < target else 'no') if target else '-'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    meshctl = str(Path(sys.executable).parent / "meshctl")
    with KubeWorld() as world:
        namespace = world.create_namespace("bench-cli")
        world.apply(rollout(namespace))
        world.request("PATCH", f"/apis/meshctl.io/v1alpha1/namespaces/{namespace}/rollouts/web/"
                      "status", {"status": STATUS}, content_type="application/merge-patch+json")
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "meshctl --help": [meshctl, "--help"],
            "meshctl rollout status web": [meshctl, "--kubeconfig", str(world.kubeconfig_path),
                                           "-n", namespace, "rollout", "status", "web"],
        }
        samples = measure(commands, args.runs)
    result = table(samples)
    text = (f"{SECTION}\n\n`bench/cli_startup.py`: wall time of each command as a fresh "
            f"process, {args.runs} runs each, interleaved, after one warm-up run; "
            "`rollout status` reads a Rollout from the test world's real kube-apiserver "
            "over TLS.\n\n"
            f"{stamp()}\n\n{result}\n")
    print(text)
    if not args.no_write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
