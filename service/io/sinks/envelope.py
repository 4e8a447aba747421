"""What a dead letter carries, built in one place for every sink: the headers of a dead letter
on the dead-letter topic, the reference that stands for an output the broker refuses for good,
and the row of a Parquet or CSV dead-letter file.

A dead letter on a topic is the input's own key and value (a tombstone included) with the
headers ``alert_anomaly.error`` (the reason), ``alert_anomaly.error_message`` (at most
:data:`MESSAGE_LIMIT` characters), ``alert_anomaly.source_topic``, ``source_partition``,
``source_offset``, ``source_timestamp`` and ``service_version``, then the input's own headers.

A reference (reason ``oversized`` or ``rejected``) carries the same headers, then what the
refused output was (``original_output``, ``original_error``, ``original_topic``,
``original_size``, ``original_sha256``), the output's key within :data:`KEY_LIMIT` and the
input's headers within :data:`HEADERS_COUNT_LIMIT` and :data:`HEADERS_BYTES_LIMIT`
(:func:`bounded_key`, :func:`bounded_headers`); its value is a small JSON reference to the
input. The bounds are far below any broker's message size limit (1 MB by default), so a
reference fits where a dead letter of a normal size would.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, NamedTuple

from service import __version__
from service.exceptions import DeadLetterReason, InputError
from service.records import Headers, Input, Lineage

HEADER_PREFIX = "alert_anomaly."
KEY_LIMIT = 1024  # bytes of a reference's key (a longer one is replaced by its SHA-256)
HEADERS_COUNT_LIMIT = 64  # input headers a reference keeps, in order ...
HEADERS_BYTES_LIMIT = 16 * 1024  # ... within this many bytes
MESSAGE_LIMIT = 1000  # characters of an error message kept in its header
OUTPUTS = ("score", "scribe_command")  # what an output is when it is not a dead letter


class Envelope(NamedTuple):
    """A message for the dead-letter topic."""

    key: bytes | None
    value: bytes | None
    headers: Headers


def dead_letter(item: Input, error: InputError) -> Envelope:
    """The dead letter of an input that cannot be scored: its own key and value (a tombstone
    included) with :func:`dead_letter_headers`."""
    return Envelope(item.key, item.value, dead_letter_headers(item.source, error, item.headers))


def dead_letter_headers(source: Lineage, error: InputError, original: Headers | None) -> Headers:
    """Headers of a dead letter: the reason, the error (at most :data:`MESSAGE_LIMIT`
    characters), the lineage, the service version, then the original message's own headers."""
    return _headers(source, error.reason, str(error), original)


def _headers(
    source: Lineage, reason: DeadLetterReason, message: str, original: Headers | None
) -> Headers:
    if len(message) > MESSAGE_LIMIT:
        message = f"{message[:MESSAGE_LIMIT]}... ({len(message)} characters)"
    headers: Headers = [
        (f"{HEADER_PREFIX}error", reason.encode()),
        (f"{HEADER_PREFIX}error_message", message.encode()),
        (f"{HEADER_PREFIX}source_topic", source.topic.encode()),
        (f"{HEADER_PREFIX}source_partition", str(source.partition).encode()),
        (f"{HEADER_PREFIX}source_offset", str(source.offset).encode()),
        (f"{HEADER_PREFIX}source_timestamp", str(source.timestamp_ms or "").encode()),
        (f"{HEADER_PREFIX}service_version", __version__.encode()),
    ]
    return headers + list(original or [])


def reference(
    source: Lineage,
    reason: DeadLetterReason,
    failure: str,
    *,
    what: str,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    input_headers: Headers | None,
) -> Envelope:
    """The dead letter that stands for an output (``key``, ``value`` to ``topic``; ``what``:
    one of :data:`OUTPUTS` or the reason of a dead letter) refused for good with the error
    ``failure``; ``input_headers``: the headers of the input it is the output of."""
    value = value or b""
    p = HEADER_PREFIX
    bounded, key_headers = bounded_key(key)
    message = f"the {what} output could not be written: {failure}"
    headers: Headers = [
        *_headers(source, reason, message, None),
        (f"{p}original_output", (what if what in OUTPUTS else "dead_letter").encode()),
        (f"{p}original_error", what.encode()),
        (f"{p}original_topic", topic.encode()),
        (f"{p}original_size", str(len(value)).encode()),
        (f"{p}original_sha256", hashlib.sha256(value).hexdigest().encode()),
        *key_headers,
        *bounded_headers(input_headers),
    ]
    body = {
        "alert_anomaly": f"{what} output not written: {reason}",
        "source_topic": source.topic,
        "source_partition": source.partition,
        "source_offset": source.offset,
        "original_size": len(value),
    }
    return Envelope(bounded, json.dumps(body).encode(), headers)


def dead_letter_row(item: Input, error: InputError) -> dict[str, Any]:
    """The row of a dead letter in a Parquet or CSV file (CSV leaves ``value`` out)."""
    return {
        "source_topic": item.source.topic,
        "source_partition": item.source.partition,
        "source_offset": item.source.offset,
        "reason": error.reason,
        "error": str(error),
        "value": item.value,
    }


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
