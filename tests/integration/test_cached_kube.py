"""The controller's reads from its watch cache and its writes with the cached
resourceVersion, against the real API server."""

from __future__ import annotations

import pytest

from meshctl.adapters.cache import CachedKube, ObjectCache
from meshctl.adapters.errors import Unavailable
from meshctl.adapters.kube import Kube
from meshctl.adapters.rest import Endpoint, RestKube
from meshctl.domain.spec import GROUP, VERSION

from .cluster_world import rollout

pytestmark = pytest.mark.kube


@pytest.fixture
def cached(kube, namespace):
    full = Kube.from_kubeconfig(kube.kubeconfig_path)
    full.create(GROUP, VERSION, namespace, "rollouts", rollout(namespace, "web:1",
                                                              [{"setWeight": 50}]))
    quick = RestKube.connect(kube.kubeconfig_path)
    assert quick is not None
    cache = ObjectCache()
    items, version = quick.list_all(GROUP, VERSION, "rollouts", namespace=namespace)
    cache.replace("rollouts", items, version)
    yield CachedKube(quick, cache), full
    quick.close()
    full.close()


def _paused(value: bool):
    return lambda o: {**o, "spec": {**o["spec"], "paused": value}}


def test_reads_share_the_cached_object(cached, namespace):
    kube, _ = cached
    first = kube.get(GROUP, VERSION, namespace, "rollouts", "web")
    assert first is kube.get(GROUP, VERSION, namespace, "rollouts", "web")
    assert kube.list(GROUP, VERSION, namespace, "rollouts") == [first]


def test_a_write_from_a_stale_cache_is_a_conflict_then_a_fresh_read_wins(cached, namespace):
    """Someone wrote after the cache was filled: the first PUT (with the cached
    resourceVersion) is refused, the second starts from the server's object and keeps
    the other writer's change."""
    kube, full = cached
    full.merge_patch(GROUP, VERSION, namespace, "rollouts", "web",
                     {"metadata": {"annotations": {"other": "writer"}}})
    updated = kube.update_with_retry(GROUP, VERSION, namespace, "rollouts", "web",
                                     _paused(True))
    assert updated.changed and updated.attempts == 2
    stored = full.get(GROUP, VERSION, namespace, "rollouts", "web")
    assert stored["spec"]["paused"] is True
    assert stored["metadata"]["annotations"]["other"] == "writer"
    # and the cache holds what the server answered: the next read is not older
    assert kube.get(GROUP, VERSION, namespace, "rollouts", "web")["metadata"][
        "resourceVersion"] == stored["metadata"]["resourceVersion"]


def test_a_current_cache_writes_at_the_first_attempt_and_leaves_the_cached_object_as_it_was(
        cached, namespace):
    kube, full = cached
    before = kube.get(GROUP, VERSION, namespace, "rollouts", "web")
    updated = kube.update_with_retry(GROUP, VERSION, namespace, "rollouts", "web",
                                     _paused(True))
    assert updated.changed and updated.attempts == 1
    assert "paused" not in before["spec"]  # mutate got a copy
    assert full.get(GROUP, VERSION, namespace, "rollouts", "web")["spec"]["paused"] is True


def test_nothing_to_change_sends_no_request(cached, namespace):
    """The cached object already is as wanted: no read, no write. The same cache behind a
    client whose API server cannot be reached answers it all the same."""
    kube, _ = cached
    unreachable = RestKube(Endpoint(server="https://127.0.0.1:9", insecure=True),
                           timeout_seconds=2, max_attempts=2)
    offline = CachedKube(unreachable, kube.cache)
    updated = offline.update_with_retry(GROUP, VERSION, namespace, "rollouts", "web",
                                        lambda o: o)
    assert not updated.changed and updated.attempts == 1
    with pytest.raises(Unavailable):  # a change must reach the server
        offline.update_with_retry(GROUP, VERSION, namespace, "rollouts", "web", _paused(True))
