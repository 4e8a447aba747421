"""Error bars over split seeds (``alert-anomaly compare --splits``).

One evaluation directory holds one seed: one 80/20 split of the data, one set of folds and of
initialisations. The same evaluation (data, configuration, folds, epochs, test fraction) run
with several seeds is read here together. A detector's AUROC on a column (a class and its held-out
subclass) in one run is the mean over that run's folds; over runs the tables give the mean and the
standard error of the mean (the standard deviation over runs, divided by the square root of
their number) - the uncertainty of the estimate, split-to-split variation included. The spread
over folds within a run is given apart: it measures the training noise on one split only (for
the ensemble, whose "folds" are ensembles of K-1 shared networks, it is small by construction).

Paired differences compare two detectors run by run on the same split: per run, the mean over
columns of their difference; over runs its mean, standard error and 95% confidence interval
(Student's t with runs - 1 degrees of freedom), with and without Periodic-Other (held out as an
outlier here, although the paper's code never holds it out).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from models.evaluation.compare import NOT_IN_TABLE1, Results, load_run
from models.evaluation.detectors import LABELS
from models.evaluation.fixes import bugs_of
from models.exceptions import ConfigurationError
from models.extras import SIM, require
from models.scorers import DETECTORS, PAPER_BEST_SCORERS, VARIANTS
from models.taxonomy import SUBCLASSES, TOP_CLASSES

# what must be equal for runs to be seeds of one evaluation
SAME: Final = ("data_sha256", "configuration", "folds", "epochs", "test_fraction")
# differences shown, where both detectors are in every run: (detector, baseline)
PAIRS: Final = (
    ("mcdsvdd-ens", "mcdsvdd"),
    ("mcdsvdd-ens-lite", "mcdsvdd"),
    ("mcdsvdd-ens-lite", "mcdsvdd-ens"),
    ("mcdsvdd-nn", "mcdsvdd"),
    ("mcdsvdd", "ae"),
    ("mcdsvdd", "iforest"),
)

Column = tuple[str, str]  # (top class, held-out subclass)


class SplitRuns:
    """Several seeds of one evaluation: per (detector, column), each run's mean AUROC over its
    folds and its spread over folds, for the cells present in every run."""

    def __init__(self, configs: list[dict[str, Any]], runs: list[Results]) -> None:
        self.seeds = [int(c["seed"]) for c in configs]
        present = [{(r["detector"], r["top_class"], r["outlier"]): r for r in run} for run in runs]
        common = set(present[0]).intersection(*present[1:])
        self.detectors = [d for d in (*DETECTORS, *VARIANTS) if any(k[0] == d for k in common)]
        self.columns: list[Column] = [
            (t, s)
            for t in TOP_CLASSES
            for s in SUBCLASSES[t]
            if any(k[1:] == (t, s) for k in common)
        ]
        self.mean: dict[tuple[str, str, str], NDArray[np.float64]] = {}
        self.fold_std: dict[tuple[str, str, str], NDArray[np.float64]] = {}
        for key in common:
            self.mean[key] = np.array([float(np.mean(p[key]["auroc"])) for p in present])
            self.fold_std[key] = np.array([float(np.std(p[key]["auroc"])) for p in present])

    def complete(self, detector: str) -> bool:
        """The detector has every column in every run."""
        return all((detector, *c) in self.mean for c in self.columns)

    def per_run_mean(self, detector: str, columns: Sequence[Column]) -> NDArray[np.float64]:
        """Per run, the detector's mean AUROC over ``columns``."""
        return np.asarray(
            np.mean([self.mean[(detector, *c)] for c in columns], axis=0), dtype=np.float64
        )


def load_splits(directories: Sequence[Path]) -> SplitRuns:
    """The runs of ``directories``: seeds of one evaluation (else :class:`ConfigurationError`)."""
    if len(directories) < 2:
        raise ConfigurationError("--splits needs two evaluation directories or more")
    loaded = [load_run(d) for d in directories]
    first = loaded[0][0]
    for directory, (config, _) in zip(directories, loaded, strict=True):
        if bugs_of(config):
            raise ConfigurationError(
                f"{directory} put a reference bug back ({', '.join(bugs_of(config))}): give it "
                "to --fixes, not --splits"
            )
        differs = [k for k in SAME if config.get(k) != first.get(k)]
        if differs:
            raise ConfigurationError(
                f"{directory} is not a seed of {directories[0]}'s evaluation: "
                f"{', '.join(differs)} {'differs' if len(differs) == 1 else 'differ'}"
            )
    seeds = [config["seed"] for config, _ in loaded]
    if len(set(seeds)) != len(seeds):
        raise ConfigurationError(f"--splits: two directories have the same seed ({seeds})")
    return SplitRuns([c for c, _ in loaded], [r for _, r in loaded])


def _se(values: NDArray[np.float64]) -> float:
    return float(np.std(values, ddof=1) / np.sqrt(len(values)))


def _interval(values: NDArray[np.float64]) -> tuple[float, float]:
    """The 95% confidence interval of the mean of ``values`` (Student's t)."""
    t = float(require("scipy.stats", SIM, "the split error bars").t.ppf(0.975, len(values) - 1))
    mean, se = float(np.mean(values)), _se(values)
    return mean - t * se, mean + t * se


