"""Child processes of the local mesh, and small waiting helpers.

Every server the local mesh runs (Envoy, Prometheus, the sample apps) is a
:class:`ManagedProcess`: started in its own process group (``start_new_session``) with its
output in a log file, and stopped by signalling the whole group (SIGTERM, then SIGKILL), so
nothing it forked is left behind. Processes still running when the interpreter exits are
stopped by an ``atexit`` hook, a last line of defence behind the context managers.

A process is only as safe as its parent: if meshctl is killed with SIGKILL nothing can run.
Front-ends that run a mesh turn SIGTERM into an exception so the context managers unwind,
and keep a :class:`Ledger` (``with recording_children(path):``): every child started and
every work directory made is written to a file, so the next run finds what a killed run
left and stops it (a recorded pid counts only if the process there started at the recorded
time since the same boot: a reused pid is never signalled). A SIGKILL can land between a
child's start and its record, so every child also carries the ledger's path in its
environment (:data:`RUN_MARK`, inherited by anything it forks), and the next run stops the
processes that carry it too.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

RUN_MARK = "MESHCTL_LOCAL_RUN"  # in every child's environment: the path of its run's ledger


class LocalMeshError(RuntimeError):
    """A part of the local mesh could not start or answer; the message says which and why."""


_running: set[ManagedProcess] = set()
_running_lock = threading.Lock()


class ManagedProcess:
    """One child process in its own process group, logging to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self._popen is not None:
            raise LocalMeshError(f"{self.name} already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = self._env
        with _running_lock:
            if _ledger is not None:
                env = {**(os.environ if env is None else env), RUN_MARK: str(_ledger.path)}
        with open(self.log_path, "wb") as log_file:
            try:
                self._popen = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self._cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise LocalMeshError(f"cannot run {self.name} ({self.argv[0]}): {exc}") from exc
        with _running_lock:
            _running.add(self)
            if _ledger is not None:
                _ledger.add("children", {**process_identity(self._popen.pid), "name": self.name})

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, wait up to ``timeout`` s, then SIGKILL it. Idempotent."""
        popen = self._popen
        if popen is None:
            return
        try:
            if popen.poll() is None:
                _signal_group(popen.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    popen.wait(timeout)
            # Whatever the leader did, its group may still hold children: kill them too.
            _signal_group(popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout)
        finally:
            with _running_lock:
                _running.discard(self)
                if _ledger is not None:
                    _ledger.discard("children", lambda c: c.get("pid") == popen.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def failure(self, what: str) -> LocalMeshError:
        """An error saying ``what`` went wrong, with the process state and its log tail."""
        state = "running" if self.alive else f"exited with {self.returncode}"
        return LocalMeshError(f"{self.name}: {what} ({state}; log {self.log_path}):\n{self.log_tail()}")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# --- what a run started, for the run after a SIGKILL ----------------------------------


def process_identity(pid: int) -> dict[str, Any]:
    """``{"pid", "started", "boot"}``: the process's start time (clock ticks since boot,
    from /proc) and the boot id, which together name one process across pid reuse."""
    return {"pid": pid, "started": _start_ticks(pid), "boot": _boot_id()}


def _start_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return int(fields[19])  # field 22 of proc(5), counted after "pid (comm)"
    except (OSError, IndexError, ValueError):
        return None


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="utf-8") as boot:
            return boot.read().strip()
    except OSError:
        return ""


def is_same_process(identity: Mapping[str, Any]) -> bool:
    """Whether the process ``identity`` recorded is still running (not a reused pid)."""
    pid = identity.get("pid")
    if not isinstance(pid, int) or identity.get("started") is None:
        return False
    return _start_ticks(pid) == identity["started"] and _boot_id() == identity.get("boot")


class Ledger:
    """A JSON file: the run that owns it, its children and its work directories."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        os.replace(tmp, self.path)

    def take_over(self) -> list[str]:
        """Stop the children and remove the work directories a dead run left, then own the
        file. Refuses while the run that owns it is alive."""
        data = self._read()
        owner = data.get("owner") or {}
        if is_same_process(owner) and owner.get("pid") != os.getpid():
            raise LocalMeshError(f"another meshctl run (pid {owner['pid']}) is using "
                                 f"{self.path}; stop it first")
        stopped = []
        for child in data.get("children") or []:
            if isinstance(child, dict) and is_same_process(child):
                _stop_group(int(child["pid"]))
                stopped.append(f"{child.get('name', 'process')} (pid {child['pid']})")
        for pid in marked_with(self.path):
            _stop_group(pid)
            stopped.append(f"an unrecorded child (pid {pid})")
        for workdir in data.get("workdirs") or []:
            if isinstance(workdir, str) and os.path.isdir(workdir):
                shutil.rmtree(workdir, ignore_errors=True)
                stopped.append(workdir)
        self._write({"owner": process_identity(os.getpid()), "children": [], "workdirs": []})
        return stopped

    def add(self, key: str, item: Any) -> None:
        data = self._read()
        self._write({**data, key: [*(data.get(key) or []), item]})

    def discard(self, key: str, match: Callable[[Any], bool]) -> None:
        data = self._read()
        self._write({**data, key: [i for i in data.get(key) or [] if not match(i)]})


