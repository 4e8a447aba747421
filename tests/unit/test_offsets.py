"""At-least-once bookkeeping: a position is committable only when everything below it is done."""

from __future__ import annotations

from service.offsets import OffsetTracker

TP = ("alerts", 0)
OTHER = ("alerts", 1)


def test_out_of_order_acknowledgements_commit_only_the_contiguous_prefix() -> None:
    tracker = OffsetTracker()
    for offset in range(10, 15):
        tracker.register(TP, offset)
    tracker.acknowledge(TP, 12)
    tracker.acknowledge(TP, 13)
    assert tracker.committable() == {}
    tracker.acknowledge(TP, 10)
    assert tracker.committable() == {TP: 11}
    tracker.acknowledge(TP, 11)
    assert tracker.committable() == {TP: 14}  # 10-13 done, 14 still in flight
    assert tracker.in_flight(TP) == 1


def test_a_message_with_several_outputs_waits_for_all() -> None:
    tracker = OffsetTracker()
    tracker.register(TP, 0, outputs=3)
    tracker.acknowledge(TP, 0)
    tracker.acknowledge(TP, 0)
    assert tracker.committable() == {}
    tracker.acknowledge(TP, 0)
    assert tracker.committable() == {TP: 1}


def test_zero_outputs_is_done_at_once_and_commits_are_not_repeated() -> None:
    tracker = OffsetTracker()
    tracker.register(TP, 5, outputs=0)
    assert tracker.committable() == {TP: 6}
    tracker.mark_committed({TP: 6})
    assert tracker.committable() == {}
    tracker.register(TP, 6)
    tracker.acknowledge(TP, 6)
    assert tracker.committable() == {TP: 7}


def test_partitions_are_independent_and_forgotten_on_revocation() -> None:
    tracker = OffsetTracker()
    tracker.register(TP, 0)
    tracker.register(OTHER, 0)
    tracker.acknowledge(OTHER, 0)
    assert tracker.committable() == {OTHER: 1}
    tracker.forget(TP)
    assert tracker.in_flight() == 0
    tracker.acknowledge(TP, 0)  # a late acknowledgement of a revoked partition is ignored
    assert tracker.committable() == {OTHER: 1}
