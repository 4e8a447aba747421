"""``alert-anomaly compare``: the results page's generated part from a paper and an ours
evaluation of the same data."""

from __future__ import annotations

import argparse
from pathlib import Path

from service.commands.args import examples


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "compare",
        epilog=examples(
            "alert-anomaly compare --paper docs/results/paper --ours docs/results/ours --page "
            "docs/results.md"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="the paper and ours configurations side by side, for the results page",
        description=(
            "Read two `alert-anomaly evaluate` directories of the same data (--configuration "
            "paper and --configuration ours) and write the comparison: AUROC per configuration, "
            "the ranking of the six detectors per class against the paper's Table 1, the "
            "MCDSVDD-NN variant against the paper configuration's MCDSVDD, exact against "
            "threshold-grid AUROC, and the paper's fixed feature scales on the data (the paper "
            "configuration alone while --ours holds no evaluation yet). With --splits, also the "
            "error bars over several split seeds and paired differences between detectors; with "
            "--fixes, what each fix of the reference's preprocessing changes. "
            "With --page, it replaces the page's generated part; otherwise it prints it."
        ),
    )
    p.add_argument("--paper", type=Path, required=True, help="evaluation of --configuration paper")
    p.add_argument("--ours", type=Path, help="evaluation of --configuration ours (when run)")
    p.add_argument(
        "--splits",
        type=Path,
        nargs="+",
        default=[],
        metavar="DIR",
        help="evaluations of the same data and settings with other seeds (--paper among them "
        "if it is one): AUROC mean ± standard error over the splits and paired differences",
    )
    p.add_argument(
        "--fixes",
        type=Path,
        nargs="+",
        default=[],
        metavar="DIR",
        help="evaluations with one reference bug put back (evaluate --reference-bug), each "
        "beside the run of --paper or --splits with its seed: what each preprocessing fix changes",
    )
    p.add_argument("--page", type=Path, help="Markdown page to update (e.g. docs/results.md)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from models.evaluation.page import generated_section, read_page, update_page

    if args.page:
        read_page(args.page)  # a missing page is an error before the work, not after
    section = generated_section(args.paper, args.ours, args.splits, args.fixes)
    if args.page:
        update_page(args.page, section)
        print(f"updated the generated part of {args.page}")
    else:
        print(section)
    return 0
