"""What not reproducing the reference's preprocessing bugs changes (``compare --fixes``).

A run with a bug put back (``alert-anomaly evaluate --reference-bug``, models.configurations) is
read beside the run of the same evaluation without it: same data, configuration, folds, epochs,
test fraction and seed, so the same split, folds and initialisations, and only the preprocessing
differs. The effect of a fix on a cell is the AUROC as fixed minus the AUROC with the bug (each
the mean over the run's folds); the tables give it per column, its mean over the columns with
and without Periodic-Other, and its standard error over the folds (the K paired per-fold means
over the columns: one split's training noise, not the split-to-split variation).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from models.evaluation.compare import NOT_IN_TABLE1, Results, load_run
from models.evaluation.detectors import LABELS
from models.exceptions import ConfigurationError
from models.taxonomy import SUBCLASSES, TOP_CLASSES

# what must be equal for a run with a bug and its baseline
SAME: Final = ("data_sha256", "configuration", "folds", "epochs", "test_fraction", "seed")
WHAT: Final = {
    "log-branch": "the reference's log branch (a log-family column logged only when its "
    "smallest training value is <= 0, else left linear with the previous column's range)",
    "first-match": "the reference's first-match scale lookup ('PercentAmplitude_*' scaled as "
    "'Amplitude')",
}

Cells = dict[tuple[str, str, str], list[float]]  # (detector, top class, subclass) -> fold AUROCs


def bugs_of(config: dict[str, Any]) -> tuple[str, ...]:
    """The reference bugs a run put back (none in runs older than the option)."""
    return tuple(config.get("reference_bugs") or ())


def _cells(results: Results) -> Cells:
    return {(r["detector"], r["top_class"], r["outlier"]): list(r["auroc"]) for r in results}


def _baseline_of(
    directory: Path, config: dict[str, Any], baselines: Sequence[tuple[Path, dict[str, Any]]]
) -> Path:
    for candidate, base in baselines:
        if not bugs_of(base) and all(base.get(k) == config.get(k) for k in SAME):
            return candidate
    raise ConfigurationError(
        f"--fixes {directory}: no run among --paper and --splits is the same evaluation "
        "(data, configuration, folds, epochs, test fraction, seed) without the bug"
    )


def _effects(fixed: Cells, buggy: Cells, detector: str) -> tuple[list[tuple[str, str]], Any]:
    """The common columns and, per column, the per-fold AUROC differences (fixed - buggy)."""
    columns = [
        (t, s)
        for t in TOP_CLASSES
        for s in SUBCLASSES[t]
        if (detector, t, s) in fixed and (detector, t, s) in buggy
    ]
    diff = np.array(
        [np.subtract(fixed[(detector, *c)], buggy[(detector, *c)]) for c in columns], dtype=float
    )
    return columns, diff


def fixes_section(baselines: Sequence[Path], bug_runs: Sequence[Path]) -> list[str]:
    """The results page's part on the runs with a bug put back (lines of Markdown)."""
    loaded_bases = [(d, load_run(d)[0]) for d in baselines]
    out = ["### What the preprocessing fixes change (AUROC as fixed minus with the bug)", ""]
    for directory in bug_runs:
        config, results = load_run(directory)
        bugs = bugs_of(config)
        if len(bugs) != 1:
            raise ConfigurationError(
                f"--fixes {directory}: a run with one reference bug put back, not {list(bugs)}"
            )
        base_dir = _baseline_of(directory, config, loaded_bases)
        fixed, buggy = _cells(load_run(base_dir)[1]), _cells(results)
        detectors = sorted({k[0] for k in buggy if k in fixed})
        out += [
            f"**{bugs[0]}**: {WHAT[bugs[0]]}; seed {config['seed']}, "
            f"`{directory.name}` against `{base_dir.name}`.",
            "",
        ]
        for detector in detectors:
            columns, diff = _effects(fixed, buggy, detector)
            kept = [i for i, c in enumerate(columns) if c[1] not in NOT_IN_TABLE1]
            per_fold = diff.mean(axis=0)
            se = float(np.std(per_fold, ddof=1) / np.sqrt(per_fold.size))
            column_means = diff.mean(axis=1)
            order = np.argsort(-np.abs(column_means))[:3]
            largest = ", ".join(
                f"{columns[i][1]} {column_means[i]:+.3f}" for i in order if column_means[i]
            )
            out += [
                f"| {LABELS[detector]} | over {len(columns)} columns | without Periodic-Other "
                f"({len(kept)}) | columns raised / lowered by the fix | largest |",
                "|---|---|---|---|---|",
                f"| fix effect | {column_means.mean():+.3f} ± {se:.3f} (SE over "
                f"{per_fold.size} folds) | {column_means[kept].mean():+.3f} | "
                f"{int((column_means > 0).sum())} / {int((column_means < 0).sum())} | "
                f"{largest or 'none'} |",
                "",
            ]
    return out
