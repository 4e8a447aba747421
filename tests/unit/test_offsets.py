"""At-least-once bookkeeping: a position is committable only when everything below it is done."""

from __future__ import annotations

from service.core.offsets import OffsetTracker
from service.records import Lineage, Partition

TP = ("alerts", 0)
OTHER = ("alerts", 1)


def at(tp: Partition, *offsets: int) -> list[Lineage]:
    return [Lineage(tp[0], tp[1], offset, None) for offset in offsets]


def test_out_of_order_acknowledgements_commit_only_the_contiguous_prefix() -> None:
    tracker = OffsetTracker()
    for offset in range(10, 15):
        tracker.register(TP, offset)
    tracker.written(at(TP, 12))
    tracker.written(at(TP, 13))
    assert tracker.committable() == {}
    tracker.written(at(TP, 10))
    assert tracker.committable() == {TP: 11}
    tracker.written(at(TP, 11))
    assert tracker.committable() == {TP: 14}  # 10-13 done, 14 still in flight
    assert tracker.in_flight(TP) == 1


def test_a_message_with_several_outputs_waits_for_all() -> None:
    tracker = OffsetTracker()
    tracker.register(TP, 0, outputs=3)
    tracker.written(at(TP, 0))
    tracker.written(at(TP, 0))
    assert tracker.committable() == {}
    assert (tracker.written_outputs, tracker.completed_inputs) == (2, 0)
    tracker.written(at(TP, 0))
    assert tracker.committable() == {TP: 1}
    assert (tracker.written_outputs, tracker.completed_inputs) == (3, 1)


def test_zero_outputs_is_done_at_once_and_commits_are_not_repeated() -> None:
    tracker = OffsetTracker()
    tracker.register(TP, 5, outputs=0)
    assert tracker.committable() == {TP: 6}
    tracker.mark_committed({TP: 6})
    assert tracker.committable() == {}
    tracker.register(TP, 6)
    tracker.written(at(TP, 6))
    assert tracker.committable() == {TP: 7}


def test_partitions_are_independent_and_forgotten_on_revocation() -> None:
    tracker = OffsetTracker()
    tracker.register(TP, 0)
    tracker.register(OTHER, 0)
    tracker.written(at(OTHER, 0))
    assert tracker.committable() == {OTHER: 1}
    tracker.forget(TP)
    assert tracker.in_flight() == 0
    tracker.written(at(TP, 0))  # a late acknowledgement of a revoked partition is ignored
    assert tracker.committable() == {OTHER: 1}


def test_a_batch_is_acknowledged_at_once_across_partitions_and_repeats() -> None:
    tracker = OffsetTracker()
    tracker.register(TP, 0, outputs=2)
    for offset in (1, 2):
        tracker.register(TP, offset)
    tracker.register(OTHER, 7)
    tracker.written(at(TP, 2, 0) + at(OTHER, 7) + at(TP, 1))
    assert tracker.committable() == {OTHER: 8}  # offset 0 waits for its second output
    tracker.written(at(TP, 0))
    assert tracker.committable() == {TP: 3, OTHER: 8}
    assert tracker.written_outputs == 5
