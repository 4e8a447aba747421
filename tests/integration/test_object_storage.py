"""Object storage: ``s3://`` URIs as the inputs of ``score``/``replay`` and as the Parquet dataset
of ``replay --out``, against a local S3 (``moto_server``): the same scores as from local files,
a resumed replay on S3 without duplicates or gaps, and one-line errors that quote no secret.

Credentials and the endpoint reach the commands through the environment of their process only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.resources import sample_dir
from service.config import load_settings
from service.core.offsets import OffsetTracker
from service.core.processing import AlertProcessor
from service.exceptions import InputError
from service.io.embedded import free_port
from service.io.sinks.files import ParquetSink, read_scores
from service.io.sources.files import FileSource
from service.pipeline import Pipeline
from service.records import Input, Lineage
from tests.integration.conftest import CLI

SAMPLE = sample_dir() / "objects.parquet"
SECRET = "s3cr3t-object-storage-test-value"  # must never appear in any output
KEY_ID = "AKIAOBJECTSTORAGETEST"
SCORE_COLUMNS = ("oid", "score", "percentile", "nearest_subclass", "top_class")


def start_moto(env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A moto_server on a free port (it cannot take port 0: a port is picked by binding 0, and
    another one tried when the server cannot bind it), answering HTTP."""
    for _ in range(5):
        port = free_port()
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while server.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(endpoint, timeout=5):
                    return server, endpoint
            except urllib.error.HTTPError:  # an answer (a server checking credentials refuses)
                return server, endpoint
            except OSError:
                time.sleep(0.1)  # polling for start-up, not racing a signal
        server.kill()
        server.wait(10)
    raise RuntimeError("moto_server did not start")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A local S3 without authentication (any key is accepted) with the buckets data and out."""
    server, url = start_moto()
    s3 = buckets(url)
    s3.upload_file(str(SAMPLE), "data", "single/objects.parquet")
    s3.upload_file(str(SAMPLE), "data", "tables/night-1/objects.parquet")
    yield url
    server.terminate()
    server.wait(10)


def buckets(endpoint: str) -> Any:
    """A client of the local S3 at ``endpoint``, its buckets data and out created."""
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )
    for bucket in ("data", "out"):
        s3.create_bucket(Bucket=bucket)
    return s3


def aws(endpoint: str, **changes: str | None) -> dict[str, str]:
    """The AWS variables of a command (None: unset)."""
    values: dict[str, str | None] = {
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance-role lookup without credentials
        **changes,
    }
    return {k: v for k, v in values.items() if v is not None}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A command in a subprocess whose only AWS variables are ``env``'s."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ALERT_ANOMALY_", "AWS_")) or k == "AWS_CA_BUNDLE"
    }
    return subprocess.run(
        [*CLI, *args, "--no-progress"],
        capture_output=True,
        text=True,
        env={**clean, "ALERT_ANOMALY_METRICS_PORT": "0", **(env or {})},
        timeout=600,
    )


def scores(table: pa.Table) -> list[tuple[Any, ...]]:
    """The scores in input order, without the input's name (``file:<path or URI>``)."""
    rows = table.to_pylist()
    rows.sort(key=lambda r: r["source_offset"])
    return [(r["source_offset"], *(r[c] for c in SCORE_COLUMNS)) for r in rows]


def test_score_reads_a_table_on_s3_as_a_local_copy(endpoint: str, tmp_path: Path) -> None:
    local = cli("score", str(SAMPLE), str(tmp_path / "local.parquet"))
    assert local.returncode == 0, local.stderr[-2000:]
    uri = "s3://data/single/objects.parquet"
    remote = cli("score", uri, str(tmp_path / "remote.parquet"), env=aws(endpoint))
    assert remote.returncode == 0, remote.stderr[-2000:]
    assert "read 3000, scored 3000" in remote.stdout
    got = pq.read_table(tmp_path / "remote.parquet")
    assert set(got.column("source_topic").to_pylist()) == {f"file:{uri}"}
    assert scores(got) == scores(pq.read_table(tmp_path / "local.parquet"))
    assert len(scores(got)) == 3000
    assert SECRET not in remote.stdout + remote.stderr


def test_replay_of_a_prefix_to_s3_equals_the_local_replay(endpoint: str, tmp_path: Path) -> None:
    tables = tmp_path / "tables" / "night-1"
    tables.mkdir(parents=True)
    shutil.copy(SAMPLE, tables / "objects.parquet")
    local = cli("replay", "--files", str(tmp_path / "tables"), "--out", str(tmp_path / "night"))
    assert local.returncode == 0, local.stderr[-2000:]
    out = "s3://out/replays/night"
    remote = cli("replay", "--files", "s3://data/tables/", "--out", out, env=aws(endpoint))
    assert remote.returncode == 0, remote.stderr[-2000:]
    assert f"-> {out}" in remote.stdout
    s3 = boto3.client("s3", endpoint_url=endpoint, **client_keys())
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="out", Prefix="replays/")["Contents"]]
    assert sorted(keys) == ["replays/night/_progress.json", "replays/night/part-00000.parquet"]
    with pytest.MonkeyPatch.context() as env:
        for k, v in aws(endpoint).items():
            env.setenv(k, v)
        got = read_scores(out)
    assert scores(got) == scores(read_scores(tmp_path / "night"))
    assert len(scores(got)) == 3000
    again = cli("replay", "--files", "s3://data/tables/", "--out", out, env=aws(endpoint))
    assert again.returncode == 2
    assert "holds an earlier replay: add --resume" in again.stderr.splitlines()[-1]


def client_keys() -> dict[str, str]:
    return {
        "aws_access_key_id": KEY_ID,
        "aws_secret_access_key": SECRET,
        "region_name": "us-east-1",
    }


class CrashError(Exception):
    pass


