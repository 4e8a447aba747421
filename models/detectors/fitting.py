"""The training loop shared by the network kinds: balanced batches, the losses, Adam with early
stopping on the validation loss (models.training has the settings, models.detectors.network the
recipe per kind)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import structlog
import torch
from numpy.typing import NDArray
from tqdm import tqdm

from models.detectors.spec import Loss
from models.networks import AnomalyNet, init_normal

if TYPE_CHECKING:
    from models.scorers import ScorerKind
    from models.training import TrainingConfig

log = structlog.get_logger("models.training")


class BalancedBatches:
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


def balanced_resample(labels: NDArray[np.str_], seed: int) -> torch.Tensor:
    """len(labels) row indices drawn with replacement, every label equally likely (one epoch of
    the reference's weighted sampler)."""
    generator = torch.Generator().manual_seed(seed)
    (resample,) = BalancedBatches(labels, len(labels), generator)()
    return resample


LossFn = Callable[[AnomalyNet, torch.Tensor, torch.Tensor], torch.Tensor]


def _reconstruction_loss(net: AnomalyNet, x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    """Squared error summed over the features, averaged over the rows (``ours``)."""
    return ((net.reconstruct(x) - x) ** 2).sum(dim=1).mean()


def _mean_reconstruction_loss(net: AnomalyNet, x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    """Squared error averaged over the features and the rows (the reference's, ``paper``)."""
    return ((net.reconstruct(x) - x) ** 2).mean()


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


@dataclass(frozen=True)
class Data:
    """Network inputs and centre indices of the fitted and the validation rows."""

    x_train: torch.Tensor
    c_train: torch.Tensor
    x_val: torch.Tensor
    c_val: torch.Tensor
    subclasses: NDArray[np.str_]  # of the fitted rows, for balanced sampling

    def single_centre(self) -> Data:
        c_train, c_val = torch.zeros_like(self.c_train), torch.zeros_like(self.c_val)
        return Data(self.x_train, c_train, self.x_val, c_val, self.subclasses)


def fit(
    net: AnomalyNet,
    params: list[torch.nn.Parameter],
    loss_fn: LossFn,
    data: Data,
    config: TrainingConfig,
    lr: float,
    max_epochs: int,
    stage: str,
    progress: bool,
) -> dict[str, Any]:
    """Adam on balanced batches with early stopping on the validation loss; restores the best
    weights. Stops after ``patience`` (+ the configuration's extra) epochs without improvement."""
    batches = BalancedBatches(
        data.subclasses, config.batch_size, torch.Generator().manual_seed(config.seed)
    )
    method = config.method
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=method.weight_decay)
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
            loss = loss_fn(net, data.x_train[idx], data.c_train[idx])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * idx.numel()
        train_loss = total / data.x_train.shape[0]
        net.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(net, data.x_val, data.c_val))
        if val_loss < best:
            best, best_epoch, best_state = val_loss, epoch, copy.deepcopy(net.state_dict())
        log.debug(
            "epoch",
            stage=stage,
            epoch=epoch,
            train_loss=float(f"{train_loss:.4g}"),
            val_loss=float(f"{val_loss:.4g}"),
        )
        bar.set_postfix(train=f"{train_loss:.4g}", val=f"{val_loss:.4g}", best=f"{best:.4g}")
        if epoch - best_epoch >= config.patience + method.extra_patience:
            break
    net.load_state_dict(best_state)
    return {
        "epochs": epoch,
        "best_epoch": best_epoch,
        "best_val_loss": best,
        "last_train_loss": train_loss,
    }


_LOSSES: Final[dict[Loss, LossFn]] = {
    "reconstruction": _reconstruction_loss,
    "elbo": _vae_loss,
    "svdd": _svdd_loss,
}


def loss_function(loss: Loss, config: TrainingConfig) -> LossFn:
    """The training loss ``loss`` as the configuration reduces it (only the autoencoders'
    reconstruction loss differs: :attr:`models.configurations.Configuration.reconstruction`)."""
    if loss == "reconstruction" and config.method.reconstruction == "mean":
        return _mean_reconstruction_loss
    return _LOSSES[loss]


def new_network(
    kind: ScorerKind, n_features: int, latent: int, n_centres: int, config: TrainingConfig
) -> AnomalyNet:
    """An untrained network, initialised as the configuration says, on the training device."""
    net = AnomalyNet(kind, n_features, latent, n_centres, hidden=config.resolved_hidden)
    if config.method.init == "normal":
        net.apply(init_normal)
    return net.to(torch.device(config.device))
