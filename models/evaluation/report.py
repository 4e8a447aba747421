"""Table 1 of the paper, for our results: Markdown and CSV (rows = detectors, columns =
subclasses grouped by top-level class, best mean AUROC per column in bold / marked), and ROC
curves (fold 0) as one PNG per top-level class."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from models.evaluation.detectors import LABELS
from models.taxonomy import SUBCLASSES, TOP_CLASSES


def _columns(results: list[dict[str, Any]]) -> list[tuple[str, str]]:
    present = {(r["top_class"], r["outlier"]) for r in results}
    return [(t, s) for t in TOP_CLASSES for s in SUBCLASSES[t] if (t, s) in present]


def _detectors(results: list[dict[str, Any]]) -> list[str]:
    seen = {r["detector"] for r in results}
    return [d for d in LABELS if d in seen]


def best_per_column(results: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """The detector with the highest mean AUROC of each (class, outlier) column."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        key = (r["top_class"], r["outlier"])
        if key not in best or r["auroc_mean"] > best[key]["auroc_mean"]:
            best[key] = r
    return {key: r["detector"] for key, r in best.items()}


def markdown_table(results: list[dict[str, Any]], metric: str = "auroc") -> str:
    columns = _columns(results)
    by = {(r["detector"], r["top_class"], r["outlier"]): r for r in results}
    best = best_per_column(results) if metric == "auroc" else {}
    header = "| detector | " + " | ".join(f"{t}: {s}" for t, s in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    for detector in _detectors(results):
        cells = []
        for top, outlier in columns:
            r = by.get((detector, top, outlier))
            if r is None:
                cells.append("-")
                continue
            text = f"{r[metric + '_mean']:.3f} ± {r[metric + '_std']:.3f}"
            cells.append(f"**{text}**" if best.get((top, outlier)) == detector else text)
        lines.append(f"| {LABELS[detector]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(results: list[dict[str, Any]], path: Path) -> None:
    best = best_per_column(results)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "top_class",
                "outlier",
                "detector",
                "auroc_mean",
                "auroc_std",
                "auprc_mean",
                "auprc_std",
                "folds",
                "n_train",
                "n_test",
                "best",
            ]
        )
        for r in results:
            writer.writerow(
                [
                    r["top_class"],
                    r["outlier"],
                    r["detector"],
                    f"{r['auroc_mean']:.4f}",
                    f"{r['auroc_std']:.4f}",
                    f"{r['auprc_mean']:.4f}",
                    f"{r['auprc_std']:.4f}",
                    len(r["auroc"]),
                    r["n_train"],
                    r["n_test"],
                    int(best[(r["top_class"], r["outlier"])] == r["detector"]),
                ]
            )


def plot_rocs(results: list[dict[str, Any]], out: Path) -> list[Path]:
    from models.extras import pyplot

    plt = pyplot("plotting ROC curves")
    written = []
    for top in TOP_CLASSES:
        columns = [s for t, s in _columns(results) if t == top]
        if not columns:
            continue
        fig, axes = plt.subplots(1, len(columns), figsize=(2.6 * len(columns), 2.8), dpi=80)
        axes = [axes] if len(columns) == 1 else list(axes)
        for ax, outlier in zip(axes, columns, strict=True):
            for r in results:
                if (r["top_class"], r["outlier"]) == (top, outlier) and r["roc_fold0"]:
                    roc = r["roc_fold0"]
                    ax.plot(roc["fpr"], roc["tpr"], lw=1, label=LABELS[r["detector"]])
            ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls=":")
            ax.set_title(f"{outlier} as outlier", fontsize=8)
            ax.set_xlabel("FPR", fontsize=7)
            ax.tick_params(labelsize=6)
        axes[0].set_ylabel("TPR", fontsize=7)
        axes[-1].legend(fontsize=5, loc="lower right")
        fig.suptitle(f"{top} (fold 0)", fontsize=9)
        fig.tight_layout()
        path = out / f"roc-{top.lower()}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
