"""The paper's protocol: each subclass in turn is the outlier of its top-level class.

80/20 stratified split of the table (by subclass, seeded). For a cell (top-level class,
outlier subclass, detector): the training inliers are the 80% part's objects of the class minus
the outlier subclass; they are split in K folds stratified by subclass, and K models are trained,
each fitted on K-1 folds, the neural detectors stopping early on the held-out fold (as the
paper's code does); every model scores the same test set, the 20% part's objects of the class
(inliers and the outlier subclass). AUROC and AUPRC (outlier = positive, scikit-learn's exact
values) are reported as mean and standard deviation over the folds; each fold's AUROC as the
reference code computes it (on a threshold grid, :func:`reference_grid_auroc`) is kept beside.
Only the features the paper uses are read (models.training.model_columns: for an LSST table
the diaObject fields every Rubin schema version carries); the named
configuration (models.configurations) sets the preprocessing and training method of every
detector.

Cells are independent, run in parallel processes, and each is saved as one JSON file as soon as
it finishes, so an interrupted run resumes with the cells that are missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.detectors import get
from models.evaluation.config import EvaluationConfig
from models.evaluation.detectors import NeuralDetector, make_detector
from models.exceptions import ConfigurationError, DataError
from models.extras import SIM, require
from models.table import AlertTable, read_table
from models.taxonomy import SUBCLASSES
from models.training import model_columns, stratified_folds, stratified_split

CELLS_DIR = "cells"
CONFIG_FILE = "config.json"
ROC_POINTS = 101


@dataclass(frozen=True)
class Cell:
    top_class: str
    outlier: str
    detector: str

    @property
    def filename(self) -> str:
        return f"{self.top_class}__{self.outlier.replace('/', '-')}__{self.detector}.json"


def cells(config: EvaluationConfig, table: AlertTable) -> list[Cell]:
    present = set(table.subclass.tolist())
    return [
        Cell(top, outlier, detector)
        for top in config.classes
        for outlier in SUBCLASSES[top]
        if outlier in present
        for detector in config.detectors
    ]


def _split(config: EvaluationConfig, table: AlertTable) -> tuple[AlertTable, AlertTable]:
    rng = np.random.default_rng(config.seed)
    train, test = stratified_split(table.subclass, config.test_fraction, rng)
    return table.take(train), table.take(test)


def reference_grid_auroc(labels: NDArray[np.int_], scores: NDArray[np.float64]) -> float:
    """AUROC as the reference code computes it (src/evaluate.py): TPR and FPR (denominators
    + 1e-5) at 100,000 thresholds stepping down from the highest score, the lowest score itself
    excluded, integrated by trapezoids; in float64, as NumPy 1.x did it."""
    auc = require("sklearn.metrics", SIM, "the evaluation").auc
    scores = np.asarray(scores, dtype=np.float64)
    start, end = float(scores.min()), float(scores.max())
    if end == start:
        return 0.0
    thresholds = np.arange(end, start, -(end - start) / 100_000)

    def rate(values: NDArray[np.float64]) -> NDArray[np.float64]:
        ordered = np.sort(values)
        above = ordered.size - np.searchsorted(ordered, thresholds, side="left")
        return np.asarray(above / (ordered.size + 1e-5), dtype=np.float64)

    positive = labels == 1
    return float(auc(rate(scores[~positive]), rate(scores[positive])))


def _roc(labels: np.ndarray, scores: np.ndarray) -> dict[str, list[float]]:
    fpr, tpr, _ = require("sklearn.metrics", SIM, "the evaluation").roc_curve(labels, scores)
    grid = np.linspace(0, 1, ROC_POINTS)
    return {"fpr": grid.round(4).tolist(), "tpr": np.interp(grid, fpr, tpr).round(4).tolist()}


def _fold_scores(
    config: EvaluationConfig,
    cell: Cell,
    training: tuple[NDArray[np.float64], NDArray[np.str_], tuple[str, ...]],
    x_test: NDArray[np.float64],
) -> list[NDArray[np.float64]]:
    """The test set's scores by fold: of the model fitted on the other K-1 folds and stopped
    early on this one; for an ensemble, whose K members are exactly those models, of the
    ensemble without this fold's member (K-1 members: a spread, and a conservative one)."""
    x, y, names = training
    method = config.method
    if get(cell.detector).family == "ensemble":
        ensemble = NeuralDetector(
            cell.detector, cell.top_class, names, method, config.epochs, config.seed, config.folds
        )
        ensemble.fit(x, y, (x[:0], y[:0]))
        members = ensemble.member_scores(x_test)
        keep = ~np.eye(config.folds, dtype=bool)
        return [members[keep[k]].sum(axis=0) for k in range(config.folds)]
    out = []
    folds = stratified_folds(y, config.folds, np.random.default_rng(config.seed))
    for k, held in enumerate(folds):
        fit = np.setdiff1d(np.arange(len(y)), held)
        detector = make_detector(
            cell.detector, cell.top_class, names, method, config.epochs, config.seed + k
        )
        detector.fit(x[fit], y[fit], (x[held], y[held]))
        out.append(detector.score(x_test))
    return out


