"""``alert-anomaly replay --workers 2``: a topic range split by partition and offsets over a real
local Dask cluster (worker processes, one thread each) gives exactly the rows of the one-process
replay (scores, lineage, dead letters); a rerun after a failed piece replays it alone. The
commands run as subprocesses against the test broker, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from service.batch import DONE, read_output
from service.config import KafkaSettings
from service.demo import poison_messages, publish, sample_messages
from service.io.kafka import create_topics
from service.io.sinks.files import read_dead_letters, read_scores
from tests.integration.conftest import CLI

pytest.importorskip("dask.distributed")

BASE_MS = 1_760_000_000_000


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_ANOMALY_")}
    return subprocess.run(
        [*CLI, *args, "--no-progress"],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=600,
    )


def rows(table: pa.Table) -> list[dict[str, Any]]:
    """Every record but its time of scoring, by lineage."""
    records = table.drop_columns(["scored_at"]) if "scored_at" in table.column_names else table
    out: list[dict[str, Any]] = records.to_pylist()
    out.sort(key=lambda r: (r["source_topic"], r["source_partition"], r["source_offset"]))
    return out


@pytest.fixture(scope="module")
def published(kafka_bootstrap: str) -> tuple[str, dict[int, int]]:
    """A topic of 3 partitions: 360 of the sample's alerts with the 4 kinds of poison among
    them, in 3 publications 10 s apart in message time; and the end offset of each partition."""
    import uuid

    name = f"t{uuid.uuid4().hex[:10]}-split"
    create_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), [name], 3)
    messages: list[tuple[bytes | None, bytes]] = list(sample_messages(360))
    for i, (key, value, _) in enumerate(poison_messages() * 3):
        messages.insert(7 + 29 * i, (key + str(i).encode(), value))
    ends: dict[int, int] = {}
    for i in range(3):
        chunk = messages[i * 124 : (i + 1) * 124]
        for p, offset in publish(kafka_bootstrap, name, chunk, timestamp_ms=BASE_MS + i * 10_000):
            ends[p] = max(ends.get(p, 0), offset + 1)
    return name, ends


@pytest.fixture
def topic(published: tuple[str, dict[int, int]]) -> str:
    return published[0]


def replay_of(kafka_bootstrap: str, topic: str) -> tuple[str, ...]:
    """The command line of ``replay`` of ``topic`` on the test broker, before its options."""
    return ("replay", "--bootstrap-servers", kafka_bootstrap, "--topic", topic)


def one_process(kafka_bootstrap: str, topic: str, out: Path, *range_args: str) -> dict[str, Any]:
    result = cli(*replay_of(kafka_bootstrap, topic), *range_args, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return {"scores": rows(read_scores(out)), "dead": rows(read_dead_letters(out))}


@pytest.mark.slow
def test_two_workers_give_the_rows_of_one_process_dead_letters_included(
    kafka_bootstrap: str, published: tuple[str, dict[int, int]], tmp_path: Path
) -> None:
    # partitions 0 and 2 end at their end offsets (where they end): they are cut every 50
    # offsets whatever the broker's watermarks say (the embedded broker's can be stale: then
    # partition 1, to its end, is one piece); the embedded broker never ends a read from beyond
    # a partition's end (no offset out of range), so the ends given here are the true ones
    topic, last = published
    ends = ("--end-offset", f"0:{last[0]}", "--end-offset", f"2:{last[2]}")
    whole = one_process(kafka_bootstrap, topic, tmp_path / "one", *ends)
    assert len(whole["scores"]) == 360
    assert len(whole["dead"]) == 12
    common = replay_of(kafka_bootstrap, topic)
    out = tmp_path / "split"
    result = cli(*common, *ends, "--out", str(out), "--workers", "2", "--piece-messages", "50")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "read 372, scored 360, dead-lettered 12 in " in result.stdout
    names = sorted(p.name.removesuffix(".json") for p in (out / DONE).iterdir())
    assert [n for n in names if not n.startswith("partition-1")] == sorted(
        f"partition-{p}.offsets-{a}-{min(a + 50, last[p])}"
        for p in (0, 2)
        for a in range(0, last[p], 50)
    )
    assert rows(read_output(out)) == whole["scores"]  # scores bit for bit, lineage
    assert rows(read_output(out, "dead-letters")) == whole["dead"]  # reasons, errors, bytes

    # a time range (read whole, scored in [since, until)), a partition subset, an end offset
    window = ("--since", str(BASE_MS + 5_000), "--until", str(BASE_MS + 15_000))
    narrow = (*window, "--partitions", "0,2", "--end-offset", "2:70")
    part = one_process(kafka_bootstrap, topic, tmp_path / "one-range", *narrow)
    assert 0 < len(part["scores"]) < 124
    cut = tmp_path / "split-range"
    ranged = cli(*common, *narrow, "--out", str(cut), "--workers", "2", "--piece-messages", "40")
    assert ranged.returncode == 0, ranged.stderr[-3000:]
    assert {p.name.split(".")[0] for p in (cut / DONE).iterdir()} == {"partition-0", "partition-2"}
    assert rows(read_output(cut)) == part["scores"]
    assert rows(read_output(cut, "dead-letters")) == part["dead"]


@pytest.mark.slow
def test_a_rerun_after_a_failed_piece_replays_it_alone(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    """The piece of partition 1 fails on its worker (its scores part cannot be opened: a
    directory is in the way); the rerun skips the pieces done and replays it once, over the
    half part a crash left."""
    whole = one_process(kafka_bootstrap, topic, tmp_path / "one")
    out = tmp_path / "split"
    (out / "scores" / "partition-1.parquet").mkdir(parents=True)
    # a secret the workers must get back (from the settings file, not from their environment)
    config = tmp_path / "settings.toml"
    config.write_text('[kafka.consumer]\n"ssl.keystore.password" = "not-for-the-scheduler"\n')
    replay = replay_of(kafka_bootstrap, topic)
    args = (*replay, "--config", str(config), "--out", str(out), "--workers", "2")
    failed = cli(*args)
    assert failed.returncode == 2, failed.stderr[-3000:]
    error = failed.stderr.strip().splitlines()[-1]
    assert "1 of 3 pieces failed (first: partition-1: " in error
    done = {p.name: p.read_bytes() for p in (out / DONE).iterdir()}
    assert sorted(done) == ["partition-0.json", "partition-2.json"]
    (out / "scores" / "partition-1.parquet").rmdir()
    (out / "scores" / "partition-1.parquet").write_bytes(b"half a part")

    refused = cli(*args)
    assert refused.returncode == 2
    assert f"{out} holds an earlier replay: add --resume or remove it" in refused.stderr
    rerun = cli(*args, "--resume")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "3 pieces of 3 partitions of " in rerun.stdout
    assert ": 2 done, 1 to replay" in rerun.stdout
    assert {p.name: p.read_bytes() for p in (out / DONE).iterdir() if p.name in done} == done
    assert json.loads((out / DONE / "partition-1.json").read_text())["read"] > 0
    got = rows(read_output(out))
    keys = [(r["source_partition"], r["source_offset"]) for r in got]
    assert len(keys) == len(set(keys))  # nothing twice
    assert got == whole["scores"]  # nothing lost
    assert rows(read_output(out, "dead-letters")) == whole["dead"]
    again = cli(*args, "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert ": 3 done, 0 to replay" in again.stdout
    assert "not-for-the-scheduler" not in failed.stderr + rerun.stdout + rerun.stderr


def test_the_cluster_options_apply_to_a_topic_range_into_out(tmp_path: Path) -> None:
    """One line and exit status 2, before any broker or cluster is asked."""
    cases = {
        ("--files", str(tmp_path), "--out", str(tmp_path / "o"), "--workers", "2"): (
            "--workers/--scheduler replay a --topic range into --out (files: use `batch`)"
        ),
        ("--topic", "t", "--output-topic", "s", "--workers", "2"): (
            "--workers/--scheduler replay a --topic range into --out"
        ),
        ("--topic", "t", "--out", str(tmp_path / "o"), "--piece-messages", "9"): (
            "--piece-messages applies with --workers or --scheduler"
        ),
    }
    for args, message in cases.items():
        result = cli("replay", *args)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert message in lines[0]
