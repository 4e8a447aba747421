"""The reference's two preprocessing bugs, put back only to measure what fixing them changes
(models.configurations.with_reference_bugs, models.preprocessing.paper_scaling, ``compare
--fixes``): each reproduces src/utils/normalize.py of mperezcarrasco/AnomalyALeRCE at 115c4dd."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.configurations import get_configuration, with_reference_bugs
from models.evaluation.config import EvaluationConfig
from models.evaluation.fixes import fixes_section
from models.evaluation.protocol import CELLS_DIR, CONFIG_FILE
from models.evaluation.splits import load_splits
from models.exceptions import ConfigurationError, DataError
from models.preprocessing import Preprocessor, paper_scaling

LOG_BRANCH = frozenset({"log-branch"})


def inputs(names: tuple[str, ...], raw: np.ndarray, bugs: frozenset[str]) -> np.ndarray:
    scaling = paper_scaling(names, reference_bugs=bugs, features=raw)
    return Preprocessor(scaling)(torch.tensor(raw, dtype=torch.float32)).double().numpy()


def test_first_match_scales_percent_amplitude_as_amplitude() -> None:
    names = ("Std_1", "PercentAmplitude_2", "Amplitude_1")
    fixed = paper_scaling(names)
    buggy = paper_scaling(names, reference_bugs=frozenset({"first-match"}))
    assert (fixed[1].low, fixed[1].high) == (0.0, 0.2)
    assert (buggy[1].low, buggy[1].high) == (0.0, 2.4)  # 'Amplitude' comes first in its table
    assert (buggy[0], buggy[2]) == (fixed[0], fixed[2])


def test_log_branch_logs_only_columns_reaching_zero_and_leaves_the_others_stale() -> None:
    # Std_1 linear (0.03, 0.6); Pvar_2 log (1e-5, 1) with a zero; Eta_e_1 log (8e-4, 4) positive;
    # Eta_e_2 positive too, after a stale column; MHPS_low_1 clip-log (1e-4, 30), positive
    names = ("Std_1", "Pvar_2", "Eta_e_1", "Eta_e_2", "MHPS_low_1")
    raw = np.array(
        [[0.2, 0.0, 0.5, 2.0, 3.0], [0.4, 0.01, 1.5, 0.1, 1e-6], [np.nan, 0.5, 3.0, 1.0, 10.0]]
    )
    fixed, buggy = inputs(names, raw, frozenset()), inputs(names, raw, LOG_BRANCH)
    np.testing.assert_array_equal(buggy[:, [0, 1, 4]], fixed[:, [0, 1, 4]])
    # Eta_e_1 and Eta_e_2: not logged, scaled with the natural-log range Pvar_2 left behind
    low, high = np.log(1e-5), np.log(1.0)
    expected = np.tanh((raw[:, 2:4] - low) / (high - low) - 0.5)
    np.testing.assert_allclose(buggy[:, 2:4], expected, rtol=1e-6)
    assert not np.allclose(buggy[:, 2:4], fixed[:, 2:4])
    # a positive log column after a linear one gets that column's plain range
    after_linear = inputs(("Std_1", "Eta_e_1"), raw[:, [0, 2]], LOG_BRANCH)
    np.testing.assert_allclose(
        after_linear[:, 1], np.tanh((raw[:, 2] - 0.03) / (0.6 - 0.03) - 0.5), rtol=1e-6
    )


def test_log_branch_edge_cases() -> None:
    only_nan = np.array([[0.2, np.nan], [0.3, np.nan]])  # pandas' min of all-NaN: not <= 0
    scaling = paper_scaling(("Std_1", "Eta_e_1"), reference_bugs=LOG_BRANCH, features=only_nan)
    assert (scaling[1].kind, scaling[1].low, scaling[1].high) == ("linear", 0.03, 0.6)
    with pytest.raises(DataError, match="first column 'Eta_e_1'"):
        paper_scaling(("Eta_e_1",), reference_bugs=LOG_BRANCH, features=np.ones((2, 1)))
    with pytest.raises(DataError, match="needs the fitted rows"):
        paper_scaling(("Std_1",), reference_bugs=LOG_BRANCH)


def test_bugs_belong_to_the_paper_configuration_only() -> None:
    paper = get_configuration("paper")
    assert with_reference_bugs(paper, ["log-branch"]).reference_bugs == LOG_BRANCH
    assert with_reference_bugs(paper, []) is paper
    with pytest.raises(ConfigurationError, match="ours configuration does not use it"):
        with_reference_bugs(get_configuration("ours"), ["first-match"])
    with pytest.raises(ConfigurationError, match="unknown reference bug"):
        EvaluationConfig(data="x", data_sha256="y", configuration="paper", reference_bugs=("z",))


AUROC = {  # run -> column -> the folds' AUROC
    "fixed": {"E": [0.8, 0.9], "RRL": [0.7, 0.8], "Periodic-Other": [0.6, 0.6]},
    "buggy": {"E": [0.7, 0.7], "RRL": [0.75, 0.75], "Periodic-Other": [0.5, 0.6]},
    "other": {"E": [0.5, 0.5], "RRL": [0.5, 0.5], "Periodic-Other": [0.5, 0.5]},
}


def run(root: Path, name: str, seed: int, bugs: list[str]) -> Path:
    directory = root / name
    (directory / CELLS_DIR).mkdir(parents=True)
    config = {"data_sha256": "abc", "configuration": "paper", "folds": 2, "epochs": 5}
    config |= {"test_fraction": 0.2, "seed": seed}
    if bugs:
        config["reference_bugs"] = bugs
    (directory / CONFIG_FILE).write_text(json.dumps(config))
    for outlier, aurocs in AUROC[name].items():
        cell = {"top_class": "Periodic", "outlier": outlier, "detector": "mcdsvdd", "auroc": aurocs}
        (directory / CELLS_DIR / f"Periodic__{outlier}__mcdsvdd.json").write_text(json.dumps(cell))
    return directory


def test_fix_effects_against_the_run_of_the_same_seed(tmp_path: Path) -> None:
    other, fixed = run(tmp_path, "other", 1, []), run(tmp_path, "fixed", 3, [])
    buggy = run(tmp_path, "buggy", 3, ["log-branch"])
    text = "\n".join(fixes_section([other, fixed], [buggy]))
    assert "`buggy` against `fixed`" in text
    # per fold, mean over columns of fixed - buggy: (0.1 - 0.05 + 0.1) / 3 and (0.2 + 0.05 + 0) / 3
    per_fold = np.array([0.15 / 3, 0.25 / 3])
    se = np.std(per_fold, ddof=1) / np.sqrt(2)
    row = next(line for line in text.splitlines() if line.startswith("| fix effect |"))
    assert f"| {per_fold.mean():+.3f} ± {se:.3f} (SE over 2 folds) |" in row
    assert "| +0.075 |" in row  # without Periodic-Other: (0.15 + 0.0) / 2
    assert "| 2 / 0 |" in row  # E and Periodic-Other raised, RRL unchanged on average
    assert "E +0.150" in row
    with pytest.raises(ConfigurationError, match="without the bug"):
        fixes_section([other], [buggy])
    with pytest.raises(ConfigurationError, match="give it to --fixes"):
        load_splits([other, buggy])
