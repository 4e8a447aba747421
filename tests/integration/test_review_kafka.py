"""`alert-anomaly verdicts publish`: the stored verdicts as a Kafka topic, read back by an
independent client (kafka-python) from the test broker."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from service.config import KafkaSettings
from service.io.kafka import create_topics
from service.review.store import SCHEMA_VERSION, Verdict, open_store
from tests.integration.conftest import CLI
from tests.reading import read_all


def test_verdicts_are_published_one_message_each(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    db = tmp_path / "verdicts.sqlite"
    with open_store(str(db)) as store:
        store.record(Verdict("ana", "ztf", "ZTF21a", "anomaly", tag="dip", model_version="2.0"))
        store.record(Verdict("ana", "lsst", "170", "bogus"))
        store.record(Verdict("ben", "ztf", "ZTF21a", "not"))
        stored = {(v.expert, v.survey, v.oid): v.as_dict() for v in store.verdicts()}
    topic = f"{topic_prefix}-verdicts"
    create_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), [topic], partitions=2)
    result = subprocess.run(
        [*CLI, "verdicts", "publish", "--db", str(db), "--bootstrap-servers", kafka_bootstrap,
         "--verdict-topic", topic, "--expert", "ana"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"published 2 verdicts from sqlite:///{db} to {topic}" in result.stdout
    messages = read_all(kafka_bootstrap, topic, 2)
    assert len(messages) == 2
    by_key = {m.key.decode(): json.loads(m.value) for m in messages}
    assert set(by_key) == {"ana/ztf/ZTF21a", "ana/lsst/170"}
    for key, value in by_key.items():
        assert value.pop("verdict_schema") == SCHEMA_VERSION
        assert value == stored[tuple(key.split("/"))]  # type: ignore[index]
    assert by_key["ana/ztf/ZTF21a"]["tag"] == "dip"
