"""The hooks of the network kinds (ae, vae, deepsvdd, mcdsvdd, mcdsvdd-nn): one
:class:`~models.networks.AnomalyNet` laid out as the kind's spec says, trained by its loss (the
SVDDs after their pretraining, models.detectors.svdd), stored as safetensors weights."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

from models.detectors.fitting import Data, fit, loss_function, new_network
from models.detectors.spec import DetectorSpec, Validation
from models.detectors.svdd import inlier_scores, set_references, train_svdd
from models.networks import AnomalyNet, Network
from models.preprocessing import FeatureScaling
from models.training import TrainedModel, TrainingConfig, calibration_scores, split_inliers

if TYPE_CHECKING:
    from models.bundle import Bundle, Manifest
    from models.configurations import Configuration
    from models.evaluation.detectors import Detector


def network_hyperparameters(spec: DetectorSpec, config: TrainingConfig) -> dict[str, Any]:
    """The training description of a network (and of the pretraining for the SVDDs)."""
    method = config.method
    out: dict[str, Any] = {
        "configuration": config.configuration,
        "scorer": config.scorer,
        "top_class": config.top_class,
        "lr": config.resolved_lr,
        "latent": config.resolved_latent,
        "batch_size": config.batch_size,
        "max_epochs": config.max_epochs,
        "patience": config.patience,
        "val_fraction": config.val_fraction,
        "weight_decay": method.weight_decay,
        "initialisation": method.init,
        "seed": config.seed,
        "optimizer": "Adam",
        "sampling": "balanced by subclass",
    }
    if spec.pretrained:
        out["pretraining"] = {
            "kind": method.pretraining,
            "lr": config.pretrain_lr,
            "max_epochs": config.resolved_pretrain_epochs,
        }
        out["centres"] = "recomputed" if method.recompute_centres else "pretrained"
    return out


def neural_detector(
    spec: DetectorSpec,
    top_class: str,
    names: tuple[str, ...],
    method: Configuration,
    epochs: int,
    seed: int,
    members: int,
) -> Detector:
    """The evaluation's detector of a network or an ensemble kind."""
    from models.evaluation.detectors import NeuralDetector

    return NeuralDetector(spec.name, top_class, names, method, epochs, seed, members)


class NetworkHooks:
    """The hooks of the kinds whose bundle holds one AnomalyNet."""

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
        references = state["references"].shape[0] if state and "references" in state else 0
        return AnomalyNet(spec.name, n_features, latent, n_centres, references, spec.hidden)

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
        inliers = split_inliers(features, subclasses, feature_names, config, validation, scaling)
        names, preprocessor = inliers.names, inliers.preprocessor
        device = torch.device(config.device)

        def inputs(
            x: NDArray[np.float64], y: NDArray[np.str_]
        ) -> tuple[torch.Tensor, torch.Tensor]:
            tensor = preprocessor(torch.as_tensor(x, dtype=torch.float32)).to(device)
            return tensor, torch.as_tensor([names.index(s) for s in y.tolist()], device=device)

        x_fit, y_fit = inliers.x_fit, inliers.y_fit
        data = Data(*inputs(x_fit, y_fit), *inputs(inliers.x_held, inliers.y_held), y_fit)
        n_centres = len(names) if spec.multi_centre else 1
        net = new_network(spec.name, len(feature_names), config.resolved_latent, n_centres, config)
        metrics: dict[str, Any] = {
            "n_train": int(x_fit.shape[0]),
            "n_validation": int(inliers.x_held.shape[0]),
            "subclass_counts": {s: int((y_fit == s).sum()) for s in names},
        }
        assert spec.network is not None
        if spec.pretrained:
            metrics.update(train_svdd(net, data, n_centres, config, progress))
            if spec.network.references:
                set_references(net, data, config.seed)
                metrics["n_references"] = int(net.references.shape[0])
        else:
            metrics["train"] = fit(
                net, list(net.parameters()), loss_function(spec.network.loss, config), data, config,
                config.resolved_lr, config.max_epochs, config.scorer, progress,
            )  # fmt: skip
        train_scores, val_scores = inlier_scores(net, data)
        metrics["validation_score_median"] = float(np.median(val_scores))
        metrics["train_score_median"] = float(np.median(train_scores))
        metrics["seconds"] = round(time.perf_counter() - inliers.started, 2)
        centre_names = names if spec.multi_centre else ()
        calibration = calibration_scores(train_scores)
        return TrainedModel(net.cpu(), preprocessor, centre_names, calibration, metrics)

    def hyperparameters(self, spec: DetectorSpec, config: TrainingConfig) -> dict[str, Any]:
        return network_hyperparameters(spec, config)

    def describe(self, spec: DetectorSpec, metrics: dict[str, Any]) -> str:
        train = metrics["train"]
        return (
            f"{train['epochs']} epochs, best validation loss "
            f"{train['best_val_loss']:.4g} at epoch {train['best_epoch']}"
        )

    def load(self, spec: DetectorSpec, manifest: Manifest, weights: Path) -> Bundle:
        from models.bundle import load_network

        return load_network(spec, manifest, weights)

    evaluate = staticmethod(neural_detector)


HOOKS = NetworkHooks()
