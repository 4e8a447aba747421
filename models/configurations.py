"""The two named configurations of training and evaluation.

``paper`` follows the seed paper's reference code (mperezcarrasco/AnomalyALeRCE, read at commit
115c4dd) in every choice that changes a trained model; ``ours`` is this project's earlier choices.
Both use the same features (the paper's selection, :func:`models.features.paper_features`),
networks, losses, per-class learning rates and latent sizes, balanced sampling, scoring rule and
evaluation folds (fit on K-1 folds, early stopping on the held-out fold).

Where they differ (paper / ours):

- preprocessing: the reference's fixed scales per feature family (models.paper), natural log or
  clip-then-log on the listed families, missing values -> -1.1 / a log10, asinh or linear
  transform and a percentile range fitted per feature on the training rows, missing -> -1;
- initialisation: N(0, 0.02) for every Linear weight and bias / PyTorch's defaults;
- (MC)DSVDD pretraining: the class's AE (its learning rate, all epochs, its patience), first
  centres over one balanced epoch with BatchNorm in training mode / a separate AE at the SVDD's
  learning rate for ``pretrain_epochs``, first centres in eval mode;
- (MC)DSVDD centres: recomputed after training from the trained encoder on a class-balanced
  resample of the training rows / kept from the pretrained encoder;
- early stopping: after ``patience`` + 1 epochs without a better validation loss / after
  ``patience`` epochs;
- the autoencoders' training loss: the squared reconstruction error averaged over the features
  and the rows (the reference's ``mse_loss(reduction='mean')``) / summed over the features and
  averaged over the rows (their anomaly score sums over the features in both);
- weight decay: none / 1e-6;
- ``alert-anomaly evaluate``'s patience: 100 / max(10, epochs / 10);
- Isolation Forest: 100 trees of 256 samples / 200 trees; one-class SVM: nu = 0.01 / nu = 0.1.

Two reference bugs are deliberately not reproduced (see :mod:`models.paper`): its log branch
applies the log only to columns whose minimum is <= 0 and otherwise scales the column with the
previous column's range (here every log-family value is logged and scaled with its own family's
range), and it gives a feature the first family whose name occurs in it ('PercentAmplitude_1'
gets 'Amplitude''s scale; here the longest match). To measure what not reproducing them changes,
the paper configuration can be evaluated with either bug put back (:func:`with_reference_bugs`,
``alert-anomaly evaluate --reference-bug``; never in a shipped bundle).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final, Literal, get_args

from models.exceptions import ConfigurationError

ConfigurationName = Literal["paper", "ours"]
CONFIGURATION_NAMES: Final[tuple[str, ...]] = get_args(ConfigurationName)
# the reference's preprocessing bugs that can be put back to measure their effect
ReferenceBug = Literal["log-branch", "first-match"]
REFERENCE_BUGS: Final[tuple[str, ...]] = get_args(ReferenceBug)
DEFAULT_CONFIGURATION: Final[ConfigurationName] = "ours"


@dataclass(frozen=True)
class Configuration:
    """Every choice in which the two configurations differ (see the module docstring)."""

    name: ConfigurationName
    preprocessing: Literal["paper", "fitted"]
    init: Literal["normal", "pytorch"]
    pretraining: Literal["class_ae", "separate"]
    recompute_centres: bool
    extra_patience: int  # epochs without improvement beyond `patience` before stopping
    reconstruction: Literal["mean", "sum"]  # the AE loss over the features (not the score)
    weight_decay: float
    iforest_trees: int
    iforest_max_samples: int | Literal["auto"]
    ocsvm_nu: float
    reference_bugs: frozenset[str] = frozenset()  # put back to measure them (REFERENCE_BUGS)

    def evaluation_patience(self, epochs: int) -> int:
        """Early-stopping patience of ``alert-anomaly evaluate`` for a maximum of ``epochs``."""
        return 100 if self.name == "paper" else max(10, epochs // 10)

    def evaluation_pretrain_epochs(self, epochs: int) -> int:
        """Pretraining epochs of ``alert-anomaly evaluate`` (the paper's AE trains for all)."""
        return epochs if self.pretraining == "class_ae" else max(1, epochs // 3)


CONFIGURATIONS: Final[dict[str, Configuration]] = {
    "paper": Configuration(
        name="paper",
        preprocessing="paper",
        init="normal",
        pretraining="class_ae",
        recompute_centres=True,
        extra_patience=1,
        reconstruction="mean",
        weight_decay=0.0,
        iforest_trees=100,
        iforest_max_samples=256,
        ocsvm_nu=0.01,
    ),
    "ours": Configuration(
        name="ours",
        preprocessing="fitted",
        init="pytorch",
        pretraining="separate",
        recompute_centres=False,
        extra_patience=0,
        reconstruction="sum",
        weight_decay=1e-6,
        iforest_trees=200,
        iforest_max_samples="auto",
        ocsvm_nu=0.1,
    ),
}


def get_configuration(name: str) -> Configuration:
    """The configuration called ``name``; ConfigurationError naming the known ones otherwise."""
    try:
        return CONFIGURATIONS[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown configuration {name!r}; known configurations: "
            f"{', '.join(CONFIGURATION_NAMES)}"
        ) from None


def configured(name: str, bugs: Iterable[str] = ()) -> Configuration:
    """The configuration called ``name`` with the named reference bugs put back (the
    training's and the evaluation's method); ConfigurationError for an unknown name or bug."""
    return with_reference_bugs(get_configuration(name), bugs)


def with_reference_bugs(configuration: Configuration, bugs: Iterable[str]) -> Configuration:
    """``configuration`` with the named bugs of the reference's preprocessing put back: only
    the paper configuration has the reference's preprocessing (ConfigurationError otherwise)."""
    chosen = frozenset(bugs)
    if not chosen:
        return configuration
    unknown = sorted(chosen.difference(REFERENCE_BUGS))
    if unknown:
        raise ConfigurationError(
            f"unknown reference bug(s) {', '.join(unknown)}; known: {', '.join(REFERENCE_BUGS)}"
        )
    if configuration.preprocessing != "paper":
        raise ConfigurationError(
            f"the reference's bugs belong to its preprocessing: the {configuration.name} "
            "configuration does not use it"
        )
    return replace(configuration, reference_bugs=chosen)
