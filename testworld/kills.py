"""Crash harness: the controller as its own OS process, killed by failpoints or SIGKILL, and
the record that shows whether a rollout survived it.

- :class:`ControllerProcess` runs ``meshctl controller run`` as the controller's
  ServiceAccount, optionally with ``MESHCTL_FAILPOINTS`` armed; ``kill()`` is SIGKILL.
- :class:`History` watches the namespace's Rollouts, VirtualServices and Deployments from one
  resourceVersion on, so every write is seen in the order etcd committed it.
- :func:`judge` turns a history into :class:`Findings`: steps repeated or skipped (from the
  VirtualService's weights and the Rollout's steps and ``WeightChanged`` events), unsafe
  states (weight on a canary with no ready pods; the canary scaled to 0 while it has weight)
  and an inconsistent end status. The goal is zero of each.

Pods and their readiness come from the world's cluster tier (the Deployment controller,
the scheduler and hollow nodes: the ``cluster`` fixture, or :class:`ClusterTier`).
Used by tests/integration/test_kills.py and bench/kills.py.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshctl.adapters.errors import AdapterError, NotFound
from meshctl.adapters.kube import Kube
from meshctl.domain.phases import TRANSITIONS, Phase
from meshctl.domain.routers.local import ROUTE_NAME, split_of
from meshctl.domain.spec import GROUP, VERSION
from meshctl.localmesh.envoy import route_config_at
from meshctl.localmesh.procs import LocalMeshError, http_get, is_same_process
from meshctl.localmesh.prometheus import Prometheus
from testworld.cluster import subset_service, wait_available
from testworld.kube import KubeWorld
from testworld.poller import Poller

MESHCTL = str(Path(sys.executable).with_name("meshctl"))
WATCHED = ((GROUP, VERSION, "rollouts"), ("networking.istio.io", "v1", "virtualservices"),
           ("apps", "v1", "deployments"))


class ControllerProcess:
    """``meshctl controller run`` for one namespace, as its own process."""

    def __init__(self, world: KubeWorld, namespace: str, prometheus_url: str,
                 log_path: Path) -> None:
        self.world, self.namespace, self.prometheus_url = world, namespace, prometheus_url
        self.kubeconfig = world.service_account_kubeconfig("meshctl-system", "meshctl-controller")
        self.log_path = log_path
        self._popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, failpoints: str = "") -> ControllerProcess:
        env = {**os.environ, "MESHCTL_FAILPOINTS": failpoints}
        argv = [MESHCTL, "--kubeconfig", str(self.kubeconfig), "--namespace", self.namespace,
                "controller", "run", "--prometheus-url", self.prometheus_url, "--trust-stored-weights",
                "--health-addr", "127.0.0.1:0", "--workers", "2", "--identity", "crash-test",
                "--lease-name", f"meshctl-{self.namespace}"[:60], "--resync-seconds", "5"]
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts} failpoints={failpoints!r}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)
        self.starts += 1
        return self

    @property
    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None if still running after ``timeout`` seconds."""
        assert self._popen is not None
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL: nothing in the process runs after it."""
        if self._popen is not None and self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._popen.pid, signal.SIGKILL)
            self._popen.wait(10)


@contextlib.contextmanager
def _killed_at_exit(process: ControllerProcess) -> Iterator[None]:
    try:
        yield
    finally:
        process.kill()


@dataclass(frozen=True)
class Change:
    """One committed write, as the watch reported it."""

    rv: int
    plural: str
    name: str
    obj: dict[str, Any]


class History:
    """Every change to the namespace's Rollouts, VirtualServices and Deployments, in order."""

    def __init__(self, world: KubeWorld, namespace: str) -> None:
        self.namespace = namespace
        self.kube = Kube.from_kubeconfig(world.kubeconfig_path)
        self.changes: list[Change] = []
        self.initial: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._watch, args=w, daemon=True)
                         for w in WATCHED]

    def __enter__(self) -> History:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(1.0)  # the last writes reach the watches
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self.kube.close()

    def _list(self, group: str, version: str, plural: str) -> tuple[list[dict[str, Any]], int]:
        items, rv = self.kube.list_all(group, version, plural)
        mine = [i for i in items if i["metadata"].get("namespace") == self.namespace]
        return mine, int(rv)

    def _watch(self, group: str, version: str, plural: str) -> None:
        items, rv = self._list(group, version, plural)
        with self._lock:
            for item in items:
                self.initial[(plural, item["metadata"]["name"])] = item
        while not self._stop.is_set():
            try:
                for _, obj in self.kube.watch(group, version, plural, str(rv), timeout_seconds=2,
                                              namespace=self.namespace):
                    rv = int(obj["metadata"]["resourceVersion"])
                    self._add(plural, obj)
                    if self._stop.is_set():
                        return
            except NotFound:  # 410 (a restarted API server): list again; each object as it
                with contextlib.suppress(AdapterError):  # is now counts as one change
                    items, rv = self._list(group, version, plural)
                    for item in items:
                        self._add(plural, item)
            except AdapterError:
                self._stop.wait(0.2)

    def _add(self, plural: str, obj: dict[str, Any]) -> None:
        change = Change(int(obj["metadata"]["resourceVersion"]), plural,
                        obj["metadata"]["name"], obj)
        with self._lock:
            if change not in self.changes:
                self.changes.append(change)

    def ordered(self) -> list[Change]:
        with self._lock:
            return sorted(self.changes, key=lambda c: c.rv)


