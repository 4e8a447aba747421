"""The tables of the results page (``alert-anomaly compare``): the ``paper`` and ``ours``
configurations side by side, their ranking of the six detectors per class against the paper's
Table 1, the MCDSVDD variants against the paper configuration's MCDSVDD, AUROC exact and on the
reference's threshold grid, and how well the paper's fixed feature scales fit the data. The page
they make up is :mod:`models.evaluation.page`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import numpy as np

from models.detectors import get
from models.evaluation.detectors import LABELS
from models.evaluation.protocol import CELLS_DIR, CONFIG_FILE
from models.exceptions import DataError
from models.features import paper_family, paper_subset
from models.paper import FAMILY_SCALES
from models.scorers import DETECTORS, PAPER_DETECTORS, VARIANTS
from models.table import read_table
from models.taxonomy import SUBCLASSES, TOP_CLASSES

# The paper's Table 1 (Perez-Carrasco et al. 2023, AJ 166, 151) per class, as docs/results.md
# carried it: mean AUROC over the subclasses it reports (all but Periodic-Other) and the number
# of columns the detector wins.
PAPER_TABLE1: Final[dict[str, dict[str, tuple[float, int]]]] = {
    "Transient": {
        "iforest": (0.570, 0),
        "ocsvm": (0.522, 0),
        "ae": (0.630, 1),
        "vae": (0.571, 0),
        "deepsvdd": (0.579, 0),
        "mcdsvdd": (0.680, 3),
    },
    "Stochastic": {
        "iforest": (0.728, 0),
        "ocsvm": (0.639, 1),
        "ae": (0.775, 3),
        "vae": (0.667, 0),
        "deepsvdd": (0.669, 0),
        "mcdsvdd": (0.665, 1),
    },
    "Periodic": {
        "iforest": (0.529, 0),
        "ocsvm": (0.605, 0),
        "ae": (0.740, 1),
        "vae": (0.561, 0),
        "deepsvdd": (0.677, 0),
        "mcdsvdd": (0.906, 4),
    },
}
NOT_IN_TABLE1: Final = frozenset({"Periodic-Other"})

Results = list[dict[str, Any]]


def load_run(directory: Path) -> tuple[dict[str, Any], Results]:
    """The configuration and cell results of an ``alert-anomaly evaluate`` directory."""
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise DataError(f"{directory} holds no evaluation ({CONFIG_FILE} is missing)")
    config = json.loads(config_path.read_text())
    cells = [json.loads(p.read_text()) for p in sorted((directory / CELLS_DIR).glob("*.json"))]
    if not cells:
        raise DataError(f"{directory} holds no finished cells")
    return config, cells


def _index(results: Results) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["detector"], r["top_class"], r["outlier"]): r for r in results}


def _columns(*runs: Results) -> list[tuple[str, str]]:
    present = {(r["top_class"], r["outlier"]) for run in runs for r in run}
    return [(t, s) for t in TOP_CLASSES for s in SUBCLASSES[t] if (t, s) in present]


def _mean_std(r: dict[str, Any] | None) -> str:
    return "-" if r is None else f"{r['auroc_mean']:.3f} ± {r['auroc_std']:.3f}"


def side_by_side(runs: dict[str, Results]) -> str:
    """Per class, every detector's AUROC (mean ± std over folds) in each configuration; the best
    of the paper's six detectors per column and configuration in bold."""
    out = []
    for top in TOP_CLASSES:
        columns = [c for c in _columns(*runs.values()) if c[0] == top]
        if not columns:
            continue
        out.append(f"**{top}**\n")
        out.append("| detector | config | " + " | ".join(s for _, s in columns) + " |")
        out.append("|---|---" + "|---" * len(columns) + "|")
        for detector in (*DETECTORS, *VARIANTS):
            for name, results in runs.items():
                by = _index(results)
                cells = [by.get((detector, top, s)) for _, s in columns]
                if all(c is None for c in cells):
                    continue
                texts = []
                for (_, outlier), cell in zip(columns, cells, strict=True):
                    text = _mean_std(cell)
                    six = [by.get((d, top, outlier)) for d in PAPER_DETECTORS]
                    best = max((c["auroc_mean"] for c in six if c is not None), default=None)
                    if (
                        cell is not None
                        and detector in PAPER_DETECTORS
                        and cell["auroc_mean"] == best
                    ):
                        text = f"**{text}**"
                    texts.append(text)
                out.append(f"| {LABELS[detector]} | {name} | " + " | ".join(texts) + " |")
        out.append("")
    return "\n".join(out)


