"""Replays of topic ranges and files, offline scoring, resumption (``Pipeline.replay``)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pyarrow.parquet as pq
import pytest

from models.records import input_records, input_schema
from models.resources import sample_dir
from models.table import read_table
from models.taxonomy import SUBCLASSES
from service.config import KafkaSettings, load_settings
from service.core.offsets import OffsetTracker
from service.core.processing import AlertProcessor
from service.demo import encode_schemaless, publish, read_topic, sample_messages
from service.exceptions import InputError
from service.io.codecs.avro import decode_output
from service.io.kafka import create_topics
from service.io.sinks.files import CHECKPOINT, ParquetSink, read_scores
from service.io.sources.files import FileSource
from service.pipeline import Pipeline
from service.records import Input, Lineage
from tests.integration.conftest import CLI, ServiceProcess
from tests.integration.test_service import service_args

Start = Callable[..., ServiceProcess]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args, "--no-progress"], capture_output=True, text=True, timeout=300
    )


def by_lineage(rows: list[dict[str, Any]]) -> dict[tuple[str, int, int], tuple[Any, ...]]:
    return {
        (r["source_topic"], r["source_partition"], r["source_offset"]): (
            r["oid"],
            np.float32(r["score"]),
            np.float32(r["percentile"]),
            r["nearest_subclass"],
            r["top_class"],
        )
        for r in rows
    }


def test_topic_replay_equals_the_live_service(
    kafka_bootstrap: str, topic_prefix: str, service_process: Start, tmp_path: Path
) -> None:
    n = 400
    names = (f"{topic_prefix}-in", f"{topic_prefix}-scores", f"{topic_prefix}-dlq")
    create_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), names[:1], 2)
    create_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), names[1:])
    publish(kafka_bootstrap, names[0], sample_messages(n))
    live = service_process(*service_args(kafka_bootstrap, names, topic_prefix))
    outputs = read_topic(kafka_bootstrap, names[1], n, timeout_s=120)
    assert live.terminate() == 0
    live_scores = by_lineage([decode_output(m.value()) for m in outputs])

    common = ["replay", "--bootstrap-servers", kafka_bootstrap, "--topic", names[0]]
    first = cli(*common, "--out", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    assert f"read {n}, scored {n}, dead-lettered 0" in first.stdout
    second = cli(*common, "--out", str(tmp_path / "b"))
    assert second.returncode == 0, second.stderr
    a = by_lineage(read_scores(tmp_path / "a").to_pylist())
    b = by_lineage(read_scores(tmp_path / "b").to_pylist())
    assert a == live_scores  # the same scores as the live service, message by message
    assert b == a  # deterministic

    to_topic = cli(*common, "--output-topic", f"{topic_prefix}-replayed")
    assert to_topic.returncode == 0, to_topic.stderr
    replayed = read_topic(kafka_bootstrap, f"{topic_prefix}-replayed", n, timeout_s=60)
    assert by_lineage([decode_output(m.value()) for m in replayed]) == live_scores


def test_time_range_is_exact_at_the_boundaries(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Messages carry timestamps base + i s; the embedded broker's offsets_for_times answers
    offset 0 for every time, so only the timestamps can make the range exact."""
    topic = f"{topic_prefix}-timed"
    create_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), [topic], 1)
    base = 1_760_000_000_000
    messages = list(sample_messages(60))
    for i, message in enumerate(messages):
        publish(kafka_bootstrap, topic, [message], timestamp_ms=base + i * 1000)
    since, until = base + 10 * 1000, base + 25 * 1000  # [10, 25): 15 messages
    result = cli(
        "replay",
        "--bootstrap-servers",
        kafka_bootstrap,
        "--topic",
        topic,
        "--since",
        str(since),
        "--until",
        str(until),
        "--out",
        str(tmp_path / "range"),
    )
    assert result.returncode == 0, result.stderr
    scores = read_scores(tmp_path / "range").to_pylist()
    assert sorted(r["source_offset"] for r in scores) == list(range(10, 25))
    assert {r["oid"] for r in scores} == {k.decode() for k, _ in messages[10:25]}
    iso = cli(
        "replay",
        "--bootstrap-servers",
        kafka_bootstrap,
        "--topic",
        topic,
        "--since",
        "2025-10-09T08:54:00",  # = base + 40 s, UTC
        "--end-offset",
        "0:45",
        "--out",
        str(tmp_path / "iso"),
    )
    assert iso.returncode == 0, iso.stderr
    assert sorted(r["source_offset"] for r in read_scores(tmp_path / "iso").to_pylist()) == list(
        range(40, 45)
    )


