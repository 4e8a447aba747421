"""The evaluation report (Table 1 layout, best per column) and the top-anomalies helpers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from models.configurations import REFERENCE_BUGS, get_configuration
from models.evaluation.compare import class_summary, grid_effect, ranking, variant_versus
from models.evaluation.config import EvaluationConfig, file_digest
from models.evaluation.detectors import make_detector
from models.evaluation.page import BEGIN, END, generated_section, update_page
from models.evaluation.protocol import CELLS_DIR, reference_grid_auroc, stratified_folds
from models.evaluation.report import best_per_column, markdown_table, write_csv
from models.evaluation.top import robust_z
from models.exceptions import ConfigurationError
from models.resources import sample_dir
from models.scorers import DETECTORS, VARIANTS
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
        make_detector("knn", "Periodic", ("a",), get_configuration("ours"), 1, 0)
    with pytest.raises(ConfigurationError, match="at least 2"):
        EvaluationConfig("x", "y", folds=1)
    with pytest.raises(ConfigurationError, match="unknown configuration 'mine'"):
        EvaluationConfig("x", "y", configuration="mine")


@pytest.mark.parametrize("configuration", ["paper", "ours"])
@pytest.mark.parametrize("kind", ["iforest", "ocsvm"])
def test_sklearn_detectors_score_outliers_higher(kind: str, configuration: str) -> None:
    rng = np.random.default_rng(0)
    names = ("Std_1", "Skew_1", "Q31_1", "Rcs_1")  # families centred on 0.3, 0, 0.5, 0.3
    inliers = rng.normal([0.3, 0.0, 0.5, 0.3], 0.05, (300, 4))
    outliers = rng.normal([0.9, 3.0, 1.5, 0.6], 0.05, (20, 4))
    method = get_configuration(configuration)
    detector = make_detector(kind, "Periodic", names, method, 1, 0)
    labels = np.array(["A"] * 300)
    detector.fit(inliers, labels, (inliers[:10], labels[:10]))
    scores = detector.score(np.vstack([inliers[:50], outliers]))
    assert scores[50:].min() > np.median(scores[:50])  # higher = more anomalous


def test_stratified_folds_deal_every_label_evenly() -> None:
    labels = np.array(["a"] * 10 + ["b"] * 7 + ["c"] * 1)
    folds = stratified_folds(labels, 3, np.random.default_rng(0))
    assert sorted(np.concatenate(folds).tolist()) == list(range(18))
    for label, total in (("a", 10), ("b", 7)):
        counts = [int((labels[f] == label).sum()) for f in folds]
        assert sum(counts) == total
        assert max(counts) - min(counts) <= 1
    assert max(len(f) for f in folds) - min(len(f) for f in folds) <= 1


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


def folds_result(
    detector: str, outlier: str, aurocs: list[float], top: str = "Periodic"
) -> dict[str, object]:
    r = result(detector, outlier, float(np.mean(aurocs)), top)
    grid = [a - 0.01 for a in aurocs]
    r.update(auroc=aurocs, auroc_std=float(np.std(aurocs)), auroc_reference_grid=grid)
    return r


def test_class_summary_ranks_and_counts_wins_over_the_table1_columns() -> None:
    results = [
        folds_result(d, s, [v])
        for d, values in {
            "iforest": (0.5, 0.5, 0.5, 0.5, 0.5, 0.99),
            "ocsvm": (0.6, 0.4, 0.5, 0.5, 0.5, 0.5),
            "ae": (0.7, 0.7, 0.5, 0.5, 0.5, 0.5),
            "vae": (0.4, 0.4, 0.4, 0.4, 0.4, 0.4),
            "deepsvdd": (0.5, 0.5, 0.6, 0.5, 0.5, 0.5),
            "mcdsvdd": (0.5, 0.5, 0.5, 0.8, 0.8, 0.5),
        }.items()
        for s, v in zip(("LPV", "E", "DSCT", "RRL", "CEP", "Periodic-Other"), values, strict=True)
    ]
    summary = class_summary(results, "Periodic")
    assert summary["mcdsvdd"] == (pytest.approx(0.62), 1, 2)  # Periodic-Other is not counted
    assert summary["ae"] == (pytest.approx(0.58), 2, 2)
    assert summary["iforest"][1:] == (4, 0)  # its 0.99 on Periodic-Other does not count
    assert summary["deepsvdd"][1:] == (3, 1)
    assert summary["vae"][1:] == (6, 0)
    text = ranking({"paper": results})
    assert "| - | **0.906 (#1, 4)** | **0.620 (#1, 2)** |" in text  # Table 1, then ours
    assert "**0.620 (#1, 2)**" in text


def test_variant_against_the_base_is_paired_by_fold() -> None:
    results = [
        folds_result("mcdsvdd", "LPV", [0.6, 0.7]),
        folds_result("mcdsvdd-nn", "LPV", [0.7, 0.7]),
        folds_result("mcdsvdd", "E", [0.5, 0.6]),
        folds_result("mcdsvdd-nn", "E", [0.4, 0.5]),
        folds_result("ae", "CEP", [0.9, 0.9]),
    ]
    text = variant_versus(results)
    assert "| Periodic: LPV | 0.650 ± 0.050 | 0.700 ± 0.000 | +0.050 ± 0.050 |" in text
    assert "| Periodic: E | 0.550 ± 0.050 | 0.450 ± 0.050 | -0.100 ± 0.000 |" in text
    # fold means: base 0.55, 0.65; variant 0.55, 0.60 -> differences 0.00, -0.05
    overall = (
        "| **mean over 2 columns** | **0.600 ± 0.050** | **0.575 ± 0.025** | **-0.025 ± 0.025** |"
    )
    assert overall in text
    assert (
        "Better in 1 of 2 columns; per fold, the difference of the means over the columns is "
        "+0.000, -0.050." in text
    )
    assert "no column has both" in variant_versus([folds_result("ae", "E", [0.5])])


def test_grid_effect_and_page_update(tmp_path: Path) -> None:
    text = grid_effect({"paper": [folds_result("mcdsvdd", "E", [0.6, 0.7])]})
    assert "| paper | neural | 2 | +0.0100 | +0.0100 | +0.0100 |" in text
    page = tmp_path / "page.md"
    page.write_text(f"intro\n{BEGIN}\nold\n{END}\noutro\n")
    update_page(page, f"{BEGIN}\nnew\n{END}")
    assert page.read_text() == f"intro\n{BEGIN}\nnew\n{END}\noutro\n"
    page.write_text("no markers")
    with pytest.raises(ConfigurationError, match="has no generated part"):
        update_page(page, "x")


def test_the_results_page_shows_the_committed_evaluations(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/results.md's tables are what `alert-anomaly compare` makes of the committed cells,
    which evaluated the committed sample: the paper configuration with all seven detectors and
    the variant, and ours when it is committed."""
    monkeypatch.chdir(REPO)  # the runs name their data relative to the repository
    results = REPO / "docs" / "results"
    committed = [n for n in ("paper", "ours") if (results / n / "config.json").is_file()]
    assert "paper" in committed
    for name in committed:
        config = json.loads((results / name / "config.json").read_text())
        assert config["configuration"] == name
        assert config["data_sha256"] == file_digest(sample_dir() / "objects.parquet")
        assert config["folds"] == 5
        cells = list((results / name / CELLS_DIR).glob("*.json"))
        assert len(cells) == 15 * len(config["detectors"])  # every subclass of every detector
    paper = json.loads((results / "paper" / "config.json").read_text())
    assert set(paper["detectors"]) == {*DETECTORS, *VARIANTS}
    splits = sorted((results / "splits").glob("paper-seed*"))
    assert len(splits) >= 2  # the error bars' runs: other seeds of the paper configuration
    for run in splits:
        config = json.loads((run / "config.json").read_text())
        assert run.name == f"paper-seed{config['seed']}"
        assert config["data_sha256"] == paper["data_sha256"]
        assert {k: config[k] for k in ("configuration", "folds", "epochs")} == {
            "configuration": "paper",
            "folds": 5,
            "epochs": paper["epochs"],
        }
        assert len(list((run / CELLS_DIR).glob("*.json"))) == 15 * len(config["detectors"])
    fixes = sorted(  # in the order of REFERENCE_BUGS, as make results passes them
        (results / "fixes").glob("*-seed*"),
        key=lambda d: REFERENCE_BUGS.index(d.name.rsplit("-seed", 1)[0]),
    )
    assert {json.loads((f / "config.json").read_text())["reference_bugs"][0] for f in fixes} == {
        "log-branch",
        "first-match",
    }  # the effect of each preprocessing fix, as measured
    for run in fixes:
        config = json.loads((run / "config.json").read_text())
        assert run.name == f"{config['reference_bugs'][0]}-seed{config['seed']}"
        assert len(list((run / CELLS_DIR).glob("*.json"))) == 15 * len(config["detectors"])
    every_split = [results / "paper", *splits]  # seed 0's tables are a split too (make results)
    section = generated_section(results / "paper", results / "ours", every_split, fixes)
    assert section in (REPO / "docs" / "results.md").read_text()


def test_reference_grid_auroc_misses_the_last_segment_of_the_curve() -> None:
    labels = np.array([0, 0, 1, 1])
    lowest_inlier = np.array([0.1, 0.4, 0.35, 0.8])  # exact AUROC 0.75
    # thresholds stop above the lowest score: the curve ends at FPR 1/2, losing 1/2 x TPR 1
    assert reference_grid_auroc(labels, lowest_inlier) == pytest.approx(0.25, abs=1e-4)
    lowest_outlier = np.array([0.3, 0.4, 0.1, 0.8])  # exact 0.5; the lost segment is vertical
    assert reference_grid_auroc(labels, lowest_outlier) == pytest.approx(0.5, abs=1e-4)
    rng = np.random.default_rng(1)
    many = rng.normal(size=400)
    truth = (rng.random(400) < 0.2).astype(int)
    exact = roc_auc_score(truth, many + truth)
    lowest_is_inlier = truth[np.argmin(many + truth)] == 0
    assert lowest_is_inlier
    gap = exact - reference_grid_auroc(truth, many + truth)
    assert gap == pytest.approx(1 / (truth == 0).sum(), abs=2e-3)
