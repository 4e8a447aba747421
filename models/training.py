"""Training of the anomaly networks with the paper's settings: Adam, batches of 1024 drawn with
balanced sampling by subclass, early stopping on the validation loss (patience 100).

MCDSVDD and Deep SVDD first pretrain an autoencoder; the encoder's mean latent per subclass (one
overall mean for Deep SVDD), with near-zero coordinates pushed to +-0.01, become the centres.
The encoder is then trained to pull each latent towards its own subclass's centre.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog
import torch
from numpy.typing import NDArray
from tqdm import tqdm

from models.exceptions import ConfigurationError, DataError
from models.features import paper_features
from models.networks import AnomalyNet, ScorerKind, check_scorer
from models.preprocessing import Preprocessor, fit_scaling
from models.table import AlertTable
from models.taxonomy import check_top_class

log = structlog.get_logger(__name__)

CENTRE_EPS = 0.01
CALIBRATION_LEVELS = tuple(float(q) for q in np.linspace(0.0, 100.0, 1001))

# (top-level class, scorer) -> (learning rate, latent size), from the paper's Table of settings.
PAPER_SETTINGS: dict[tuple[str, str], tuple[float, int]] = {
    ("Transient", "mcdsvdd"): (5e-4, 32),
    ("Transient", "ae"): (5e-4, 32),
    ("Periodic", "mcdsvdd"): (5e-4, 64),
    ("Periodic", "ae"): (1e-3, 64),
    ("Stochastic", "mcdsvdd"): (5e-4, 64),
    ("Stochastic", "ae"): (5e-3, 64),
}


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters; ``lr``/``latent`` default to the paper's values for the class."""

    scorer: ScorerKind
    top_class: str
    lr: float | None = None
    latent: int | None = None
    batch_size: int = 1024
    max_epochs: int = 1000
    pretrain_epochs: int = 300
    patience: int = 100
    val_fraction: float = 0.2
    weight_decay: float = 1e-6
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_scorer(self.scorer)
        check_top_class(self.top_class)
        for name in ("batch_size", "max_epochs", "patience"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be positive, got {getattr(self, name)}")
        if self.pretrain_epochs < 0:
            raise ConfigurationError(f"pretrain_epochs must be >= 0, got {self.pretrain_epochs}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigurationError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}")
        if self.lr is not None and self.lr <= 0:
            raise ConfigurationError(f"lr must be positive, got {self.lr}")
        if self.latent is not None and self.latent <= 0:
            raise ConfigurationError(f"latent must be positive, got {self.latent}")

    @property
    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return PAPER_SETTINGS.get((self.top_class, self.scorer), (5e-4, 64))[0]

    @property
    def resolved_latent(self) -> int:
        if self.latent is not None:
            return self.latent
        return PAPER_SETTINGS.get((self.top_class, self.scorer), (5e-4, 64))[1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "scorer": self.scorer,
            "top_class": self.top_class,
            "lr": self.resolved_lr,
            "latent": self.resolved_latent,
            "batch_size": self.batch_size,
            "max_epochs": self.max_epochs,
            "pretrain_epochs": self.pretrain_epochs,
            "patience": self.patience,
            "val_fraction": self.val_fraction,
            "weight_decay": self.weight_decay,
            "seed": self.seed,
            "optimizer": "Adam",
            "sampling": "balanced by subclass",
        }


@dataclass
class TrainedModel:
    net: AnomalyNet
    preprocessor: Preprocessor
    centre_subclasses: tuple[str, ...]
    calibration_scores: tuple[
        float, ...
    ]  # score quantiles of training inliers at CALIBRATION_LEVELS
    metrics: dict[str, Any] = field(default_factory=dict)


def paper_columns(table: AlertTable) -> tuple[NDArray[np.float64], tuple[str, ...]]:
    """The table's features that the paper's models use (:func:`models.features.paper_features`,
    in that order) and their names; DataError naming the ones the table lacks."""
    names = paper_features()
    missing = [n for n in names if n not in table.feature_names]
    if missing:
        raise DataError(
            f"the table lacks {len(missing)} of the paper's {len(names)} features: "
            f"{', '.join(missing)}"
        )
    return table.columns(names), names


def stratified_split(
    labels: NDArray[np.str_], fraction: float, rng: np.random.Generator
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Indices (train, held) with ``fraction`` of every label held out (at least one when the
    label has two or more rows)."""
    train, held = [], []
    for label in sorted(set(labels.tolist())):
        idx = rng.permutation(np.flatnonzero(labels == label))
        k = round(fraction * idx.size)
        k = min(max(k, 1), idx.size - 1) if idx.size >= 2 else 0
        held.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


class _BalancedBatches:
    """Epochs of len(labels) indices drawn with replacement, each subclass equally likely."""

    def __init__(
        self, labels: NDArray[np.str_], batch_size: int, generator: torch.Generator
    ) -> None:
        counts = {lab: int((labels == lab).sum()) for lab in set(labels.tolist())}
        self.weights = torch.tensor(
            [1.0 / counts[lab] for lab in labels.tolist()], dtype=torch.float64
        )
        self.batch_size = batch_size
        self.generator = generator

    def __call__(self) -> list[torch.Tensor]:
        n = self.weights.numel()
        idx = torch.multinomial(self.weights, n, replacement=True, generator=self.generator)
        return list(idx.split(self.batch_size))


LossFn = Callable[[AnomalyNet, torch.Tensor, torch.Tensor], torch.Tensor]


def _reconstruction_loss(net: AnomalyNet, x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    return ((net.reconstruct(x) - x) ** 2).sum(dim=1).mean()


def _vae_loss(net: AnomalyNet, x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    """Negative ELBO: squared reconstruction error of a sample plus the KL to N(0, I)."""
    assert net.decoder is not None
    h = net.encoder(x)
    mu, logvar = h[:, : net.latent], h[:, net.latent :].clamp(-10.0, 10.0)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    recon = ((net.decoder(z) - x) ** 2).sum(dim=1)
    kl = -0.5 * (1.0 + logvar - mu**2 - logvar.exp()).sum(dim=1)
    return (recon + kl).mean()


def _svdd_loss(net: AnomalyNet, x: torch.Tensor, centre_index: torch.Tensor) -> torch.Tensor:
    z = net.embed(x)
    return ((z - net.centres[centre_index]) ** 2).sum(dim=1).mean()


def _fit(
    net: AnomalyNet,
    params: list[torch.nn.Parameter],
    loss_fn: LossFn,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    batches: _BalancedBatches,
    config: TrainingConfig,
    max_epochs: int,
    stage: str,
    progress: bool,
) -> dict[str, Any]:
    """Adam with early stopping on the validation loss; restores the best weights."""
    x_train, c_train, x_val, c_val = data
    optimizer = torch.optim.Adam(params, lr=config.resolved_lr, weight_decay=config.weight_decay)
    best, best_epoch, best_state = float("inf"), 0, copy.deepcopy(net.state_dict())
    train_loss = float("nan")
    bar = tqdm(
        range(1, max_epochs + 1), desc=stage, unit="epoch", disable=not progress, leave=False
    )
    epoch = 0
    for epoch in bar:
        net.train()
        total = 0.0
        for idx in batches():
            if idx.numel() < 2:  # BatchNorm needs two rows
                continue
            optimizer.zero_grad()
            loss = loss_fn(net, x_train[idx], c_train[idx])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * idx.numel()
        train_loss = total / x_train.shape[0]
        net.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(net, x_val, c_val))
        if val_loss < best:
            best, best_epoch, best_state = val_loss, epoch, copy.deepcopy(net.state_dict())
        log.info("epoch", stage=stage, epoch=epoch, train_loss=train_loss, val_loss=val_loss)
        bar.set_postfix(train=f"{train_loss:.4g}", val=f"{val_loss:.4g}", best=f"{best:.4g}")
        if epoch - best_epoch >= config.patience:
            break
    net.load_state_dict(best_state)
    return {
        "epochs": epoch,
        "best_epoch": best_epoch,
        "best_val_loss": best,
        "last_train_loss": train_loss,
    }


def _centres(net: AnomalyNet, x: torch.Tensor, groups: torch.Tensor, n: int) -> torch.Tensor:
    """Mean latent per group, near-zero coordinates pushed to +-CENTRE_EPS (Ruff et al. 2018)."""
    net.eval()
    with torch.no_grad():
        z = net.embed(x)
    centres = torch.stack([z[groups == k].mean(dim=0) for k in range(n)])
    small = centres.abs() < CENTRE_EPS
    sign = torch.where(centres < 0, -1.0, 1.0)
    return torch.where(small, sign * CENTRE_EPS, centres)


def train_model(
    features: NDArray[np.float64],
    subclasses: NDArray[np.str_],
    feature_names: tuple[str, ...],
    config: TrainingConfig,
    progress: bool = True,
) -> TrainedModel:
    """Train one scorer on the inliers ``features`` (raw, NaN = undefined) of one class."""
    if features.shape[0] != subclasses.shape[0]:
        raise DataError("features and labels have different lengths")
    names = tuple(sorted(set(subclasses.tolist())))
    if features.shape[0] < 8:
        raise DataError(f"{features.shape[0]} objects are too few to train a {config.scorer}")
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    train_idx, val_idx = stratified_split(subclasses, config.val_fraction, rng)
    preprocessor = Preprocessor(fit_scaling(features[train_idx], feature_names))
    device = torch.device(config.device)
    x_all = preprocessor(torch.as_tensor(features, dtype=torch.float32)).to(device)
    group = torch.as_tensor([names.index(s) for s in subclasses.tolist()], device=device)
    data = (x_all[train_idx], group[train_idx], x_all[val_idx], group[val_idx])
    generator = torch.Generator().manual_seed(config.seed)
    batches = _BalancedBatches(subclasses[train_idx], config.batch_size, generator)

    n_centres = len(names) if config.scorer == "mcdsvdd" else 1
    net = AnomalyNet(config.scorer, len(feature_names), config.resolved_latent, n_centres).to(
        device
    )
    metrics: dict[str, Any] = {
        "n_train": int(train_idx.size),
        "n_validation": int(val_idx.size),
        "subclass_counts": {s: int((subclasses == s).sum()) for s in names},
    }
    if config.scorer in ("mcdsvdd", "deepsvdd"):
        pretrain = AnomalyNet("ae", len(feature_names), config.resolved_latent).to(device)
        if config.pretrain_epochs:
            metrics["pretrain"] = _fit(
                pretrain, list(pretrain.parameters()), _reconstruction_loss, data, batches,
                config, config.pretrain_epochs, f"{config.scorer}:pretrain", progress,
            )  # fmt: skip
        net.encoder.load_state_dict(pretrain.encoder.state_dict())
        groups = data[1] if config.scorer == "mcdsvdd" else torch.zeros_like(data[1])
        net.centres.copy_(_centres(net, data[0], groups, n_centres))
        svdd_data = (
            data[0],
            groups,
            data[2],
            data[3] if n_centres > 1 else torch.zeros_like(data[3]),
        )
        metrics["train"] = _fit(
            net, list(net.encoder.parameters()), _svdd_loss, svdd_data, batches, config,
            config.max_epochs, config.scorer, progress,
        )  # fmt: skip
    else:
        loss = _vae_loss if config.scorer == "vae" else _reconstruction_loss
        metrics["train"] = _fit(
            net, list(net.parameters()), loss, data, batches, config, config.max_epochs,
            config.scorer, progress,
        )  # fmt: skip

    net.eval()
    with torch.no_grad():
        train_scores = net.score(data[0])[0].cpu().numpy().astype(np.float64)
        val_scores = net.score(data[2])[0].cpu().numpy().astype(np.float64)
    calibration = tuple(float(v) for v in np.percentile(train_scores, CALIBRATION_LEVELS))
    metrics["validation_score_median"] = float(np.median(val_scores))
    metrics["train_score_median"] = float(np.median(train_scores))
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    centre_names = names if config.scorer == "mcdsvdd" else ()
    return TrainedModel(net.cpu(), preprocessor, centre_names, calibration, metrics)
