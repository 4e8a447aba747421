"""The hooks of the ensemble kinds (mcdsvdd-ens, mcdsvdd-ens-lite): K networks of the member
kind (mcdsvdd-nn) in the kind's widths, one per fold of the training inliers, saved together as
one safetensors file."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

from models.detectors import get
from models.detectors.network import network_hyperparameters, neural_detector
from models.detectors.spec import DetectorSpec, Validation
from models.detectors.svdd import leave_one_out_scores
from models.exceptions import DataError
from models.networks import AnomalyNet, Ensemble, Network
from models.preprocessing import FeatureScaling, Preprocessor
from models.training import (
    TrainedModel,
    TrainingConfig,
    calibration_scores,
    configured_scaling,
    stratified_folds,
    train_model,
)

if TYPE_CHECKING:
    from models.bundle import Bundle, Manifest


def train_ensemble(
    features: NDArray[np.float64],
    subclasses: NDArray[np.str_],
    feature_names: tuple[str, ...],
    config: TrainingConfig,
    progress: bool = True,
) -> TrainedModel:
    """An ensemble kind: the inliers are split in ``config.members`` folds stratified by subclass
    (as the evaluation splits them); member k is an mcdsvdd-nn of the kind's widths fitted on
    the other folds, stopped early on fold k, with seed ``config.seed + k``. One preprocessing
    for all (fitted on every inlier for ``ours``). Every member's references are then the same
    inliers in the same order (all of them, or one random subset beyond the kind's
    ``max_references``), and the calibration scores are the members' leave-one-out scores
    added."""
    started = time.perf_counter()
    spec = get(config.scorer)
    scaling = configured_scaling(features, feature_names, config)
    folds = stratified_folds(subclasses, config.members, np.random.default_rng(config.seed))
    member_config = replace(config, scorer=spec.member, hidden=config.resolved_hidden)
    members: list[TrainedModel] = []
    for k, held in enumerate(folds):
        fit = np.setdiff1d(np.arange(features.shape[0]), held)
        member = train_model(
            features[fit], subclasses[fit], feature_names,
            replace(member_config, seed=config.seed + k), progress,
            validation=(features[held], subclasses[held]), scaling=scaling,
        )  # fmt: skip
        members.append(member)
    names = members[0].centre_subclasses
    if any(m.centre_subclasses != names for m in members):
        raise DataError("every subclass needs a row in every fold: too few rows for an ensemble")
    keep = np.arange(features.shape[0])
    if keep.size > spec.max_references:
        order = torch.randperm(keep.size, generator=torch.Generator().manual_seed(config.seed))
        keep = np.sort(order[: spec.max_references].numpy())
    preprocessor = Preprocessor(scaling)
    with torch.no_grad():
        x = preprocessor(torch.as_tensor(features[keep], dtype=torch.float32))
    groups = torch.as_tensor([names.index(s) for s in subclasses[keep].tolist()])
    nets: list[AnomalyNet] = []
    loo = torch.zeros(keep.size, dtype=torch.float64)
    for member in members:
        net = member.net
        assert isinstance(net, AnomalyNet)
        net.eval()
        with torch.no_grad():
            net.references = net.embed(x)
        net.reference_subclass = groups.clone()  # saved once per member
        loo += leave_one_out_scores(net.references).double()
        nets.append(net)
    scores = loo.numpy()
    metrics: dict[str, Any] = {
        "n_train": int(features.shape[0]),
        "n_references": int(keep.size),
        "members": [m.metrics for m in members],
        "train_score_median": float(np.median(scores)),
        "seconds": round(time.perf_counter() - started, 2),
    }
    calibration = calibration_scores(scores)
    return TrainedModel(Ensemble(nets, spec.name), preprocessor, names, calibration, metrics)


class EnsembleHooks:
    """The hooks of a kind whose bundle holds an Ensemble of its member kind's networks."""

    def require(self, spec: DetectorSpec) -> None:
        """Networks need no extra."""

    def unavailable(self, spec: DetectorSpec) -> str | None:
        return None

    def build(
        self,
        spec: DetectorSpec,
        n_features: int,
        latent: int,
        n_centres: int,
        state: dict[str, torch.Tensor] | None = None,
    ) -> Network:
        """As many members as the saved ``state`` has (one without a state)."""
        saved = state or {}

        def references(prefix: str) -> int:
            key = f"{prefix}references"
            return saved[key].shape[0] if key in saved else 0

        n_members = len({k.split(".")[1] for k in saved if k.startswith("members.")})
        n_members = 1 if state is None else n_members
        return Ensemble(
            [
                AnomalyNet(
                    spec.member,
                    n_features,
                    latent,
                    n_centres,
                    references(f"members.{i}."),
                    spec.hidden,
                )
                for i in range(n_members)
            ],
            spec.name,
        )

    def train(
        self,
        spec: DetectorSpec,
        features: NDArray[np.float64],
        subclasses: NDArray[np.str_],
        feature_names: tuple[str, ...],
        config: TrainingConfig,
        progress: bool,
        validation: Validation | None,
        scaling: tuple[FeatureScaling, ...] | None,
    ) -> TrainedModel:
        """:func:`train_ensemble` (it makes its own folds and preprocessing)."""
        return train_ensemble(features, subclasses, feature_names, config, progress)

    def hyperparameters(self, spec: DetectorSpec, config: TrainingConfig) -> dict[str, Any]:
        return {**network_hyperparameters(spec, config), "members": config.members}

    def describe(self, spec: DetectorSpec, metrics: dict[str, Any]) -> str:
        epochs = [m["train"]["epochs"] for m in metrics["members"]]
        return f"{len(epochs)} networks, one per fold ({', '.join(map(str, epochs))} epochs)"

    def load(self, spec: DetectorSpec, manifest: Manifest, weights: Path) -> Bundle:
        from models.bundle import load_network

        return load_network(spec, manifest, weights)

    evaluate = staticmethod(neural_detector)


HOOKS = EnsembleHooks()
