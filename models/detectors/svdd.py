"""The SVDD recipe (deepsvdd, mcdsvdd, mcdsvdd-nn): an autoencoder pretrains the encoder and the
first centres (one per subclass for the multi-centre kinds), the encoder is then trained towards
them, and (paper) the centres are recomputed from the trained encoder; mcdsvdd-nn keeps the
training inliers' latents as references."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

from models.detectors import get
from models.detectors.fitting import (
    BalancedBatches,
    Data,
    balanced_resample,
    fit,
    loss_function,
    new_network,
)
from models.detectors.spec import MAX_REFERENCES
from models.networks import AnomalyNet, squared_distances

if TYPE_CHECKING:
    from models.training import TrainingConfig

CENTRE_EPS = 0.01


def _push_from_zero(centres: torch.Tensor) -> torch.Tensor:
    """Coordinates closer to 0 than CENTRE_EPS pushed to +-CENTRE_EPS (Ruff et al. 2018)."""
    small = centres.abs() < CENTRE_EPS
    sign = torch.where(centres < 0, -1.0, 1.0)
    return torch.where(small, sign * CENTRE_EPS, centres)


def _group_means(z: torch.Tensor, groups: torch.Tensor, n: int) -> torch.Tensor:
    return torch.stack([z[groups == k].mean(dim=0) for k in range(n)])


def _centres(net: AnomalyNet, x: torch.Tensor, groups: torch.Tensor, n: int) -> torch.Tensor:
    """Mean latent per group of the rows ``x`` (eval mode), pushed away from zero."""
    net.eval()
    with torch.no_grad():
        z = net.embed(x)
    return _push_from_zero(_group_means(z, groups, n))


def _balanced_epoch_centres(
    net: AnomalyNet, data: Data, groups: torch.Tensor, n: int, config: TrainingConfig
) -> torch.Tensor:
    """The reference's first centres: mean latent per group over one epoch of balanced batches
    with BatchNorm in training mode (batch statistics, running statistics updated)."""
    batches = BalancedBatches(
        data.subclasses, config.batch_size, torch.Generator().manual_seed(config.seed)
    )
    latents, labels = [], []
    net.train()
    with torch.no_grad():
        for idx in batches():
            if idx.numel() < 2:
                continue
            latents.append(net.embed(data.x_train[idx]))
            labels.append(groups[idx])
    return _push_from_zero(_group_means(torch.cat(latents), torch.cat(labels), n))


def _recomputed_centres(
    net: AnomalyNet, data: Data, groups: torch.Tensor, n: int, config: TrainingConfig
) -> torch.Tensor:
    """The reference's test-time centres: mean latent per group of the trained encoder (eval
    mode) over a class-balanced resample (with replacement) of the fitted rows."""
    resample = balanced_resample(data.subclasses, config.seed + 1)
    return _centres(net, data.x_train[resample], groups[resample], n)


def train_svdd(
    net: AnomalyNet, data: Data, n_centres: int, config: TrainingConfig, progress: bool
) -> dict[str, Any]:
    """Pretrain an autoencoder, take its encoder and first centres, train the encoder towards
    them, and (paper) recompute the centres from the trained encoder."""
    method = config.method
    data = data if get(config.scorer).multi_centre else data.single_centre()
    n_features = data.x_train.shape[1]
    metrics: dict[str, Any] = {}
    torch.manual_seed(config.seed)  # the paper's pretraining is the class's AE of this seed
    pretrain = new_network("ae", n_features, config.resolved_latent, 1, config)
    if config.resolved_pretrain_epochs:
        metrics["pretrain"] = fit(
            pretrain, list(pretrain.parameters()), loss_function("reconstruction", config), data,
            config, config.pretrain_lr, config.resolved_pretrain_epochs,
            f"{config.scorer}:pretrain", progress,
        )  # fmt: skip
    net.encoder.load_state_dict(pretrain.encoder.state_dict())
    if method.pretraining == "class_ae":
        centres = _balanced_epoch_centres(net, data, data.c_train, n_centres, config)
    else:
        centres = _centres(net, data.x_train, data.c_train, n_centres)
    net.centres.copy_(centres)
    metrics["train"] = fit(
        net, list(net.encoder.parameters()), loss_function("svdd", config), data, config,
        config.resolved_lr, config.max_epochs, config.scorer, progress,
    )  # fmt: skip
    if method.recompute_centres:
        net.centres.copy_(_recomputed_centres(net, data, data.c_train, n_centres, config))
    return metrics


def set_references(net: AnomalyNet, data: Data, seed: int) -> None:
    """mcdsvdd-nn: the latents of every training inlier (fitted and validation rows; at most
    MAX_REFERENCES, a random subset beyond) and their subclass indices."""
    x = torch.cat([data.x_train, data.x_val])
    groups = torch.cat([data.c_train, data.c_val])
    if x.shape[0] > MAX_REFERENCES:
        keep = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
        x, groups = x[keep[:MAX_REFERENCES]], groups[keep[:MAX_REFERENCES]]
    net.eval()
    with torch.no_grad():
        net.references = net.embed(x)
    net.reference_subclass = groups


def leave_one_out_scores(references: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Each reference's squared distance to its nearest other reference: what a new inlier's
    mcdsvdd-nn score is distributed like (its own distance, 0, would say nothing)."""
    out = []
    for start in range(0, references.shape[0], chunk):
        distances = squared_distances(references[start : start + chunk], references)
        rows = torch.arange(distances.shape[0])
        distances[rows, start + rows] = float("inf")
        out.append(distances.min(dim=1).values)
    return torch.cat(out)


def inlier_scores(net: AnomalyNet, data: Data) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Scores of the fitted and the validation rows (leave-one-out for mcdsvdd-nn)."""
    net.eval()
    with torch.no_grad():
        if net.rule == "reference" and net.references.shape[0] > 1:
            scores = leave_one_out_scores(net.references)
            n = data.x_train.shape[0]
            if scores.shape[0] == n + data.x_val.shape[0]:
                return scores[:n].cpu().double().numpy(), scores[n:].cpu().double().numpy()
            return scores.cpu().double().numpy(), scores.cpu().double().numpy()
        train = net.score(data.x_train)[0].cpu().double().numpy()
        return train, net.score(data.x_val)[0].cpu().double().numpy()
