"""A broker outage mid-stream: the service retries, logs, and loses nothing; brokers down from
the start, or gone for good: progress lines, liveness and readiness, the exit statuses.

The broker is reached through a TCP proxy (the broker advertises the proxy's address), and the
outage cuts every connection and refuses new ones for a few seconds, while the broker itself
keeps its data.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import pytest

from models.resources import sample_dir
from models.table import read_table
from service.config import KafkaSettings, load_settings
from service.demo import publish, read_topic, sample_messages
from service.io.embedded import EmbeddedBroker, free_port
from service.io.kafka import create_topics
from service.io.sinks.kafka import KafkaSink
from service.io.sources.files import FileSource
from service.live import STOP_MARGIN_S
from service.ops.availability import Brokers
from service.ops.metrics import Metrics
from service.pipeline import Pipeline, Summary
from service.records import Lineage
from tests.integration.conftest import ServiceProcess
from tests.integration.test_service import scores_until_covered, service_args


class Proxy:
    """A TCP forwarder that can be cut (all connections closed, new ones refused) and restored."""

    def __init__(self, port: int, target: int) -> None:
        self.port, self.target = port, target
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=True)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        assert self._listener is not None
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._sockets.clear()


@pytest.fixture
def proxied_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Proxy]]:
    proxy = Proxy(free_port(), free_port())
    broker = EmbeddedBroker(
        port=proxy.target,
        advertised_port=proxy.port,
        log_file=tmp_path_factory.mktemp("outage") / "tansu.log",
    )
    proxy.start()
    with broker:
        yield broker.bootstrap_servers, proxy
    proxy.cut()


def test_broker_outage_mid_stream_loses_nothing(
    proxied_broker: tuple[str, Proxy], service_process: Callable[..., ServiceProcess]
) -> None:
    bootstrap, proxy = proxied_broker
    n = 3000  # the whole sample
    names = ("outage-in", "outage-scores", "outage-dlq")
    create_topics(KafkaSettings(bootstrap_servers=bootstrap), names)
    placed = publish(bootstrap, names[0], sample_messages(n))
    assert len(placed) == n
    one_by_one = ("--batch-rows", "1", "--batch-delay-ms", "5")  # slow enough to cut mid-stream
    service = service_process(*service_args(bootstrap, names, "outage", *one_by_one))
    service.wait_for_metric("alert_anomaly_messages_produced_total", 200, timeout=120)

    proxy.cut()
    service.event("brokers_unavailable", timeout=60)
    assert service.metric("alert_anomaly_messages_produced_total") < n, "cut after the end"
    time.sleep(3)
    proxy.start()

    counts = scores_until_covered(bootstrap, names[1], placed)
    code = service.terminate()
    missing = sorted(set(placed) - set(counts))
    assert not missing, f"{len(missing)} inputs without a score, first {missing[:5]}"
    assert code == 0
    stopped = service.event("service_stopped")
    assert stopped["acknowledged"] >= n
    duplicates = sum(c - 1 for c in counts.values())
    print(f"\nbroker unreachable for 3 s mid-stream: {duplicates} duplicates, none missing")


def test_scores_that_fail_leave_their_batch_and_are_written_once(
    proxied_broker: tuple[str, Proxy],
) -> None:
    """Deliveries that fail (``message.timeout.ms`` passes while the broker is unreachable) leave
    their batch and are retried on their own; once the broker is back every input's score is
    written and every input is reported written exactly once (batches partly delivered:
    tests/unit/test_kafka_sink.py)."""
    bootstrap, proxy = proxied_broker
    scores, dead_letters = "timeout-scores", "timeout-dlq"
    create_topics(KafkaSettings(bootstrap_servers=bootstrap), (scores, dead_letters))
    settings = load_settings(
        None,
        {
            "model": {"inference": "inline"},
            "kafka": {"bootstrap_servers": bootstrap, "producer": {"message.timeout.ms": "1000"}},
            "output": {"topic": scores, "dead_letter_topic": dead_letters},
        },
    )
    pipeline = Pipeline(settings)
    tracker = pipeline.tracker
    table = sample_dir() / "objects.parquet"
    written: Counter[Lineage] = Counter()

    def on_written(sources: Sequence[Lineage]) -> None:
        written.update(sources)
        tracker.written(sources)

    metrics = Metrics()
    sink = KafkaSink(settings, metrics, on_written, Brokers(bootstrap, 120.0))

    def failures() -> float:
        found = metrics.registry.get_sample_value(
            "alert_anomaly_delivery_failures_total", {"topic": scores}
        )
        return found or 0.0

    proxy.cut()
    done: list[Summary] = []
    thread = threading.Thread(
        target=lambda: done.append(pipeline.replay(FileSource([table]), sink, 64, progress=None))
    )
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while failures() < 64 and time.monotonic() < deadline:  # a whole batch at least
            time.sleep(0.05)
        assert failures() >= 64, "no delivery failed while the broker was unreachable"
    finally:
        proxy.start()
        thread.join(120)
    assert done, "the replay did not finish"
    assert done[0].scored == 3000
    assert len(written) == 3000
    assert set(written.values()) == {1}
    assert tracker.in_flight() == 0
    keys = {m.key() for m in read_topic(bootstrap, scores, 3000)}
    assert keys == {oid.encode() for oid in read_table(table).oid}


UNRESOLVABLE = "broker.alert-anomaly.invalid:9092"


def status(service: ServiceProcess, path: str) -> int:
    """HTTP status of the service's /healthz or /readyz."""
    url = service.event("metrics_serving")["url"].replace("/metrics", path)
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_brokers_down_from_the_start_is_one_story(
    service_process: Callable[..., ServiceProcess],
) -> None:
    """No broker ever answers: the service says once what it waits for, reports every 15 s,
    stays live (/healthz 200: a restart would not help) and unready (/readyz 503), and gives up
    after kafka.unavailable_timeout_s with exit status 2 and one error line."""
    timeout_s = 17
    service = service_process(
        *service_args(UNRESOLVABLE, ("in", "scores", "dlq"), "outage-start"),
        env={"ALERT_ANOMALY_KAFKA__UNAVAILABLE_TIMEOUT_S": str(timeout_s)},
    )
    waiting = service.event("waiting_for_brokers")
    assert waiting["gives_up_after_s"] == timeout_s
    assert (status(service, "/healthz"), status(service, "/readyz")) == (200, 503)
    progress = service.event("still_waiting_for_brokers", timeout=60)
    assert 0 < progress["gives_up_in_s"] < timeout_s
    assert (status(service, "/healthz"), status(service, "/readyz")) == (200, 503)
    assert service.process.wait(timeout_s + STOP_MARGIN_S) == 2
    service._reader.join(10)
    last = service.raw[-1]
    assert last.startswith(
        f"alert-anomaly run: error: cannot reach a Kafka broker at {UNRESOLVABLE}"
    )
    assert [e["event"] for e in service.events].count("waiting_for_brokers") == 1
    assert len(service.raw) == len(service.events) + 1  # JSON events, then the one error line


