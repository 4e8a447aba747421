"""Waiting for brokers (service/ops/availability.py): what a command says while no broker answers,
when it gives up and with which exit status, on a simulated clock; the refusal probe on real
sockets; librdkafka's lines at debug level."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from structlog.testing import capture_logs

from service.config import KafkaSettings, load_settings
from service.exceptions import BrokersUnavailableError, KafkaServiceError
from service.ops import availability
from service.ops.availability import (
    PROGRESS_EVERY_S,
    REFUSED_TIMEOUT_S,
    WAIT_SLICE_S,
    Brokers,
    refuses,
)
from service.ops.health import Health
from service.ops.logs import LIBRDKAFKA_LOGGER, ORIGINAL_LEVEL

SERVERS = "kafka-1:9092,kafka-2:9092"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Cluster:
    """A client whose metadata requests time out (each takes its whole timeout on the clock)
    until ``answers_at``."""

    def __init__(self, clock: Clock, answers_at: float = float("inf")) -> None:
        self.clock, self.answers_at = clock, answers_at
        self.requests: list[float] = []

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        self.requests.append(timeout)
        if self.clock.now + timeout < self.answers_at:
            self.clock.now += timeout
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Broker transport failure"))
        self.clock.now = max(self.clock.now, self.answers_at)
        return {"topics": topic}


@pytest.fixture
def nothing_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(availability, "refuses", lambda servers: False)


@pytest.mark.usefixtures("nothing_refuses")
def test_a_wait_says_once_what_it_waits_for_and_reports_progress_until_a_broker_answers() -> None:
    clock = Clock()
    brokers = Brokers(SERVERS, 120.0, clock=clock)
    ticks: list[float] = []
    brokers.heartbeat = lambda: ticks.append(clock.now)
    cluster = Cluster(clock, answers_at=clock.now + 50)
    with capture_logs() as logs:
        assert brokers.metadata(cluster, "in") == {"topics": "in"}
    names = [e["event"] for e in logs]
    assert names.count("waiting_for_brokers") == 1
    assert logs[0]["event"] == "waiting_for_brokers"  # said first, after one request
    assert logs[0]["gives_up_after_s"] == 120.0
    progress = [e for e in logs if e["event"] == "still_waiting_for_brokers"]
    assert len(progress) == 50 // PROGRESS_EVERY_S
    assert [e["waited_s"] for e in progress] == [15.0, 30.0, 45.0]
    assert max(cluster.requests) <= WAIT_SLICE_S  # signals and heartbeats between requests
    assert len(ticks) >= 49  # liveness while waiting
    assert brokers.ever_answered
    assert brokers.available


@pytest.mark.usefixtures("nothing_refuses")
def test_a_wait_gives_up_after_the_timeout_with_exit_status_2() -> None:
    clock = Clock()
    brokers = Brokers(SERVERS, 20.0, clock=clock)
    with capture_logs() as logs, pytest.raises(KafkaServiceError) as raised:
        brokers.metadata(Cluster(clock))
    assert not isinstance(raised.value, BrokersUnavailableError)
    assert raised.value.exit_code == 2
    assert f"cannot reach a Kafka broker at {SERVERS} within 20 s" in str(raised.value)
    assert [e["event"] for e in logs] == ["waiting_for_brokers", "still_waiting_for_brokers"]


def test_refused_connections_give_up_sooner(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    probed: list[str] = []
    monkeypatch.setattr(availability, "refuses", lambda servers: probed.append(servers) or True)
    brokers = Brokers(SERVERS, 120.0, clock=clock)
    started = clock.now
    with pytest.raises(KafkaServiceError, match="connection refused at every address"):
        brokers.metadata(Cluster(clock))
    assert probed == [SERVERS] * len(probed)
    assert REFUSED_TIMEOUT_S <= clock.now - started <= REFUSED_TIMEOUT_S + 2 * WAIT_SLICE_S


def test_refusals_after_a_broker_answered_wait_the_whole_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A broker that restarts refuses for a while: that is an outage, not a wrong address."""
    clock = Clock()
    monkeypatch.setattr(availability, "refuses", lambda servers: True)
    brokers = Brokers(SERVERS, 30.0, clock=clock)
    brokers.answered()
    started = clock.now
    with pytest.raises(BrokersUnavailableError):
        brokers.metadata(Cluster(clock))
    assert clock.now - started >= 30.0


