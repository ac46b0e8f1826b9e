"""The controller's heap keeper: what lives is frozen (full collections skip it), young
garbage cycles are still collected, and a periodic sweep reclaims cycles frozen alive."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

from meshctl.controller.heap import HeapKeeper


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture
def keeper():
    yield HeapKeeper(threading.Event(), threading.Event(), sweep_every=3)
    gc.unfreeze()


def test_what_lives_is_frozen_and_young_cycles_are_still_collected(keeper):
    keeper.settle()  # the first round sweeps, then freezes
    kept = Node()
    gone = weakref.ref(Node())  # garbage before the next round
    keeper.settle()
    assert gone() is None
    assert gc.get_freeze_count() > 0 and gc.is_tracked(kept)
    assert kept.me is kept


def test_a_cycle_frozen_alive_is_reclaimed_by_the_next_sweep(keeper):
    keeper.settle()
    node = Node()
    frozen = weakref.ref(node)
    keeper.settle()  # frozen while alive
    del node
    gc.collect()
    assert frozen() is not None  # a plain collection skips the frozen
    keeper.settle()  # a young round: still there
    assert frozen() is not None
    keeper.settle()  # every third round: unfreeze and collect everything
    assert frozen() is None


def test_it_stops_without_waiting_for_the_caches():
    stop = threading.Event()
    stop.set()
    HeapKeeper(threading.Event(), stop).run()  # returns: never ready, asked to stop
