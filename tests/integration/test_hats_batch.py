"""``alert-anomaly batch`` of a HATS catalog (issue 30's "Done when"): a HATS catalog of the
simulated objects on a local S3 (``moto_server``), scored by a 2-worker local Dask cluster into
a HATS catalog on S3 that ``lsdb`` opens and crossmatches with the input, scores and dead letters
equal to ``score``'s on the same rows; a rerun scores nothing again."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.resources import sample_dir
from models.table import read_table, write_table
from service.batch import read_output
from tests.integration.conftest import CLI

pytest.importorskip("dask.distributed")
pytest.importorskip("lsdb")

pytestmark = pytest.mark.integration
ROWS = 1200
LINEAGE = ("scored_at", "source_topic", "source_partition", "source_offset")


def test_sky_positions_are_deterministic_and_on_the_sphere() -> None:
    from service.hats import sky_positions

    oids = [f"ZTF{i:08d}" for i in range(4000)]
    ra, dec = sky_positions(oids)
    again, _ = sky_positions(list(reversed(oids)))
    assert np.array_equal(ra, again[::-1])
    assert ((ra >= 0) & (ra < 360)).all()
    assert ((dec >= -90) & (dec <= 90)).all()
    # uniform on the sphere: sin(dec) uniform on [-1, 1], so half the objects within 30 deg
    assert abs(np.mean(np.abs(dec) < 30) - 0.5) < 0.03


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Simulated objects (the committed sample), some of them dead letters: every feature null
    (low coverage) or an infinity (non-finite)."""
    path = tmp_path_factory.mktemp("hats") / "objects.parquet"
    table = read_table(sample_dir() / "objects.parquet").take(np.arange(ROWS))
    table.features[5::97] = np.nan
    table.features[11::131, 0] = np.inf
    write_table(table, path)
    return path


def cli(*args: str, env: dict[str, str]) -> Any:
    import subprocess

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ALERT_ANOMALY_", "AWS_"))}
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        env={**clean, "ALERT_ANOMALY_METRICS_PORT": "0", **env},
        timeout=900,
    )


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[Any, str]]:
    from tests.integration.test_object_storage import buckets, start_moto

    server, endpoint = start_moto()
    try:
        yield buckets(endpoint), endpoint
    finally:
        server.terminate()
        server.wait(10)


def anywhere(table: pa.Table) -> list[dict[str, Any]]:
    """The records without their lineage and time, in one order."""
    records = table.drop_columns([c for c in LINEAGE if c in table.column_names]).to_pylist()
    return sorted(records, key=str)


@pytest.mark.slow
def test_a_hats_catalog_on_s3_is_scored_by_two_workers_into_a_hats_catalog_equal_to_score(
    objects: Path,
    s3: tuple[Any, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from service.hats import build_catalog, open_catalog
    from tests.integration.test_object_storage import SECRET, aws

    client, endpoint = s3
    env = aws(endpoint)
    # `score` of the table: what every row's score and dead letter must be
    scored = tmp_path / "score.parquet"
    result = cli("score", str(objects), str(scored), "--no-progress", env={})
    assert result.returncode == 0, result.stderr[-3000:]
    want = pq.read_table(scored)
    want_dead = pq.read_table(tmp_path / "score.dead-letters.parquet")
    assert 0 < want_dead.num_rows < ROWS

    catalog = tmp_path / "catalog"
    assert build_catalog(objects, catalog, partition_rows=300) > 1
    for path in catalog.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), "data", f"objects/{path.relative_to(catalog)}")

    args = ("batch", "s3://data/objects/", "--out", "s3://out/run/", "--workers", "2")
    result = cli(*args, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert SECRET not in result.stdout + result.stderr
    dead = want_dead.num_rows
    assert f"read {ROWS}, scored {ROWS - dead}, dead-lettered {dead} in " in result.stdout
    assert "(HATS catalog s3://out/run/hats)" in result.stdout

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    got = read_output("s3://out/run/")
    assert (
        got.column("source_topic")[0].as_py().startswith("file:s3://data/objects/dataset/Norder=")
    )
    assert anywhere(got) == anywhere(want)
    got_dead = read_output("s3://out/run/", "dead-letters")
    assert anywhere(got_dead) == anywhere(want_dead)

    # the output's HATS catalog: opened by lsdb on S3, each score at its object's place
    scores = open_catalog("s3://out/run/hats")  # lsdb.open_catalog
    inputs = open_catalog("s3://data/objects")
    assert scores.get_healpix_pixels() == inputs.get_healpix_pixels()
    frame = scores.compute()
    assert len(frame) == ROWS - dead
    assert frame.index.name == "_healpix_29"
    by_oid = {r["oid"]: r for r in anywhere(want)}
    assert all(frame["score"].to_numpy() == [by_oid[o]["score"] for o in frame["oid"]])
    matched = scores.crossmatch(
        inputs,
        n_neighbors=1,
        radius_arcsec=0.1,
        suffixes=("_score", "_input"),
        suffix_method="all_columns",
    ).compute()
    assert len(matched) == ROWS - dead
    assert (matched["oid_score"] == matched["oid_input"]).all()
    assert (matched["_dist_arcsec"] == 0).all()

    # a rerun: every partition done, nothing scored twice
    again = cli(*args, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"({ROWS} rows), {len(inputs.get_healpix_pixels())} done, 0 to score" in again.stdout
    assert read_output("s3://out/run/").num_rows == ROWS - dead


def test_a_broken_hats_catalog_is_one_line_and_status_2(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "hats.properties").write_text("obs_collection=objects\n")
    result = cli("batch", str(catalog), "--out", str(tmp_path / "out"), "--workers", "1", env={})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{catalog} is not a HATS catalog lsdb reads: " in lines[0]
    assert not (tmp_path / "out").exists()
