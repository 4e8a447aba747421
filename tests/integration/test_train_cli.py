"""`alert-anomaly train` as a user runs it: a real subprocess writing loadable bundles."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.bundle import load_bundle
from models.features import paper_features
from models.networks import Ensemble
from models.resources import sample_dir
from models.scoring import Scorer
from models.table import read_table, write_table

CLI = [sys.executable, "-m", "service.cli", "--log-format", "json"]
SAMPLE = sample_dir() / "objects.parquet"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)


def test_train_all_writes_nine_loadable_bundles(tmp_path: Path) -> None:
    quick = ["--epochs", "3", "--pretrain-epochs", "2", "--no-progress"]
    result = run("train", "--data", str(SAMPLE), "--all", "--out", str(tmp_path), *quick)
    assert result.returncode == 0, result.stderr
    dirs = sorted(p.parent.relative_to(tmp_path) for p in tmp_path.rglob("manifest.json"))
    assert [str(d) for d in dirs] == [
        f"ztf/{top}-{scorer}"
        for top in ("periodic", "stochastic", "transient")
        for scorer in ("ae", "mcdsvdd", "mcdsvdd-ens-lite")
    ]
    assert "ztf/periodic-mcdsvdd-ens-lite (default)" in result.stdout
    assert "ztf/stochastic-ae (" in result.stdout
    assert "ztf/stochastic-ae (default)" not in result.stdout
    lite = load_bundle(tmp_path / "ztf" / "stochastic-mcdsvdd-ens-lite")
    assert isinstance(lite.net, Ensemble)
    assert lite.manifest.hidden == [128, 64]
    assert '"event": "epoch"' not in result.stderr  # epochs are debug lines
    table = read_table(SAMPLE)
    periodic = table.take(table.top_class == "Periodic")
    bundle = load_bundle(tmp_path / "ztf" / "periodic-mcdsvdd")
    assert bundle.feature_names == paper_features()  # the paper's selection, not every column
    assert bundle.manifest.configuration == "ours"
    assert set(bundle.manifest.centre_subclasses) == set(periodic.subclass)
    assert bundle.manifest.training["data"]["n_objects"] == len(periodic)
    features = periodic.columns(bundle.feature_names)[:50].astype(np.float32)
    assert np.all(np.isfinite(Scorer(bundle, "cpu").score(features).raw))


def test_train_an_ensemble_in_the_paper_configuration(tmp_path: Path) -> None:
    quick = ["--epochs", "3", "--pretrain-epochs", "2", "--no-progress"]
    args = ["--top-class", "Periodic", "--scorer", "mcdsvdd-ens", "--configuration", "paper"]
    result = run("train", "--data", str(SAMPLE), *args, "--out", str(tmp_path / "b"), *quick)
    assert result.returncode == 0, result.stderr
    assert "5 networks, one per fold" in result.stdout
    ensemble = load_bundle(tmp_path / "b")
    assert ensemble.manifest.configuration == "paper"
    assert isinstance(ensemble.net, Ensemble)
    assert len(ensemble.net.members) == 5
    table = read_table(SAMPLE)
    periodic = table.take(table.top_class == "Periodic")
    features = periodic.columns(ensemble.feature_names)[:50].astype(np.float32)
    assert np.all(np.isfinite(Scorer(ensemble, "cpu").score(features).raw))


def test_epochs_are_debug_lines_with_rounded_losses(tmp_path: Path) -> None:
    quick = ["--epochs", "2", "--no-progress", "--top-class", "Periodic", "--scorer", "ae"]
    args = ["--log-level", "debug", "train", "--data", str(SAMPLE), "--out", str(tmp_path / "b")]
    result = run(*args, *quick)
    assert result.returncode == 0, result.stderr
    epochs = [json.loads(line) for line in result.stderr.splitlines() if '"event": "epoch"' in line]
    assert [e["epoch"] for e in epochs] == [1, 2]
    for e in epochs:
        assert e["level"] == "debug"
        for loss in (e["train_loss"], e["val_loss"]):
            assert float(f"{loss:.4g}") == loss  # four significant digits


def test_train_paper_configuration(tmp_path: Path) -> None:
    out = tmp_path / "periodic-mcdsvdd"
    quick = ["--epochs", "3", "--no-progress", "--top-class", "Periodic", "--scorer", "mcdsvdd"]
    result = run(
        "train", "--data", str(SAMPLE), "--configuration", "paper", "--out", str(out), *quick
    )
    assert result.returncode == 0, result.stderr
    assert "ztf/periodic-mcdsvdd (paper): 3 epochs" in result.stdout
    bundle = load_bundle(out)
    assert bundle.manifest.configuration == "paper"
    hyper = bundle.manifest.training["hyperparameters"]
    assert hyper["pretraining"] == {"kind": "class_ae", "lr": 1e-3, "max_epochs": 3}
    assert hyper["centres"] == "recomputed"
    assert hyper["weight_decay"] == 0.0
    assert {p["missing"] for p in bundle.manifest.preprocessing} == {-1.1}


def test_a_table_without_the_papers_features_is_refused(tmp_path: Path) -> None:
    table = read_table(SAMPLE)
    keep = [i for i, n in enumerate(table.feature_names) if n not in ("IAR_phi_1", "PPE_12")]
    narrow = dataclasses.replace(
        table,
        features=table.features[:, keep],
        feature_names=tuple(table.feature_names[i] for i in keep),
    )
    path = tmp_path / "narrow.parquet"
    write_table(narrow, path)
    result = run("train", "--data", str(path), "--all", "--out", str(tmp_path / "b"))
    assert result.returncode != 0
    assert "lacks 2 of the paper's 129 features: IAR_phi_1, PPE_12" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--top-class", "Periodic"], "give --top-class and --scorer, or --all"),
        (["--all", "--scorer", "ae"], "--all trains every class and scorer"),
        (["--top-class", "Periodic", "--scorer", "ae", "--epochs", "0"], "positive integer"),
        (["--top-class", "Variable", "--scorer", "ae"], "invalid choice: 'Variable'"),
        (["--all", "--configuration", "reference"], "invalid choice: 'reference'"),
        (["--all", "--config", "paper"], "unrecognized arguments: --config paper"),
    ],
)
def test_bad_arguments_give_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = run("train", "--data", str(SAMPLE), "--out", str(tmp_path), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "none.parquet"
    result = run("train", "--data", str(missing), "--all", "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"alert-anomaly train: error: feature table {missing} does not exist"
    ]


def test_train_all_for_lsst_writes_unrouted_and_routed_bundles(tmp_path: Path) -> None:
    from models.resources import bundles_dir

    lsst = bundles_dir().parent / "data" / "lsst-sim-sample" / "objects.parquet"
    quick = ["--epochs", "2", "--pretrain-epochs", "1", "--no-progress"]
    result = run("train", "--data", str(lsst), "--all", "--out", str(tmp_path), *quick)
    assert result.returncode == 0, result.stderr  # the survey comes from the table
    dirs = sorted(str(p.parent.relative_to(tmp_path)) for p in tmp_path.rglob("manifest.json"))
    assert dirs == sorted(
        ["lsst/all-iforest", "lsst/all-distclassipy", "lsst/all-ae"]
        + [
            f"lsst/{top}-{s}"
            for top in ("transient", "stochastic", "periodic")
            for s in ("mcdsvdd", "ae")
        ]
    )
    assert "lsst/all-iforest (default) (ours): fitted on" in result.stdout  # LSST's defaults
    assert "lsst/all-ae (ours)" in result.stdout
    assert "lsst/periodic-mcdsvdd (default) (ours)" in result.stdout
    table = read_table(lsst)
    for name in ("all-iforest", "all-distclassipy", "periodic-mcdsvdd"):
        bundle = load_bundle(tmp_path / "lsst" / name)
        assert "SIMULATED Rubin/LSST" in bundle.manifest.notice
        assert bundle.manifest.training["data"]["features"] == "diaobject"
        rows = table if name.startswith("all") else table.take(table.top_class == "Periodic")
        assert bundle.manifest.training["data"]["n_objects"] == len(rows)
        scores = Scorer(bundle, "cpu").score(
            rows.columns(bundle.feature_names)[:40].astype(np.float32)
        )
        assert np.all(np.isfinite(scores.raw))
    ztf = run("train", "--data", str(SAMPLE), "--top-class", "All", "--scorer", "iforest",
              "--out", str(tmp_path / "ztf-all"), "--no-progress")  # fmt: skip
    assert ztf.returncode == 0, ztf.stderr
    assert load_bundle(tmp_path / "ztf-all").feature_names == paper_features()
    wrong = run("train", "--data", str(lsst), "--top-class", "Everything", "--scorer", "ae",
                "--out", str(tmp_path / "x"))  # fmt: skip
    assert wrong.returncode == 2
    assert "invalid choice: 'Everything'" in wrong.stderr
