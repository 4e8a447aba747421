"""``alert-anomaly train``: train anomaly-model bundles from a labeled feature table."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from models.exceptions import ConfigurationError, DataError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from models.table import AlertTable
from models.detectors import get
from models.resources import bundle_dirname
from models.scorers import SCORER_KINDS, SURVEY_DEFAULT_SCORERS
from models.taxonomy import MODEL_CLASSES, TOP_CLASSES, UNROUTED, check_model_class
from service.commands.args import add_configuration_arg, examples, non_negative_int, positive_int

# The paper's two scorers and ZTF's default, our small ensemble (mcdsvdd-ens ships too, trained
# in the paper configuration on which it was evaluated: `make bundles`).
ALL_SCORERS = ("mcdsvdd", "ae", "mcdsvdd-ens-lite")
# LSST: unrouted models for raw Rubin alerts (the tutorial's two detectors and the AE) and the
# paper's two scorers per top-level class for alerts with classifier probabilities.
LSST_UNROUTED_SCORERS = ("iforest", "distclassipy", "ae")
LSST_ROUTED_SCORERS = ("mcdsvdd", "ae")
LSST_FEATURE_SETS = ("diaobject", "diaobject-latest", "diaobject+lightcurve")  # models.rubin


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "train",
        epilog=examples(
            "alert-anomaly train --data objects.parquet --all --out my-bundles "
            "--configuration paper",
            "alert-anomaly train --data objects.parquet --top-class Periodic --scorer mcdsvdd "
            "--out periodic-mcdsvdd",
            "alert-anomaly train --data lsst.parquet --survey lsst --top-class All --scorer "
            "iforest --out my-bundles/lsst/all-iforest",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="train anomaly-model bundles (MCDSVDD, AE, Isolation Forest, DistClassiPy...)",
        description=(
            "Train one bundle (--top-class and --scorer; --out is the bundle directory) or, with "
            "--all, every shipped bundle (--out is the bundle root, e.g. models/bundles): for ZTF "
            "every top-level class x {mcdsvdd, ae}; for LSST the unrouted All x "
            "{iforest, distclassipy, ae} and every top-level class x {mcdsvdd, ae}. Inliers of a "
            "class are the table's objects whose true top_class is that class (every object for "
            "All, an unrouted model). ZTF features are those the paper's models use "
            "(models.features.paper_features), LSST features the --features set of the "
            "alert's diaObject (models.rubin.feature_set); a table lacking one is refused. "
            "iforest and distclassipy use the Rubin tutorial's settings; distclassipy needs the "
            "'distclassipy' extra (GPL-3.0)."
        ),
    )
    p.add_argument("--data", type=Path, required=True, help="feature table (Parquet)")
    p.add_argument(
        "--survey",
        choices=("ztf", "lsst"),
        help="survey the bundle is for (default: the table's, else ztf)",
    )
    p.add_argument(
        "--top-class",
        choices=MODEL_CLASSES,
        help=f"top-level class to train, or {UNROUTED} for an unrouted model of every class",
    )
    p.add_argument("--scorer", choices=SCORER_KINDS, help="anomaly scorer to train")
    p.add_argument("--all", action="store_true", help="train every bundle the survey ships")
    p.add_argument(
        "--features",
        choices=LSST_FEATURE_SETS,
        default="diaobject",
        help="LSST features: the diaObject fields of every schema version (diaobject, the "
        "default), of the latest version, or the first plus light-curve features",
    )
    add_configuration_arg(p)
    p.add_argument("--out", type=Path, required=True, help="bundle directory (root with --all)")
    p.add_argument(
        "--epochs", type=positive_int, default=1000, help="maximum epochs (default 1000)"
    )
    p.add_argument(
        "--pretrain-epochs",
        type=non_negative_int,
        help="maximum autoencoder pretraining epochs for (MC)DSVDD (default: ours 300, "
        "paper --epochs)",
    )
    p.add_argument("--patience", type=positive_int, default=100, help="early-stopping patience")
    p.add_argument("--lr", type=float, help="learning rate (default: the paper's for the class)")
    p.add_argument("--latent", type=positive_int, help="latent size (default: the paper's)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="cpu", help="torch device for training (default cpu)")
    p.add_argument("--model-version", help="version string (default: date + data hash)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(handler=run)


def _jobs(args: argparse.Namespace, survey: str) -> list[tuple[str, str, Path]]:
    if args.all:
        if args.top_class or args.scorer:
            raise ConfigurationError(
                "--all trains every class and scorer: drop --top-class/--scorer"
            )
        if survey == "lsst":
            pairs = [(UNROUTED, s) for s in LSST_UNROUTED_SCORERS]
            pairs += [(top, s) for top in TOP_CLASSES for s in LSST_ROUTED_SCORERS]
        else:
            pairs = [(top, s) for top in TOP_CLASSES for s in ALL_SCORERS]
        return [(top, s, args.out / bundle_dirname(survey, top, s)) for top, s in pairs]
    if not (args.top_class and args.scorer):
        raise ConfigurationError("give --top-class and --scorer, or --all")
    return [(args.top_class, args.scorer, args.out)]


def _columns(
    table: AlertTable, survey: str, features: str
) -> tuple[NDArray[np.float64], tuple[str, ...]]:
    """The model's features of ``table`` and their names; DataError naming absent ones."""
    from models.training import paper_columns

    if survey != "lsst":
        return paper_columns(table)
    from models.rubin import feature_set

    names = feature_set(features)
    missing = [n for n in names if n not in table.feature_names]
    if missing:
        raise DataError(
            f"the table lacks {len(missing)} of the {len(names)} LSST '{features}' features: "
            f"{', '.join(missing[:8])}{'...' if len(missing) > 8 else ''}"
        )
    return table.columns(names), names