@dataclass
class Findings:
    repeated: int = 0
    skipped: int = 0
    unsafe: int = 0
    inconsistent: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.repeated or self.skipped or self.unsafe or self.inconsistent)

    def add(self, other: Findings) -> None:
        self.repeated += other.repeated
        self.skipped += other.skipped
        self.unsafe += other.unsafe
        self.inconsistent += other.inconsistent
        self.notes += other.notes


def canary_weight(vs: dict[str, Any], route: str = "primary") -> int:
    found = next(r for r in vs["spec"]["http"] if r.get("name") == route)
    return sum(d.get("weight", 100) for d in found["route"]
               if d["destination"].get("subset") == "canary")


def _align(seen: list[int], expected: list[int], what: str, findings: Findings) -> None:
    """Walk ``seen`` along ``expected``: a value behind the position reached is a repeat;
    expected values jumped over are skips."""
    at = 0
    for value in seen:
        if value == expected[at]:
            continue
        ahead = [i for i in range(at + 1, len(expected)) if expected[i] == value]
        if ahead:
            jumped = ahead[0] - at - 1
            if jumped:
                findings.skipped += jumped
                findings.notes.append(f"{what}: skipped {expected[at + 1:ahead[0]]}")
            at = ahead[0]
        else:
            findings.repeated += 1
            findings.notes.append(f"{what}: went back to {value} after {expected[at]}")
    if at != len(expected) - 1:
        findings.skipped += len(expected) - 1 - at
        findings.notes.append(f"{what}: never reached {expected[at + 1:]}")


def _deduped(values: list[Any]) -> list[Any]:
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


def judge(history: History, events: list[dict[str, Any]], expected_weights: list[int],
          expected_steps: list[int], end_phase: str) -> Findings:
    """``expected_weights``: the canary weights the VirtualService should show, in order,
    once each (starting at the one before the rollout); ``expected_steps``: the Rollout's
    ``currentStep`` values, in order."""
    findings = Findings()
    changes = history.ordered()
    vs_weights = [canary_weight(c.obj) for c in changes if c.plural == "virtualservices"]
    start_vs = history.initial.get(("virtualservices", "web"))
    if start_vs is not None:
        vs_weights.insert(0, canary_weight(start_vs))
    _align(_deduped(vs_weights), expected_weights, "VirtualService weights", findings)
    rollouts = [c.obj for c in changes if c.plural == "rollouts"]
    steps = [(r.get("status") or {}).get("currentStep", 0) for r in rollouts
             if (r.get("status") or {}).get("phase") not in (None, "Pending", "Healthy")
             or (r.get("status") or {}).get("currentStep")]
    _align(_deduped([expected_steps[0], *steps]), expected_steps, "Rollout steps", findings)
    notes = [e.get("note", "") for e in events if e.get("reason") == "WeightChanged"]
    for note in sorted(set(notes)):
        if notes.count(note) > 1:
            findings.repeated += notes.count(note) - 1
            findings.notes.append(f"event WeightChanged {note!r} {notes.count(note)} times")
    _phases(rollouts, findings)
    _safety(changes, findings)
    _end_state(history, rollouts, end_phase, findings)
    return findings


