"""The composition root (service.pipeline) and its registries (service.registry): a pipeline is
made from the settings' input.kind and output.kind, a new sink is one class and one registry
entry, the pipeline owns the inference's lifetime, and the records module stays light."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from models.resources import sample_dir
from service.config import load_settings
from service.exceptions import InputError, SettingsError
from service.io.sinks import WrittenAtOnce
from service.io.sinks.files import read_scores
from service.live import ScoringService
from service.pipeline import Pipeline
from service.records import Input, Row, ScoredBatch, Written
from service.registry import SINKS, SOURCES, Kind, Wiring

TABLE = sample_dir() / "objects.parquet"


class RecordingSink(WrittenAtOnce):
    """A sink as a user would add one: every score and dead letter kept, each written at once."""

    def __init__(self, written: Written) -> None:
        self.written = written
        self.scores: list[dict[str, Any]] = []
        self.dead: list[str] = []

    def write(self, batch: ScoredBatch, rows: list[Row]) -> None:
        self.scores += batch.records
        self.written([row.source for row in rows])

    def dead_letter(self, item: Input, error: InputError) -> None:
        self.dead.append(error.reason)
        self.written([item.source])


def test_a_new_sink_is_one_class_and_one_registry_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[RecordingSink] = []

    def recording(w: Wiring) -> RecordingSink:
        made.append(RecordingSink(w.written))
        return made[-1]

    monkeypatch.setitem(SINKS, "recording", Kind(recording, "kept for the test", False))
    settings = load_settings(
        None,
        {
            "input": {"kind": "files", "paths": [str(TABLE)]},
            "output": {"kind": "recording"},
            "model": {"inference": "inline"},
        },
    )
    pipeline = Pipeline(settings)
    summary = pipeline.replay(batch_rows=256, progress=None)
    [sink] = made
    assert summary.read == summary.scored == len(sink.scores) == 3000
    assert pipeline.tracker.in_flight() == 0
    assert {r["source_topic"] for r in sink.scores} == {f"file:{TABLE}"}


def test_every_kind_is_made_from_the_settings_alone(tmp_path: Path) -> None:
    """files -> parquet through the registries only, as `replay --files --out` does."""
    out = tmp_path / "out"
    settings = load_settings(
        None,
        {
            "input": {"kind": "files", "paths": [str(TABLE)]},
            "output": {"kind": "parquet", "path": str(out)},
            "model": {"inference": "inline"},
        },
    )
    summary = Pipeline(settings).replay(batch_rows=512, progress=None)
    assert summary.scored == read_scores(out).num_rows == 3000
    resumed = load_settings(
        None,
        {
            "input": {"kind": "files", "paths": [str(TABLE)]},
            "output": {"kind": "parquet", "path": str(out), "resume": True},
            "model": {"inference": "inline"},
        },
    )
    again = Pipeline(resumed).replay(progress=None)  # the checkpoint says: all done
    assert again.read == 0
    assert read_scores(out).num_rows == 3000


def test_the_pipeline_closes_the_inference_it_started() -> None:
    settings = load_settings(
        None,
        {
            "input": {"kind": "files", "paths": [str(TABLE)]},
            "output": {"kind": "memory"},
            "model": {"inference": "process"},
        },
    )
    pipeline = Pipeline(settings)
    pids: list[int | None] = []
    pipeline.replay(
        source=_Counting(pipeline, lambda: pids.append(pipeline.inference_pid)),
        batch_rows=1024,
        progress=None,
    )
    [pid] = set(pids)
    assert pid is not None  # a worker process scored the batches ...
    assert pipeline.inference_pid is None  # ... and is gone with the run
    assert not _alive(pid)


class _Counting:
    """The settings' files source, telling ``seen`` at every read (the inference runs then)."""

    def __init__(self, pipeline: Pipeline, seen: Any) -> None:
        self.inner = pipeline.make_source()
        self.seen = seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def read(self, max_inputs: int, timeout_s: float) -> list[Input] | None:
        self.seen()
        return self.inner.read(max_inputs, timeout_s)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a reaped or zombie worker is not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("input", {"kind": "stdin"}, "kind 'stdin' is unknown (known: kafka, topic_range, files)"),
        ("output", {"kind": "s3"}, "kind 's3' is unknown (known: kafka, parquet, memory)"),
        ("input", {"kind": "files"}, "kind files needs paths"),
        ("output", {"kind": "parquet"}, "kind parquet needs path"),
        ("input", {"kind": "topic_range", "topics": ["a", "b"]}, "reads one topic"),
        ("input", {"kind": "topic_range", "topics": ["a"], "since": "soon"}, "cannot read 'soon'"),
    ],
)
def test_kinds_are_checked_against_the_registries(
    section: str, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(None, {section: values})


def test_the_live_service_takes_only_live_kinds() -> None:
    assert [k for k, v in SOURCES.items() if v.live] == ["kafka"]
    assert [k for k, v in SINKS.items() if v.live] == ["kafka"]
    bounded = load_settings(
        None, {"input": {"topics": ["t"], "kind": "files", "paths": [str(TABLE)]}}
    )
    with pytest.raises(SettingsError, match=r"input\.kind files is bounded"):
        ScoringService(bounded)
    parquet = load_settings(
        None, {"input": {"topics": ["t"]}, "output": {"kind": "parquet", "path": "out"}}
    )
    with pytest.raises(SettingsError, match=r"output\.kind parquet needs checkpoints"):
        ScoringService(parquet)


def test_records_sources_and_sinks_import_nothing_heavy() -> None:
    """The record types, the source and sink protocols and the registries load without torch,
    numba or a Kafka client."""
    code = (
        "import sys, service.records, service.io.sources, service.io.sinks, service.registry\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numba', "
        "'confluent_kafka', 'pyarrow'})\n"
        "print(','.join(heavy))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert found.stdout.strip() == ""
