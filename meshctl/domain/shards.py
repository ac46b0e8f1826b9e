"""Which shard a Rollout belongs to, and the Lease that owns each shard.

Replicas of the controller split the Rollouts into ``shards`` by a stable hash of
``namespace/name`` (the first 8 bytes of its SHA-256, big-endian, modulo ``shards``): the
same Rollout lands in the same shard in every process, on every machine, across restarts.
Each shard is owned through its own Lease; whoever holds shard i's Lease reconciles the
Rollouts of shard i and no others.

Worked examples (``shards=3``): ``shard_of("shop", "web", 3) == 1``,
``shard_of("shop", "api", 3) == 2``; with ``shards=2`` they are 0 and 1. One shard is the
unsharded controller: ``shard_of(ns, name, 1) == 0`` and its Lease keeps the plain name.

Pure: standard library only.
"""

from __future__ import annotations

import hashlib


def shard_of(namespace: str, name: str, shards: int) -> int:
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def lease_names(base: str, shards: int) -> list[str]:
    """One Lease per shard. The count is part of each name, so replicas started with a
    different ``--shards`` (which hash differently) never share a Lease by mistake:
    ``lease_names("meshctl-controller", 2) == ["meshctl-controller-0-of-2",
    "meshctl-controller-1-of-2"]``; ``lease_names("meshctl-controller", 1) ==
    ["meshctl-controller"]``."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if shards == 1:
        return [base]
    return [f"{base}-{i}-of-{shards}" for i in range(shards)]