def _reachable(source: Phase) -> set[Phase]:
    seen, todo = set(), [source]
    while todo:
        for target in TRANSITIONS[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def _phases(rollouts: list[dict[str, Any]], findings: Findings) -> None:
    """Each saved phase follows from the one before by legal moves (one pass may make
    several: a pass that finds the abort's traffic already back on stable goes from
    Progressing through Aborting to Degraded and saves once)."""
    _phase_moves([(r.get("status") or {}).get("phase") for r in rollouts], findings)


def _phase_moves(seen: list[str | None], findings: Findings) -> None:
    phases = _deduped(seen)
    for before, after in itertools.pairwise(phases):
        if before and after and Phase(after) not in _reachable(Phase(before)):
            findings.inconsistent += 1
            findings.notes.append(f"illegal phase move {before} -> {after}")


def _safety(changes: list[Change], findings: Findings) -> None:
    """At every committed write: weight on the canary needs ready canary pods, and the
    canary is never scaled to 0 while it has weight."""
    weight, canary = 0, None
    for change in changes:
        if change.plural == "virtualservices":
            weight = canary_weight(change.obj)
        elif change.plural == "deployments" and change.name == "web-canary":
            canary = change.obj
        else:
            continue
        if weight <= 0:
            continue
        replicas = (canary or {}).get("spec", {}).get("replicas", 0)
        ready = (canary or {}).get("status", {}).get("readyReplicas", 0)
        if replicas == 0 or ready == 0:
            findings.unsafe += 1
            findings.notes.append(f"rv {change.rv}: canary weight {weight} with canary "
                                  f"replicas {replicas}, ready {ready}")


def _end_state(history: History, rollouts: list[dict[str, Any]], end_phase: str,
               findings: Findings) -> None:
    last = next((c.obj for c in reversed(history.ordered()) if c.plural == "virtualservices"),
                history.initial.get(("virtualservices", "web")))
    status = (rollouts[-1].get("status") or {}) if rollouts else {}
    problems = []
    if status.get("phase") != end_phase:
        problems.append(f"ended {status.get('phase')}, expected {end_phase}")
    if last is not None and (status.get("weights") or {}).get("canary", 0) != canary_weight(last):
        problems.append(f"status weights {status.get('weights')} but the VirtualService has "
                        f"canary {canary_weight(last)}")
    findings.inconsistent += len(problems)
    findings.notes += problems


# --- scenarios --------------------------------------------------------------------------

CANARY_STEPS: list[dict[str, Any]] = [{"setWeight": 20}, {"setWeight": 40}, {"analysis": {}},
                                      {"setWeight": 60}, {"setWeight": 80}]
ROLLBACK_STEPS: list[dict[str, Any]] = [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 60}]
LONG_STEPS: list[dict[str, Any]] = [  # long enough for 20 kills 0.3-2.5 s apart
    {"setWeight": 10}, {"pause": {"duration": "5s"}}, {"setWeight": 20}, {"analysis": {}},
    {"setWeight": 40}, {"pause": {"duration": "5s"}}, {"setWeight": 60},
    {"pause": {"duration": "5s"}}, {"setWeight": 80}, {"pause": {"duration": "5s"}}]
FAULT_STEPS: list[dict[str, Any]] = [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 60}]
# the order the failpoints are armed in, one process each
CANARY_FAILPOINTS = ("policy-written", "scaled", "traffic-written", "status-saved",
                     "traffic-written", "status-saved", "promotion", "scaled")
ROLLBACK_FAILPOINTS = ("policy-written", "scaled", "traffic-written", "status-saved", "abort",
                       "status-saved", "scaled")


def weights_of(steps: list[dict[str, Any]]) -> list[int]:
    """The canary weights a whole canary writes: 0, each setWeight, then 0 (promoted)."""
    return [0, *(s["setWeight"] for s in steps if "setWeight" in s), 0]


def _template(image: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": image}]}}


def _allow(*accounts: str) -> list[dict[str, Any]]:
    return [{"from": [{"serviceAccount": a}]} for a in accounts]


def seed(world: KubeWorld, ns: str, steps: list[dict[str, Any]]) -> Kube:
    """The service (Deployment ``web``, VirtualService, DestinationRule) and a Rollout at
    ``web:1`` with zero-trust policies; returns an admin client."""
    world.apply(subset_service(ns, "web", _template("web:1"), replicas=2))
    wait_available(world, ns, "web", 2)
    kube = Kube.from_kubeconfig(world.kubeconfig_path)
    kube.create(GROUP, VERSION, ns, "rollouts", {
        "apiVersion": "meshctl.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "service": "web", "workloadRef": {"name": "web"}, "template": _template("web:1"),
            "trafficRouting": {"istio": {
                "virtualService": {"name": "web", "routes": ["primary"]},
                "destinationRule": {"name": "web", "stableSubset": "stable",
                                    "canarySubset": "canary"}}},
            "slo": {"window": "4s", "interval": "1s", "count": 2, "minRequests": 5},
            "security": {"requireMutualTLS": False, "allow": _allow("front")},
            "abortScaleDownDelaySeconds": 2,
            "strategy": {"canary": {"steps": steps}}}})
    return kube


