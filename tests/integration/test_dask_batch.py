"""``alert-anomaly batch`` on a real local Dask cluster (worker processes, one thread each): the
scores and dead letters of ``score`` on the same rows, a rerun after a failed partition that
scores the rest once, object storage (a local ``moto_server``) and the operator error of a
scheduler that does not answer. The commands run as subprocesses, as a user runs them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.resources import sample_dir
from models.table import read_table, write_table
from service.batch import DONE, PartitionSource, plan, read_output
from service.io.embedded import free_port
from service.io.sources.files import FileSource
from tests.integration.conftest import CLI

pytest.importorskip("dask.distributed")

SAMPLE = sample_dir() / "objects.parquet"
pytestmark = pytest.mark.integration


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_ANOMALY_")}
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        env={**clean, "ALERT_ANOMALY_METRICS_PORT": "0", **(env or {})},
        timeout=600,
    )


def write_rows(path: Path, rows: slice, group: int) -> None:
    """Rows of the sample as a table in row groups of ``group``, some of them dead letters:
    every feature null (low coverage) or an infinity (non-finite)."""
    table = read_table(SAMPLE).take(np.arange(3000)[rows])
    table.features[5::97] = np.nan
    table.features[11::131, 0] = np.inf
    scratch = path.with_suffix(".tmp")
    write_table(table, scratch)
    pq.write_table(pq.read_table(scratch), path, row_group_size=group)
    scratch.unlink()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tables (1800 rows in groups of 500, 1200 in groups of 600) in a directory tree."""
    root = tmp_path_factory.mktemp("batch") / "in"
    (root / "night-1").mkdir(parents=True)
    write_rows(root / "night-1" / "a.parquet", slice(0, 1800), 500)
    write_rows(root / "b.parquet", slice(1800, 3000), 600)
    return root


@pytest.fixture(scope="module")
def expected(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, pa.Table]:
    """``score`` of each table: its scores and dead letters, all tables together."""
    out = tmp_path_factory.mktemp("score")
    scores, dead = [], []
    for table in sorted(dataset.rglob("*.parquet")):
        target = out / f"{table.stem}.parquet"
        result = cli("score", str(table), str(target), "--no-progress")
        assert result.returncode == 0, result.stderr[-2000:]
        scores.append(pq.read_table(target))
        dead.append(pq.read_table(out / f"{table.stem}.dead-letters.parquet"))
    return {"scores": pa.concat_tables(scores), "dead": pa.concat_tables(dead)}


def rows(table: pa.Table) -> list[dict[str, Any]]:
    """Every record but its time of scoring, in input order (table, row)."""
    records = table.drop_columns(["scored_at"]) if "scored_at" in table.column_names else table
    out = records.to_pylist()
    out.sort(key=lambda r: (r["source_topic"], r["source_offset"]))
    return out


def test_partitions_are_row_group_ranges_read_with_scores_lineage(dataset: Path) -> None:
    parts = plan(dataset, 1000)
    assert [(p.name, p.first, p.last, p.start, p.stop) for p in parts] == [
        ("b", 0, 1, 0, 1200),
        ("night-1.a.rows-0-1000", 0, 1, 0, 1000),
        ("night-1.a.rows-1000-1800", 2, 3, 1000, 1800),
    ]
    source = PartitionSource(parts[2], "oid", read_rows=64)
    source.start(None)
    mine = [item for batch in iter(lambda: source.read(100, 0), None) for item in batch]
    whole = FileSource([dataset / "night-1" / "a.parquet"])
    whole.start(None)  # type: ignore[arg-type]
    theirs = [item for batch in iter(lambda: whole.read(2000, 0), None) for item in batch]
    assert [(i.source, i.records) for i in mine] == [(i.source, i.records) for i in theirs[1000:]]


