"""``alert-anomaly train``: train anomaly-model bundles from a labeled feature table."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path

from models.configurations import CONFIGURATION_NAMES, DEFAULT_CONFIGURATION
from models.exceptions import ConfigurationError, DataError
from models.resources import bundle_dirname
from models.scorers import DEFAULT_SCORERS, SCORER_KINDS
from models.taxonomy import TOP_CLASSES, check_top_class
from service.commands.args import examples, non_negative_int, positive_int

# The paper's two scorers and our variant, whose bundles the service can be set to use.
ALL_SCORERS = ("mcdsvdd", "ae", "mcdsvdd-nn")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "train",
        epilog=examples(
            "alert-anomaly train --data objects.parquet --all --out my-bundles --config paper",
            "alert-anomaly train --data objects.parquet --top-class Periodic --scorer mcdsvdd "
            "--out periodic-mcdsvdd",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="train MCDSVDD / autoencoder bundles from a labeled feature table",
        description=(
            "Train one bundle (--top-class and --scorer; --out is the bundle directory) or, with "
            "--all, nine bundles (every top-level class x {mcdsvdd, ae, mcdsvdd-nn}; --out is the "
            "bundle root, e.g. models/bundles). Inliers of a class are the table's objects whose "
            "true top_class is that class; the features are those the paper's models use "
            "(models.features.paper_features: a table lacking one is refused)."
        ),
    )
    p.add_argument("--data", type=Path, required=True, help="feature table (Parquet)")
    p.add_argument("--survey", default="ztf", help="survey the bundle is for (default ztf)")
    p.add_argument("--top-class", choices=TOP_CLASSES, help="top-level class to train")
    p.add_argument("--scorer", choices=SCORER_KINDS, help="anomaly scorer to train")
    p.add_argument(
        "--all", action="store_true", help="train every class's mcdsvdd, ae and mcdsvdd-nn"
    )
    p.add_argument(
        "--config",
        choices=CONFIGURATION_NAMES,
        default=DEFAULT_CONFIGURATION,
        help="paper: the reference code's method; ours: this project's choices "
        f"(default {DEFAULT_CONFIGURATION})",
    )
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


def _jobs(args: argparse.Namespace) -> list[tuple[str, str, Path]]:
    if args.all:
        if args.top_class or args.scorer:
            raise ConfigurationError(
                "--all trains every class and scorer: drop --top-class/--scorer"
            )
        return [
            (top, scorer, args.out / bundle_dirname(args.survey, top, scorer))
            for top in TOP_CLASSES
            for scorer in ALL_SCORERS
        ]
    if not (args.top_class and args.scorer):
        raise ConfigurationError("give --top-class and --scorer, or --all")
    return [(args.top_class, args.scorer, args.out)]


def run(args: argparse.Namespace) -> int:
    from models.bundle import Bundle, file_sha256
    from models.table import read_table
    from models.training import TrainingConfig, paper_columns, train_model

    jobs = _jobs(args)
    table = read_table(args.data)
    paper_columns(table)  # a table lacking one of the paper's features fails before training
    started = time.monotonic()
    data_sha = file_sha256(args.data)
    version = args.model_version or f"{datetime.now(UTC):%Y.%m.%d}+{data_sha[:8]}"
    for top, scorer, out in jobs:
        check_top_class(top)
        inliers = table.take(table.top_class == top)
        if len(inliers) == 0:
            raise DataError(f"{args.data} has no objects of top-level class {top}")
        config = TrainingConfig(
            scorer=scorer,  # type: ignore[arg-type]
            top_class=top,
            lr=args.lr,
            latent=args.latent,
            max_epochs=args.epochs,
            pretrain_epochs=args.pretrain_epochs,
            patience=args.patience,
            seed=args.seed,
            device=args.device,
            configuration=args.config,
        )
        features, names = paper_columns(inliers)
        trained = train_model(features, inliers.subclass, names, config, not args.no_progress)
        description = {
            "file": args.data.name,
            "sha256": data_sha,
            "n_objects": len(inliers),
            "source": table.metadata.get("generator", "unknown"),
            "generator_version": table.metadata.get("generator_version"),
            "seed": table.metadata.get("seed"),
        }
        bundle = Bundle.from_training(trained, config, args.survey, names, description, version)
        bundle.save(out)
        default = " (default)" if DEFAULT_SCORERS.get(top) == scorer else ""
        metrics = trained.metrics["train"]
        print(
            f"{bundle.name}{default} ({args.config}): {metrics['epochs']} epochs, best "
            f"validation loss {metrics['best_val_loss']:.4g} at epoch {metrics['best_epoch']}, "
            f"{trained.metrics['seconds']:.0f} s -> {out}"
        )
    print(f"trained {len(jobs)} bundles in {time.monotonic() - started:.0f} s")
    return 0
