"""Whether the Kafka brokers answer, for every command that talks to them.

librdkafka reconnects by itself and reports every failed attempt - as an error callback and as a
log line, many a second while the brokers are down. Here they become one log line per change of
state (``brokers_unavailable``, ``brokers_available``), a summary every
:data:`SUMMARY_EVERY_S` while they stay down, readiness (``/readyz`` fails at once) and a deadline:
after ``kafka.unavailable_timeout_s`` without an answer, :meth:`Brokers.check` raises
:class:`BrokersUnavailableError` (exit status 3), so that an orchestrator can act.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog
from confluent_kafka import KafkaError

from service.exceptions import BrokersUnavailableError, KafkaServiceError
from service.logs import LIBRDKAFKA_LOGGER

log = structlog.get_logger(__name__)

SUMMARY_EVERY_S = 30.0
# errors that say only that a connection failed: counted, and summarised while down
CONNECTION_ERRORS = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._RESOLVE,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
    }
)


class Brokers:
    """The brokers' availability as the clients of one command see it."""

    def __init__(
        self,
        bootstrap_servers: str,
        timeout_s: float,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout_s = timeout_s
        self._on_change = on_change or (lambda available: None)
        self._clock = clock
        self.down_since: float | None = None
        self.started = clock()
        self.ever_answered = False
        self._last_summary = 0.0
        self._errors: Counter[str] = Counter()

    @property
    def available(self) -> bool:
        return self.down_since is None

    def error(self, error: KafkaError) -> None:
        """librdkafka's error callback."""
        if error.fatal():
            raise KafkaServiceError(f"fatal Kafka client error: {error}")
        if error.code() not in CONNECTION_ERRORS:
            log.warning("kafka_error", error=str(error))
            return
        self._errors[error.name()] += 1
        if error.code() == KafkaError._ALL_BROKERS_DOWN and self.down_since is None:
            self.down_since = self._clock()
            self._last_summary = self.down_since
            log.error(
                "brokers_unavailable",
                bootstrap_servers=self.bootstrap_servers,
                error=str(error),
                gives_up_after_s=self.timeout_s,
            )
            self._on_change(False)

    def answered(self) -> None:
        """Evidence that a broker answers (messages, acknowledgements, statistics)."""
        self.ever_answered = True
        if self.down_since is not None:
            log.info(
                "brokers_available",
                bootstrap_servers=self.bootstrap_servers,
                down_s=round(self._clock() - self.down_since, 1),
                errors=dict(self._errors),
            )
            self.down_since = None
            self._errors.clear()
            self._on_change(True)

    def statistics(self, stats_json: str) -> None:
        """librdkafka's statistics: a broker in state UP answers."""
        brokers = json.loads(stats_json).get("brokers", {})
        if any(b.get("state") == "UP" and b.get("nodeid", -1) >= 0 for b in brokers.values()):
            self.answered()

    def check(self) -> None:
        """Raise once the brokers have been down for ``timeout_s`` (exit status 3; 2 when no
        broker ever answered: then the address is the likelier fault); summarise meanwhile."""
        if self.down_since is None:
            return
        now = self._clock()
        down = now - self.down_since
        if down >= self.timeout_s and not self.ever_answered:
            raise KafkaServiceError(
                f"cannot reach a Kafka broker at {self.bootstrap_servers} "
                f"({now - self.started:.0f} s; is kafka.bootstrap_servers right?)"
            )
        if down >= self.timeout_s:
            raise BrokersUnavailableError(
                f"no Kafka broker answered for {down:.0f} s ({self.bootstrap_servers}); "
                "giving up (kafka.unavailable_timeout_s)"
            )
        if now - self._last_summary >= SUMMARY_EVERY_S:
            self._last_summary = now
            log.warning(
                "brokers_still_unavailable",
                down_s=round(down, 1),
                gives_up_in_s=round(self.timeout_s - down, 1),
                errors=dict(self._errors),
            )

    def hooks(self) -> dict[str, Any]:
        """librdkafka callbacks for a client of this command (error, log lines)."""
        return {"error_cb": self.error, "logger": LIBRDKAFKA_LOGGER}