def phase_of(kube: Kube, ns: str) -> str | None:
    status = kube.get(GROUP, VERSION, ns, "rollouts", "web").get("status") or {}
    return status.get("phase")


def promoted(kube: Kube, ns: str) -> bool:
    """Healthy at the new version (web:2 in the stable Deployment)."""
    stable = kube.get("apps", "v1", ns, "deployments", "web")
    image = stable["spec"]["template"]["spec"]["containers"][0]["image"]
    return image == "web:2" and phase_of(kube, ns) == "Healthy"


def start_canary(kube: Kube, ns: str) -> None:
    """The new version, and one more caller allowed (so policies change in the canary)."""
    kube.merge_patch(GROUP, VERSION, ns, "rollouts", "web", {"spec": {
        "template": _template("web:2"), "security": {"allow": _allow("front", "batch")}}})


def event_names(kube: Kube, ns: str) -> set[str]:
    """The names of the namespace's Events so far (for :func:`events_of`'s ``after``)."""
    return {e["metadata"]["name"] for e in kube.list("events.k8s.io", "v1", ns, "events")}


def events_of(kube: Kube, ns: str, after: set[str]) -> list[dict[str, Any]]:
    found = kube.list("events.k8s.io", "v1", ns, "events")
    mine = [e for e in found if e["metadata"]["name"] not in after  # the cluster's
            and (e.get("regarding") or {}).get("kind") == "Rollout"]  # controllers write too
    return sorted(mine, key=lambda e: e.get("eventTime") or "")


@dataclass
class Run:
    """What one scenario did: its findings, the kills, and the failpoints that fired."""

    findings: Findings
    kills: int = 0
    fired: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)


def failpoint_run(world: KubeWorld, ns: str, prometheus_url: str, log_dir: Path,
                  failpoints: Sequence[str], rollback: bool, timeout: float = 120,
                  stop_at_miss: bool = False) -> Run:
    """A canary (or, with ``rollback``, a canary whose analysis fails) during which the
    controller process is killed at each failpoint in turn and started again (with
    ``stop_at_miss``, arming ends at the first failpoint not reached within 40 s)."""
    steps = ROLLBACK_STEPS if rollback else CANARY_STEPS
    kube = seed(world, ns, steps)
    process = ControllerProcess(world, ns, prometheus_url, log_dir / f"controller-{ns}.log")
    run = Run(Findings())
    with _killed_at_exit(process):
        process.start()
        wait_for(lambda: phase_of(kube, ns) == "Healthy", 60, "adoption")
        process.kill()
        before = event_names(kube, ns)
        with History(world, ns) as history:
            start_canary(kube, ns)
            for point in failpoints:
                process.start(point)
                if process.wait_exit(timeout=40) is None:  # never reached: the run moved on
                    process.kill()
                    run.missed.append(point)
                    if stop_at_miss:
                        break
                else:
                    run.fired.append(point)
                    run.kills += 1
            process.start()
            end = "Degraded" if rollback else "Healthy"
            wait_for(lambda: phase_of(kube, ns) == end if rollback else promoted(kube, ns),
                     timeout, f"the rollout to end {end}", lambda: _brief_status(kube, ns))
            process.kill()
    expected_weights = [0, 20, 0] if rollback else weights_of(steps)
    expected_steps = [0, 1] if rollback else list(range(len(steps) + 1))
    run.findings = judge(history, events_of(kube, ns, before), expected_weights,
                         expected_steps, end)
    kube.close()
    return run


def random_kill_run(world: KubeWorld, ns: str, prometheus_url: str, log_dir: Path,
                    seed_value: int, kills: int = 20, timeout: float = 240) -> Run:
    """One canary during which the controller is SIGKILLed ``kills`` times, each after a
    random (seeded) 0.3-2.5 s of life, and started again each time."""
    rng = random.Random(seed_value)
    kube = seed(world, ns, LONG_STEPS)
    process = ControllerProcess(world, ns, prometheus_url, log_dir / f"controller-{ns}.log")
    run = Run(Findings())
    with _killed_at_exit(process):
        process.start()
        wait_for(lambda: phase_of(kube, ns) == "Healthy", 60, "adoption")
        process.kill()
        before = event_names(kube, ns)
        with History(world, ns) as history:
            start_canary(kube, ns)
            while run.kills < kills and not promoted(kube, ns):
                process.start()
                time.sleep(rng.uniform(0.3, 2.5))
                process.kill()
                run.kills += 1
            process.start()
            wait_for(lambda: promoted(kube, ns), timeout, "promotion",
                     lambda: _brief_status(kube, ns))
            process.kill()
    run.findings = judge(history, events_of(kube, ns, before), weights_of(LONG_STEPS),
                         list(range(len(LONG_STEPS) + 1)), "Healthy")
    kube.close()
    return run


