"""`alert-anomaly simulate` as a user runs it: a real subprocess writing real files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import fastavro
import numpy as np
import pyarrow.parquet as pq
import pytest

from models.table import read_table

CLI = [sys.executable, "-m", "service.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--log-format", "json", *args], capture_output=True, text=True, timeout=300
    )


def test_simulate_writes_table_avro_and_lightcurves(tmp_path: Path) -> None:
    out, avro, curves = tmp_path / "t.parquet", tmp_path / "a.avro", tmp_path / "lc.parquet"
    args = [
        "simulate",
        "--n",
        "60",
        "--seed",
        "4",
        "--folds",
        "2",
        "--jobs",
        "2",
        "--out",
        str(out),
    ]
    result = run(*args, "--avro", str(avro), "--lightcurves", str(curves))
    assert result.returncode == 0, result.stderr
    assert "wrote 60 objects" in result.stdout
    assert "simulate" in result.stderr  # progress bar and logs go to stderr
    table = read_table(out)
    assert len(table) == 60
    assert len(set(table.oid)) == 60
    with open(avro, "rb") as fh:
        assert [r["oid"] for r in fastavro.reader(fh)] == table.oid.tolist()
    lc = pq.read_table(curves)
    assert set(lc.column("oid").to_pylist()) == set(table.oid.tolist())
    assert set(lc.column("fid").to_pylist()) <= {1, 2}
    again = tmp_path / "again.parquet"
    assert run(*args[:-1], str(again), "--no-progress").returncode == 0
    np.testing.assert_array_equal(read_table(again).features, table.features)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n", "0"], "argument --n: expected a positive integer, got 0"),
        (["--n", "-5"], "argument --n: expected a positive integer, got -5"),
        (["--n", "ten"], "argument --n: expected a positive integer, got 'ten'"),
        (["--classes", "SNIa,Magnetar"], "unknown subclass(es) 'Magnetar'"),
        (["--n", "10", "--folds", "5"], "10 objects are too few for 15 subclasses"),
    ],
)
def test_bad_arguments_give_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = run("simulate", "--out", str(tmp_path / "x.parquet"), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.parquet").exists()