def run(args: argparse.Namespace) -> int:
    from models.bundle import Bundle, file_sha256, simulated_notice
    from models.table import read_table
    from models.training import TrainingConfig, train_model

    table = read_table(args.data)
    survey = args.survey or str(table.metadata.get("survey", "ztf"))
    jobs = _jobs(args, survey)
    # An extra's one-line error before anything is trained.
    for spec in dict.fromkeys(get(scorer) for _, scorer, _ in jobs):
        spec.implementation().require(spec)
    _columns(table, survey, args.features)  # a table lacking a feature fails before training
    started = time.monotonic()
    data_sha = file_sha256(args.data)
    version = args.model_version or f"{datetime.now(UTC):%Y.%m.%d}+{data_sha[:8]}"
    for top, scorer, out in jobs:
        check_model_class(top)
        inliers = table if top == UNROUTED else table.take(table.top_class == top)
        if len(inliers) == 0:
            raise DataError(f"{args.data} has no objects of top-level class {top}")
        config = TrainingConfig(
            scorer=scorer,
            top_class=top,
            lr=args.lr,
            latent=args.latent,
            max_epochs=args.epochs,
            pretrain_epochs=args.pretrain_epochs,
            patience=args.patience,
            seed=args.seed,
            device=args.device,
            configuration=args.configuration,
        )
        features, names = _columns(inliers, survey, args.features)
        trained = train_model(features, inliers.subclass, names, config, not args.no_progress)
        description = {
            "file": args.data.name,
            "sha256": data_sha,
            "n_objects": len(inliers),
            "source": table.metadata.get("generator", "unknown"),
            "generator_version": table.metadata.get("generator_version"),
            "seed": table.metadata.get("seed"),
            "features": args.features if survey == "lsst" else "paper",
        }
        bundle = Bundle.from_training(
            trained, config, survey, names, description, version, simulated_notice(survey)
        )
        bundle.save(out)
        default = " (default)" if SURVEY_DEFAULT_SCORERS[survey].get(top) == scorer else ""
        spec = get(scorer)
        what = spec.implementation().describe(spec, trained.metrics)
        print(
            f"{bundle.name}{default} ({args.configuration}): {what}, "
            f"{trained.metrics['seconds']:.0f} s -> {out}"
        )
    print(f"trained {len(jobs)} bundles in {time.monotonic() - started:.0f} s")
    return 0