# --- faults: servers restarted, stopped or hung under a running canary --------------------


def status_of(kube: Kube, ns: str) -> dict[str, Any]:
    return kube.get(GROUP, VERSION, ns, "rollouts", "web").get("status") or {}


def apiserver_restart_run(world: KubeWorld, ns: str, prometheus_url: str,
                          log_dir: Path) -> Run:
    """A canary during which kube-apiserver is SIGKILLed and started again 3 s later (same
    port, same etcd); the controller process lives on."""
    kube = seed(world, ns, CANARY_STEPS)
    process = ControllerProcess(world, ns, prometheus_url, log_dir / f"controller-{ns}.log")
    with _killed_at_exit(process):
        process.start()
        wait_for(lambda: phase_of(kube, ns) == "Healthy", 60, "adoption")
        before = event_names(kube, ns)
        with History(world, ns) as history:
            start_canary(kube, ns)
            wait_for(lambda: status_of(kube, ns).get("currentStep", 0) >= 1, 60, "step 1")
            world.restart_apiserver(down_seconds=3)
            wait_for(lambda: promoted(kube, ns), 150, "promotion",
                     lambda: _brief_status(kube, ns))
        alive = process.alive
    run = Run(judge(history, events_of(kube, ns, before), weights_of(CANARY_STEPS),
                    list(range(len(CANARY_STEPS) + 1)), "Healthy"))
    if not alive:
        run.findings.inconsistent += 1
        run.findings.notes.append("the controller process died with the API server")
    kube.close()
    return run


def prometheus_fault_run(world: KubeWorld, ns: str, prometheus: Prometheus, log_dir: Path,
                         fault: str) -> Run:
    """A canary whose Prometheus is ``stopped`` (SIGKILL, then started again on the same
    port with the same data directory) or ``hung`` (SIGSTOP: it accepts connections and
    never answers, then SIGCONT) during the analysis step. It must pause
    (AnalysisUnavailable, the message saying Prometheus did not answer) without promoting or
    aborting, and resume on its own once Prometheus answers: nobody resumes it."""
    kube = seed(world, ns, FAULT_STEPS)
    process = ControllerProcess(world, ns, prometheus.url, log_dir / f"controller-{ns}.log")
    findings = Findings()
    with _killed_at_exit(process):
        process.start()
        wait_for(lambda: phase_of(kube, ns) == "Healthy", 60, "adoption")
        before = event_names(kube, ns)
        with History(world, ns) as history:
            start_canary(kube, ns)
            wait_for(lambda: status_of(kube, ns).get("currentStep", 0) >= 1, 60,
                     "the analysis step")
            pid = prometheus.process.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL if fault == "stopped" else signal.SIGSTOP)
            wait_for(lambda: status_of(kube, ns).get("phase") == "Paused", 120, "the pause",
                     lambda: _brief_status(kube, ns))
            paused = status_of(kube, ns)
            if (paused.get("pauseReason") != "AnalysisUnavailable"
                    or "did not answer" not in paused.get("message", "")):
                findings.inconsistent += 1
                findings.notes.append(f"paused {paused.get('pauseReason')}: "
                                      f"{paused.get('message')}")
            time.sleep(3)  # a few probes go unanswered: the pause holds
            if status_of(kube, ns).get("phase") != "Paused":
                findings.inconsistent += 1
                findings.notes.append(f"left the pause while Prometheus was {fault}")
            if fault == "stopped":
                prometheus.restart()
            else:
                os.kill(pid, signal.SIGCONT)
            wait_for(lambda: promoted(kube, ns), 120, "promotion",
                     lambda: _brief_status(kube, ns))
    events = events_of(kube, ns, before)
    if not any(e.get("reason") == "AnalysisAvailable" for e in events):
        findings.inconsistent += 1
        findings.notes.append("no AnalysisAvailable event: the pause did not lift itself")
    phases = [(c.obj.get("status") or {}).get("phase") for c in history.ordered()
              if c.plural == "rollouts"]
    before_pause = phases[:phases.index("Paused")] if "Paused" in phases else phases
    if "Promoting" in before_pause or "Aborting" in phases:
        findings.unsafe += 1
        findings.notes.append(f"promoted or aborted on measurements not taken: {phases}")
    findings.add(judge(history, events, weights_of(FAULT_STEPS), [0, 1, 2, 3], "Healthy"))
    kube.close()
    return Run(findings, kills=1 if fault == "stopped" else 0)


# --- the local mesh: ``meshctl rollout run --mesh local`` killed ------------------------

