"""The evaluation report (Table 1 layout, best per column) and the top-anomalies helpers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from models.evaluation.detectors import make_detector
from models.evaluation.protocol import CELLS_DIR, EvaluationConfig, file_digest
from models.evaluation.report import best_per_column, markdown_table, write_csv
from models.evaluation.top import robust_z
from models.exceptions import ConfigurationError
from models.resources import sample_dir
from tests.conftest import REPO


def result(detector: str, outlier: str, auroc: float, top: str = "Periodic") -> dict[str, object]:
    return {
        "top_class": top,
        "outlier": outlier,
        "detector": detector,
        "auroc": [auroc],
        "auprc": [auroc / 2],
        "auroc_mean": auroc,
        "auroc_std": 0.01,
        "auprc_mean": auroc / 2,
        "auprc_std": 0.02,
        "n_train": 100,
        "n_test": 50,
        "roc_fold0": None,
    }


RESULTS = [
    result("mcdsvdd", "LPV", 0.9),
    result("ae", "LPV", 0.7),
    result("mcdsvdd", "E", 0.6),
    result("ae", "E", 0.8),
    result("ae", "SNIa", 0.55, "Transient"),
]


def test_table_layout_and_best_per_column() -> None:
    assert best_per_column(RESULTS) == {
        ("Periodic", "LPV"): "mcdsvdd",
        ("Periodic", "E"): "ae",
        ("Transient", "SNIa"): "ae",
    }
    lines = markdown_table(RESULTS).splitlines()
    # columns grouped by class in taxonomy order; rows in the paper's detector order
    assert lines[0] == "| detector | Transient: SNIa | Periodic: LPV | Periodic: E |"
    assert lines[2] == "| AE | **0.550 ± 0.010** | 0.700 ± 0.010 | **0.800 ± 0.010** |"
    assert lines[3] == "| MCDSVDD | - | **0.900 ± 0.010** | 0.600 ± 0.010 |"
    assert "**" not in markdown_table(RESULTS, "auprc")


def test_csv_marks_the_best(tmp_path: Path) -> None:
    write_csv(RESULTS, tmp_path / "t.csv")
    rows = list(csv.DictReader((tmp_path / "t.csv").read_text().splitlines()))
    assert [(r["outlier"], r["detector"], r["best"]) for r in rows[:2]] == [
        ("LPV", "mcdsvdd", "1"),
        ("LPV", "ae", "0"),
    ]


def test_config_validation() -> None:
    with pytest.raises(ConfigurationError, match="unknown detector"):
        EvaluationConfig("x", "y", detectors=("lof",))
    with pytest.raises(ConfigurationError, match="unknown top-level class"):
        EvaluationConfig("x", "y", classes=("Variable",))
    with pytest.raises(ConfigurationError, match="unknown detector 'knn'"):
        make_detector("knn", "Periodic", ("a",), 1, 0)


def test_sklearn_detectors_score_outliers_higher() -> None:
    rng = np.random.default_rng(0)
    inliers = rng.normal(0, 1, (300, 4))
    outliers = rng.normal(6, 1, (20, 4))
    for kind in ("iforest", "ocsvm"):
        detector = make_detector(kind, "Periodic", ("a", "b", "c", "d"), 1, 0)
        detector.fit(inliers, np.array(["A"] * 300))
        scores = detector.score(np.vstack([inliers[:50], outliers]))
        assert scores[50:].min() > np.median(scores[:50]), kind  # higher = more anomalous


def test_robust_z() -> None:
    spread = np.arange(20.0)  # MAD 5 x 1.4826, well above a tenth of the standard deviation
    flat = np.r_[np.ones(19), 1.0001]  # MAD 0: a tenth of the standard deviation instead
    undefined = np.r_[np.nan, np.full(19, 5.0)]  # constant where defined
    z = robust_z(np.column_stack([spread, flat, undefined]))
    assert z[12, 0] == pytest.approx((12 - 9.5) / (1.4826 * 5.0))
    assert z[19, 1] == pytest.approx(0.0001 / (0.1 * np.std(flat)))
    assert abs(z[19, 1]) < 50  # not the 1e8 a near-zero MAD would give
    assert np.isnan(z[0, 2])  # undefined stays undefined
    assert np.isnan(z[1, 2])  # a constant column has no z-scores


def test_committed_full_run_matches_its_cells_and_the_committed_sample() -> None:
    """docs/results/synthetic was produced by this code from the committed sample and seed."""
    results_dir = REPO / "docs" / "results" / "synthetic"
    config = json.loads((results_dir / "config.json").read_text())
    assert config["data_sha256"] == file_digest(sample_dir() / "objects.parquet")
    assert config["folds"] == 5
    assert len(config["detectors"]) == 6
    cells = [json.loads(p.read_text()) for p in sorted((results_dir / CELLS_DIR).glob("*.json"))]
    assert len(cells) == 90  # 15 subclasses x 6 detectors
    order = {(r["top_class"], r["outlier"], r["detector"]): r for r in cells}
    table = (results_dir / "table.md").read_text()
    assert markdown_table(list(order.values())) in table
