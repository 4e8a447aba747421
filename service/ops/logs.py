"""Structured logging with structlog: JSON lines in production, colourless console lines in
development; everything goes to stderr so that stdout carries command output only."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

import structlog

from service.ops.redaction import RedactFilter, redact_event

LogFormat = Literal["json", "console"]


class _Stderr:
    """Whatever ``sys.stderr`` is when a line is written (not when logging was configured): a
    caller that swaps it (a test harness capturing output, a redirection) keeps the logs."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


STDERR = _Stderr()


def default_format() -> LogFormat:
    """Console when stderr is a terminal, JSON otherwise (containers, CI, log shippers)."""
    return "console" if sys.stderr.isatty() else "json"


def configure_logging(fmt: LogFormat | None = None, level: str = "info") -> None:
    """Configure structlog (and the stdlib root logger, for libraries) once per process."""
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if (fmt or default_format()) == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact_event,  # no secret value in any event (service.ops.redaction)
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=STDERR),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    # Libraries' stdlib logs (librdkafka through LIBRDKAFKA_LOGGER, urllib3...) in the same format
    handler = logging.StreamHandler(STDERR)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(allow=[ORIGINAL_LEVEL]),
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
    handler.addFilter(RedactFilter())
    logging.basicConfig(level=max(numeric, logging.WARNING), handlers=[handler], force=True)
    LIBRDKAFKA_LOGGER.setLevel(numeric)  # its debug lines (kafka.extra {"debug": ...}) too


_NUMBERS = re.compile(r"\d+")


class RepeatFilter(logging.Filter):
    """Lets a librdkafka log line through once per ``window_s`` per kind (facility, client and
    text with its numbers blanked), saying how many were held back; debug lines all pass."""

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window_s = window_s
        self._clock = clock
        self._seen: dict[tuple[Any, ...], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG:
            return True
        key = (record.levelno, *(_NUMBERS.sub("#", str(a)) for a in (record.args or ())))
        now = self._clock()
        shown = self._seen.get(key)
        if shown is not None and now - shown[0] < self.window_s:
            self._seen[key] = (shown[0], shown[1] + 1)
            return False
        if shown is not None and shown[1]:
            record.msg = f"{record.msg} (and {shown[1]} more like it in {self.window_s:.0f} s)"
        self._seen[key] = (now, 0)
        return True


ORIGINAL_LEVEL = "librdkafka_level"


class DebugLevel(logging.Filter):
    """librdkafka's lines at debug level, their own level kept as ``librdkafka_level``: what they
    say reaches the commands' own lines (``waiting_for_brokers``, ``brokers_unavailable``, the
    error line), so that at the default level no library line comes before or buries them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            setattr(record, ORIGINAL_LEVEL, record.levelname.lower())
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return LIBRDKAFKA_LOGGER.isEnabledFor(logging.DEBUG)


# librdkafka's own log lines (clients are given it as "logger"), held back when they repeat
# (by their own level), then at debug level
LIBRDKAFKA_LOGGER = logging.getLogger("librdkafka")
LIBRDKAFKA_LOGGER.addFilter(RepeatFilter())
LIBRDKAFKA_LOGGER.addFilter(DebugLevel())
