"""Error bars over split seeds (models.evaluation.splits): per-run means over folds, standard
errors over runs, paired differences with Student's t intervals, and the refusal of runs that are
not seeds of one evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from models.evaluation.protocol import CELLS_DIR, CONFIG_FILE
from models.evaluation.splits import (
    headline,
    load_splits,
    paired,
    per_class,
    per_column,
    splits_section,
)
from models.exceptions import ConfigurationError

# per seed, detector and column: the folds' AUROC
COLUMNS = [("Periodic", "E"), ("Periodic", "RRL"), ("Periodic", "Periodic-Other")]
BASE = {0: [[0.8, 0.9], [0.7, 0.7], [0.5, 0.6]], 1: [[0.6, 0.6], [0.8, 0.8], [0.6, 0.6]]}
BASE[2] = [[0.7, 0.7], [0.6, 0.6], [0.5, 0.5]]
ENSEMBLE = {0: [[0.9, 0.9], [0.8, 0.8], [0.4, 0.4]], 1: [[0.7, 0.7], [0.8, 0.9], [0.5, 0.5]]}
ENSEMBLE[2] = [[0.8, 0.8], [0.8, 0.8], [0.5, 0.5]]
AUROC = {s: {"mcdsvdd": BASE[s], "mcdsvdd-ens": ENSEMBLE[s]} for s in range(3)}


def run_dir(root: Path, seed: int, **config: object) -> Path:
    directory = root / f"seed{seed}"
    (directory / CELLS_DIR).mkdir(parents=True)
    settings = {"data_sha256": "abc", "configuration": "paper", "folds": 2, "epochs": 5}
    settings |= {"test_fraction": 0.2, "seed": seed} | config
    (directory / CONFIG_FILE).write_text(json.dumps(settings))
    for detector, columns in AUROC[seed].items():
        for (top, outlier), aurocs in zip(COLUMNS, columns, strict=True):
            cell = {"top_class": top, "outlier": outlier, "detector": detector, "auroc": aurocs}
            name = f"{top}__{outlier}__{detector}.json"
            (directory / CELLS_DIR / name).write_text(json.dumps(cell))
    return directory


def per_run(detector: str, columns: slice = slice(None)) -> np.ndarray:
    return np.array([np.mean(np.mean(AUROC[s][detector], axis=1)[columns]) for s in range(3)])


def test_means_standard_errors_and_paired_intervals(tmp_path: Path) -> None:
    splits = load_splits([run_dir(tmp_path, s) for s in range(3)])
    assert splits.seeds == [0, 1, 2]
    base, ens = per_run("mcdsvdd"), per_run("mcdsvdd-ens")
    se = np.std(base, ddof=1) / np.sqrt(3)
    table = headline(splits)
    row = next(line for line in table.splitlines() if line.startswith("| MCDSVDD |"))
    without = per_run("mcdsvdd", slice(0, 2))
    assert f"| {base.mean():.3f} ± {se:.3f} |" in row
    assert " / ".join(f"{v:.3f}" for v in base) in row
    assert f"{without.mean():.3f} ± {np.std(without, ddof=1) / np.sqrt(3):.3f}" in row
    # the spread over folds: per column the mean over runs of the folds' std, then over columns
    assert row.endswith(f"| {np.mean([0.05 / 3, 0.0, 0.05 / 3]):.3f} |")

    diff = ens - base
    half = stats.t.ppf(0.975, 2) * np.std(diff, ddof=1) / np.sqrt(3)
    line = next(x for x in paired(splits).splitlines() if x.startswith("| MCDSVDD-NN ensemble"))
    expected = f"{diff.mean():+.3f} ± {np.std(diff, ddof=1) / np.sqrt(3):.3f} "
    expected += f"[{diff.mean() - half:+.3f}, {diff.mean() + half:+.3f}]"
    assert expected in line
    assert f"| {int((diff > 0).sum())} of 3 |" in line
    assert line.endswith("| 2 of 3 |")  # E and RRL above, Periodic-Other below
    assert "Nearest" not in paired(splits)  # pairs without both detectors are left out

    columns = per_column(splits)
    e = np.array([0.85, 0.6, 0.7])
    assert f"{e.mean():.3f} ± {np.std(e, ddof=1) / np.sqrt(3):.3f}" in columns
    section = "\n".join(splits_section([tmp_path / f"seed{s}" for s in range(3)]))
    assert section.startswith("### Over 3 split seeds (0, 1, 2)")
    assert "2 degrees of freedom" in section


def test_per_class_differences_against_the_papers_best_model_of_the_class(tmp_path: Path) -> None:
    """Per class, a detector against the paper's best model of that class (MCDSVDD for
    Periodic): run by run, the difference of their means over the class's columns; classes
    without columns are left out, and so is the table when the detector is in no run."""
    splits = load_splits([run_dir(tmp_path, s) for s in range(3)])
    table = per_class(splits, detector="mcdsvdd-ens")
    rows = [line for line in table.splitlines() if line.startswith("| ") and "class" not in line]
    assert len(rows) == 1
    assert rows[0].startswith("| Periodic | MCDSVDD-NN ensemble - MCDSVDD |")
    diff = per_run("mcdsvdd-ens") - per_run("mcdsvdd")
    half = stats.t.ppf(0.975, 2) * np.std(diff, ddof=1) / np.sqrt(3)
    assert f"[{diff.mean() - half:+.3f}, {diff.mean() + half:+.3f}]" in rows[0]
    assert " / ".join(f"{v:+.3f}" for v in diff) in rows[0]
    assert rows[0].endswith(f"| {int((diff > 0).sum())} of 3 |")
    assert per_class(splits) == ""  # the default, mcdsvdd-ens-lite, is in no run
    section = "\n".join(splits_section([tmp_path / f"seed{s}" for s in range(3)]))
    assert "Per class" not in section


def test_runs_that_are_not_seeds_of_one_evaluation_are_refused(tmp_path: Path) -> None:
    first = run_dir(tmp_path / "a", 0)
    with pytest.raises(ConfigurationError, match="two evaluation directories or more"):
        load_splits([first])
    with pytest.raises(ConfigurationError, match="epochs differs"):
        load_splits([first, run_dir(tmp_path / "b", 1, epochs=7)])
    with pytest.raises(ConfigurationError, match="same seed"):
        load_splits([first, run_dir(tmp_path / "c", 0)])
    with pytest.raises(ConfigurationError, match="data_sha256, configuration differ"):
        load_splits([first, run_dir(tmp_path / "d", 2, data_sha256="x", configuration="ours")])