def marked_with(ledger_path: Path) -> list[int]:
    """The pids of processes (other than this one) whose environment names ``ledger_path``
    as their run's ledger (:data:`RUN_MARK`)."""
    mark = b"\0" + f"{RUN_MARK}={ledger_path}".encode() + b"\0"
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as environ:
                if mark in b"\0" + environ.read() + b"\0":
                    found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def _stop_group(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM a process we did not start in this process (its whole group if it leads
    one), then SIGKILL it."""
    _signal_leftover(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _start_ticks(pid) is not None:
        time.sleep(0.05)
    _signal_leftover(pid, signal.SIGKILL)


def _signal_leftover(pid: int, sig: signal.Signals) -> None:
    try:
        leads_group = os.getpgid(pid) == pid
    except ProcessLookupError:
        return
    if leads_group:
        _signal_group(pid, sig)
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


_ledger: Ledger | None = None


@contextlib.contextmanager
def recording_children(path: Path) -> Iterator[list[str]]:
    """Record this run's children and work directories in ``path``; yields what a killed
    earlier run had left there and was stopped or removed. On a clean exit the file goes."""
    global _ledger
    ledger = Ledger(path)
    stopped = ledger.take_over()
    with _running_lock:
        _ledger = ledger
    try:
        yield stopped
    finally:
        with _running_lock:
            _ledger = None
        path.unlink(missing_ok=True)


def note_workdir(path: Path) -> None:
    """A work directory this run made (removed by the next run if this one is killed)."""
    with _running_lock:
        if _ledger is not None:
            _ledger.add("workdirs", str(path))


def forget_workdir(path: Path) -> None:
    with _running_lock:
        if _ledger is not None:
            _ledger.discard("workdirs", lambda d: d == str(path))


@atexit.register
def _stop_leftovers() -> None:
    with _running_lock:
        leftovers = list(_running)
    for process in leftovers:
        process.stop(timeout=2.0)


def accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at ``host:port`` right now."""
    with socket.socket() as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


LOWEST_PORT = 10000


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (prefer binding port 0 where the server allows it).

    It is drawn at random from below the kernel's range for outgoing connections' own ports
    (``ip_local_port_range``): a port the kernel hands out (``bind(0)``) is one an outgoing
    connection may take before the server binds it, which a busy machine does (a
    kube-controller-manager failed so: "address already in use")."""
    low = _outgoing_ports_start()
    if low > LOWEST_PORT + 1000:  # else too few below it: the kernel's choice, as before
        for _ in range(200):
            port = random.randrange(LOWEST_PORT, low)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _outgoing_ports_start() -> int:
    """The first port of the kernel's range for outgoing connections (Linux; 32768 if it
    cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    process: ManagedProcess | None = None,
) -> T:
    """Call ``probe`` until it returns something other than None/False; return that.

    Raises LocalMeshError after ``timeout`` seconds, or as soon as ``process`` died.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        if process is not None and not process.alive:
            raise process.failure(f"exited while waiting for {what}")
        if time.monotonic() >= deadline:
            if process is not None:
                raise process.failure(f"timed out after {timeout:g}s waiting for {what}")
            raise LocalMeshError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


# Local servers are reached directly, whatever *_proxy variables say.
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes] | None:
    """GET ``url``: (status, body), or None if nothing answered. Never raises for HTTP status."""
    return http_call(url, timeout=timeout)


def http_call(
    url: str, *, method: str = "GET", body: bytes | None = None, timeout: float = 2.0
) -> tuple[int, bytes] | None:
    """One HTTP request to a local server: (status, body), or None if nothing answered."""
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _LOOPBACK.open(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())
    except (OSError, ValueError):
        return None
