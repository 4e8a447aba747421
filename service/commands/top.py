"""``alert-anomaly top``: the N most anomalous objects per predicted subclass."""

from __future__ import annotations

import argparse
from pathlib import Path

from models.resources import bundles_dir
from service.commands.args import positive_int


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "top",
        help="list the most anomalous objects per predicted subclass",
        description=(
            "Score a labeled or unlabeled feature table with the bundles (routing by the most "
            "probable top-level class, default scorer per class) and list, per predicted "
            "subclass, the N objects with the highest anomaly score and their most extreme "
            "features (robust z-score within the predicted subclass)."
        ),
    )
    p.add_argument("--data", type=Path, required=True, help="feature table (Parquet or CSV)")
    p.add_argument("--n", type=positive_int, default=10, help="objects per subclass (default 10)")
    p.add_argument("--bundles", type=Path, default=bundles_dir(), help="bundle root")
    p.add_argument("--survey", default="ztf", help="survey of the bundles (default ztf)")
    p.add_argument("--plot", type=Path, help="write light-curve PNGs here (needs --lightcurves)")
    p.add_argument("--lightcurves", type=Path, help="light curves (alert-anomaly simulate)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from models.evaluation.top import plot_lightcurves, top_anomalies
    from models.exceptions import ConfigurationError
    from models.table import read_table

    if args.plot and not args.lightcurves:
        raise ConfigurationError(
            "--plot needs --lightcurves (alert-anomaly simulate --lightcurves)"
        )
    top = top_anomalies(read_table(args.data), args.bundles, args.n, args.survey)
    for subclass, entries in top.items():
        print(f"predicted {subclass}: top {len(entries)}")
        for e in entries:
            extremes = ", ".join(
                f"{name}={value:.3g} (z {z:+.1f})" for name, value, z in e.extremes
            )
            print(
                f"  {e.oid:14s} true {e.true_subclass:15s} score {e.score:9.4g} "
                f"p{e.percentile:6.2f}  {extremes}"
            )
    if args.plot:
        written = plot_lightcurves(top, args.lightcurves, args.plot)
        print(f"{len(written)} light-curve plots in {args.plot}")
    return 0