def test_brokers_lost_for_good_is_exit_status_3(
    proxied_broker: tuple[str, Proxy], service_process: Callable[..., ServiceProcess]
) -> None:
    """Brokers that answered go away for good: brokers_unavailable, /readyz 503 while /healthz
    stays 200, a progress line every 15 s, and after kafka.unavailable_timeout_s (and the drain)
    exit status 3 with one error line."""
    bootstrap, proxy = proxied_broker
    names = ("lost-in", "lost-scores", "lost-dlq")
    create_topics(KafkaSettings(bootstrap_servers=bootstrap), names)
    publish(bootstrap, names[0], sample_messages(50))
    timeout_s, drain_s = 17, 2
    service = service_process(
        *service_args(bootstrap, names, "outage-lost"),
        env={
            "ALERT_ANOMALY_KAFKA__UNAVAILABLE_TIMEOUT_S": str(timeout_s),
            "ALERT_ANOMALY_DRAIN_TIMEOUT_S": str(drain_s),
        },
    )
    service.wait_for_metric("alert_anomaly_messages_produced_total", 50, timeout=120)
    proxy.cut()
    unavailable = service.event("brokers_unavailable", timeout=60)
    assert unavailable["gives_up_after_s"] == timeout_s
    assert (status(service, "/healthz"), status(service, "/readyz")) == (200, 503)
    service.event("brokers_still_unavailable", timeout=60)
    assert service.process.wait(timeout_s + drain_s + STOP_MARGIN_S) == 3
    service._reader.join(10)
    assert service.raw[-1].startswith("alert-anomaly run: error: no Kafka broker answered for")