def test_an_outage_after_an_answer_is_one_story_ending_in_exit_status_3() -> None:
    clock = Clock()
    changes: list[bool] = []
    brokers = Brokers(SERVERS, 60.0, on_change=changes.append, clock=clock)
    brokers.answered()
    with capture_logs() as logs:
        brokers.error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "2/2 brokers are down"))
        brokers.error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "2/2 brokers are down"))
        assert changes == [False]  # /readyz fails at once
        for _ in range(59):
            clock.now += 1.0
            brokers.check()  # the main loop's
        clock.now += 1.0
        with pytest.raises(BrokersUnavailableError) as raised:
            brokers.check()
    assert raised.value.exit_code == 3
    names = [e["event"] for e in logs]
    assert names == ["brokers_unavailable"] + ["brokers_still_unavailable"] * 3
    assert [e["down_s"] for e in logs[1:]] == [15.0, 30.0, 45.0]


def test_at_start_the_error_callback_says_waiting_not_unavailable() -> None:
    brokers = Brokers(SERVERS, 60.0, clock=Clock())
    with capture_logs() as logs:
        brokers.error(KafkaError(KafkaError._TRANSPORT, "Connect to ipv4#10.0.0.1:9092 failed"))
        brokers.error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "2/2 brokers are down"))
        brokers.waiting()
    assert [e["event"] for e in logs] == ["waiting_for_brokers"]
    assert logs[0]["error"] == "2/2 brokers are down"


def test_quiet_brokers_log_nothing() -> None:
    brokers = Brokers(SERVERS, 60.0, clock=Clock(), quiet=True)
    with capture_logs() as logs:
        brokers.error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
        brokers.error(KafkaError(KafkaError._AUTHENTICATION, "bad credentials"))
    assert logs == []
    assert brokers.last_error == "bad credentials"


def test_the_refusal_probe_on_real_sockets() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        open_port = listening.getsockname()[1]
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            closed_port = closed.getsockname()[1]  # bound, never listening: refuses
            assert refuses(f"127.0.0.1:{closed_port}")
            assert refuses(f"PLAINTEXT://localhost:{closed_port},127.0.0.1:{closed_port}")
            assert not refuses(f"127.0.0.1:{closed_port},127.0.0.1:{open_port}")
        assert not refuses(f"127.0.0.1:{open_port}")
    assert not refuses("broker.alert-anomaly.invalid:9092")  # may resolve later
    assert not refuses("no-port-here")


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
def test_librdkafka_lines_go_to_the_debug_level(level: int) -> None:
    saved = LIBRDKAFKA_LOGGER.level
    LIBRDKAFKA_LOGGER.setLevel(level)
    try:
        record = LIBRDKAFKA_LOGGER.makeRecord(
            "librdkafka",
            logging.ERROR,
            __file__,
            1,
            "%s [%s] %s",
            ("FAIL", "client", f"at {logging.getLevelName(level)}"),  # not held back as a repeat
            None,
        )
        shown = all(f.filter(record) for f in LIBRDKAFKA_LOGGER.filters)  # type: ignore[union-attr]
    finally:
        LIBRDKAFKA_LOGGER.setLevel(saved)
    assert shown == (level == logging.DEBUG)
    assert record.levelno == logging.DEBUG
    assert getattr(record, ORIGINAL_LEVEL) == "error"


def test_the_documented_bounds_are_the_code_s() -> None:
    description = KafkaSettings.model_fields["unavailable_timeout_s"].description or ""
    assert f"a log line every {PROGRESS_EVERY_S:.0f} s" in description
    assert f"after {REFUSED_TIMEOUT_S:.0f} s when every bootstrap address refuses" in description


def test_liveness_outlasts_every_wait_by_design() -> None:
    """/healthz must not fail while a revocation drains (no tick for up to drain_timeout_s)."""
    assert Health.for_settings(load_settings(None, {})).stale_after_s == 90.0
    assert Health.for_settings(load_settings(None, {"drain_timeout_s": 10})).stale_after_s == 60
    long = load_settings(None, {"drain_timeout_s": 300})
    assert Health.for_settings(long).stale_after_s > long.drain_timeout_s
