"""Where outputs go: Kafka topics (the live service, topic replays), a resumable Parquet dataset
(replays) or memory (offline scoring, ``top``). A sink tells the engine, through ``on_written``,
when an output of an input is safely written: only then may the input's position be committed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from service import __version__
from service.exceptions import InputError
from service.processing import ScoredBatch
from service.routing import Row, Source
from service.sources import Headers, Input

# an output of each input at these source positions is written (a batch's at once)
Written = Callable[[Sequence[Source]], None]

HEADER_PREFIX = "alert_anomaly."


class OutputSink(Protocol):
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

    def close(self, timeout_s: float = 10.0) -> None:
        """Release the sink, waiting at most ``timeout_s``; unwritten outputs are dropped (their
        inputs are not committed, so they are redone)."""


def dead_letter_headers(source: Source, error: InputError, original: Headers | None) -> Headers:
    """Headers of a dead letter: the reason, the error, the lineage, the service version, then
    the original message's own headers."""
    headers: Headers = [
        (f"{HEADER_PREFIX}error", error.reason.encode()),
        (f"{HEADER_PREFIX}error_message", str(error).encode()),
        (f"{HEADER_PREFIX}source_topic", source.topic.encode()),
        (f"{HEADER_PREFIX}source_partition", str(source.partition).encode()),
        (f"{HEADER_PREFIX}source_offset", str(source.offset).encode()),
        (f"{HEADER_PREFIX}source_timestamp", str(source.timestamp_ms or "").encode()),
        (f"{HEADER_PREFIX}service_version", __version__.encode()),
    ]
    return headers + list(original or [])
