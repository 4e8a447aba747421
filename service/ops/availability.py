"""Whether the Kafka brokers answer, for every command that talks to them.

librdkafka reconnects by itself and reports every failed attempt - as an error callback and as a
log line, many a second while the brokers are down. Here they become a few log lines:

* at start (no broker has answered yet), :meth:`Brokers.metadata` waits for the cluster's
  metadata in slices of :data:`WAIT_SLICE_S` (heartbeats and signals are served between them):
  ``waiting_for_brokers`` once, ``still_waiting_for_brokers`` every :data:`PROGRESS_EVERY_S`, and
  it gives up with exit status 2 (the address is the likelier fault) after
  ``kafka.unavailable_timeout_s``, or after :data:`REFUSED_TIMEOUT_S` while every bootstrap
  address refuses connections (nothing listens there);
* once a broker has answered, an outage is ``brokers_unavailable`` when it starts (``/readyz``
  fails at once), ``brokers_still_unavailable`` every :data:`PROGRESS_EVERY_S` and
  ``brokers_available`` when it ends; after ``kafka.unavailable_timeout_s`` without an answer,
  :meth:`Brokers.check` raises :class:`BrokersUnavailableError` (exit status 3).
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException

from service.exceptions import BrokersUnavailableError, KafkaServiceError
from service.ops.logs import LIBRDKAFKA_LOGGER

log = structlog.get_logger(__name__)

SUMMARY_EVERY_S = 30.0  # the sink's summary of failing deliveries
PROGRESS_EVERY_S = 15.0  # a line at least this often while no broker answers
WAIT_SLICE_S = 1.0  # longest metadata request while waiting: heartbeats and signals between
# at start, how long every bootstrap address may refuse connections before a command gives up
REFUSED_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 0.5  # a TCP connection attempt of the refusal probe
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
        quiet: bool = False,
    ) -> None:
        """``quiet``: count errors, log nothing (clients made only to check their properties)."""
        self.bootstrap_servers = bootstrap_servers
        self.timeout_s = timeout_s
        self._on_change = on_change or (lambda available: None)
        self._clock = clock
        self.quiet = quiet
        self.heartbeat: Callable[[], None] | None = None  # called between waits (liveness)
        self.down_since: float | None = None
        self.started = clock()
        self.ever_answered = False
        self.last_error: str | None = None  # librdkafka's last error text, for the error line
        self._waiting_said = False
        self._last_summary = 0.0
        self._errors: Counter[str] = Counter()

    @property
    def available(self) -> bool:
        return self.down_since is None

    def error(self, error: KafkaError) -> None:
        """librdkafka's error callback."""
        if error.fatal():
            raise KafkaServiceError(f"fatal Kafka client error: {error.str()}")
        self.last_error = error.str()
        if error.code() not in CONNECTION_ERRORS:
            if not self.quiet:
                log.warning("kafka_error", error=str(error))
            return
        self._errors[error.name()] += 1
        if error.code() == KafkaError._ALL_BROKERS_DOWN and self.down_since is None:
            self.down_since = self._clock()
            self._last_summary = self.down_since
            if not self.ever_answered:
                self.waiting()  # at start: what the command waits for, once
            elif not self.quiet:
                log.error(
                    "brokers_unavailable",
                    bootstrap_servers=self.bootstrap_servers,
                    error=str(error),
                    gives_up_after_s=self.timeout_s,
                )
            self._on_change(False)

    def waiting(self) -> None:
        """Say once what the command waits for (no broker has answered yet)."""
        if self._waiting_said or self.quiet:
            return
        self._waiting_said = True
        log.warning(
            "waiting_for_brokers",
            bootstrap_servers=self.bootstrap_servers,
            gives_up_after_s=self.timeout_s,
            refused_gives_up_after_s=min(REFUSED_TIMEOUT_S, self.timeout_s),
            **({"error": self.last_error} if self.last_error else {}),
        )

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
        """Raise once the brokers have been down for ``timeout_s``: :class:`BrokersUnavailableError`
        (exit status 3) when a broker had answered, else :class:`KafkaServiceError` (exit status
        2: the address is the likelier fault); meanwhile a progress line every
        :data:`PROGRESS_EVERY_S`."""
        if self.down_since is None:
            return
        now = self._clock()
        down = now - self.down_since
        if down >= self.timeout_s:
            raise self._gives_up(down if self.ever_answered else now - self.started)
        if now - self._last_summary >= PROGRESS_EVERY_S:
            self._last_summary = now
            self._progress(down)

    def metadata(self, client: Any, topic: str | None = None) -> Any:
        """The cluster's metadata (of ``topic``) from ``client`` (a Consumer, Producer or
        AdminClient), waiting for a broker in requests of at most :data:`WAIT_SLICE_S` (with
        :attr:`heartbeat` and Python's signal handlers between them). Says once what it waits
        for and every :data:`PROGRESS_EVERY_S` how long it has waited; gives up after
        ``timeout_s``, or after :data:`REFUSED_TIMEOUT_S` while every bootstrap address refuses
        connections (exit status 2 unless a broker had answered before)."""
        started = self._clock()
        last_progress = started
        refused_since: float | None = None
        while True:
            remaining = started + self.timeout_s - self._clock()
            try:
                metadata = client.list_topics(topic, timeout=max(0.1, min(WAIT_SLICE_S, remaining)))
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.code() not in CONNECTION_ERRORS:
                    raise KafkaServiceError(
                        f"metadata request to {self.bootstrap_servers} failed: {error.str()}"
                    ) from None
            else:
                self.answered()
                return metadata
            if self.heartbeat is not None:
                self.heartbeat()
            now = self._clock()
            waited = now - started
            if waited >= self.timeout_s:
                raise self._gives_up(waited)
            self.waiting()
            if self.ever_answered or not refuses(self.bootstrap_servers):
                refused_since = None
            elif refused_since is None:
                refused_since = now
            elif now - refused_since >= min(REFUSED_TIMEOUT_S, self.timeout_s):
                raise KafkaServiceError(
                    f"cannot reach a Kafka broker at {self.bootstrap_servers}: connection "
                    f"refused at every address for {now - refused_since:.0f} s (nothing listens "
                    "there: is kafka.bootstrap_servers right?)"
                )
            if now - last_progress >= PROGRESS_EVERY_S:
                last_progress = now
                self._progress(waited)

    def _progress(self, waited: float) -> None:
        if self.quiet:
            return
        if self.ever_answered:
            log.warning(
                "brokers_still_unavailable",
                down_s=round(waited, 1),
                gives_up_in_s=round(self.timeout_s - waited, 1),
                errors=dict(self._errors),
            )
        else:
            log.warning(
                "still_waiting_for_brokers",
                bootstrap_servers=self.bootstrap_servers,
                waited_s=round(waited, 1),
                gives_up_in_s=round(max(0.0, self.timeout_s - waited), 1),
                error=self.last_error,
            )

    def _gives_up(self, waited: float) -> KafkaServiceError:
        """The error a command stops with after ``waited`` seconds without a broker."""
        why = f" ({self.last_error})" if self.last_error else ""
        if self.ever_answered:
            return BrokersUnavailableError(
                f"no Kafka broker answered for {waited:.0f} s ({self.bootstrap_servers}){why}; "
                "giving up (kafka.unavailable_timeout_s)"
            )
        return KafkaServiceError(
            f"cannot reach a Kafka broker at {self.bootstrap_servers} within {waited:.0f} s"
            f"{why}: is kafka.bootstrap_servers right? (kafka.unavailable_timeout_s)"
        )

    def hooks(self) -> dict[str, Any]:
        """librdkafka callbacks for a client of this command (error, log lines)."""
        return {"error_cb": self.error, "logger": LIBRDKAFKA_LOGGER}


_SERVER = re.compile(r"^(?:[A-Za-z_]+://)?\[?([^\[\]]+?)\]?:(\d+)$")


def refuses(bootstrap_servers: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether every address of every bootstrap server refuses a TCP connection (nothing listens
    there). False when one accepts, times out or does not resolve (DNS may come later)."""
    addresses: list[tuple[int, Any]] = []
    for server in bootstrap_servers.split(","):
        match = _SERVER.match(server.strip())
        if match is None:
            return False
        try:
            infos = socket.getaddrinfo(match[1], int(match[2]), type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return False
        addresses += [(family, address) for family, _, _, _, address in infos]
    for family, address in addresses:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(timeout_s)
            try:
                probe.connect(address)
            except ConnectionRefusedError:
                continue
            except OSError:
                return False
            return False
    return bool(addresses)
