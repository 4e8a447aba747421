"""Benchmark of the anomaly bundles on held-out synthetic data.

1. Quality: for every top-level class and scorer (``--scorers``, default mcdsvdd and ae), each
   subclass in turn is left out of training (80/20 stratified split of the data set; the
   left-out subclass is removed from the training part) and the AUROC of separating it from
   held-out inliers is printed.
2. Speed: rows/s of each shipped ZTF bundle (our two ensembles too) and of the unrouted LSST
   bundles (all-distclassipy also by DistClassiPy's own per-metric path) scoring 4096-row
   batches on the CPU.
3. ``--explain``: instead, per shipped ZTF bundle and LSST's all-iforest, rows/s without and
   with explanations (models.explain, top 3) of every row in the service's micro-batches (1024
   rows); then as the service explains by default (``model.explain_min_percentile``: the
   rows at or above the 90th percentile) on 340-row batches of the bundle's own class (what
   a class gets of a micro-batch), off and on, with the share of rows explained; and how
   often a feature pushed far out of its range is among the three named, in the rows that
   the push makes anomalous (from below the 90th percentile of the training inliers to above
   the 99.5th).

    python benchmarks/bench_bundles.py [--data models/data/ztf-sim-sample/objects.parquet]
        [--epochs 1000] [--classes Periodic,...] [--configuration paper] [--skip-speed]
        [--skip-quality] [--scorers mcdsvdd,ae] [--explain]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import cores, machine
from sklearn.metrics import roc_auc_score

from models.bundle import Bundle, load_bundle
from models.configurations import CONFIGURATION_NAMES
from models.estimators import DistanceEstimator
from models.preprocessing import preprocess
from models.resources import bundle_dirname, bundles_dir, sample_dir
from models.scoring import Scorer
from models.table import read_table
from models.taxonomy import SUBCLASSES, TOP_CLASSES
from models.training import (
    TrainingConfig,
    paper_columns,
    stratified_split,
    train_model,
)
from service.config.sections import ModelSettings
from service.ops.logs import configure_logging

SHIPPED_ZTF = ("mcdsvdd", "ae", "mcdsvdd-ens", "mcdsvdd-ens-lite")  # kinds of the ZTF bundles


def quality(
    data: Path,
    epochs: int,
    classes: list[str],
    seed: int,
    configuration: str,
    scorers: tuple[str, ...] = ("mcdsvdd", "ae"),
) -> None:
    table = read_table(data)
    train_idx, test_idx = stratified_split(table.subclass, 0.2, np.random.default_rng(seed))
    train, test = table.take(train_idx), table.take(test_idx)
    print(
        f"\nleave-one-subclass-out AUROC ({data.name}: {len(train)} train / {len(test)} test; "
        f"configuration {configuration})"
    )
    print(f"{'class':10s} {'outlier':15s} " + " ".join(f"{s:>8s}" for s in scorers))
    aurocs = []
    for top in classes:
        for outlier in SUBCLASSES[top]:
            row = []
            inliers = train.take((train.top_class == top) & (train.subclass != outlier))
            test_sel = test.top_class == top
            labels = (test.subclass[test_sel] == outlier).astype(int)
            for scorer in scorers:
                config = TrainingConfig(
                    scorer=scorer,
                    top_class=top,
                    max_epochs=epochs,
                    seed=seed,
                    configuration=configuration,  # type: ignore[arg-type]
                )
                features, names = paper_columns(inliers)
                trained = train_model(features, inliers.subclass, names, config, progress=False)
                bundle = Bundle.from_training(trained, config, "ztf", names, {}, "bench")
                test_x, _ = paper_columns(test.take(test_sel))
                scores = Scorer(bundle, "cpu").score(test_x.astype(np.float32)).raw
                row.append(roc_auc_score(labels, scores))
            aurocs.append(row)
            print(f"{top:10s} {outlier:15s} " + " ".join(f"{v:8.3f}" for v in row), flush=True)
    arr = np.array(aurocs)
    means = ", ".join(f"{s} {arr[:, i].mean():.3f}" for i, s in enumerate(scorers))
    above = ", ".join(f"{s} {(arr[:, i] > 0.6).sum()}/{len(arr)}" for i, s in enumerate(scorers))
    print(f"mean AUROC: {means}; cells > 0.6: {above}")


def speed(rows: int = 4096, repeats: int = 50) -> None:
    print(f"\nscoring throughput, {rows}-row batches, CPU, torch threads {torch.get_num_threads()}")
    rng = np.random.default_rng(0)
    table = read_table(sample_dir() / "objects.parquet")
    for top in TOP_CLASSES:
        for scorer in SHIPPED_ZTF:
            path = bundles_dir() / bundle_dirname("ztf", top, scorer)
            if not path.is_dir():
                continue
            bundle_scorer = Scorer(load_bundle(path), "cpu")
            X = table.columns(bundle_scorer.feature_names)
            batch = X[rng.integers(0, len(X), rows)].astype(np.float32)
            bundle_scorer.score(batch)  # warm-up
            t0 = time.perf_counter()
            for _ in range(repeats):
                bundle_scorer.score(batch)
            rate = rows * repeats / (time.perf_counter() - t0)
            print(f"  {bundle_scorer.bundle.name:32s} {rate:12,.0f} rows/s")
    speed_lsst(rows, repeats, rng)


def speed_lsst(rows: int, repeats: int, rng: np.random.Generator) -> None:
    """The shipped LSST bundles on the LSST sample; for all-distclassipy also the library's own
    per-metric path (``DistanceAnomaly.decision_function``, what it scored with before the
    vectorised distances: models.distances), once."""
    table = read_table(sample_dir().parent / "lsst-sim-sample" / "objects.parquet")
    for path in sorted((bundles_dir() / "lsst").iterdir()):
        if not path.name.startswith("all-"):
            continue
        bundle_scorer = Scorer(load_bundle(path), "cpu")
        X = table.columns(bundle_scorer.feature_names)
        batch = X[rng.integers(0, len(X), rows)].astype(np.float32)
        bundle_scorer.score(batch)  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            bundle_scorer.score(batch)
        rate = rows * repeats / (time.perf_counter() - t0)
        print(f"  lsst/{path.name:19s} {rate:12,.0f} rows/s")
        estimator = bundle_scorer.estimator
        if isinstance(estimator, DistanceEstimator):
            x = preprocess(bundle_scorer.bundle.preprocessor, batch.astype(np.float64))
            t0 = time.perf_counter()
            estimator.model.decision_function(x)
            rate = rows / (time.perf_counter() - t0)
            print(f"  {'  the library per metric':24s} {rate:12,.0f} rows/s")


def explain(rows: int = 1024, repeats: int = 4, k: int = 3, class_rows: int = 340) -> None:
    """Rows/s with explanations off and on (every row; from the service's default percentile
    on the class's own rows) and the pushed-feature hit rate (module docstring)."""
    explain_from = ModelSettings().explain_min_percentile
    print(
        f"\nexplanations (top {k}): every row of {rows}-row batches; from the "
        f"{explain_from:g}th percentile on {class_rows}-row batches of the class's own rows "
        f"(the service's default); CPU, torch threads {torch.get_num_threads()}"
    )
    print(
        f"  {'bundle':32s} {'off rows/s':>11s} {'every row':>10s} {'on/off':>6s} "
        f"{'off, class':>11s} {'from p' + format(explain_from, 'g'):>9s} {'on/off':>6s} "
        f"{'explained':>9s} {'pushed in top 3':>16s}"
    )
    rng = np.random.default_rng(0)
    ztf = read_table(sample_dir() / "objects.parquet")
    lsst = read_table(sample_dir().parent / "lsst-sim-sample" / "objects.parquet")
    paths = [
        (ztf, bundles_dir() / bundle_dirname("ztf", top, scorer))
        for top in TOP_CLASSES
        for scorer in SHIPPED_ZTF
    ] + [(lsst, bundles_dir() / "lsst" / "all-iforest")]
    for table, path in paths:
        if not path.is_dir():
            continue
        scorer = Scorer(load_bundle(path), "cpu")
        X = table.columns(scorer.feature_names)
        batch = X[rng.integers(0, len(X), rows)].astype(np.float32)
        top = scorer.bundle.manifest.top_class  # LSST's unrouted bundles: "All"
        classes = np.asarray(table.top_class)
        own = np.flatnonzero(classes == top) if top in TOP_CLASSES else np.arange(len(X))
        class_batch = X[rng.choice(own, class_rows)].astype(np.float32)
        scorer.score(batch, k)  # warm-up
        every = _rates(scorer, batch, [(0, 0.0), (k, 0.0)], repeats)
        served = _rates(scorer, class_batch, [(0, 0.0), (k, explain_from)], 3 * repeats)
        share = float((scorer.score(class_batch).percentile >= explain_from).mean())
        hit = _pushed_hit_rate(scorer, X, rng, k)
        name = path.parent.name + "/" + path.name
        print(
            f"  {name:32s} {every[0]:11,.0f} {every[1]:10,.0f} {every[1] / every[0]:6.2f} "
            f"{served[0]:11,.0f} {served[1]:9,.0f} {served[1] / served[0]:6.2f} "
            f"{share:9.1%} {hit:>16s}",
            flush=True,
        )


def _rates(
    scorer: Scorer, batch: np.ndarray, settings: list[tuple[int, float]], repeats: int
) -> list[float]:
    """Rows/s of ``scorer`` on ``batch`` with each (explain, explain_from) of ``settings``,
    timed in turn (a loaded machine slows them alike)."""
    seconds = [0.0] * len(settings)
    for _ in range(repeats):
        for i, (k, explain_from) in enumerate(settings):
            t0 = time.perf_counter()
            scorer.score(batch, k, explain_from)
            seconds[i] += time.perf_counter() - t0
    return [len(batch) * repeats / s for s in seconds]


def _pushed_hit_rate(scorer: Scorer, X: np.ndarray, rng: np.random.Generator, k: int) -> str:
    """Every 8th feature pushed far above its 99th percentile in up to 32 rows that the model
    finds ordinary (below its 90th percentile): the share of the rows it makes anomalous
    (above the 99.5th) in which it is among the ``k`` named (and how many such rows)."""
    pool = X[rng.integers(0, len(X), 256)].astype(np.float32)
    base = pool[scorer.score(pool).percentile < 90][:32]  # rows the model finds ordinary
    found = cases = 0
    for j in range(0, len(scorer.feature_names), 8):
        low, high = np.nanpercentile(X[:, j], [1, 99])
        pushed = base.copy()
        pushed[:, j] = high + 20 * (high - low + 1e-3)
        scores = scorer.score(pushed, k)
        if scores.explanation is None:
            return "none"
        anomalous = scores.percentile > 99.5
        found += int((scores.explanation.index[anomalous] == j).any(axis=1).sum())
        cases += int(anomalous.sum())
    return f"{found / max(cases, 1):.0%} of {cases}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=sample_dir() / "objects.parquet")
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--classes", default=",".join(TOP_CLASSES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument(
        "--scorers", default="mcdsvdd,ae", help="the kinds the quality part trains (comma list)"
    )
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument(
        "--configuration",
        choices=CONFIGURATION_NAMES,
        default="paper",
        help="of the quality run's models (default paper: the shipped ZTF bundles')",
    )
    parser.add_argument("--explain", action="store_true", help="explanations' cost only")
    args = parser.parse_args()
    configure_logging("console", "warning")
    print(machine(), f"({cores()} cores)")
    if args.explain:
        torch.set_num_threads(1)  # the service's model.cpu_threads
        explain()
        return
    if not args.skip_speed:
        speed()
    if not args.skip_quality:
        quality(
            args.data,
            args.epochs,
            args.classes.split(","),
            args.seed,
            args.configuration,
            tuple(args.scorers.split(",")),
        )


if __name__ == "__main__":
    main()