def class_summary(results: Results, top: str) -> dict[str, tuple[float, int, int]]:
    """Per detector of the paper's six: mean AUROC over the class's subclasses that Table 1
    reports, its rank among the six, and how many of those columns it wins."""
    by = _index(results)
    outliers = [s for s in SUBCLASSES[top] if s not in NOT_IN_TABLE1]
    means, wins = {}, dict.fromkeys(PAPER_DETECTORS, 0)
    for detector in PAPER_DETECTORS:
        values = [
            by[(detector, top, s)]["auroc_mean"] for s in outliers if (detector, top, s) in by
        ]
        if len(values) == len(outliers):
            means[detector] = float(np.mean(values))
    for s in outliers:
        scored = {d: by[(d, top, s)]["auroc_mean"] for d in means}
        if scored:
            wins[max(scored, key=lambda d: scored[d])] += 1
    order = sorted(means, key=lambda d: -means[d])
    return {d: (means[d], order.index(d) + 1, wins[d]) for d in means}


def _spearman(a: dict[str, float], b: dict[str, float]) -> float:
    common = [d for d in PAPER_DETECTORS if d in a and d in b]
    ra = np.argsort(np.argsort([-a[d] for d in common]))
    rb = np.argsort(np.argsort([-b[d] for d in common]))
    return float(np.corrcoef(ra, rb)[0, 1])


def ranking(runs: dict[str, Results]) -> str:
    """Mean AUROC per class, (rank, columns won), for Table 1 and each configuration."""
    header = "| detector |"
    for top in TOP_CLASSES:
        header += f" {top}: Table 1 |" + "".join(f" {top}: {name} |" for name in runs)
    lines = [header, "|---" * (1 + len(TOP_CLASSES) * (1 + len(runs))) + "|"]
    summaries = {
        (top, name): class_summary(results, top)
        for top in TOP_CLASSES
        for name, results in runs.items()
    }
    table1 = {}
    for top in TOP_CLASSES:
        order = sorted(PAPER_TABLE1[top], key=lambda d: -PAPER_TABLE1[top][d][0])
        table1[top] = {d: (m, order.index(d) + 1, w) for d, (m, w) in PAPER_TABLE1[top].items()}

    def fmt(entry: tuple[float, int, int] | None) -> str:
        if entry is None:
            return "-"
        text = f"{entry[0]:.3f} (#{entry[1]}, {entry[2]})"
        return f"**{text}**" if entry[1] == 1 else text

    for detector in PAPER_DETECTORS:
        row = f"| {LABELS[detector]} |"
        for top in TOP_CLASSES:
            row += f" {fmt(table1[top][detector])} |"
            row += "".join(f" {fmt(summaries[(top, name)].get(detector))} |" for name in runs)
        lines.append(row)
    row = "| Spearman with Table 1 |"
    for top in TOP_CLASSES:
        paper = {d: m for d, (m, _) in PAPER_TABLE1[top].items()}
        row += " |"
        for name in runs:
            means = {d: v[0] for d, v in summaries[(top, name)].items()}
            row += (
                f" {_spearman(paper, means):.2f} |"
                if len(means) == len(PAPER_DETECTORS)
                else " - |"
            )
    lines.append(row)
    return "\n".join(lines) + "\n"


VARIANT_NOTES: Final[dict[str, str]] = {
    "mcdsvdd-nn": "Each fold's MCDSVDD network, scored by the squared distance to the nearest "
    "training inlier instead of the nearest centre.",
    "mcdsvdd-ens": "The K fold networks of MCDSVDD-NN as one detector, their scores added "
    "(`--scorer mcdsvdd-ens`). Its per-fold values are the ensembles without that fold's member "
    "(K-1 networks each: a spread, and a conservative one; the shipped ensemble has all K).",
    "mcdsvdd-ens-lite": "The same ensemble of small networks (hidden widths 128, 64 instead of "
    "512, 256, 128) keeping at most 256 training inliers as references (`--scorer "
    "mcdsvdd-ens-lite`): about the arithmetic of one paper MCDSVDD per row.",
}