def per_column(splits: SplitRuns) -> str:
    """Per class, each detector's AUROC per held-out subclass: mean ± standard error over runs."""
    out = []
    for top in TOP_CLASSES:
        columns = [c for c in splits.columns if c[0] == top]
        if not columns:
            continue
        out.append(f"**{top}**\n")
        out.append("| detector | " + " | ".join(s for _, s in columns) + " |")
        out.append("|---" + "|---" * len(columns) + "|")
        for detector in splits.detectors:
            cells = []
            for column in columns:
                values = splits.mean.get((detector, *column))
                cells.append("-" if values is None else f"{values.mean():.3f} ± {_se(values):.3f}")
            out.append(f"| {LABELS[detector]} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def headline(splits: SplitRuns) -> str:
    """Each complete detector's mean AUROC over every column and without Periodic-Other: mean ±
    standard error over runs, every run's value, and the mean spread over folds within a run."""
    kept = [c for c in splits.columns if c[1] not in NOT_IN_TABLE1]
    out = [
        f"| detector | mean over {len(splits.columns)} columns | each run | without "
        f"Periodic-Other ({len(kept)}) | spread over folds within a run |",
        "|---|---|---|---|---|",
    ]
    for detector in splits.detectors:
        if not splits.complete(detector):
            continue
        every, without = (splits.per_run_mean(detector, cols) for cols in (splits.columns, kept))
        folds = np.mean([splits.fold_std[(detector, *c)].mean() for c in splits.columns])
        out.append(
            f"| {LABELS[detector]} | {every.mean():.3f} ± {_se(every):.3f} | "
            + " / ".join(f"{v:.3f}" for v in every)
            + f" | {without.mean():.3f} ± {_se(without):.3f} | {folds:.3f} |"
        )
    return "\n".join(out) + "\n"


def paired(splits: SplitRuns) -> str:
    """The differences of :data:`PAIRS` run by run (see the module docstring)."""
    kept = [c for c in splits.columns if c[1] not in NOT_IN_TABLE1]
    out = [
        "| difference | over every column: mean ± SE [95% CI] | runs above 0 | without "
        "Periodic-Other: mean ± SE [95% CI] | columns above 0 (mean over runs) |",
        "|---|---|---|---|---|",
    ]
    for detector, baseline in PAIRS:
        if not (splits.complete(detector) and splits.complete(baseline)):
            continue
        texts = []
        for columns in (splits.columns, kept):
            diff = splits.per_run_mean(detector, columns) - splits.per_run_mean(baseline, columns)
            low, high = _interval(diff)
            texts.append(f"{diff.mean():+.3f} ± {_se(diff):.3f} [{low:+.3f}, {high:+.3f}]")
            if columns is splits.columns:
                texts.append(f"{int((diff > 0).sum())} of {len(diff)}")
        above = sum(
            splits.mean[(detector, *c)].mean() > splits.mean[(baseline, *c)].mean()
            for c in splits.columns
        )
        texts.append(f"{above} of {len(splits.columns)}")
        out.append(f"| {LABELS[detector]} - {LABELS[baseline]} | " + " | ".join(texts) + " |")
    return "\n".join(out) + "\n"


def per_class(splits: SplitRuns, detector: str = "mcdsvdd-ens-lite") -> str:
    """Per top-level class, ``detector`` against the paper's best model of the class
    (:data:`models.scorers.PAPER_BEST_SCORERS`, the service's default before): the paired
    difference of their means over the class's columns, run by run."""
    out = [
        "| class | difference | mean ± SE [95% CI] | each run | runs above 0 |",
        "|---|---|---|---|---|",
    ]
    for top, baseline in PAPER_BEST_SCORERS.items():
        columns = [c for c in splits.columns if c[0] == top]
        if not columns or not all(
            (d, *c) in splits.mean for d in (detector, baseline) for c in columns
        ):
            continue
        diff = splits.per_run_mean(detector, columns) - splits.per_run_mean(baseline, columns)
        low, high = _interval(diff)
        out.append(
            f"| {top} | {LABELS[detector]} - {LABELS[baseline]} | {diff.mean():+.3f} ± "
            f"{_se(diff):.3f} [{low:+.3f}, {high:+.3f}] | "
            + " / ".join(f"{v:+.3f}" for v in diff)
            + f" | {int((diff > 0).sum())} of {len(diff)} |"
        )
    return "\n".join(out) + "\n" if len(out) > 2 else ""


def splits_section(directories: Sequence[Path]) -> list[str]:
    """The results page's part on the runs of ``directories`` (lines of Markdown)."""
    splits = load_splits(directories)
    seeds = ", ".join(str(s) for s in splits.seeds)
    freedom = len(splits.seeds) - 1
    return [
        f"### Over {len(splits.seeds)} split seeds ({seeds}): mean ± standard error over splits",
        "",
        "Each run's AUROC of a cell is its mean over folds; ± is the standard error of the mean "
        "over runs (each seed draws its own split, folds and initialisations). Detectors in "
        "every run only.",
        "",
        headline(splits),
        per_column(splits),
        "Paired differences, run by run on the same split (95% CI: Student's t with "
        f"{freedom} degree{'s' if freedom != 1 else ''} of freedom):",
        "",
        paired(splits),
        *(
            (
                "Per class, the small ensemble (the ZTF default) against the paper's best model "
                "of the class (the default before): the difference of their means over the "
                "class's columns, run by run:",
                "",
                table,
            )
            if (table := per_class(splits))
            else ()
        ),
    ]
