"""`alert-anomaly evaluate` and `alert-anomaly top` on the committed sample, quick settings."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from models.resources import sample_dir
from tests.integration.conftest import CLI

SAMPLE = str(sample_dir() / "objects.parquet")
QUICK = ["--classes", "Periodic", "--folds", "2", "--epochs", "15", "--no-progress"]
DETECTORS = ["--detectors", "iforest,ae,mcdsvdd"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # 75 s alone on 2 quiet cores: `make slow`
def test_quick_evaluation_table_and_resumption(tmp_path: Path) -> None:
    out = tmp_path / "results"
    first = cli("evaluate", "--data", SAMPLE, "--out", str(out), *QUICK, *DETECTORS)
    assert first.returncode == 0, first.stderr
    table = (out / "table.md").read_text().splitlines()
    header = table[2]
    assert header == (
        "| detector | Periodic: LPV | Periodic: E | Periodic: DSCT | Periodic: RRL | "
        "Periodic: CEP | Periodic: Periodic-Other |"
    )
    assert [line.split(" |")[0] for line in table[4:7]] == [
        "| Isolation Forest",
        "| AE",
        "| MCDSVDD",
    ]
    rows = list(csv.DictReader((out / "table.csv").read_text().splitlines()))
    assert len(rows) == 18
    for row in rows:
        assert 0.0 <= float(row["auroc_mean"]) <= 1.0
        assert row["folds"] == "2"
    for outlier in ("LPV", "E", "DSCT", "RRL", "CEP", "Periodic-Other"):
        assert sum(r["best"] == "1" for r in rows if r["outlier"] == outlier) == 1
    easy = [
        float(r["auroc_mean"])
        for r in rows
        if r["outlier"] in ("LPV", "E") and r["detector"] in ("ae", "mcdsvdd")
    ]
    assert max(easy) > 0.6  # the neural detectors beat random on an easy subclass
    assert (out / "roc-periodic.png").stat().st_size > 1000
    config = json.loads((out / "config.json").read_text())
    assert config["folds"] == 2
    assert config["seed"] == 0
    assert len(config["data_sha256"]) == 64

    cells = sorted((out / "cells").glob("*.json"))
    stamps = [c.stat().st_mtime_ns for c in cells]
    again = cli("evaluate", "--data", SAMPLE, "--out", str(out), *QUICK, *DETECTORS)
    assert again.returncode == 0, again.stderr
    assert [c.stat().st_mtime_ns for c in cells] == stamps  # finished cells are not redone

    other = cli("evaluate", "--data", SAMPLE, "--out", str(out), *QUICK[:-3], "--epochs", "9")
    assert other.returncode == 2
    assert "holds results of another configuration (detectors, epochs differ)" in other.stderr


def test_quick_paper_evaluation_with_the_variant(tmp_path: Path) -> None:
    out = tmp_path / "paper"
    quick = ["--classes", "Transient", "--folds", "2", "--epochs", "4", "--no-progress"]
    detectors = ["--detectors", "ocsvm,mcdsvdd-nn,mcdsvdd-ens"]
    args = ["--data", SAMPLE, "--out", str(out), *quick, *detectors]
    result = cli("evaluate", "--configuration", "paper", *args)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "config.json").read_text())["configuration"] == "paper"
    table = (out / "table.md").read_text().splitlines()
    assert [line.split(" |")[0] for line in table[4:7]] == [
        "| One-class SVM",
        "| MCDSVDD-NN",
        "| MCDSVDD-NN ensemble",
    ]
    # The ensemble's members are MCDSVDD-NN's fold networks: with two folds, the ensemble
    # without fold k's member is the other fold's network.
    for cell in (out / "cells").glob("*__mcdsvdd-nn.json"):
        single = json.loads(cell.read_text())["auroc"]
        ensemble = json.loads(cell.with_name(cell.name.replace("-nn", "-ens")).read_text())
        assert ensemble["auroc"] == single[::-1]
    other = cli("evaluate", "--configuration", "ours", *args)
    assert other.returncode == 2
    assert "(configuration differ)" in other.stderr


def test_evaluate_bad_arguments() -> None:
    result = cli("evaluate", "--data", SAMPLE, "--out", "/tmp/x", "--detectors", "lof")
    assert result.returncode == 2
    assert "unknown detector(s) ['lof']" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    nothing = cli("compare", "--paper", "/nonexistent/paper", "--ours", "/nonexistent/ours")
    assert nothing.returncode == 2
    assert nothing.stderr.strip().splitlines() == [
        "alert-anomaly compare: error: /nonexistent/paper holds no evaluation (config.json is "
        "missing)"
    ]
    one_fold = cli("evaluate", "--data", SAMPLE, "--out", "/tmp/x", "--folds", "1")
    assert one_fold.returncode == 2
    assert one_fold.stderr.strip().endswith(
        "--folds must be at least 2 (one fold stops the training)"
    )


def test_top_lists_every_predicted_subclass() -> None:
    result = cli("top", "--data", SAMPLE, "--n", "2")
    assert result.returncode == 0, result.stderr
    headers = [line for line in result.stdout.splitlines() if line.startswith("predicted ")]
    assert len(headers) == 15
    assert "(z " in result.stdout
    bad = cli("top", "--data", SAMPLE, "--plot", "/tmp/plots")
    assert bad.returncode == 2
    assert "--plot needs --lightcurves" in bad.stderr
