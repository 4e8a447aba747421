"""A broker outage mid-stream: the service retries, logs, and loses nothing.

The broker is reached through a TCP proxy (the broker advertises the proxy's address), and the
outage cuts every connection and refuses new ones for a few seconds, while the broker itself
keeps its data.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from service.config import KafkaSettings
from service.demo import publish, sample_messages
from service.embedded import EmbeddedBroker, free_port
from service.kafka import create_topics
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
