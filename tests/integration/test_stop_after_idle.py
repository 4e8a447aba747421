"""`alert-anomaly run --stop-after-idle` on a real Kafka-protocol broker: the idle clock starts at
the partition assignment, so a limit shorter than the consumer group's join still consumes
everything that was published before the start."""

from __future__ import annotations

from collections.abc import Callable

from service.config import KafkaSettings
from service.demo import publish, read_topic, sample_messages
from service.io.kafka import create_topics
from tests.integration.conftest import ServiceProcess
from tests.integration.test_service import service_args

Start = Callable[..., ServiceProcess]
N = 60


def test_the_idle_clock_starts_at_the_assignment(
    kafka_bootstrap: str, topic_prefix: str, service_process: Start
) -> None:
    names = (f"{topic_prefix}-in", f"{topic_prefix}-scores", f"{topic_prefix}-dlq")
    create_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), list(names))
    publish(kafka_bootstrap, names[0], sample_messages(N))
    # an idle limit shorter than the group's join on the embedded broker
    service = service_process(
        *service_args(kafka_bootstrap, names, topic_prefix, "--stop-after-idle", "2")
    )
    assert service.process.wait(240) == 0  # it stops by itself
    stopped = service.event("service_stopped")
    assert stopped["consumed"] == N
    assert stopped["scored"] == N
    events = [e.get("event") for e in service.events]
    assert events.index("partitions_assigned") < events.index("idle_stop")
    assert len(read_topic(kafka_bootstrap, names[1], N, 60)) == N
