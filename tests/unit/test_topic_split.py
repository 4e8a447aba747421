"""A topic range's pieces (service.topic_split.split) and the settings a worker is sent without
their Kafka secrets."""

from __future__ import annotations

import os
import pickle

import pytest

from models.exceptions import ConfigurationError
from service.config import load_settings
from service.topic_split import (
    Piece,
    piece_settings,
    secret_environment,
    split,
    with_secrets,
    without_secrets,
)


def spans(pieces: list[Piece]) -> list[tuple[str, int, int, int | None]]:
    return [(p.name, p.partition, p.start, p.end) for p in pieces]


def test_partitions_are_cut_between_the_watermarks_and_the_last_piece_is_open() -> None:
    bounds = {0: (0, None), 1: (0, None), 2: (-1, None), 3: (5, 5), 4: (10, 250)}
    marks = {0: (0, 100), 1: (900, 1000), 2: (0, 7), 3: (0, 9), 4: (0, 300)}
    assert spans(split(bounds, marks, 50)) == [
        ("partition-0.offsets-0-50", 0, 0, 50),
        ("partition-0.offsets-50-end", 0, 50, None),  # to where the partition ends
        ("partition-1.offsets-0-950", 1, 0, 950),  # from 0 as replay (before the log start)
        ("partition-1.offsets-950-end", 1, 950, None),
        # -1: nothing at or after --since; 3: an empty explicit range
        ("partition-4.offsets-10-60", 4, 10, 60),
        ("partition-4.offsets-60-110", 4, 60, 110),
        ("partition-4.offsets-110-160", 4, 110, 160),
        ("partition-4.offsets-160-210", 4, 160, 210),
        ("partition-4.offsets-210-250", 4, 210, 250),  # the explicit end, not the watermark
    ]
    # a stale high watermark (below the end) or none at all: one open piece, never less read
    assert spans(split({0: (0, None)}, {0: (0, 30)}, 50)) == [("partition-0", 0, 0, None)]
    assert spans(split({0: (0, None), 1: (3, 9)}, None, 2)) == [
        ("partition-0", 0, 0, None),
        ("partition-1.offsets-3-5", 1, 3, 5),
        ("partition-1.offsets-5-7", 1, 5, 7),
        ("partition-1.offsets-7-9", 1, 7, 9),
    ]


def test_a_piece_narrows_the_range_to_its_partition_and_offsets() -> None:
    settings = load_settings(
        None,
        {
            "input": {
                "kind": "topic_range",
                "topics": ["t"],
                "since": "2026-11-28T00:00",
                "start_offsets": {1: 4},
            }
        },
    )
    narrowed = piece_settings(settings, Piece("p", 1, 40, None)).input
    assert (narrowed.partitions, narrowed.start_offsets, narrowed.end_offsets) == ([1], {1: 40}, {})
    assert narrowed.since == "2026-11-28T00:00"  # still checked message by message
    assert piece_settings(settings, Piece("p", 1, 40, 90)).input.end_offsets == {1: 90}


SECRETS = ("pa55-sasl", "pa55-key", "pa55-oauth", "pa55-ssl")


def test_settings_reach_the_workers_without_secrets_and_get_them_back_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in os.environ if n.startswith("ALERT_ANOMALY_")]:
        monkeypatch.delenv(name)
    settings = load_settings(
        None,
        {
            "kafka": {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": "me",
                "sasl_password": SECRETS[0],
                "ssl_key_password": SECRETS[1],
                "extra": {"sasl.oauthbearer.client.secret": SECRETS[2], "linger.ms": "5"},
                "consumer": {"ssl.keystore.password": SECRETS[3]},
            }
        },
    )
    sent, holes = without_secrets(settings)
    wire = pickle.dumps((sent, holes))
    assert not [s for s in SECRETS if s.encode() in wire]
    assert sent.kafka.extra == {"linger.ms": "5"}
    assert sent.kafka.sasl_username == "me"
    with pytest.raises(ConfigurationError, match="ALERT_ANOMALY_KAFKA__SASL_PASSWORD") as error:
        with_secrets(sent, holes)
    assert not [s for s in SECRETS if s in str(error.value)]
    for name, value in secret_environment(settings, holes).items():
        monkeypatch.setenv(name, value)
    assert with_secrets(sent, holes) == settings
    assert with_secrets(sent, ()) is sent  # nothing to restore: the environment is not read
