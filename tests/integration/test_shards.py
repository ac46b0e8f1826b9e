"""Shards across replicas: three `meshctl controller run --shards 3` processes against the real
API server (with the cluster tier: real Deployment controller, scheduler and hollow kubelets)
split the Rollouts by Lease; SIGKILLed one by one while Rollouts move, the
survivors take the dead one's shards over, every Rollout still finishes, and no Rollout is
ever reconciled by two processes at once (each pass is logged with its times)."""

from __future__ import annotations

import itertools
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from meshctl.adapters.kube import Kube
from meshctl.domain.shards import lease_names, shard_of
from meshctl.domain.spec import GROUP, VERSION
from testworld.cluster import service_objects

pytestmark = [pytest.mark.kube, pytest.mark.cluster]
SHARDS, ROLLOUTS = 3, 18
PASS = re.compile(r"pass (\S+)/(\S+) shard (\d+) from ([\d.]+) to ([\d.]+)")


def service(ns: str, i: int) -> list[dict[str, Any]]:
    return service_objects(ns, i, [{"setWeight": 25}, {"pause": {"duration": "2s"}},
                                   {"setWeight": 75}, {"pause": {"duration": "2s"}}],
                           abortScaleDownDelaySeconds=0)


def wait(check: Callable[[], bool], what: str, timeout: float = 300.0,
         why: Callable[[], object] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: {why()}")


def not_done(admin: Kube, ns: str) -> list[str]:
    return [f"{r['metadata']['name']}: {(r.get('status') or {}).get('phase')} "
            f"{(r.get('status') or {}).get('message', '')}"
            for r in admin.list(GROUP, VERSION, ns, "rollouts")
            if (r.get("status") or {}).get("phase") != "Healthy"]


def holders(admin: Kube) -> dict[str, str | None]:
    """Shard Lease name -> holder identity (None: free or never taken)."""
    out: dict[str, str | None] = {}
    for name in lease_names("meshctl-controller", SHARDS):
        lease = admin.get_or_none("coordination.k8s.io", "v1", "meshctl-system", "leases", name)
        out[name] = ((lease or {}).get("spec") or {}).get("holderIdentity") or None
    return out


def all_at(admin: Kube, ns: str, image: str) -> bool:
    rollouts = admin.list(GROUP, VERSION, ns, "rollouts")
    return len(rollouts) == ROLLOUTS and all(
        (r.get("status") or {}).get("phase") == "Healthy"
        and admin.get("apps", "v1", ns, "deployments", r["metadata"]["name"])["spec"]["template"]
        ["spec"]["containers"][0]["image"] == image for r in rollouts)


def set_images(admin: Kube, ns: str, image: str) -> None:
    for i in range(ROLLOUTS):
        admin.merge_patch(GROUP, VERSION, ns, "rollouts", f"svc-{i}", {"spec": {"template": {
            "spec": {"containers": [{"name": "app", "image": image}]}}}})


def passes(logs: dict[str, Path]) -> list[tuple[str, str, int, float, float]]:
    out = []
    for identity, path in logs.items():
        for m in PASS.finditer(path.read_text()):
            out.append((identity, f"{m[1]}/{m[2]}", int(m[3]), float(m[4]), float(m[5])))
    return out


def overlaps(found: list[tuple[str, str, int, float, float]]) -> list[str]:
    """Passes of one Rollout by two processes whose times intersect."""
    bad = []
    by_key: dict[str, list[tuple[float, float, str]]] = {}
    for identity, key, _, start, end in found:
        by_key.setdefault(key, []).append((start, end, identity))
    for key, spans in by_key.items():
        for (s1, e1, who1), (s2, e2, who2) in itertools.combinations(sorted(spans), 2):
            if who1 != who2 and s2 < e1:
                bad.append(f"{key}: {who1} {s1:.3f}-{e1:.3f} and {who2} {s2:.3f}-{e2:.3f}")
    return bad


def test_three_replicas_killed_one_by_one_hand_their_shards_over(kube, cluster, tmp_path):
    ns = kube.create_namespace("shards")
    admin = Kube.from_kubeconfig(kube.kubeconfig_path)
    for i in range(ROLLOUTS):
        kube.apply(service(ns, i))
    assert len({shard_of(ns, f"svc-{i}", SHARDS) for i in range(ROLLOUTS)}) == SHARDS
    sa = kube.service_account_kubeconfig("meshctl-system", "meshctl-controller")
    meshctl = str(Path(sys.executable).parent / "meshctl")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    # the cluster tier's controllers and hollow nodes run the Deployments
    try:
        for identity in ("replica-a", "replica-b", "replica-c"):
            logs[identity] = tmp_path / f"{identity}.log"
            with logs[identity].open("wb") as out:  # the child keeps its own copy
                procs[identity] = subprocess.Popen(
                    [meshctl, "--kubeconfig", str(sa), "-n", ns, "controller", "run",
                     "--shards", str(SHARDS), "--lease-seconds", "9", "--identity", identity,
                     "--log-level", "debug", "--trust-stored-weights",
                     "--prometheus-url", "http://127.0.0.1:9", "--health-addr", "127.0.0.1:0"],
                    stdout=out, stderr=subprocess.STDOUT)
        wait(lambda: all(holders(admin).values()), "every shard to have a holder")
        wait(lambda: all_at(admin, ns, "app:1"), why=lambda: not_done(admin, ns),
             what="every Rollout adopted")
        held_at_start = holders(admin)

        # under load: every Rollout moving while the replicas die one by one
        set_images(admin, ns, "app:2")
        for _ in range(2):
            counts = {who: list(holders(admin).values()).count(who) for who in procs}
            victim = max(counts, key=lambda who: counts[who])  # the one holding most
            killed = procs.pop(victim)
            killed.send_signal(signal.SIGKILL)
            killed.wait()
            wait(lambda: held_by_the_living(admin, procs), f"{victim}'s shards taken over")
        wait(lambda: all_at(admin, ns, "app:2"), why=lambda: not_done(admin, ns),
             what="every Rollout at app:2")
        survivor = next(iter(procs))
        assert set(holders(admin).values()) == {survivor}

        set_images(admin, ns, "app:3")  # the survivor alone drives them all
        wait(lambda: all_at(admin, ns, "app:3"), why=lambda: not_done(admin, ns),
             what="every Rollout at app:3")
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    found = passes(logs)
    assert overlaps(found) == []
    assert len({who for who, *_ in found}) >= 2  # the work was handed over, at least
    assert all(shard == shard_of(*key.split("/"), SHARDS) for _, key, shard, _, _ in found)
    print("shards at start:", held_at_start)


def held_by_the_living(admin: Kube, alive: dict[str, Any]) -> bool:
    return all(h in alive for h in holders(admin).values())
