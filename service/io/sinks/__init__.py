"""Where outputs go: Kafka topics (the live service, topic replays), a resumable Parquet dataset
(replays) or memory (offline scoring, ``top``). A sink tells the engine, through ``on_written``,
when an output of an input is safely written: only then may the input's position be committed.
What a dead letter carries is built in one place for every sink (:mod:`.envelope`)."""

from __future__ import annotations

from typing import Any, Protocol

from service.exceptions import InputError
from service.records import Input, Row, ScoredBatch


class OutputSink(Protocol):
    outputs_per_row: int  # what a scored row waits for before its input is committed
    keeps_inputs: bool  # its rows carry their inputs (Row.origin)

    def write(self, batch: ScoredBatch, rows: list[Row]) -> None:
        """The scores of a batch (one per row); each row's input is told when written."""

    def dead_letter(self, item: Input, error: InputError) -> None:
        """An input that cannot be scored, with the reason."""

    def poll(self, timeout_s: float) -> None:
        """Serve acknowledgements and retries, waiting at most ``timeout_s``."""

    def flush(self, timeout_s: float) -> None:
        """Write what is buffered and wait (at most ``timeout_s``) for its acknowledgements."""

    def checkpoint(self, state: dict[str, Any]) -> None:
        """Everything written so far belongs with the source's resumable ``state``."""

    def resumed(self) -> dict[str, Any]:
        """The source's state saved by the checkpoint this sink continues ({}: afresh)."""

    def close(self, timeout_s: float = 10.0) -> None:
        """Release the sink, waiting at most ``timeout_s``; unwritten outputs are dropped (their
        inputs are not committed, so they are redone)."""


class WrittenAtOnce:
    """The rest of a sink that writes each output when handed it (:meth:`write` and
    :meth:`dead_letter` tell ``on_written`` at once): nothing to poll, flush or release, and
    nothing to resume from. A new sink of that kind is its two writing methods."""

    outputs_per_row = 1
    keeps_inputs = False

    def poll(self, timeout_s: float) -> None:
        """Written at once."""

    def flush(self, timeout_s: float) -> None:
        """Written at once."""

    def checkpoint(self, state: dict[str, Any]) -> None:
        """Not resumable."""

    def resumed(self) -> dict[str, Any]:
        return {}

    def close(self, timeout_s: float = 10.0) -> None:
        """Nothing to release."""
