"""Which shard a Rollout belongs to: stable across processes, spread over the shards."""

from __future__ import annotations

import pytest

from meshctl.domain.shards import lease_names, shard_of


@pytest.mark.parametrize("namespace, name, shards, expected", [
    ("shop", "web", 3, 1),  # the docstring's worked examples
    ("shop", "api", 3, 2),
    ("shop", "web", 2, 0),
    ("shop", "api", 2, 1),
    ("anything", "at-all", 1, 0),  # one shard: the unsharded controller
])
def test_shard_of_is_a_fixed_function_of_namespace_and_name(namespace, name, shards, expected):
    assert shard_of(namespace, name, shards) == expected


def test_a_thousand_rollouts_spread_over_every_shard_roughly_evenly():
    counts = [0, 0, 0, 0]
    for i in range(1000):
        counts[shard_of("scale", f"svc-{i}", 4)] += 1
    assert all(200 <= c <= 300 for c in counts)


def test_the_same_name_in_another_namespace_is_another_key():
    assert {shard_of(f"ns-{i}", "web", 8) for i in range(40)} == set(range(8))


def test_lease_names_carry_the_shard_count_and_one_shard_keeps_the_plain_name():
    assert lease_names("meshctl-controller", 1) == ["meshctl-controller"]
    assert lease_names("meshctl-controller", 2) == ["meshctl-controller-0-of-2",
                                                    "meshctl-controller-1-of-2"]


@pytest.mark.parametrize("shards", [0, -1])
def test_fewer_than_one_shard_is_refused(shards):
    with pytest.raises(ValueError, match="at least 1"):
        shard_of("shop", "web", shards)
    with pytest.raises(ValueError, match="at least 1"):
        lease_names("meshctl-controller", shards)
