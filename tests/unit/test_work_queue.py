"""The controller's work queue: each key once, never to two workers, urgent keys first."""

from __future__ import annotations

import threading
import time

from meshctl.controller.queue import LEAD, Rank, WorkQueue


def drain(queue: WorkQueue) -> list[object]:
    """Every key due now, in the order the queue hands them out."""
    taken = []
    while (key := queue.get(timeout=0)) is not None:
        taken.append(key)
        queue.done(key)
    return taken


def test_due_keys_come_in_the_order_they_were_added_and_each_once() -> None:
    queue = WorkQueue()
    for key in ("a", "b", "a", "c", "b"):
        queue.add(key)
    assert len(queue) == 3
    assert drain(queue) == ["a", "b", "c"]


def test_an_urgent_key_is_served_before_keys_that_are_merely_due() -> None:
    queue = WorkQueue()
    for key in ("timer-1", "timer-2", "timer-3"):
        queue.add(key)
    queue.add("abort", Rank.URGENT)
    queue.add("new-template", Rank.URGENT)
    assert drain(queue) == ["abort", "new-template", "timer-1", "timer-2", "timer-3"]


def test_a_due_key_made_urgent_moves_ahead_and_an_urgent_key_stays_urgent() -> None:
    queue = WorkQueue()
    queue.add("a")
    queue.add("b")
    queue.add("b", Rank.URGENT)  # already queued: it moves to the front
    queue.add("c", Rank.URGENT)
    queue.add("c")  # asked again, not urgently: it keeps its place
    assert len(queue) == 3
    assert drain(queue) == ["b", "c", "a"]


def test_a_delayed_key_waits_for_its_time_unless_it_is_added_urgently() -> None:
    queue = WorkQueue()
    queue.add_after("later", 60.0)
    queue.add_after("soon", 60.0)
    assert queue.get(timeout=0) is None
    queue.add("soon", Rank.URGENT)
    assert drain(queue) == ["soon"]
    assert len(queue) == 1  # "later" still waits


def test_a_key_added_while_a_worker_has_it_comes_back_once_done_with_its_urgency() -> None:
    queue = WorkQueue()
    queue.add("busy")
    queue.add("other")
    assert queue.get(timeout=0) == "busy"
    queue.add("busy", Rank.URGENT)  # not handed to a second worker meanwhile
    assert queue.get(timeout=0) == "other"
    assert queue.get(timeout=0) is None
    queue.done("other")
    queue.add("third")
    queue.done("busy")
    assert drain(queue) == ["busy", "third"]


def test_backoff_doubles_per_failure_up_to_the_cap_and_forget_resets_it() -> None:
    queue = WorkQueue(base_backoff=0.5, max_backoff=3.0)
    assert [queue.backoff("k") for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    queue.forget("k")
    assert queue.backoff("k") == 0.5


def test_a_waiting_worker_wakes_for_a_key_and_close_releases_it() -> None:
    queue = WorkQueue()
    got: list[object] = []
    worker = threading.Thread(target=lambda: got.append(queue.get(timeout=30)))
    worker.start()
    queue.add("k", Rank.URGENT)
    worker.join(timeout=30)
    assert got == ["k"]
    closing = threading.Thread(target=lambda: got.append(queue.get(timeout=30)))
    closing.start()
    queue.close()
    closing.join(timeout=30)
    assert got == ["k", None]


def test_each_key_handed_out_reports_how_long_it_waited_after_it_was_due() -> None:
    heard: list[tuple[bool, float]] = []
    queue = WorkQueue(on_wait=lambda urgent, seconds: heard.append((urgent, seconds)))
    queue.add("timer")
    queue.add("abort", Rank.URGENT)
    time.sleep(0.05)  # both wait here, as behind a busy worker
    assert drain(queue) == ["abort", "timer"]
    assert [urgent for urgent, _ in heard] == [True, False]
    assert all(0.05 <= seconds < 5.0 for _, seconds in heard), heard


def test_an_abort_goes_ahead_of_urgent_keys_and_timers() -> None:
    queue = WorkQueue()
    queue.add("timer")
    queue.add("new-template", Rank.URGENT)
    queue.add("abort", Rank.ABORT)
    assert drain(queue) == ["abort", "new-template", "timer"]


def test_a_timer_long_overdue_goes_before_newer_urgent_keys_so_none_starves() -> None:
    """A rank is a head start of LEAD seconds: a timer that fell due more than a second
    before an urgent key came (an analysis measurement behind a stream of new templates)
    is served first."""
    queue = WorkQueue()
    queue.add_after("measurement", 0.0)
    time.sleep(LEAD[Rank.URGENT] + 0.1)  # the workers were busy all that time
    queue.add("new-template", Rank.URGENT)
    queue.add("abort", Rank.ABORT)
    assert drain(queue) == ["abort", "measurement", "new-template"]


def test_the_ranked_only_worker_takes_aborts_then_urgent_keys_and_never_a_timer() -> None:
    queue = WorkQueue()
    queue.add("timer")
    queue.add("new-template", Rank.URGENT)
    queue.add("abort", Rank.ABORT)
    taken = []
    while (key := queue.get(timeout=0, urgent_only=True)) is not None:
        taken.append(key)
        queue.done(key)
    assert taken == ["abort", "new-template"]
    assert drain(queue) == ["timer"]  # the other workers still have it, once


def test_a_key_handed_to_one_kind_of_worker_is_not_handed_to_the_other() -> None:
    queue = WorkQueue()
    queue.add("a", Rank.URGENT)
    queue.add("b", Rank.URGENT)
    assert queue.get(timeout=0) == "a"  # from the whole line
    assert queue.get(timeout=0, urgent_only=True) == "b"  # "a" is not offered again
    assert queue.get(timeout=0, urgent_only=True) is None
    assert queue.get(timeout=0) is None
    queue.done("a")
    queue.done("b")
    assert len(queue) == 0


def test_a_waiting_ranked_only_worker_wakes_for_an_abort_but_not_for_a_timer() -> None:
    queue = WorkQueue()
    got: list[object] = []
    express = threading.Thread(target=lambda: got.append(queue.get(30, urgent_only=True)))
    express.start()
    queue.add("timer")
    time.sleep(0.1)
    assert got == []  # a timer is left to the other workers
    queue.add("abort", Rank.ABORT)
    express.join(timeout=30)
    assert got == ["abort"]
    assert drain(queue) == ["timer"]
