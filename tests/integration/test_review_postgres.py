"""The verdict store on a real PostgreSQL server (tests/integration/postgres_server.py): the
same contract as SQLite's, migrations applied once when two stores open the same database, and
the CLI's export from it; a server that does not answer is one line, exit 2."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.review.store import SCHEMA_VERSION, Verdict, open_store
from tests.integration.postgres_server import free_port, postgres_server
from tests.unit.test_review_store import check_store_contract

pytest.importorskip("psycopg")

CLI = [sys.executable, "-m", "service.cli"]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def test_postgres_store_keeps_the_contract_and_exports(postgres_url: str, tmp_path: Path) -> None:
    with open_store(postgres_url) as store, open_store(postgres_url) as second:
        assert second.schema_version() == SCHEMA_VERSION  # migrated once, seen by both
        check_store_contract(store)
        assert len(second.verdicts()) == 3  # committed: another connection reads them
    out = tmp_path / "verdicts.csv"
    result = subprocess.run(
        [*CLI, "verdicts", "export", str(out), "--db", postgres_url, "--expert", "ana"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open()))
    assert [(r["oid"], r["verdict"]) for r in rows] == [("ZTF21b", "bogus"), ("ZTF21a", "not")]
    with open_store(postgres_url) as store:
        store.record(Verdict("cy", "lsst", "170", "anomaly"))
        assert store.experts() == ["ana", "ben", "cy"]


def test_a_server_that_does_not_answer_is_one_line() -> None:
    url = f"postgresql://alert:s3cret@127.0.0.1:{free_port()}/verdicts"
    result = subprocess.run(
        [*CLI, "verdicts", "export", "x.csv", "--db", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, lines
    assert "cannot connect to postgresql://127.0.0.1:" in lines[0]
    assert "s3cret" not in result.stderr


def test_stores_opened_at_once_migrate_once(postgres_url: str) -> None:
    """Four processes' worth of connections migrating a fresh database at the same time."""
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE race")
    url = postgres_url.rsplit("/", 1)[0] + "/race"

    def version() -> int:
        with open_store(url) as store:
            return store.schema_version()

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda _: version(), range(4))) == [SCHEMA_VERSION] * 4
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))
