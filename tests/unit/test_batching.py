"""The micro-batcher over a grid of sizes, deadlines and arrival patterns, with a fake clock."""

from __future__ import annotations

import itertools

import pytest

from service.core.batching import MicroBatcher


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("max_rows", "delay", "gap", "n"),
    list(itertools.product([1, 3, 8], [0.01, 0.05], [0.0, 0.004, 0.02], [1, 7, 20])),
)
def test_every_item_is_released_once_in_order_within_limits(
    max_rows: int, delay: float, gap: float, n: int
) -> None:
    clock = Clock()
    batcher: MicroBatcher[int] = MicroBatcher(max_rows, delay, clock)
    released: list[tuple[float, list[int]]] = []
    arrival = {}
    for i in range(n):
        arrival[i] = clock.now
        full = batcher.add("k", i)
        if full is not None:
            released.append((clock.now, full))
        clock.now += gap
        released += [(clock.now, items) for _, items in batcher.due()]
    while len(batcher):  # the loop keeps polling: time passes until the deadline
        wait = batcher.seconds_to_deadline()
        assert wait is not None
        assert 0 <= wait <= delay
        clock.now += wait
        released += [(clock.now, items) for _, items in batcher.due()]
    items = [i for _, batch in released for i in batch]
    assert items == list(range(n))
    for when, batch in released:
        assert 1 <= len(batch) <= max_rows
        assert when - arrival[batch[0]] <= delay + gap + 1e-9  # the deadline of its oldest item
        if len(batch) < max_rows:  # a partial batch leaves only at its deadline
            assert when - arrival[batch[0]] >= delay - 1e-9


def test_keys_are_batched_separately() -> None:
    clock = Clock()
    batcher: MicroBatcher[str] = MicroBatcher(2, 1.0, clock)
    assert batcher.add("Periodic", "p1") is None
    assert batcher.add("Transient", "t1") is None
    assert batcher.add("Periodic", "p2") == ["p1", "p2"]
    assert len(batcher) == 1
    clock.now = 0.5
    assert batcher.due() == []
    clock.now = 1.0
    assert batcher.due() == [("Transient", ["t1"])]
    assert batcher.seconds_to_deadline() is None


def test_drain_releases_everything() -> None:
    batcher: MicroBatcher[int] = MicroBatcher(10, 5.0, Clock())
    for i in range(3):
        batcher.add("a" if i % 2 else "b", i)
    assert sorted(batcher.drain()) == [("a", [1]), ("b", [0, 2])]
    assert len(batcher) == 0


def test_invalid_limits() -> None:
    with pytest.raises(ValueError, match="max_rows"):
        MicroBatcher(0, 1.0)
    with pytest.raises(ValueError, match="max_delay_s"):
        MicroBatcher(1, 0.0)


def test_late_batches_leave_oldest_first_and_no_more_than_asked() -> None:
    clock = Clock()
    batcher: MicroBatcher[str] = MicroBatcher(10, 1.0, clock)
    batcher.add("Stochastic", "s1")
    clock.now = 0.1
    batcher.add("Periodic", "p1")
    clock.now = 0.2
    batcher.add("Transient", "t1")
    clock.now = 1.15  # Stochastic and Periodic are late, Transient not yet
    assert batcher.due(limit=0) == []
    assert batcher.due(limit=1) == [("Stochastic", ["s1"])]
    batcher.add("Periodic", "p2")  # a late batch left open keeps taking rows
    assert batcher.due() == [("Periodic", ["p1", "p2"])]
    clock.now = 1.2
    assert batcher.due(limit=5) == [("Transient", ["t1"])]
    assert len(batcher) == 0