LOCAL_FILE = "rollouts/local-demo.yaml"  # steps 10%, analysis, 50%, analysis, 100%
LOCAL_WEIGHTS = [0, 10, 50, 100, 0]
LOCAL_STEPS = list(range(6))
LOCAL_FAILPOINTS = ("scaled", "traffic-written", "status-saved", "traffic-written",
                    "promotion", "status-saved")


class StatusFiles(Poller):
    """Every status a local run saved (its file is replaced atomically), polled often."""

    interval = 0.02

    def __init__(self, state_dir: Path) -> None:
        super().__init__()
        self.state_dir = state_dir
        self.seen: list[dict[str, Any]] = []

    def poll(self) -> None:
        for path in self.state_dir.glob("*.status.json"):
            with contextlib.suppress(OSError, ValueError):
                status = json.loads(path.read_text(encoding="utf-8"))
                if not self.seen or self.seen[-1] != status:
                    self.seen.append(status)


def local_run(state_dir: Path, log: Path, failpoints: str = "",
              file: str | Path = LOCAL_FILE) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MESHCTL_FAILPOINTS": failpoints}
    with open(log, "ab") as out:
        out.write(f"--- start failpoints={failpoints!r}\n".encode())
        out.flush()
        return subprocess.Popen([MESHCTL, "rollout", "run", "-f", str(file), "--state-dir",
                                 str(state_dir), "--timeout", "600", "--load", "60"], env=env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def local_kill_run(state_dir: Path, log: Path, failpoints: Sequence[str] = (),
                   kills: int = 0, seed_value: int = 0, timeout: float = 300) -> Run:
    """A local canary: its process ended at each of ``failpoints`` in turn, then SIGKILLed
    ``kills`` times after a random (seeded) 2-8 s of life; each time run again."""
    rng = random.Random(seed_value)
    run = Run(Findings())
    with StatusFiles(state_dir) as statuses:
        for point in failpoints:
            process = local_run(state_dir, log, point)
            try:
                code = process.wait(90)
            except subprocess.TimeoutExpired:
                code = None
            (run.fired if code == 137 else run.missed).append(point)
            run.kills += code == 137
            _sigkill(process)
        for _ in range(kills):
            process = local_run(state_dir, log)
            time.sleep(rng.uniform(2.0, 8.0))
            if process.poll() is not None:
                break  # finished before the kill
            _sigkill(process)
            run.kills += 1
        process = local_run(state_dir, log)
        try:
            code = process.wait(timeout)
        finally:
            _sigkill(process)
        time.sleep(0.2)
    findings = run.findings
    if code != 0:
        findings.inconsistent += 1
        findings.notes.append(f"the last run exited {code}")
    seen = statuses.seen
    _align(_deduped([0, *((s.get("weights") or {}).get("canary", 0) for s in seen)]),
           LOCAL_WEIGHTS, "weights", findings)
    _align(_deduped([0, *(s.get("currentStep", 0) for s in seen)]), LOCAL_STEPS, "steps",
           findings)
    _phase_moves([s.get("phase") for s in seen], findings)
    last = seen[-1] if seen else {}
    if last.get("phase") != "Healthy" or (last.get("weights") or {}).get("canary") != 0:
        findings.inconsistent += 1
        findings.notes.append(f"ended {last.get('phase')} with weights {last.get('weights')}")
    return run


# A local canary that holds 50/50 for 20 s (the Envoy is killed there), background analysis
# from the start: steps 10%, analysis, 50%, pause, analysis, 100%.
ENVOY_KILL_ROLLOUT = """\
apiVersion: meshctl.io/v1alpha1
kind: Rollout
metadata: {name: envoy-kill}
spec:
  service: demo
  local:
    stable: {command: [python, -m, meshctl.localmesh.app, --port, "{port}", --version, v1]}
    canary: {command: [python, -m, meshctl.localmesh.app, --port, "{port}", --version, v2]}
  slo: {latencyP95: 250ms, availability: "99.9%", window: 5s, minRequests: 10, interval: 1s,
        count: 3}
  strategy:
    canary:
      steps:
        - setWeight: 10
        - analysis: {}
        - setWeight: 50
        - pause: {duration: 20s}
        - analysis: {}
        - setWeight: 100
      analysis: {startingStep: 0}
"""
ENVOY_KILL_WEIGHTS = [0, 10, 50, 100, 0]
ENVOY_KILL_STEPS = list(range(7))


@dataclass
class EnvoyKill:
    """What killing a local run's Envoy did: the run's findings, and the data plane seen."""

    run: Run
    killed_pid: int = 0
    restarted_pid: int = 0  # the Envoy the run's ledger names afterwards (0: none)
    same_ports: bool = False  # admin and listener ports as before the kill
    canary_share: float = -1.0  # of requests sent through the restarted Envoy
    canary_weight: int = -1  # in the status while they were sent
    requests: int = 0


def _ledger(state_dir: Path) -> dict[str, Any]:
    for path in state_dir.glob("*.children.json"):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return data
    return {}


def _envoy_child(state_dir: Path) -> dict[str, Any] | None:
    return next((c for c in _ledger(state_dir).get("children") or []
                 if c.get("name") == "envoy" and is_same_process(c)), None)


def _admin_port(workdir: Path) -> int:
    """The admin port of the Envoy in a local mesh's work directory (OSError, ValueError
    while it has not written it)."""
    return int((workdir / "envoy-admin-address").read_text().strip().rpartition(":")[2])


def _envoy_ports(workdir: Path) -> tuple[int, int] | None:
    """(admin port, listener port) of the Envoy running in a local mesh's work directory."""
    with contextlib.suppress(OSError, ValueError, KeyError, StopIteration):
        admin = _admin_port(workdir)
        answer = http_get(f"http://127.0.0.1:{admin}/listeners?format=json", timeout=1.0)
        if answer is None or answer[0] != 200:
            return None
        listener = next(iter(json.loads(answer[1])["listener_statuses"]))
        return admin, int(listener["local_address"]["socket_address"]["port_value"])
    return None


def canary_share(port: int, requests: int) -> float:
    """The share of ``requests`` sent to ``127.0.0.1:port`` that the canary (v2) answered."""
    versions = []
    for _ in range(requests):
        answer = http_get(f"http://127.0.0.1:{port}/", timeout=2.0)
        with contextlib.suppress(ValueError, TypeError):
            if answer is not None:
                versions.append(json.loads(answer[1]).get("version"))
    return versions.count("v2") / len(versions) if versions else -1.0


def envoy_kill_run(state_dir: Path, log: Path, requests: int = 400,
                   timeout: float = 300) -> EnvoyKill:
    """A local canary whose Envoy is SIGKILLed (found through the run's ledger of children)
    while it holds 50/50; the run must start Envoy again on the same ports, the xDS server
    must give it the current split (measured with ``requests`` requests through it), and the
    rollout must finish with every step once."""
    state_dir.mkdir(parents=True, exist_ok=True)
    file = state_dir.parent / "envoy-kill.yaml"
    file.write_text(ENVOY_KILL_ROLLOUT, encoding="utf-8")
    kill = EnvoyKill(Run(Findings()))
    findings = kill.run.findings
    process = local_run(state_dir, log, file=file)
    try:
        with StatusFiles(state_dir) as statuses:
            wait_for(lambda: bool(statuses.seen) and statuses.seen[-1].get("currentStep") == 3,
                     180, "the 20 s pause at 50/50")
            child = _envoy_child(state_dir)
            workdir = Path((_ledger(state_dir).get("workdirs") or [""])[0])
            before = _envoy_ports(workdir)
            assert child is not None and before is not None, "no Envoy in the run's ledger"
            kill.killed_pid = int(child["pid"])
            os.kill(kill.killed_pid, signal.SIGKILL)
            kill.run.kills = 1

            def restarted() -> bool:
                found = _envoy_child(state_dir)
                return found is not None and found["pid"] != kill.killed_pid
            wait_for(restarted, 30, "the run to start Envoy again")
            kill.restarted_pid = int((_envoy_child(state_dir) or {"pid": 0})["pid"])
            wait_for(lambda: _envoy_ports(workdir) is not None, 30, "the new Envoy's listener")
            after = _envoy_ports(workdir)
            kill.same_ports = after == before
            weight_then = (statuses.seen[-1].get("weights") or {}).get("canary", -1)
            kill.canary_share = canary_share(before[1], requests)
            kill.requests = requests
            weight_now = (statuses.seen[-1].get("weights") or {}).get("canary", -1)
            kill.canary_weight = weight_now if weight_now == weight_then else -1
            code = process.wait(timeout)
            time.sleep(0.2)
    finally:
        _sigkill(process)
    if code != 0:
        findings.inconsistent += 1
        findings.notes.append(f"the run exited {code}")
    seen = statuses.seen
    _align(_deduped([0, *((s.get("weights") or {}).get("canary", 0) for s in seen)]),
           ENVOY_KILL_WEIGHTS, "weights", findings)
    _align(_deduped([0, *(s.get("currentStep", 0) for s in seen)]), ENVOY_KILL_STEPS, "steps",
           findings)
    _phase_moves([s.get("phase") for s in seen], findings)
    if not kill.restarted_pid or not kill.same_ports:
        findings.inconsistent += 1
        findings.notes.append(f"Envoy restarted as pid {kill.restarted_pid}, same ports: "
                              f"{kill.same_ports}")
    if not split_matches(kill.canary_share, kill.canary_weight, requests):
        findings.unsafe += 1
        findings.notes.append(f"after the restart {kill.canary_share:.3f} of {requests} "
                              f"requests reached the canary; the status says "
                              f"{kill.canary_weight}%")
    return kill


# A local canary that fails its analysis (half its answers are errors): 20%, analysis, 60%.
ROLLBACK_ROLLOUT = """\
apiVersion: meshctl.io/v1alpha1
kind: Rollout
metadata: {name: rollback-kill}
spec:
  service: demo
  local:
    stable: {command: [python, -m, meshctl.localmesh.app, --port, "{port}", --version, v1]}
    canary: {command: [python, -m, meshctl.localmesh.app, --port, "{port}", --version, v2,
                       --error-rate, "0.5"]}
  slo: {latencyP95: 250ms, availability: "99.9%", window: 5s, minRequests: 10, interval: 1s,
        count: 2}
  strategy:
    canary:
      steps:
        - setWeight: 20
        - analysis: {}
        - setWeight: 60
"""


@dataclass
class RollbackKill:
    """A local run killed where its abort had sent traffic back to stable, and run again."""

    fired: bool = False  # the first run ended at the failpoint "abort"
    served: list[int] = field(default_factory=list)  # canary weights the 2nd run's Envoy applied
    last: dict[str, Any] = field(default_factory=dict)  # the last status saved


def local_rollback_kill_run(state_dir: Path, log: Path, timeout: float = 180) -> RollbackKill:
    """The failing canary's run ends at the failpoint ``abort`` (100/0 applied, the status
    not saved yet); while the next run lives, the Envoy its ledger names (the killed run's,
    until the new run replaces it) is read every 20 ms: each canary weight applied is
    recorded."""
    state_dir.mkdir(parents=True, exist_ok=True)
    file = state_dir.parent / "rollback-kill.yaml"
    file.write_text(ROLLBACK_ROLLOUT, encoding="utf-8")
    found = RollbackKill()
    first = local_run(state_dir, log, "abort", file=file)
    try:
        found.fired = first.wait(120) == 137
    finally:
        _sigkill(first)
    second = local_run(state_dir, log, file=file)
    deadline = time.monotonic() + timeout
    try:
        while second.poll() is None and time.monotonic() < deadline:
            weight = _applied_canary_weight(state_dir)
            if weight is not None and (not found.served or found.served[-1] != weight):
                found.served.append(weight)
            time.sleep(0.02)
    finally:
        _sigkill(second)
    with contextlib.suppress(OSError, ValueError, StopIteration):
        path = next(state_dir.glob("*.status.json"))
        found.last = json.loads(path.read_text(encoding="utf-8"))
    return found


def _applied_canary_weight(state_dir: Path) -> int | None:
    """The canary weight the local run's Envoy applies now (None: no Envoy answers yet)."""
    child = _envoy_child(state_dir)
    workdirs = _ledger(state_dir).get("workdirs") or []
    if child is None or not workdirs:
        return None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, LocalMeshError):
        admin = _admin_port(Path(workdirs[0]))
        found = route_config_at(f"http://127.0.0.1:{admin}", ROUTE_NAME, timeout=1.0)
        if found is not None:
            return split_of(found[1]).weights.canary
    return None


def split_matches(share: float, weight: int, requests: int) -> bool:
    """``share`` lies in the 99% (normal approximation) binomial interval of ``weight``%."""
    if weight < 0 or share < 0:
        return False
    p = weight / 100
    return abs(share - p) <= 2.576 * math.sqrt(p * (1 - p) / requests) + 1 / requests


def _sigkill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the run alone: its children stay, for the next run to stop."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
    process.wait(10)


def wait_for(condition: Callable[[], bool], timeout: float, what: str,
             explain: Callable[[], object] | None = None) -> None:
    """Until ``condition()``; else an AssertionError naming ``what`` (and ``explain()``, the
    state it ended in)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    found = ""
    if explain is not None:
        with contextlib.suppress(Exception):
            found = f"; found {explain()}"
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{found}")


def _brief_status(kube: Kube, ns: str) -> str:
    status = status_of(kube, ns)
    return (f"{status.get('phase')} step {status.get('currentStep')} "
            f"({status.get('pauseReason') or '-'}): {status.get('message')}")
