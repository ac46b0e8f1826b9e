"""Where a process's CPU goes: py-spy samples, summed into a few named groups.

py-spy is not a dependency of meshctl: a benchmark given ``--py-spy PATH`` (a py-spy binary,
e.g. from its own virtual environment) records the process it measures with it::

    with Sampler(py_spy, pid, Path("controller.raw")):
        ...                                   # the load
    rows = groups(Path("controller.raw"))     # [(group, share of samples), ...]

Samples are of threads running Python (idle threads, waiting on a socket or a lock, are
not sampled), so the shares are of the process's busy time. A sample counts for every group
one of its frames belongs to (shares are inclusive and may add up to more than 100%).
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

Frames = list[str]


def _file(frame: str) -> str:
    """The file of a frame as py-spy writes it: ``function (file:line)``, the file relative
    to its ``sys.path`` entry (``copy.py``, ``kubernetes/client/rest.py``)."""
    return frame.rsplit(" (", 1)[-1].rsplit(":", 1)[0]


def _in(fs: Frames, *prefixes: str) -> bool:
    return any(_file(f).startswith(prefixes) for f in fs)


def _calls(fs: Frames, function: str, file: str) -> bool:
    """A frame of ``function`` (a method's name without its class) in ``file``."""
    return any(f.split(" (", 1)[0].rsplit(".", 1)[-1] == function and _file(f).endswith(file)
               for f in fs)


# (group, does a sample's frames belong to it)
GROUPS: list[tuple[str, Callable[[Frames], bool]]] = [
    ("reconcile passes (`reconcile_object`)",
     lambda fs: _calls(fs, "reconcile_object", ".py")),
    ("... of which the pure engine (`meshctl/domain`)",
     lambda fs: _calls(fs, "reconcile_object", ".py") and _in(fs, "meshctl/domain/")),
    ("watches (list, then follow; the cache and the queue)",
     lambda fs: _calls(fs, "_watch", "controller/manager.py")),
    ("leader election (Lease renewals)", lambda fs: _in(fs, "meshctl/controller/leader.py")),
    ("Events (written from their own thread)",
     lambda fs: any(f.startswith("EventWriter._run ") for f in fs)),
    ("the `kubernetes` client and urllib3", lambda fs: _in(fs, "kubernetes/", "urllib3/")),
    ("meshctl's own HTTP client (`adapters/rest.py`)",
     lambda fs: _in(fs, "meshctl/adapters/rest.py")),
    ("TLS and sockets (`ssl`, `http.client`, `socket`)",
     lambda fs: _in(fs, "ssl.py", "http/client.py", "socket.py")),
    ("... of which TLS handshakes (new connections)",
     lambda fs: any(f.split(" (", 1)[0].endswith("do_handshake") for f in fs)),
    ("JSON encoding and decoding", lambda fs: _in(fs, "json/")),
    ("deep copies (`copy.deepcopy`)", lambda fs: _calls(fs, "deepcopy", "copy.py")),
]


# Leaves where a thread waits rather than computes: py-spy does not always tell a thread
# blocked in a read from a running one, so these are counted apart.
WAITING = ("SSLSocket.read ", "SSLSocket.recv_into ", "SSLSocket.recv ", "socket.recv_into ",
           "_PollLikeSelector.select ", "Condition.wait ", "Event.wait ", "Thread.join ")


def parse(raw: Path, waiting: bool = False) -> list[tuple[Frames, int]]:
    """py-spy's raw (collapsed) output: ``frame;frame;... count`` per line; the samples of
    threads computing (``waiting``: those of threads waiting for an answer)."""
    out = []
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            frames = stack.split(";")
            if frames[-1].startswith(WAITING) == waiting:
                out.append((frames, int(count)))
    return out


def groups(raw: Path) -> list[tuple[str, float, int]]:
    """(group, share of all samples, samples) for every group, in :data:`GROUPS` order."""
    stacks = parse(raw)
    total = sum(n for _, n in stacks) or 1
    return [(name, sum(n for fs, n in stacks if test(fs)) / total,
             sum(n for fs, n in stacks if test(fs))) for name, test in GROUPS]


def total_samples(raw: Path) -> int:
    return sum(n for _, n in parse(raw))


def table(raw: Path, rate: int) -> list[str]:
    """Markdown rows: each group's share of the computing samples and its CPU seconds, and
    the seconds threads spent waiting for the API server's answers."""
    rows = ["| where | share of CPU samples | CPU seconds |", "| --- | ---: | ---: |"]
    for name, share, samples in groups(raw):
        rows.append(f"| {name} | {share:.0%} | {samples / rate:.1f} |")
    rows.append(f"| all CPU samples | 100% | {total_samples(raw) / rate:.1f} |")
    waited = sum(n for _, n in parse(raw, waiting=True)) / rate
    rows.append(f"| (thread-seconds waiting: answers from the API server, queue, timers) | "
                f"| {waited:.1f} |")
    return rows


class Sampler:
    """py-spy recording ``pid`` into ``raw`` while the block runs."""

    def __init__(self, py_spy: str | None, pid: int, raw: Path, rate: int = 100) -> None:
        self.py_spy, self.pid, self.raw, self.rate = py_spy, pid, raw, rate
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Sampler:
        if self.py_spy:
            self._proc = subprocess.Popen(
                [self.py_spy, "record", "--pid", str(self.pid), "--format", "raw",
                 "--rate", str(self.rate), "--nonblocking", "--output", str(self.raw)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    @property
    def recorded(self) -> bool:
        return self.raw.exists() and self.raw.stat().st_size > 0


HEADING = "## Where the controller's CPU goes"


def compare(before: Path, after: Path, rate: int = 100) -> list[str]:
    """Rows: each group's share of CPU samples in two profiles, and their CPU seconds."""
    rows = ["| where | before: share | before: CPU s | after: share | after: CPU s |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for (name, s1, n1), (_, s2, n2) in zip(groups(before), groups(after), strict=True):
        rows.append(f"| {name} | {s1:.0%} | {n1 / rate:.1f} | {s2:.0%} | {n2 / rate:.1f} |")
    t1, t2 = total_samples(before) / rate, total_samples(after) / rate
    w1 = sum(n for _, n in parse(before, waiting=True)) / rate
    w2 = sum(n for _, n in parse(after, waiting=True)) / rate
    rows.append(f"| all CPU samples | 100% | {t1:.1f} | 100% | {t2:.1f} |")
    rows.append(f"| (thread-seconds waiting for answers, the queue, timers) | | {w1:.1f} | | "
                f"{w2:.1f} |")
    return rows


def main() -> None:
    """``python -m bench.profile BEFORE.raw AFTER.raw "how they were taken"``: the section
    comparing two profiles (``bench.controller_load --py-spy ... --profile-out``)."""
    import sys

    from bench.controller_idle import stamp
    from bench.results import write_section

    before, after, how = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    write_section(HEADING, "\n".join([
        HEADING, "", f"`python -m bench.profile`: py-spy samples (100/s) of the controller "
        f"process during the timed runs of `bench.controller_load`, summed by where they were "
        f"({how}). Threads blocked on an answer are counted apart, in thread-seconds; a "
        "sample counts for every group one of its frames is in.", "", stamp(), "",
        *compare(before, after), "",
    ]))


if __name__ == "__main__":
    main()
