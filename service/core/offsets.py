"""At-least-once offset bookkeeping.

Every input is registered with the number of outputs it will produce (scores or one dead
letter). An offset becomes committable only when its outputs and those of every earlier input of
its partition are written (acknowledged by the broker, or in a file part); the commit position is
then the next offset to read. Inputs of one partition are registered in offset order (Kafka's
guarantee; sources of files keep it too).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence

from service.records import Lineage, Partition


class OffsetTracker:
    def __init__(self) -> None:
        self._pending: dict[Partition, OrderedDict[int, int]] = {}
        self._position: dict[Partition, int] = {}  # next offset to commit (acknowledged)
        self._committed: dict[Partition, int] = {}
        self.written_outputs = 0
        self.completed_inputs = 0  # inputs whose every output is written
        self.last_written_at: float | None = None  # time.monotonic()

    def written(self, sources: Sequence[Lineage]) -> None:
        """An output of each input at ``sources`` is written (what sinks call, a batch at once)."""
        self.written_outputs += len(sources)
        self.last_written_at = time.monotonic()
        touched: set[Partition] = set()
        for topic, partition, offset, _ in sources:
            tp = (topic, partition)
            pending = self._pending.get(tp)
            if pending is None or offset not in pending:
                continue  # partition revoked meanwhile: its new owner reprocesses the message
            pending[offset] -= 1
            if not pending[offset]:
                self.completed_inputs += 1
            touched.add(tp)
        for tp in touched:
            self._advance(tp)

    def register(self, tp: Partition, offset: int, outputs: int = 1) -> None:
        """A consumed message awaiting ``outputs`` acknowledgements (0: nothing to wait for)."""
        pending = self._pending.get(tp)
        if pending is None:
            pending = self._pending[tp] = OrderedDict()
        pending[offset] = outputs
        if outputs == 0:
            self._advance(tp)

    def _advance(self, tp: Partition) -> None:
        pending = self._pending[tp]
        while pending:
            offset, left = next(iter(pending.items()))
            if left > 0:
                break
            pending.popitem(last=False)
            self._position[tp] = offset + 1

    def committable(self) -> dict[Partition, int]:
        """Positions acknowledged but not yet committed."""
        return {tp: pos for tp, pos in self._position.items() if self._committed.get(tp) != pos}

    def mark_committed(self, positions: dict[Partition, int]) -> None:
        """Record committed positions (an older, late-confirmed one never moves them back)."""
        for tp, pos in positions.items():
            if tp in self._position and pos > self._committed.get(tp, -1):
                self._committed[tp] = pos

    def in_flight(self, tp: Partition | None = None) -> int:
        """Messages registered but not fully acknowledged (of one partition, or all)."""
        if tp is not None:
            return len(self._pending.get(tp, ()))
        return sum(len(p) for p in self._pending.values())

    def forget(self, tp: Partition) -> None:
        """Drop a revoked partition's state."""
        for table in (self._pending, self._position, self._committed):
            table.pop(tp, None)