@pytest.mark.slow
def test_two_workers_score_as_score_does_dead_letters_included(
    dataset: Path, expected: dict[str, pa.Table], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ("batch", str(dataset), "--out", str(out), "--workers", "2", "--partition-rows", "1000")
    result = cli(*args, "--read-rows", "300")
    assert result.returncode == 0, result.stderr[-3000:]
    dead = expected["dead"].num_rows
    assert dead > 0
    assert f"read 3000, scored {3000 - dead}, dead-lettered {dead} in " in result.stdout
    assert sorted(p.name for p in (out / "scores").iterdir()) == [
        "b.parquet",
        "night-1.a.rows-0-1000.parquet",
        "night-1.a.rows-1000-1800.parquet",
    ]
    assert rows(read_output(out)) == rows(expected["scores"])
    assert rows(read_output(out, "dead-letters")) == rows(expected["dead"])
    # a rerun has nothing left to do
    again = cli(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "3 partitions (3000 rows) in " in again.stdout
    assert "3 done, 0 to score" in again.stdout


@pytest.fixture
def scheduler() -> Iterator[str]:
    """The address of a running local cluster (one worker process, one thread), for
    ``--scheduler``."""
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield str(cluster.scheduler_address)


@pytest.mark.slow
def test_a_rerun_after_a_failed_partition_scores_the_rest_once(
    dataset: Path, expected: dict[str, pa.Table], tmp_path: Path, scheduler: str
) -> None:
    """On an existing cluster (``--scheduler``)."""
    data = tmp_path / "in"
    (data / "night-1").mkdir(parents=True)
    good = dataset / "night-1" / "a.parquet"
    (data / "night-1" / "a.parquet").write_bytes(good.read_bytes())
    bad = data / "b.parquet"  # the worker fails on it: no oid column
    pq.write_table(pq.read_table(dataset / "b.parquet").drop_columns(["oid"]), bad)
    out = tmp_path / "out"
    args = ("batch", str(data), "--out", str(out), "--scheduler", scheduler)
    failed = cli(*args, "--partition-rows", "1000")
    assert failed.returncode == 2, failed.stderr[-3000:]
    error = failed.stderr.strip().splitlines()[-1]
    assert "1 of 3 partitions failed (first: b: " in error
    assert "lacks columns ['oid']" in error
    done = {p.name: p.read_bytes() for p in (out / DONE).iterdir()}
    assert sorted(done) == ["night-1.a.rows-0-1000.json", "night-1.a.rows-1000-1800.json"]
    # a crash after a part, before its marker: the part does not count and is redone
    (out / "scores" / "b.parquet").write_bytes(b"half a part")
    bad.write_bytes((dataset / "b.parquet").read_bytes())
    rerun = cli(*args, "--partition-rows", "1000")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "2 done, 1 to score" in rerun.stdout
    assert {p.name: p.read_bytes() for p in (out / DONE).iterdir() if p.name in done} == done
    assert json.loads((out / DONE / "b.json").read_text())["read"] == 1200
    got = rows(read_output(out))
    keys = [(r["source_topic"].rsplit("/", 1)[-1], r["source_offset"]) for r in got]
    assert len(keys) == len(set(keys))  # nothing twice
    want = rows(expected["scores"])
    assert [{**r, "source_topic": None} for r in got] == [{**r, "source_topic": None} for r in want]
    assert read_output(out, "dead-letters").num_rows == expected["dead"].num_rows


def test_a_scheduler_that_does_not_answer_is_one_line_and_status_2(
    dataset: Path, tmp_path: Path
) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    result = cli(
        "batch",
        str(dataset),
        "--out",
        str(tmp_path / "out"),
        "--scheduler",
        address,
        "--connect-timeout",
        "2",
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"no Dask scheduler answered at {address} within 2 s" in lines[0]
    assert not (tmp_path / "out" / "scores").exists()


def test_an_output_of_another_input_is_refused(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "_batch.json").write_text(json.dumps({"input": "elsewhere", "model": {}}))
    result = cli("batch", str(dataset), "--out", str(out), "--workers", "1")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{out} holds the scores of another input or model: use another --out" in lines[0]


@pytest.mark.slow
def test_a_prefix_on_s3_is_scored_into_s3_as_from_local_files(
    dataset: Path, expected: dict[str, pa.Table], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.test_object_storage import SECRET, aws, buckets, start_moto

    server, endpoint = start_moto()
    try:
        s3 = buckets(endpoint)
        for table in dataset.rglob("*.parquet"):
            s3.upload_file(str(table), "data", f"night/{table.relative_to(dataset)}")
        args = ("batch", "s3://data/night/", "--out", "s3://out/run/", "--workers", "1")
        result = cli(*args, "--partition-rows", "1000", env=aws(endpoint))
        assert result.returncode == 0, result.stderr[-3000:]
        assert SECRET not in result.stdout + result.stderr
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="out")["Contents"]}
        names = ("b", "night-1.a.rows-0-1000", "night-1.a.rows-1000-1800")
        assert {k for k in keys if not k.startswith("run/dead-letters/")} == {
            f"run/{kind}/{name}.{suffix}"
            for kind, suffix in (("_done", "json"), ("scores", "parquet"))
            for name in names
        } | {"run/_batch.json"}
        for name, value in aws(endpoint).items():
            monkeypatch.setenv(name, value)
        got = read_output("s3://out/run/")
        dead = read_output("s3://out/run/", "dead-letters")
        assert set(got.column("source_topic").to_pylist()) == {
            "file:s3://data/night/b.parquet",
            "file:s3://data/night/night-1/a.parquet",
        }

        def anywhere(table: pa.Table) -> list[dict[str, Any]]:
            return [{**r, "source_topic": r["source_topic"][-9:]} for r in rows(table)]

        assert anywhere(got) == anywhere(expected["scores"])
        assert anywhere(dead) == anywhere(expected["dead"])
    finally:
        server.terminate()
        server.wait(10)
