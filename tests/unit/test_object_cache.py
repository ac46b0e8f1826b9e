"""The controller's watch cache: newer versions replace older ones, and an event for the
version the cache already holds (this process's own write coming back) is no news."""

from __future__ import annotations

import pytest

from meshctl.adapters.cache import ApiClock, ObjectCache
from meshctl.adapters.kube import json_copy
from meshctl.adapters.parsed import Parsed


def rollout(version: int, **annotations: str) -> dict:
    return {"metadata": {"name": "web", "namespace": "shop", "resourceVersion": str(version),
                         "annotations": annotations}}


@pytest.mark.parametrize("held, event, news, kept", [
    (None, 5, True, 5),  # first sight
    (5, 6, True, 6),  # someone changed it
    (6, 6, False, 6),  # the echo of a write whose answer is already cached
    (7, 6, True, 7),  # an older change a later write merged: news, but the newer stays
])
def test_put_keeps_the_newest_and_says_whether_it_is_news(held, event, news, kept):
    cache = ObjectCache()
    if held is not None:
        cache.put("rollouts", rollout(held))
    assert cache.put("rollouts", rollout(event)) is news
    found = cache.get("rollouts", "shop", "web")
    assert found is not None and found["metadata"]["resourceVersion"] == str(kept)


def test_reads_share_the_object_and_a_newer_version_replaces_it_whole():
    cache = ObjectCache()
    first = rollout(1, a="1")
    cache.put("rollouts", first)
    held = cache.get("rollouts", "shop", "web")
    assert held is first and cache.list("rollouts", "shop") == [first]
    cache.put("rollouts", rollout(2, a="2"))
    assert held["metadata"]["annotations"] == {"a": "1"}  # what a pass holds never changes


def test_json_copy_is_deep_and_equal():
    obj = {"spec": {"http": [{"route": [{"weight": 90}]}]}, "n": 1, "s": "x", "none": None}
    copied = json_copy(obj)
    assert copied == obj
    copied["spec"]["http"][0]["route"][0]["weight"] = 10
    assert obj["spec"]["http"][0]["route"][0]["weight"] == 90


def test_a_parse_is_made_once_per_object_version():
    parsed = Parsed(limit=2)
    calls: list[str] = []

    def parse(obj):
        calls.append(obj["metadata"].get("resourceVersion", "-"))
        return len(calls)

    v1 = {"metadata": {"uid": "u1", "resourceVersion": "1"}}
    assert parsed.of(v1, "status", parse) == parsed.of(v1, "status", parse) == 1
    assert parsed.of({"metadata": {"uid": "u1", "resourceVersion": "2"}}, "status", parse) == 2
    assert parsed.of(v1, "document", parse) == 3  # another parse of the same version
    assert parsed.of(v1, "status", parse) == 4  # beyond the limit of 2: made again
    local = {"metadata": {"name": "web"}}  # no uid (a file): never kept
    parsed.of(local, "status", parse)
    parsed.of(local, "status", parse)
    assert calls == ["1", "2", "1", "1", "-", "-"]


def test_the_api_clock_sums_each_threads_calls_and_hands_each_call_on():
    import threading

    seen = []
    clock = ApiClock(lambda verb, plural, seconds: seen.append((verb, plural, seconds)))
    with clock.timing("PUT", "virtualservices"):
        pass
    with pytest.raises(ValueError), clock.timing("PATCH", "rollouts/status"):
        raise ValueError("a failed call is still time spent waiting")
    assert [(v, p) for v, p, _ in seen] == [("PUT", "virtualservices"),
                                            ("PATCH", "rollouts/status")]
    assert clock.waited() == pytest.approx(sum(s for _, _, s in seen))
    other = []
    thread = threading.Thread(target=lambda: other.append(clock.waited()))
    thread.start()
    thread.join()
    assert other == [0.0]  # another thread's passes start from their own sum
