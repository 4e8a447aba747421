"""``alert-anomaly simulate``: a labeled synthetic ZTF or Rubin/LSST data set with classifier
probabilities (LSST: and its Rubin alert packets)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from models.extras import HATS, require
from models.taxonomy import ALL_SUBCLASSES
from service.commands.args import comma_list, default_jobs, examples, non_negative_int, positive_int
from service.io.storage import location


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "simulate",
        epilog=examples(
            "alert-anomaly simulate --n 10000 --seed 7 --out objects.parquet --avro "
            "alerts.avro --lightcurves lc.parquet",
            "alert-anomaly simulate --survey lsst --n 3000 --seed 1 --out lsst.parquet "
            "--avro rubin-alerts.avro --lightcurves lsst-lc.parquet",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="simulate labeled ZTF or LSST alert features with classifier probabilities",
        description=(
            "ZTF: simulate g/r light curves of the ALeRCE taxonomy with ZTF-like sampling, "
            "extract ALeRCE's current ZTF features (209), attach out-of-fold hierarchical "
            "balanced-random-forest probabilities, and write a Parquet table (and optionally "
            "Avro input messages). LSST (--survey lsst): ugrizy light curves with Rubin WFD-like "
            "cadence and depths (nJy), one Rubin alert packet per object (the latest "
            "lsst-alert-packet schema), the packet's diaObject fields and light-curve features "
            "as the table's features, the same classifier's probabilities."
        ),
    )
    p.add_argument(
        "--survey", choices=("ztf", "lsst"), default="ztf", help="survey to simulate (default ztf)"
    )
    p.add_argument("--n", type=positive_int, default=3000, help="number of objects (default 3000)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--classes",
        type=comma_list,
        default=ALL_SUBCLASSES,
        help=f"comma-separated subclasses (default: all of {','.join(ALL_SUBCLASSES)})",
    )
    p.add_argument(
        "--mix",
        choices=("uniform", "alerce"),
        default="uniform",
        help="class proportions: equal, or as in ALeRCE's labeled set (default uniform)",
    )
    p.add_argument(
        "--folds", type=positive_int, default=5, help="folds for out-of-fold probabilities"
    )
    p.add_argument("--jobs", type=positive_int, default=default_jobs(), help="worker processes")
    p.add_argument("--out", type=Path, required=True, help="output Parquet table")
    p.add_argument(
        "--avro",
        type=Path,
        help="also write input messages as an Avro container file (LSST: Rubin alert packets)",
    )
    p.add_argument(
        "--record-version",
        choices=("1", "2", "3"),
        default="3",
        help="ALeRCE classifier-record version of the --avro messages "
        "(schemas/ztf-lc-classifier/<version>; default 3, the current one)",
    )
    p.add_argument("--lightcurves", type=Path, help="also write the light curves (Parquet)")
    p.add_argument(
        "--hats",
        type=location,
        help="also write the objects as a HATS catalog (directory or s3:// prefix; the 'hats' "
        "extra): ra/dec the LSST simulation's positions, for ZTF drawn from each oid",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=run)


def _write_hats(args: argparse.Namespace, positions: object = None) -> None:
    """The --hats catalog of the table just written (``positions``: ra/dec by oid)."""
    if args.hats is None:
        return
    from service.hats import build_catalog

    started = time.monotonic()
    print(f"writing the HATS catalog {args.hats}...", flush=True)
    parts = build_catalog(args.out, args.hats, positions=positions)  # type: ignore[arg-type]
    print(
        f"wrote the HATS catalog {args.hats} ({parts} partitions, "
        f"{time.monotonic() - started:.1f} s)",
        flush=True,
    )


def _run_lsst(args: argparse.Namespace, config: object) -> int:
    from models import rubin
    from models.simulate.lsst_dataset import simulate_lsst, write_lsst_lightcurves
    from models.table import write_table

    rubin.latest_version()  # the 'rubin' extra's one-line error before simulating
    dataset = simulate_lsst(config)  # type: ignore[arg-type]
    write_table(dataset.table, args.out)
    if args.avro:
        rubin.write_container(dataset.packets(), args.avro)
    if args.lightcurves:
        write_lsst_lightcurves(dataset.curves, dataset.positions, args.lightcurves)
    _write_hats(args, dataset.positions)
    table = dataset.table
    accuracy = float((table.predicted_top() == table.top_class).mean())
    print(
        f"wrote {len(table)} LSST objects x {len(table.feature_names)} features to {args.out} "
        f"(schema {rubin.latest_version()}; simulation {dataset.seconds['simulate']:.1f} s, "
        f"classifier {dataset.seconds['classify']:.1f} s, out-of-fold top-level accuracy "
        f"{accuracy:.3f})"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    # The simulator needs the 'sim' extra (and for LSST 'rubin'), which the service does not:
    # simulate() and simulate_lsst() name the missing extra in one line before simulating.
    from models.records import write_avro
    from models.simulate.dataset import SimulationConfig, simulate, write_lightcurves
    from models.table import write_table

    if args.hats is not None:  # the extra's one-line error before simulating
        require("lsdb", HATS, "simulate --hats")
    config = SimulationConfig(
        n_objects=args.n,
        seed=args.seed,
        classes=tuple(args.classes),
        mix=args.mix,
        jobs=args.jobs,
        folds=args.folds,
        keep_lightcurves=args.lightcurves is not None
        or (args.survey == "lsst" and args.avro is not None),
        progress=not args.no_progress,
    )
    if args.survey == "lsst":
        return _run_lsst(args, config)
    dataset = simulate(config)
    write_table(dataset.table, args.out)
    if args.avro:
        write_avro(dataset.table, args.avro, args.record_version)
    if args.lightcurves:
        write_lightcurves(dataset.lightcurves, args.lightcurves)
    _write_hats(args)
    table = dataset.table
    accuracy = float((table.predicted_top() == table.top_class).mean())
    print(
        f"wrote {len(table)} objects x {len(table.feature_names)} features to {args.out} "
        f"(simulation {dataset.seconds['simulate']:.1f} s, classifier "
        f"{dataset.seconds['classify']:.1f} s, out-of-fold top-level accuracy {accuracy:.3f})"
    )
    return 0