class CrashingSource(FileSource):
    """Fails after ``after`` inputs: the engine stops as on any error, writing and
    checkpointing what it read."""

    def __init__(self, paths: list[Path | str], after: int, resume: dict[str, Any]) -> None:
        super().__init__(paths, resume=resume)
        self.after = after

    def read(self, max_inputs: int, timeout_s: float) -> list[Input] | None:
        if self.after <= 0:
            raise CrashError
        got = super().read(min(max_inputs, self.after), timeout_s)
        self.after -= len(got or [])
        return got


def test_interrupted_replay_on_s3_resumes_without_duplicates_or_gaps(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in aws(endpoint).items():
        monkeypatch.setenv(k, v)
    table = "s3://data/single/objects.parquet"
    settings = load_settings(None, {"model": {"inference": "inline"}})
    processor = AlertProcessor(settings)
    description = {"kind": "files", "paths": [table]}  # what `replay --files` names

    def run(out: str, resume: bool, crash_after: int | None = None) -> None:
        pipeline = Pipeline(settings, processor=processor)
        sink = ParquetSink(out, description, resume, pipeline.tracker.written)
        source = (
            FileSource([table], resume=sink.saved)
            if crash_after is None
            else CrashingSource([table], crash_after, sink.saved)
        )
        pipeline.replay(source, sink, 64, checkpoint_every=250, progress=None)

    run("s3://out/whole", False)
    with pytest.raises(CrashError):
        run("s3://out/resumed", False, crash_after=1130)
    saved = ParquetSink("s3://out/resumed", description, True, OffsetTracker().written).saved
    assert saved == {"files": {f"file:{table}": 1130}}  # all it read, written
    run("s3://out/resumed", True)
    whole, resumed = read_scores("s3://out/whole"), read_scores("s3://out/resumed")
    offsets = sorted(resumed.column("source_offset").to_pylist())
    assert offsets == list(range(3000))  # each input exactly once
    assert scores(resumed) == scores(whole)


def test_parts_on_s3_written_after_the_last_checkpoint_are_dropped_on_resume(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process killed between writing a part and its checkpoint: the part does not count."""
    for k, v in aws(endpoint).items():
        monkeypatch.setenv(k, v)
    s3 = boto3.client("s3", endpoint_url=endpoint, **client_keys())

    def objects() -> list[str]:
        found = s3.list_objects_v2(Bucket="out", Prefix="killed/").get("Contents", [])
        return sorted(o["Key"] for o in found)

    description = {"kind": "files", "paths": ["x"]}
    tracker = OffsetTracker()
    sink = ParquetSink("s3://out/killed", description, False, tracker.written)
    sink.checkpoint({"files": {"file:x": 0}})
    sink.dead_letter(
        Input(Lineage("file:x", 0, 0, None), None, b"bad"), InputError("undecodable", "bad")
    )
    sink.flush(0)  # a part ...
    assert objects() == ["killed/_dead-letters-00000.parquet", "killed/_progress.json"]
    resumed = ParquetSink("s3://out/killed", description, True, tracker.written)  # ... killed
    assert resumed.saved == {"files": {"file:x": 0}}
    assert "killed/_progress.json" in objects()
    assert not [k for k in objects() if k.endswith(".parquet")]  # (pyarrow may leave "killed/")


def operator_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    """Exit status 2, the error in one line (above it only the command's JSON log events) and
    no secret anywhere."""
    plain = [line for line in result.stderr.strip().splitlines() if not line.startswith("{")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert len(plain) == 1, result.stderr[-2000:]
    assert plain[0].startswith("alert-anomaly "), plain[0]
    assert expected in plain[0], plain[0]
    assert SECRET not in result.stdout + result.stderr


@pytest.fixture(scope="module")
def authenticating() -> Iterator[str]:
    """A local S3 that checks credentials (it knows none: every key is refused)."""
    server, url = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    yield url
    server.terminate()
    server.wait(10)


@pytest.mark.slow  # 62 s alone on 2 quiet cores: `make slow`
def test_storage_errors_are_one_line_without_secrets(
    endpoint: str, authenticating: str, tmp_path: Path
) -> None:
    env = aws(endpoint)
    out = str(tmp_path / "scores.parquet")
    operator_error(
        cli("score", "gs://data/objects.parquet", out, env=env),
        "unknown URI scheme gs:// (known: s3://, or a local path)",
    )
    operator_error(
        cli("score", f"s3://{KEY_ID}:{SECRET}@data/single/objects.parquet", out, env=env),
        "a URI with credentials: give them in the environment (AWS_*)",
    )
    operator_error(
        cli("score", "s3://missing/objects.parquet", out, env=env),
        "s3://missing/objects.parquet: bucket missing does not exist",
    )
    operator_error(
        cli("score", "s3://data/none.parquet", out, env=env),
        "s3://data/none.parquet does not exist",
    )
    operator_error(
        cli("replay", "--files", str(SAMPLE), "--out", "s3://missing/night", env=env),
        "s3://missing/night: bucket missing does not exist",
    )
    operator_error(
        cli("score", str(SAMPLE), "s3://out/scores.parquet", env=env),
        "score writes OUTPUT to a local file",
    )
    refused = aws(authenticating)
    operator_error(
        cli("score", "s3://data/single/objects.parquet", out, env=refused),
        "s3://data/single/objects.parquet: access denied (credentials come from the environment",
    )
    operator_error(
        cli("replay", "--files", str(SAMPLE), "--out", "s3://out/night", env=refused),
        "s3://out/night/_progress.json: access denied",
    )
    anonymous = aws(authenticating, AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None)
    operator_error(
        cli("score", "s3://data/single/objects.parquet", out, env=anonymous),
        "AWS_ACCESS_KEY_ID is not set",
    )
