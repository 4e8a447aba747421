"""``alert-anomaly evaluate``: the paper's leave-one-subclass-out evaluation of seven detectors
(the paper's six and the Rubin tutorial's DistClassiPy)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from models.configurations import REFERENCE_BUGS
from models.detectors import REGISTRY
from models.scorers import DETECTORS, VARIANTS
from models.taxonomy import TOP_CLASSES
from service.commands.args import (
    add_configuration_arg,
    comma_list,
    default_jobs,
    examples,
    non_negative_int,
    positive_int,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "evaluate",
        epilog=examples(
            "alert-anomaly evaluate --data models/data/ztf-sim-sample/objects.parquet --out "
            "results --configuration paper --folds 5",
            "alert-anomaly evaluate --data objects.parquet --out quick --classes Periodic "
            "--detectors mcdsvdd,ae --epochs 20",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="the paper's evaluation: every subclass in turn as the outlier, seven detectors",
        description=(
            "80/20 stratified split; per top-level class and outlier subclass, train each "
            "detector on the other subclasses with K folds (fit on K-1, stop early on the "
            "held-out fold), score a test set of inliers and the outlier, report AUROC/AUPRC "
            "mean +/- std as a Markdown/CSV table like the paper's Table 1 plus ROC curves. "
            "Finished cells are kept in OUT and skipped on a rerun."
        ),
    )
    p.add_argument("--data", type=Path, required=True, help="labeled feature table (Parquet)")
    p.add_argument("--out", type=Path, required=True, help="results directory")
    add_configuration_arg(p)
    p.add_argument("--folds", type=positive_int, default=5, help="folds, 2 or more (default 5)")
    p.add_argument("--epochs", type=positive_int, default=100, help="max epochs (default 100)")
    p.add_argument(
        "--detectors",
        type=comma_list,
        default=DETECTORS,
        help=f"comma-separated subset of {','.join(DETECTORS + VARIANTS)} (default: the "
        "paper's six and DistClassiPy, which needs the 'distclassipy' extra: skipped with a note "
        "without it)",
    )
    p.add_argument(
        "--classes", type=comma_list, default=TOP_CLASSES, help="top-level classes (default all)"
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--reference-bug",
        action="append",
        choices=REFERENCE_BUGS,
        default=[],
        help="with --configuration paper: put this bug of the reference's preprocessing back "
        "(repeatable), to measure what fixing it changes (compare --fixes)",
    )
    p.add_argument("--jobs", type=positive_int, default=default_jobs(), help="worker processes")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from models.evaluation.config import EvaluationConfig, file_digest
    from models.exceptions import ConfigurationError, DataError

    if not args.data.is_file():
        raise DataError(f"feature table {args.data} does not exist")
    config = EvaluationConfig(  # checks the arguments before the detectors are imported
        data=str(args.data),
        data_sha256=file_digest(args.data),
        folds=args.folds,
        epochs=args.epochs,
        detectors=tuple(args.detectors),
        classes=tuple(args.classes),
        seed=args.seed,
        configuration=args.configuration,
        reference_bugs=tuple(sorted(set(args.reference_bug))),
    )

    from tqdm import tqdm

    from models.evaluation.protocol import require_extras, run_evaluation
    from models.evaluation.report import markdown_table, plot_rocs, write_csv

    require_extras()  # the 'sim' extra's one line before any note
    detectors = config.detectors
    for detector in config.detectors:  # a detector without its optional extra: a note
        spec = REGISTRY.get(detector)
        reason = spec.implementation().unavailable(spec) if spec is not None else None
        if spec is not None and reason is not None:
            detectors = tuple(d for d in detectors if d != detector)
            print(f"note: {spec.label} is skipped: {reason}", file=sys.stderr)
            if not detectors:
                raise ConfigurationError("no detector left to evaluate")
    config = replace(config, detectors=detectors)
    bar = tqdm(unit="cell", disable=args.no_progress, desc="evaluate")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    started = time.perf_counter()
    try:
        results = run_evaluation(config, args.out, args.jobs, progress)
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    table = markdown_table(results)
    (args.out / "table.md").write_text(
        "AUROC (mean ± std over folds; best per column in bold)\n\n"
        + table
        + "\nAUPRC\n\n"
        + markdown_table(results, "auprc")
    )
    write_csv(results, args.out / "table.csv")
    plots = plot_rocs(results, args.out)
    print(table)
    print(
        f"{len(results)} cells in {seconds:.0f} s this run; results, config and "
        f"{len(plots)} ROC plots in {args.out}"
    )
    return 0
