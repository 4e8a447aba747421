"""SIGTERM is honoured at every stage of `alert-anomaly run`: loading the models, waiting for the
brokers' metadata at start, starting the inference worker (it loads the models again) and the
drain. Each test starts the service, waits for the stage's log line, sends SIGTERM and waits for
the exit at most the documented bound (service/live.py STOP_MARGIN_S; the drain: plus
drain_timeout_s): a process that ignored the signal would fail the wait."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from service.config import KafkaSettings
from service.demo import publish, sample_messages
from service.io.kafka import create_topics
from service.live import STOP_MARGIN_S
from tests.integration.conftest import CLI, ServiceProcess, children, still_running
from tests.integration.test_outage import Proxy, proxied_broker  # noqa: F401 - a fixture
from tests.integration.test_service import service_args

UNRESOLVABLE = "broker.alert-anomaly.invalid:9092"


def stops_in_time(service: ServiceProcess, bound_s: float) -> None:
    """SIGTERM; the process exits 0 within ``bound_s``, having logged the signal, and leaves
    nothing behind (a surviving inference worker would hold its stderr open)."""
    service.process.terminate()
    try:
        code = service.process.wait(bound_s)
    except subprocess.TimeoutExpired:
        tail = "".join(service.raw[-20:])
        raise AssertionError(
            f"still running {bound_s} s after SIGTERM; log tail:\n{tail}\n"
            f"stacks:\n{service.stacks()}"
        ) from None
    assert code == 0, "".join(service.raw[-20:])
    service._reader.join(30)
    assert not service._reader.is_alive(), "a child process still holds the service's stderr"
    assert not [line for line in service.raw if "Traceback" in line], "".join(service.raw)
    service.event("signal_received", timeout=5)


def test_sigterm_while_loading_the_models(
    service_process: Callable[..., ServiceProcess], kafka_bootstrap: str, topic_prefix: str
) -> None:
    names = (f"{topic_prefix}-in", f"{topic_prefix}-scores", f"{topic_prefix}-dlq")
    create_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), names)
    service = service_process(
        *service_args(kafka_bootstrap, names, topic_prefix), log_level="debug"
    )
    service.event("loading_models")
    stops_in_time(service, STOP_MARGIN_S)


def test_sigterm_while_waiting_for_brokers_at_start(
    service_process: Callable[..., ServiceProcess],
) -> None:
    """The broker's name does not resolve: the service waits for metadata (up to
    kafka.unavailable_timeout_s, 120 s); SIGTERM ends the wait."""
    names = ("in", "scores", "dlq")
    service = service_process(*service_args(UNRESOLVABLE, names, "signals"))
    service.event("waiting_for_brokers")
    stops_in_time(service, STOP_MARGIN_S)
    received = service.event("signal_received")
    assert received["stage"] == "waiting_for_brokers"
    assert service.event("stopped_before_start")["stage"] == "waiting_for_brokers"


def test_sigusr1_prints_the_stacks_and_the_service_goes_on(
    service_process: Callable[..., ServiceProcess], kafka_bootstrap: str, topic_prefix: str
) -> None:
    """An operator's look into a process that seems stuck: SIGUSR1 to the service or to its
    inference worker prints every thread's stack to stderr; both go on (and stop cleanly)."""
    names = (f"{topic_prefix}-in", f"{topic_prefix}-scores", f"{topic_prefix}-dlq")
    create_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), names)
    service = service_process(
        *service_args(kafka_bootstrap, names, topic_prefix),
        env={"ALERT_ANOMALY_MODEL__INFERENCE": "process"},
    )
    worker = service.event("service_starting")["inference_pid"]
    stacks = service.stacks()
    assert "most recent call first" in stacks, stacks
    assert "service/core/engine.py" in stacks, stacks  # the main loop
    stacks = service.stacks(worker)
    assert "service/core/inference.py" in stacks, stacks
    stops_in_time(service, STOP_MARGIN_S)


def test_sigterm_while_the_inference_worker_starts(
    service_process: Callable[..., ServiceProcess], kafka_bootstrap: str, topic_prefix: str
) -> None:
    names = (f"{topic_prefix}-in", f"{topic_prefix}-scores", f"{topic_prefix}-dlq")
    create_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), names)
    service = service_process(
        *service_args(kafka_bootstrap, names, topic_prefix),
        env={"ALERT_ANOMALY_MODEL__INFERENCE": "process"},
    )
    service.event("starting_inference")
    stops_in_time(service, STOP_MARGIN_S)
    # the worker (importing torch, loading the models) takes seconds: the signal came meanwhile
    assert service.event("signal_received")["stage"] == "starting_inference"


def test_sigterm_while_draining_unacknowledged_outputs(
    proxied_broker: tuple[str, Proxy],  # noqa: F811 - the fixture imported above
    service_process: Callable[..., ServiceProcess],
) -> None:
    """The broker becomes unreachable while outputs are in flight; SIGTERM starts the drain,
    which waits for acknowledgements that cannot come; a second SIGTERM during the drain does
    not extend it: the process exits within drain_timeout_s + STOP_MARGIN_S of the first."""
    bootstrap, proxy = proxied_broker
    names = ("drain-in", "drain-scores", "drain-dlq")
    create_topics(KafkaSettings(bootstrap_servers=bootstrap), names)
    publish(bootstrap, names[0], sample_messages(3000))
    drain_s = 5.0
    one_by_one = ("--batch-rows", "1", "--batch-delay-ms", "5")  # slow: outputs stay in flight
    service = service_process(
        *service_args(bootstrap, names, "drain", *one_by_one),
        env={"ALERT_ANOMALY_DRAIN_TIMEOUT_S": str(drain_s)},
    )
    service.wait_for_metric("alert_anomaly_messages_produced_total", 50, timeout=120)
    proxy.cut()
    service.process.terminate()
    service.event("service_draining")
    stops_in_time(service, drain_s + STOP_MARGIN_S)
    stopped = service.event("service_stopped", timeout=5)
    assert stopped["consumed"] > 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_broker_command_stops_on_a_signal(signum: int) -> None:
    """`alert-anomaly broker` exits 0 on SIGTERM and on SIGINT (Ctrl-C), its broker with it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    broker = subprocess.Popen(
        [*CLI, "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert broker.stdout is not None
    assert broker.stderr is not None
    try:
        line = broker.stdout.readline()  # the command prints it once the broker listens
        assert line.startswith("broker listening on"), line + broker.stderr.read()
        broker.send_signal(signum)
        assert broker.wait(STOP_MARGIN_S) == 0, broker.stderr.read()
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait()


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_the_brokers_process_dies_with_the_broker_command_even_on_sigkill() -> None:
    """SIGKILL gives `alert-anomaly broker` no chance to stop its tansu (a process of its own
    session, so no signal of the command's reaches it): the kernel ends it instead
    (service/io/embedded.py dies_with_parent), rather than leaving it holding the port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    broker = subprocess.Popen(
        [*CLI, "broker", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert broker.stdout is not None
    tansu: set[int] = set()
    try:
        line = broker.stdout.readline()
        assert line.startswith(b"broker listening on"), line
        tansu = children(broker.pid)
        assert tansu, "no broker process"
        broker.kill()
        broker.wait()
        left = still_running(tansu, 30)
        assert not left, f"the broker's process outlived the command: {left}"
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait()
        for pid in tansu:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