def variant_versus(results: Results, base: str = "mcdsvdd", variant: str = "mcdsvdd-nn") -> str:
    """The variant against the base detector of the same run, per column (mean ± std over folds,
    and the paired difference) and over all columns (fold spread: the standard deviation over
    folds of each fold's mean over the columns)."""
    by = _index(results)
    columns = [(t, s) for t, s in _columns(results) if (base, t, s) in by and (variant, t, s) in by]
    if not columns:
        return f"(no column has both {base} and {variant} results)\n"
    lines = [
        f"| column | {LABELS[base]} | {LABELS[variant]} | difference |",
        "|---|---|---|---|",
    ]
    per_fold_base, per_fold_variant = [], []
    for top, outlier in columns:
        a = np.asarray(by[(base, top, outlier)]["auroc"])
        b = np.asarray(by[(variant, top, outlier)]["auroc"])
        per_fold_base.append(a)
        per_fold_variant.append(b)
        diff = b - a
        lines.append(
            f"| {top}: {outlier} | {a.mean():.3f} ± {a.std():.3f} | {b.mean():.3f} ± {b.std():.3f} "
            f"| {diff.mean():+.3f} ± {diff.std():.3f} |"
        )
    fold_a = np.mean(per_fold_base, axis=0)  # each fold's mean over the columns
    fold_b = np.mean(per_fold_variant, axis=0)
    diff = fold_b - fold_a
    better = sum(
        float(np.mean(v)) > float(np.mean(a))
        for a, v in zip(per_fold_base, per_fold_variant, strict=True)
    )
    lines.append(
        f"| **mean over {len(columns)} columns** | **{fold_a.mean():.3f} ± {fold_a.std():.3f}** "
        f"| **{fold_b.mean():.3f} ± {fold_b.std():.3f}** "
        f"| **{diff.mean():+.3f} ± {diff.std():.3f}** |"
    )
    folds = ", ".join(f"{d:+.3f}" for d in diff)
    return (
        "\n".join(lines)
        + f"\n\nBetter in {better} of {len(columns)} columns; per fold, the difference of the "
        f"means over the columns is {folds}.\n"
    )


def grid_effect(runs: dict[str, Results]) -> str:
    """Exact AUROC minus the reference's threshold-grid AUROC, over every fold of every cell."""
    lines = [
        "| configuration | detectors | folds | mean | min | max |",
        "|---|---|---|---|---|---|",
    ]
    for name, results in runs.items():
        groups = {
            "neural": tuple(d for d in (*DETECTORS, *VARIANTS) if get(d).neural),
            "Isolation Forest, one-class SVM": tuple(
                d for d in DETECTORS if get(d).reference_normality
            ),
        }
        for group, members in groups.items():
            diffs = [
                exact - grid
                for r in results
                if r["detector"] in members
                for exact, grid in zip(r["auroc"], r.get("auroc_reference_grid", []), strict=False)
            ]
            if diffs:
                lines.append(
                    f"| {name} | {group} | {len(diffs)} | {np.mean(diffs):+.4f} | "
                    f"{np.min(diffs):+.4f} | {np.max(diffs):+.4f} |"
                )
    return "\n".join(lines) + "\n"


def scale_coverage(data: Path) -> str:
    """Per family of the paper's preprocessing: how many of the table's defined values fall below
    or above the family's fixed scale, and how many are undefined."""
    table = read_table(data)
    names = paper_subset(table.feature_names)
    values = table.columns(names)
    lines = [
        "| family | features | undefined | below scale | above scale | scale |",
        "|---|---|---|---|---|---|",
    ]
    families: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        families.setdefault(str(paper_family(name)), []).append(j)
    for family in FAMILY_SCALES:
        if family not in families:
            continue
        block = values[:, families[family]]
        defined = block[np.isfinite(block)]
        low, high = FAMILY_SCALES[family]
        below = float(np.mean(defined < low)) if defined.size else 0.0
        above = float(np.mean(defined > high)) if defined.size else 0.0
        lines.append(
            f"| {family} | {len(families[family])} | {np.mean(~np.isfinite(block)):.0%} | "
            f"{below:.0%} | {above:.0%} | [{low:g}, {high:g}] |"
        )
    return "\n".join(lines) + "\n"
