"""Networks of the ALeRCE anomaly detector (Pérez-Carrasco et al.): an MLP encoder shared by all
scorers, the mirrored decoder of the autoencoders, and the scores.

Encoder: Linear(in, 512)-BN-LeakyReLU-Linear(512, 256)-BN-LeakyReLU-Linear(256, 128)-BN-LeakyReLU-
Linear(128, z, no bias). The decoder mirrors it and ends in tanh (inputs are tanh-scaled).

Scores (higher = more anomalous):
- ``ae``: summed squared reconstruction error;
- ``vae``: summed squared reconstruction error of the posterior mean;
- ``deepsvdd``: squared distance of the latent to the single centre;
- ``mcdsvdd``: squared distance to the nearest subclass centre (and which subclass that is).
"""

from __future__ import annotations

import itertools
from typing import Literal, get_args

import torch
from torch import nn

from models.exceptions import BundleError

ScorerKind = Literal["mcdsvdd", "ae", "deepsvdd", "vae"]
SCORER_KINDS: tuple[str, ...] = get_args(ScorerKind)
HIDDEN = (512, 256, 128)


def check_scorer(kind: str) -> ScorerKind:
    if kind not in SCORER_KINDS:
        raise BundleError(f"unknown scorer {kind!r}; known scorers: {', '.join(SCORER_KINDS)}")
    return kind  # type: ignore[return-value]


def _mlp(sizes: tuple[int, ...], bias_last: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        last = i == len(sizes) - 2
        layers.append(nn.Linear(a, b, bias=bias_last or not last))
        if not last:
            layers += [nn.BatchNorm1d(b), nn.LeakyReLU()]
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    def __init__(self, n_features: int, latent: int) -> None:
        super().__init__()
        self.net = _mlp((n_features, *HIDDEN, latent), bias_last=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class Decoder(nn.Module):
    def __init__(self, n_features: int, latent: int) -> None:
        super().__init__()
        self.net = _mlp((latent, *reversed(HIDDEN), n_features), bias_last=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(z))


class AnomalyNet(nn.Module):
    """Encoder plus what a scorer needs: a decoder (ae, vae), centres (deepsvdd, mcdsvdd).

    ``centres`` is a buffer saved with the weights; it is set once after pretraining and never
    recomputed when a bundle is loaded.
    """

    centres: torch.Tensor

    def __init__(self, kind: ScorerKind, n_features: int, latent: int, n_centres: int = 1) -> None:
        super().__init__()
        self.kind = kind
        self.latent = latent
        # The VAE encoder outputs the posterior mean and log-variance.
        self.encoder = Encoder(n_features, 2 * latent if kind == "vae" else latent)
        self.decoder = Decoder(n_features, latent) if kind in ("ae", "vae") else None
        self.register_buffer("centres", torch.zeros(n_centres if kind == "mcdsvdd" else 1, latent))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Latent representation (the posterior mean for the VAE)."""
        z = self.encoder(x)
        return z[:, : self.latent] if self.kind == "vae" else z

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        if self.decoder is None:
            raise BundleError(f"scorer {self.kind!r} has no decoder")
        return self.decoder(self.embed(x))

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """Squared distances of the latents to every centre: (n, n_centres)."""
        z = self.embed(x)
        return ((z[:, None, :] - self.centres[None, :, :]) ** 2).sum(dim=-1)

    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomaly scores and the index of the nearest centre (0 when there is one centre)."""
        if self.kind in ("ae", "vae"):
            error = ((self.reconstruct(x) - x) ** 2).sum(dim=1)
            return error, torch.zeros_like(error, dtype=torch.long)
        distance, nearest = self.distances(x).min(dim=1)
        return distance, nearest
