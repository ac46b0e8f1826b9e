"""What a hostile input file costs: `lint`, `rollout plan` and `policy audit -f` run as their
own processes on each file of tests/unit/test_files.py's hostile set (an alias bomb, 20 000
levels of flow nesting, 300 of block nesting, binary, UTF-16 without a byte order mark,
Latin-1, 50 MB of valid YAML) and on a valid Rollout for comparison; for each, the exit
code, the wall time and the process's peak resident memory (VmHWM, read while it runs).
Goal: exit 2 (never 70), well under a few seconds, a few hundred MB at most.

    python -m bench.hostile_inputs [--no-write]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.results import stamp, write_section
from tests.unit.test_files import hostile

HEADING = "## Hostile input files"
MESHCTL = str(Path(sys.executable).with_name("meshctl"))
COMMANDS = (("lint",), ("rollout", "plan", "-f"), ("policy", "audit", "-f"))
VALID = Path(__file__).resolve().parent.parent / "rollouts" / "canary-subsets.yaml"


def measure(argv: list[str]) -> tuple[int, float, float]:
    """(exit code, seconds, peak RSS in MB) of one process. The peak is the largest VmHWM
    read from /proc every 5 ms while it runs (wait4's ru_maxrss would count the parent's
    memory at fork, which exec carries over)."""
    began = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL)
    peak = 0
    while process.poll() is None:
        peak = max(peak, _hwm_kib(process.pid))
        time.sleep(0.005)
    return process.returncode, time.monotonic() - began, peak / 1024


def _hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as status:
            line = next((x for x in status if x.startswith("VmHWM:")), "VmHWM: 0 kB")
    except OSError:
        return 0
    return int(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="Print, do not write RESULTS.md.")
    args = parser.parse_args()
    rows = []
    worst = (0.0, 0.0)
    with tempfile.TemporaryDirectory(prefix="meshctl-bench-hostile-") as tmp:
        files = {"valid Rollout (for comparison)": VALID, **hostile(Path(tmp))}
        for name, path in files.items():
            size = path.stat().st_size
            for command in COMMANDS:
                code, seconds, rss = measure([MESHCTL, *command, str(path)])
                if path != VALID:
                    worst = (max(worst[0], seconds), max(worst[1], rss))
                rows.append(f"| {name} | {size / 1024:,.0f} KiB | `{' '.join(command)}` | "
                            f"{code} | {seconds:.2f} s | {rss:.0f} MB |")
                print(rows[-1], file=sys.stderr, flush=True)
    text = "\n".join([
        HEADING, "",
        "`python -m bench.hostile_inputs`: each command as its own process (`meshctl` "
        "start-up included) on each hostile file of tests/unit/test_files.py; peak memory "
        "is the process's VmHWM, read from /proc every 5 ms while it runs. Goal: exit 2 "
        "(never 70), a few seconds, a few hundred MB at most. The valid Rollout exits 0 "
        "(`lint`, `plan`) or with `policy audit`'s findings code.",
        "", stamp(), "",
        "| file | size | command | exit | time | peak RSS |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
        *rows, "",
        f"Worst over the hostile files: {worst[0]:.2f} s, {worst[1]:.0f} MB.", "",
    ])
    print(text)
    if not args.no_write:
        write_section(HEADING, text)


if __name__ == "__main__":
    main()
