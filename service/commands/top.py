"""``alert-anomaly top``: the N most anomalous objects per predicted subclass."""

from __future__ import annotations

import argparse
from pathlib import Path

from service.commands.args import add_setting_flags, examples, positive_int, settings_of


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "top",
        epilog=examples(
            "alert-anomaly top --data models/data/ztf-sim-sample/objects.parquet --n 5"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="list the most anomalous objects per predicted subclass",
        description=(
            "Score a feature table with the service's own engine and models (routing by the "
            "most probable top-level class, the scorer of each class from model.scorers, on "
            "model.device) and list, per predicted subclass, the N objects with the highest "
            "anomaly percentile (raw score breaks ties) and their most extreme features "
            "(robust z-score within the predicted subclass)."
        ),
    )
    p.add_argument("--data", type=Path, required=True, help="feature table (Parquet or CSV)")
    p.add_argument("--n", type=positive_int, default=10, help="objects per subclass (default 10)")
    add_setting_flags(p, "--survey", "--bundles", "--device", "--batch-rows")
    p.add_argument("--plot", type=Path, help="write light-curve PNGs here (needs --lightcurves)")
    p.add_argument("--lightcurves", type=Path, help="light curves (alert-anomaly simulate)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from models.evaluation.top import plot_lightcurves, rank_anomalies
    from models.exceptions import ConfigurationError
    from models.table import read_table
    from service.offsets import OffsetTracker
    from service.processing import AlertProcessor
    from service.replay import replay_with_settings
    from service.sinks.files import CollectingSink
    from service.sources.files import FileSource

    if args.plot and not args.lightcurves:
        raise ConfigurationError(
            "--plot needs --lightcurves (alert-anomaly simulate --lightcurves)"
        )
    settings = settings_of(args)
    processor = AlertProcessor(settings)
    tracker = OffsetTracker()
    sink = CollectingSink(tracker.written)
    source = FileSource([args.data], processor.survey.id_fields[0])
    progress = None if args.no_progress else "top"
    summary = replay_with_settings(
        settings, processor, source, sink, tracker, args.batch_rows, progress
    )
    table = read_table(args.data)
    percentile = np.full(len(table), np.nan)
    score = np.full(len(table), np.nan)
    routed = np.full(len(table), "", dtype=object)
    for record in sink.records:
        i = record["source_offset"]
        percentile[i], score[i], routed[i] = (
            record["percentile"],
            record["score"],
            record["top_class"],
        )
    ranked = rank_anomalies(table, routed.astype(str), percentile, score, args.n)
    header = (
        f"  {'oid':16s} {'true class':15s} {'model':18s} {'pct':>7s} {'score':>10s}  "
        "most extreme features (value, robust z)"
    )
    for subclass, entries in ranked.items():
        print(f"predicted {subclass}: top {len(entries)}")
        print(header)
        for e in entries:
            extremes = ", ".join(
                f"{name}={value:.3g} (z {z:+.1f})" for name, value, z in e.extremes
            )
            model = f"{e.routed_class}/{settings.model.scorers[e.routed_class]}"
            print(
                f"  {e.oid:16s} {e.true_subclass:15s} {model:18s} {e.percentile:7.2f} "
                f"{e.score:10.4g}  {extremes}"
            )
    print(summary.line(f"{sum(len(v) for v in ranked.values())} listed"))
    if args.plot:
        written = plot_lightcurves(ranked, args.lightcurves, args.plot)
        print(f"{len(written)} light-curve plots in {args.plot}")
    return 0