def avro_file(record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.writer(buffer, input_schema(), [record])
    return buffer.getvalue()


@pytest.fixture
def alert_files(tmp_path: Path) -> Path:
    """A directory of one-alert Avro files (as ZTF's archive) with one corrupted file."""
    directory = tmp_path / "alerts"
    directory.mkdir()
    records = list(input_records(read_table(sample_dir() / "objects.parquet").take(np.arange(30))))
    for record in records:
        (directory / f"{record['oid']}.avro").write_bytes(avro_file(record))
    (directory / "ZTF00broken.avro").write_bytes(avro_file(records[0])[:-40])
    return directory


def test_files_with_a_corrupted_one(alert_files: Path, tmp_path: Path) -> None:
    assert FileSource([alert_files]).total() == 31  # the progress bar's total
    result = cli("replay", "--files", str(alert_files), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "read 31, scored 30, dead-lettered 1" in result.stdout
    scores = read_scores(tmp_path / "out").to_pylist()
    assert {r["oid"] for r in scores} == {p.stem for p in alert_files.glob("ZTF1*.avro")} | {
        p.stem for p in alert_files.glob("ZTF2*.avro")
    }
    dead = pq.read_table(next((tmp_path / "out").glob("_dead-letters-*.parquet"))).to_pylist()
    assert [d["source_topic"] for d in dead] == [f"file:{alert_files / 'ZTF00broken.avro'}"]
    assert dead[0]["reason"] == "undecodable"
    assert pq.read_table(tmp_path / "out").num_rows == 30  # the directory reads as the scores

    tarball = tmp_path / "alerts.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(alert_files, arcname="night")
    from_tar = cli("replay", "--files", str(tarball), "--out", str(tmp_path / "tar"))
    assert from_tar.returncode == 0, from_tar.stderr
    assert "read 31, scored 30, dead-lettered 1" in from_tar.stdout
    tar_scores = read_scores(tmp_path / "tar").to_pylist()
    assert sorted(r["score"] for r in tar_scores) == sorted(r["score"] for r in scores)


class CrashError(Exception):
    pass


class CrashingSource(FileSource):
    """Fails after ``after`` inputs: the engine stops as on any error, writing and
    checkpointing what it read."""

    def __init__(self, paths: list[Path], after: int, resume: dict[str, Any] | None) -> None:
        super().__init__(paths, resume=resume)
        self.after = after

    def read(self, max_inputs: int, timeout_s: float) -> list[Input] | None:
        if self.after <= 0:
            raise CrashError
        got = super().read(min(max_inputs, self.after), timeout_s)
        self.after -= len(got or [])
        return got


def test_interrupted_replay_resumes_without_duplicates_or_gaps(tmp_path: Path) -> None:
    table = sample_dir() / "objects.parquet"
    settings = load_settings(None, {"model": {"inference": "inline"}})
    processor = AlertProcessor(settings)
    description = {"kind": "files", "paths": [str(table)]}  # what `replay --files` names

    def run(out: Path, resume: bool, crash_after: int | None = None) -> None:
        pipeline = Pipeline(settings, processor=processor)
        sink = ParquetSink(out, description, resume, pipeline.tracker.written)
        source = (
            FileSource([table], resume=sink.saved)
            if crash_after is None
            else CrashingSource([table], crash_after, sink.saved)
        )
        pipeline.replay(source, sink, 64, checkpoint_every=250, progress=None)

    run(tmp_path / "whole", False)
    with pytest.raises(CrashError):
        run(tmp_path / "resumed", False, crash_after=1130)
    saved = json.loads((tmp_path / "resumed" / CHECKPOINT).read_text())
    assert saved["state"] == {"files": {f"file:{table}": 1130}}  # all it read, written
    run(tmp_path / "resumed", True)
    whole = read_scores(tmp_path / "whole").to_pylist()
    resumed = read_scores(tmp_path / "resumed").to_pylist()
    assert len(resumed) == len(whole) == 3000
    assert by_lineage(resumed) == by_lineage(whole)


def test_parts_written_after_the_last_checkpoint_are_dropped_on_resume(tmp_path: Path) -> None:
    """A process killed between writing a part and its checkpoint: the part does not count."""
    description = {"kind": "files", "paths": ["x"]}
    tracker = OffsetTracker()
    sink = ParquetSink(tmp_path, description, False, tracker.written)
    sink.checkpoint({"files": {"file:x": 0}})
    sink.dead_letter(
        Input(Lineage("file:x", 0, 0, None), None, b"bad"), InputError("undecodable", "bad")
    )
    sink.flush(0)  # a part ...
    assert len(list(tmp_path.glob("*.parquet"))) == 1  # ... but no checkpoint names it: killed
    resumed = ParquetSink(tmp_path, description, True, tracker.written)
    assert resumed.saved == {"files": {"file:x": 0}}
    assert not list(tmp_path.glob("*.parquet"))


def test_resume_refuses_another_input(tmp_path: Path, alert_files: Path) -> None:
    first = cli("replay", "--files", str(alert_files), "--out", str(tmp_path / "out"))
    assert first.returncode == 0, first.stderr
    again = cli("replay", "--files", str(alert_files), "--out", str(tmp_path / "out"))
    assert again.returncode == 2
    assert "holds an earlier replay: add --resume" in again.stderr
    other = cli(
        "replay",
        "--files",
        str(sample_dir() / "objects.parquet"),
        "--out",
        str(tmp_path / "out"),
        "--resume",
    )
    assert other.returncode == 2
    assert "holds a replay of another input" in other.stderr


def test_score_tables_and_avro_offline(tmp_path: Path) -> None:
    table = read_table(sample_dir() / "objects.parquet").take(np.arange(50))
    records = list(input_records(table))
    avro = tmp_path / "alerts.avro"
    with open(avro, "wb") as fh:
        fastavro.writer(fh, input_schema(), records)
    outputs = {}
    for name, source in (("parquet", sample_dir() / "objects.parquet"), ("avro", avro)):
        out = tmp_path / f"{name}.csv"
        result = cli("score", str(source), str(out))
        assert result.returncode == 0, result.stderr
        outputs[name] = out.read_text().splitlines()
    header = outputs["parquet"][0]
    assert header.startswith('"oid","survey","top_class"')
    assert len(outputs["parquet"]) == 3001
    # the same 50 objects give the same scores from the table and from the Avro file
    parquet_rows = {line.split(",")[0]: line.split(",")[5] for line in outputs["parquet"][1:51]}
    avro_rows = {line.split(",")[0]: line.split(",")[5] for line in outputs["avro"][1:]}
    assert parquet_rows == avro_rows
    bad = cli("score", str(avro), str(tmp_path / "x.json"))
    assert bad.returncode == 2
    assert "OUTPUT must end in .parquet or .csv" in bad.stderr
    assert encode_schemaless(records[0])  # the same records are valid live input


def test_the_shipped_ensemble_is_a_setting_away(tmp_path: Path) -> None:
    """`model.scorers` selects the shipped mcdsvdd-ens bundles (docs/results.md: the variant
    that beats MCDSVDD); every object is scored by its class's ensemble."""
    ensemble = dict.fromkeys(("Transient", "Stochastic", "Periodic"), "mcdsvdd-ens")
    out = tmp_path / "scores.parquet"
    result = subprocess.run(
        [*CLI, "score", str(sample_dir() / "objects.parquet"), str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "ALERT_ANOMALY_MODEL__SCORERS": json.dumps(ensemble)},
    )
    assert result.returncode == 0, result.stderr
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 3000
    assert {r["scorer"] for r in rows} == {"mcdsvdd-ens"}
    assert all(np.isfinite(r["score"]) and 0 <= r["percentile"] <= 100 for r in rows)
    assert all(r["nearest_subclass"] in SUBCLASSES[r["top_class"]] for r in rows)


class MisjudgedSource(FileSource):
    """A source whose size estimate is wrong (as watermarks can be)."""

    def __init__(self, paths: list[Path], estimate: int) -> None:
        super().__init__(paths)
        self.estimate = estimate

    def total(self) -> int | None:
        return self.estimate


@pytest.mark.parametrize("estimate", [10, 100_000])
def test_the_progress_bar_ends_at_what_was_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, estimate: int
) -> None:
    """The bar's total is an estimate (watermarks); it never ends below or above the count."""
    import service.pipeline as replay_module

    bars: list[Any] = []

    class Recorded(replay_module.tqdm):  # type: ignore[misc, name-defined]
        def close(self) -> None:
            bars.append((self.n, self.total))
            super().close()

    monkeypatch.setattr(replay_module, "tqdm", Recorded)
    table = sample_dir() / "objects.parquet"
    settings = load_settings(None, {"model": {"inference": "inline"}})
    pipeline = Pipeline(settings)
    sink = ParquetSink(tmp_path / "out", {"t": 1}, False, pipeline.tracker.written)
    summary = pipeline.replay(MisjudgedSource([table], estimate), sink, 256)
    assert bars == [(3000, 3000)]
    assert summary.read == 3000