def run_cell(config: EvaluationConfig, cell: Cell) -> dict[str, Any]:
    """Train K models for one cell and score the test set; returns the cell's results."""
    import torch

    metrics = require("sklearn.metrics", SIM, "the evaluation")
    average_precision_score, roc_auc_score = metrics.average_precision_score, metrics.roc_auc_score

    torch.set_num_threads(1)  # one process per core
    table = read_table(Path(config.data))
    train, test = _split(config, table)
    inliers = train.take((train.top_class == cell.top_class) & (train.subclass != cell.outlier))
    test = test.take(test.top_class == cell.top_class)
    labels = (test.subclass == cell.outlier).astype(int)
    if labels.sum() == 0 or labels.sum() == labels.size:
        raise DataError(f"the test set of {cell.top_class} cannot separate {cell.outlier}")
    (x, names), y, (x_test, _) = model_columns(inliers), inliers.subclass, model_columns(test)
    aurocs, auprcs, grid, roc = [], [], [], None
    for scores in _fold_scores(config, cell, (x, y, names), x_test):
        aurocs.append(float(roc_auc_score(labels, scores)))
        if get(cell.detector).reference_normality:  # the reference: normality, then 1 - AUROC
            grid.append(1.0 - reference_grid_auroc(labels, -scores))
        else:
            grid.append(reference_grid_auroc(labels, scores))
        auprcs.append(float(average_precision_score(labels, scores)))
        if roc is None:
            roc = _roc(labels, scores)
    return {
        **asdict(cell),
        "auroc": aurocs,
        "auprc": auprcs,
        "auroc_reference_grid": grid,
        "auroc_mean": float(np.mean(aurocs)),
        "auroc_std": float(np.std(aurocs)),
        "auprc_mean": float(np.mean(auprcs)),
        "auprc_std": float(np.std(auprcs)),
        "outlier_fraction": float(labels.mean()),
        "n_train": len(inliers),
        "n_test": int(labels.size),
        "roc_fold0": roc,
    }


def _check_or_write_config(out: Path, config: EvaluationConfig) -> None:
    path = out / CONFIG_FILE
    current = {
        **asdict(config),
        "detectors": list(config.detectors),
        "classes": list(config.classes),
        "reference_bugs": list(config.reference_bugs),
    }
    if path.is_file():
        saved = {"reference_bugs": [], **json.loads(path.read_text())}  # older runs: none
        same_but_more = {**saved, "detectors": current["detectors"]} == current and set(
            saved.get("detectors", [])
        ) < set(current["detectors"])
        if same_but_more:  # more detectors on the same data and settings: their cells join
            path.write_text(json.dumps(current, indent=1) + "\n")
            return
        if saved != current:
            changed = sorted(k for k in current if saved.get(k) != current[k])
            raise ConfigurationError(
                f"{out} holds results of another configuration ({', '.join(changed)} differ): "
                "use another --out"
            )
    else:
        path.write_text(json.dumps(current, indent=1) + "\n")


def require_extras() -> None:
    """scikit-learn (metrics, iforest, ocsvm) and matplotlib (the ROC plots) come with the 'sim'
    extra: without it, a MissingExtraError naming it, before any cell runs."""
    for module in ("sklearn.metrics", "matplotlib"):
        require(module, SIM, "alert-anomaly evaluate")


def run_evaluation(
    config: EvaluationConfig,
    out: Path,
    jobs: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) every cell; returns all cell results in protocol order."""
    require_extras()
    table = read_table(Path(config.data))
    out.mkdir(parents=True, exist_ok=True)
    (out / CELLS_DIR).mkdir(exist_ok=True)
    _check_or_write_config(out, config)
    todo = [c for c in cells(config, table) if not (out / CELLS_DIR / c.filename).is_file()]
    total = len(cells(config, table))
    done = total - len(todo)
    if progress:
        progress(done, total)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_cell, config, cell): cell for cell in todo}
        for future in as_completed(futures):
            cell = futures[future]
            result = future.result()
            path = out / CELLS_DIR / cell.filename
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(result))
            os.replace(temporary, path)
            done += 1
            if progress:
                progress(done, total)
    return [json.loads((out / CELLS_DIR / c.filename).read_text()) for c in cells(config, table)]
