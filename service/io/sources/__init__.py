"""Where inputs come from: a Kafka consumer group (the live service), a bounded topic range or
files and tables (replays, offline scoring). Every source yields :class:`Input` s and takes back
the positions up to which every output is safely written (:meth:`InputSource.commit`)."""

from __future__ import annotations

from typing import Any, Protocol

from service.records import Input, Partition


class InputSource(Protocol):
    """A source of inputs for :class:`service.core.engine.Engine`."""

    def start(self, listener: Any) -> None:
        """Begin reading (subscribe, assign, open); ``listener`` hears of rebalances and
        commits (:class:`service.io.sources.kafka.Rebalancing`)."""

    def read(self, max_inputs: int, timeout_s: float) -> list[Input] | None:
        """Up to ``max_inputs`` inputs, waiting at most ``timeout_s`` for the first; None once
        a bounded source is exhausted."""

    def commit(self, positions: dict[Partition, int], wait_s: float | None) -> None:
        """Every output of the inputs before these offsets is written: remember or commit
        (asynchronously with ``wait_s`` None, else waiting at most ``wait_s``)."""

    def state(self) -> dict[str, Any]:
        """Where a replay resumes (the committed positions), for checkpoints."""

    def total(self) -> int | None:
        """How many inputs a bounded source holds, when cheap to know (progress bars)."""

    def close(self, timeout_s: float = 10.0) -> None:
        """Release the source, waiting at most ``timeout_s``."""
