"""Where inputs come from: a Kafka consumer group (the live service), a bounded topic range or
files and tables (replays, offline scoring). Every source yields :class:`Input` s and takes back
the positions up to which every output is safely written (:meth:`InputSource.commit`)."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from service.core.routing import Source

Headers = list[tuple[str, str | bytes | None]]
Position = tuple[str, int]  # (stream, partition) whose offsets a source commits


class Input(NamedTuple):
    """One unit of input: message bytes, or a table row's decoded record."""

    source: Source  # lineage, and the (stream, partition, offset) that is committed
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None
    records: list[Any] | None = None  # already decoded (a table row); [] = nothing to score


class InputSource(Protocol):
    """A source of inputs for :class:`service.core.engine.Engine`."""

    def start(self, listener: Any) -> None:
        """Begin reading (subscribe, assign, open); ``listener`` hears of rebalances and
        commits (:class:`service.io.sources.kafka.Rebalancing`)."""

    def read(self, max_inputs: int, timeout_s: float) -> list[Input] | None:
        """Up to ``max_inputs`` inputs, waiting at most ``timeout_s`` for the first; None once
        a bounded source is exhausted."""

    def commit(self, positions: dict[Position, int], wait_s: float | None) -> None:
        """Every output of the inputs before these offsets is written: remember or commit
        (asynchronously with ``wait_s`` None, else waiting at most ``wait_s``)."""

    def state(self) -> dict[str, Any]:
        """Where a replay resumes (the committed positions), for checkpoints."""

    def describe(self) -> dict[str, Any]:
        """What is read (names a replay's output)."""

    def total(self) -> int | None:
        """How many inputs a bounded source holds, when cheap to know (progress bars)."""

    def close(self, timeout_s: float = 10.0) -> None:
        """Release the source, waiting at most ``timeout_s``."""
