"""Shared fixtures. Unit tests (tests/unit) use no network and no subprocess broker; integration
tests (tests/integration) are marked ``integration`` automatically.

The Kafka broker for integration tests, in this order: ``KAFKA_BOOTSTRAP_SERVERS`` if set, else a
testcontainers Kafka when a Docker engine answers, else the embedded tansu broker.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real Kafka-protocol broker for the whole session."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    elif _docker_answers():
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer() as kafka:
            yield kafka.get_bootstrap_server()
    else:
        from service.io.embedded import EmbeddedBroker

        log = tmp_path_factory.mktemp("broker") / "tansu.log"
        with EmbeddedBroker(log_file=log) as broker:
            yield broker.bootstrap_servers


@pytest.fixture
def topic_prefix() -> str:
    """Unique topic names per test: tests share the broker."""
    return f"t{uuid.uuid4().hex[:10]}"
