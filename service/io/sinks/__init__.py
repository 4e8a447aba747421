"""Where outputs go: Kafka topics (the live service, topic replays), a resumable Parquet dataset
(replays) or memory (offline scoring, ``top``). A sink tells the engine, through ``on_written``,
when an output of an input is safely written: only then may the input's position be committed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from service import __version__
from service.core.processing import ScoredBatch
from service.core.routing import Row, Source
from service.exceptions import InputError
from service.io.sources import Headers, Input

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


# What a reference dead letter (an output no retry can write, replaced) keeps of the input's key
# and headers: any key up to KEY_LIMIT bytes (a longer one is replaced by its SHA-256), and the
# input's headers in order while they number at most HEADERS_COUNT_LIMIT and take at most
# HEADERS_BYTES_LIMIT bytes. Far below any broker's message size limit (1 MB by default), so a
# reference always fits where a dead letter of a normal size would.
KEY_LIMIT = 1024
HEADERS_COUNT_LIMIT = 64
HEADERS_BYTES_LIMIT = 16 * 1024
MESSAGE_LIMIT = 1000  # characters of an error message kept in its header


def dead_letter_headers(source: Source, error: InputError, original: Headers | None) -> Headers:
    """Headers of a dead letter: the reason, the error (at most :data:`MESSAGE_LIMIT`
    characters), the lineage, the service version, then the original message's own headers."""
    message = str(error)
    if len(message) > MESSAGE_LIMIT:
        message = f"{message[:MESSAGE_LIMIT]}... ({len(message)} characters)"
    headers: Headers = [
        (f"{HEADER_PREFIX}error", error.reason.encode()),
        (f"{HEADER_PREFIX}error_message", message.encode()),
        (f"{HEADER_PREFIX}source_topic", source.topic.encode()),
        (f"{HEADER_PREFIX}source_partition", str(source.partition).encode()),
        (f"{HEADER_PREFIX}source_offset", str(source.offset).encode()),
        (f"{HEADER_PREFIX}source_timestamp", str(source.timestamp_ms or "").encode()),
        (f"{HEADER_PREFIX}service_version", __version__.encode()),
    ]
    return headers + list(original or [])


def bounded_key(key: bytes | None) -> tuple[bytes | None, Headers]:
    """A key of at most :data:`KEY_LIMIT` bytes: the key itself, or ``sha256:<hex>`` of it
    with its size and SHA-256 in headers."""
    if key is None or len(key) <= KEY_LIMIT:
        return key, []
    digest = hashlib.sha256(key).hexdigest()
    return f"sha256:{digest}".encode(), [
        (f"{HEADER_PREFIX}original_key_size", str(len(key)).encode()),
        (f"{HEADER_PREFIX}original_key_sha256", digest.encode()),
    ]


def bounded_headers(headers: Headers | None) -> Headers:
    """The leading headers within :data:`HEADERS_COUNT_LIMIT` and :data:`HEADERS_BYTES_LIMIT`;
    when some are left out, the original count and size and how many were dropped, in headers."""
    headers = list(headers or [])
    sizes = [_size(name, value) for name, value in headers]
    kept = 0
    while (
        kept < len(headers)
        and kept < HEADERS_COUNT_LIMIT
        and sum(sizes[: kept + 1]) <= HEADERS_BYTES_LIMIT
    ):
        kept += 1
    if kept == len(headers):
        return headers
    return [
        *headers[:kept],
        (f"{HEADER_PREFIX}original_headers_count", str(len(headers)).encode()),
        (f"{HEADER_PREFIX}original_headers_size", str(sum(sizes)).encode()),
        (f"{HEADER_PREFIX}original_headers_dropped", str(len(headers) - kept).encode()),
    ]


def _size(name: str, value: str | bytes | None) -> int:
    if value is None:
        return len(name.encode())
    return len(name.encode()) + len(value.encode() if isinstance(value, str) else value)
