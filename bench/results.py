"""The one writer of bench/RESULTS.md: each benchmark owns one ``## `` section and replaces
only that section; the others are kept as they are."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = "# Benchmark results\n\nEach section is written by its script in bench/.\n"


def write_section(heading: str, text: str, path: Path = RESULTS) -> None:
    """Replace the section that starts with ``heading`` (a ``## `` line) by ``text``, or
    append ``text`` when there is no such section yet."""
    current = path.read_text(encoding="utf-8") if path.exists() else HEADER
    start = current.find(heading)
    if start < 0:
        updated = current.rstrip("\n") + "\n\n" + text
    else:
        end = current.find("\n## ", start + len(heading))
        rest = current[end + 1:] if end >= 0 else ""
        updated = current[:start] + text.rstrip("\n") + ("\n\n" + rest if rest else "")
    path.write_text(updated.rstrip("\n") + "\n", encoding="utf-8")


def stamp() -> str:
    """The line every section carries: the machine, when it ran, and how busy the
    machine was (the load average as the benchmark ended)."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"Machine: {machine()}. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
            f"load average {load} (1, 5, 15 min) at the end.")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs (nproc), {cpu}; Python {platform.python_version()}; "
            f"{platform.system()} {platform.release()}")
