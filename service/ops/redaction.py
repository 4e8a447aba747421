"""Secrets never leave the process in text: the secret values of the settings in effect are
registered here once loaded, and every log event, librdkafka log line and error line passes
through :func:`redact`, which replaces them with ``**********``.

This is the last line of defence: settings are printed masked and error messages never quote a
value that failed to parse; this catches what a library repeats (librdkafka's messages, a
client property echoed back in an error).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any

MASK = "**********"
# a shorter value would mask ordinary text wherever it occurs (it is still masked where settings
# are printed, and never quoted in an error)
MIN_LENGTH = 4

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def register(values: Iterable[str]) -> None:
    """Add secret values to be masked from now on (longest first, so that a secret containing
    another is masked whole)."""
    global _secrets
    with _lock:
        known = set(_secrets) | {v for v in values if len(v) >= MIN_LENGTH}
        _secrets = tuple(sorted(known, key=len, reverse=True))


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by :data:`MASK`."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v) for v in value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


def redact_event(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    """structlog processor: every value of the event, nested ones included, redacted."""
    if not _secrets:
        return event
    return {key: _redact_value(value) for key, value in event.items()}


class RedactFilter(logging.Filter):
    """For stdlib handlers (librdkafka's log lines): the formatted message redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            message = record.getMessage()
            cleaned = redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True
