"""Hierarchical light-curve classifier as in ALeRCE (Sánchez-Sáez et al. 2021): a balanced
random forest for the top level (Transient, Stochastic, Periodic) and one per top-level class for
its subclasses; P(subclass) = P(top) * P(subclass | top). Probabilities are out-of-fold, so every
object is classified by forests that never saw it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.exceptions import ConfigurationError
from models.extras import SIM, require
from models.taxonomy import ALL_SUBCLASSES, SUBCLASSES, TOP_CLASSES, TOP_OF

# Only the simulator imports this module (lazily): without the 'sim' extra, one line names it.
_ensemble = require("imblearn.ensemble", SIM, "the simulator's classifier")
_model_selection = require("sklearn.model_selection", SIM, "the simulator's classifier")

MISSING_VALUE = -999.0  # ALeRCE's classifier fills undefined features with -999
N_TREES = 100


@dataclass(frozen=True)
class ClassifierOutput:
    """Out-of-fold probabilities, columns ordered as TOP_CLASSES and ALL_SUBCLASSES."""

    top: NDArray[np.float64]  # (n, 3) P(top)
    within: NDArray[np.float64]  # (n, 15) P(subclass | its top class)

    @property
    def subclass(self) -> NDArray[np.float64]:
        """(n, 15) P(subclass) = P(top) * P(subclass | top)."""
        top_index = [TOP_CLASSES.index(TOP_OF[s]) for s in ALL_SUBCLASSES]
        return self.top[:, top_index] * self.within

    def predicted_top(self) -> list[str]:
        return [TOP_CLASSES[i] for i in self.top.argmax(axis=1)]

    def predicted_subclass(self) -> list[str]:
        return [ALL_SUBCLASSES[i] for i in self.subclass.argmax(axis=1)]


def _forest(seed: int, jobs: int) -> Any:
    return _ensemble.BalancedRandomForestClassifier(
        n_estimators=N_TREES,
        max_features="sqrt",
        sampling_strategy="all",
        replacement=True,
        bootstrap=False,
        n_jobs=jobs,
        random_state=seed,
    )


def _fit_predict(
    X_train: NDArray[np.float64],
    y_train: NDArray[np.str_],
    X_test: NDArray[np.float64],
    classes: tuple[str, ...],
    seed: int,
    jobs: int,
) -> NDArray[np.float64]:
    """Probabilities of ``classes`` (in that order) for X_test; classes absent from training
    get probability 0, a single class present gets probability 1."""
    out = np.zeros((X_test.shape[0], len(classes)))
    present = sorted(set(y_train.tolist()))
    if len(present) == 1:
        out[:, classes.index(present[0])] = 1.0
        return out
    model = _forest(seed, jobs).fit(X_train, y_train)
    proba = model.predict_proba(X_test)
    for j, name in enumerate(model.classes_):
        out[:, classes.index(str(name))] = proba[:, j]
    return out


def out_of_fold_probabilities(
    features: NDArray[np.float64],
    subclasses: NDArray[np.str_],
    folds: int,
    seed: int,
    jobs: int,
) -> ClassifierOutput:
    """Cross-validated hierarchical probabilities for every object (stratified by subclass)."""
    counts = {s: int((subclasses == s).sum()) for s in set(subclasses.tolist())}
    if folds < 2:
        raise ConfigurationError(f"--folds must be at least 2, got {folds}")
    too_small = {s: c for s, c in counts.items() if c < folds}
    if too_small:
        raise ConfigurationError(
            f"every subclass needs at least {folds} objects for {folds}-fold out-of-fold "
            f"probabilities; too few: {too_small}"
        )
    X = np.where(np.isfinite(features), features, MISSING_VALUE)
    tops = np.array([TOP_OF[s] for s in subclasses])
    top = np.zeros((X.shape[0], len(TOP_CLASSES)))
    within = np.zeros((X.shape[0], len(ALL_SUBCLASSES)))
    splitter = _model_selection.StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (train, test) in enumerate(splitter.split(X, subclasses)):
        fold_seed = seed + 1000 * fold
        top[test] = _fit_predict(X[train], tops[train], X[test], TOP_CLASSES, fold_seed, jobs)
        for k, top_class in enumerate(TOP_CLASSES):
            members = train[tops[train] == top_class]
            names = SUBCLASSES[top_class]
            columns = [ALL_SUBCLASSES.index(s) for s in names]
            if members.size == 0:
                within[np.ix_(test, columns)] = 1.0 / len(names)
                continue
            within[np.ix_(test, columns)] = _fit_predict(
                X[members], subclasses[members], X[test], names, fold_seed + k + 1, jobs
            )
    return ClassifierOutput(top=top, within=within)
