"""Micro-batching by size and deadline, one open batch per key (the top-level class).

Pure logic with an injectable clock, no I/O: a batch is released as soon as it holds
``max_rows`` items, or once its oldest item is ``max_delay_s`` old - as many of those as the
caller has room for (the engine: while inference is busy, a late batch waits and grows).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Open(Generic[T]):
    started: float
    items: list[T] = field(default_factory=list)


class MicroBatcher(Generic[T]):
    def __init__(
        self, max_rows: int, max_delay_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_rows < 1 or max_delay_s <= 0:
            raise ValueError("max_rows must be >= 1 and max_delay_s > 0")
        self.max_rows = max_rows
        self.max_delay_s = max_delay_s
        self._clock = clock
        self._open: dict[str, _Open[T]] = {}

    def __len__(self) -> int:
        """Items waiting in open batches."""
        return sum(len(b.items) for b in self._open.values())

    def add(self, key: str, item: T) -> list[T] | None:
        """Add an item; returns the batch of ``key`` if this item filled it."""
        batch = self._open.get(key)
        if batch is None:
            batch = self._open[key] = _Open(self._clock())
        batch.items.append(item)
        if len(batch.items) >= self.max_rows:
            del self._open[key]
            return batch.items
        return None

    def due(self, limit: int | None = None) -> list[tuple[str, list[T]]]:
        """Release the batches whose deadline has passed, oldest first: at most ``limit``
        (the others stay open, and keep growing up to ``max_rows``)."""
        now = self._clock()
        late = sorted(
            (b.started, k) for k, b in self._open.items() if now >= b.started + self.max_delay_s
        )
        keys = [k for _, k in late][:limit]
        return [(k, self._open.pop(k).items) for k in keys]

    def drain(self) -> list[tuple[str, list[T]]]:
        """Release every open batch (shutdown, rebalance)."""
        out = [(k, b.items) for k, b in self._open.items()]
        self._open.clear()
        return out

    def seconds_to_deadline(self) -> float | None:
        """Time until the earliest open batch is due (0 if overdue); None when nothing is open."""
        if not self._open:
            return None
        earliest = min(b.started for b in self._open.values())
        return max(0.0, earliest + self.max_delay_s - self._clock())
