"""Networks of the ALeRCE anomaly detector (Pérez-Carrasco et al.): an MLP encoder shared by all
scorers, the mirrored decoder of the autoencoders, and the scores.

Encoder: Linear(in, 512)-BN-LeakyReLU-Linear(512, 256)-BN-LeakyReLU-Linear(256, 128)-BN-LeakyReLU-
Linear(128, z, no bias) - the paper's widths, a kind's spec may give others (mcdsvdd-ens-lite:
128, 64). The decoder mirrors it and ends in tanh (inputs are tanh-scaled).

Scores (higher = more anomalous):
- ``ae``: summed squared reconstruction error;
- ``vae``: summed squared reconstruction error of the posterior mean;
- ``deepsvdd``: squared distance of the latent to the single centre;
- ``mcdsvdd``: squared distance to the nearest subclass centre (and which subclass that is);
- ``mcdsvdd-nn``: the MCDSVDD network, scored by the squared distance to the nearest training
  inlier's latent instead of the nearest centre (and that inlier's subclass): every known object
  is a centre, so a subclass spread over several clumps is no longer summarised by one mean;
- ``mcdsvdd-ens``: K mcdsvdd-nn networks, each trained on K-1 folds of the training inliers and
  stopped early on the remaining one (the paper's folds, models.detectors.ensemble): the sum
  of their scores, and the subclass of the training inlier nearest over all of them;
- ``mcdsvdd-ens-lite``: the same with members of widths (128, 64) and at most 256 references.
"""

from __future__ import annotations

import itertools
from typing import Final

import torch
from torch import nn
from torch.nn import functional

from models.detectors import get
from models.detectors.spec import PAPER_HIDDEN
from models.exceptions import BundleError
from models.scorers import ScorerKind
from models.stacked import StackedMembers, blocks, leaky_backward, norm_derivative

INIT_STD = 0.02  # the reference's initialisation: N(0, 0.02) for Linear weights and biases


def init_normal(module: nn.Module) -> None:
    """Draw every Linear layer's weight and bias from N(0, INIT_STD) (BatchNorm keeps 1 and 0),
    as the reference does before training its autoencoders; use with ``net.apply``."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0.0, INIT_STD)
        if module.bias is not None:
            nn.init.normal_(module.bias, 0.0, INIT_STD)


def _mlp(sizes: tuple[int, ...], bias_last: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        last = i == len(sizes) - 2
        layers.append(nn.Linear(a, b, bias=bias_last or not last))
        if not last:
            layers += [nn.BatchNorm1d(b), nn.LeakyReLU()]
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    def __init__(self, n_features: int, latent: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = _mlp((n_features, *hidden, latent), bias_last=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class Decoder(nn.Module):
    def __init__(self, n_features: int, latent: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = _mlp((latent, *reversed(hidden), n_features), bias_last=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(z))


class AnomalyNet(nn.Module):
    """Encoder plus what a scorer needs, as its kind's layout says
    (:class:`models.detectors.spec.NetworkLayout`): a decoder (ae, vae), centres (the SVDDs), the
    training inliers' latents and subclass indices (mcdsvdd-nn).

    ``centres``, ``references`` and ``reference_subclass`` are buffers saved with the weights;
    they are set by training and never recomputed when a bundle is loaded.
    """

    centres: torch.Tensor
    references: torch.Tensor
    reference_subclass: torch.Tensor

    def __init__(
        self,
        kind: ScorerKind,
        n_features: int,
        latent: int,
        n_centres: int = 1,
        n_references: int = 0,
        hidden: tuple[int, ...] = PAPER_HIDDEN,
    ) -> None:
        super().__init__()
        spec = get(kind)
        if spec.network is None:
            raise BundleError(f"{kind!r} is not a network kind")
        layout = spec.network
        self.kind = kind
        self.latent = latent
        self.hidden = hidden
        self.posterior = layout.posterior
        self.rule = spec.score
        # The VAE encoder outputs the posterior mean and log-variance.
        self.encoder = Encoder(n_features, 2 * latent if layout.posterior else latent, hidden)
        self.decoder = Decoder(n_features, latent, hidden) if layout.decoder else None
        n_centres = n_centres if layout.multi_centre else 1
        self.register_buffer("centres", torch.zeros(n_centres, latent))
        if layout.references:
            self.register_buffer("references", torch.zeros(n_references, latent))
            self.register_buffer("reference_subclass", torch.zeros(n_references, dtype=torch.long))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Latent representation (the posterior mean for the VAE)."""
        z = self.encoder(x)
        return z[:, : self.latent] if self.posterior else z

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        if self.decoder is None:
            raise BundleError(f"scorer {self.kind!r} has no decoder")
        return self.decoder(self.embed(x))

    def reconstruction_errors(self, x: torch.Tensor) -> torch.Tensor:
        """Every feature's squared reconstruction error: (n, n_features); the score is their
        sum (models.explain)."""
        return (self.reconstruct(x) - x) ** 2

    @property
    def points(self) -> torch.Tensor:
        """What a distance rule measures to: the training inliers' latents (``reference``) or
        the centres (``centre``)."""
        return self.references if self.rule == "reference" else self.centres

    def nearest_point(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared distance of every latent to its nearest point (:attr:`points`) and that
        point's index."""
        if self.rule == "reference":
            return nearest_reference(z, self.references)
        return ((z[:, None, :] - self.centres[None, :, :]) ** 2).sum(dim=-1).min(dim=1)

    def subclass_of(self, point: torch.Tensor) -> torch.Tensor:
        """The subclass indices of points (a centre is its subclass's)."""
        return self.reference_subclass[point] if self.rule == "reference" else point

    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomaly scores and the index of the nearest centre's subclass (0 with one centre)."""
        if self.rule == "reconstruction":
            error = self.reconstruction_errors(x).sum(dim=1)
            return error, torch.zeros_like(error, dtype=torch.long)
        distance, point = self.nearest_point(self.embed(x))
        return distance, self.subclass_of(point)

    def score_keeping(
        self, x: torch.Tensor, hidden: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """:meth:`score` of a distance rule (bitwise: the encoder's modules in turn), keeping
        every hidden layer's output in ``hidden``; the third: what :meth:`input_gradient` needs
        at the latents, here the score's gradient there, ``2 (z - nearest point)``."""
        if self.rule == "reconstruction":
            raise BundleError(f"{self.kind!r} scores a reconstruction, not a distance")
        h = x
        for module in self.encoder.net:
            h = module(h)
            if isinstance(module, nn.LeakyReLU):
                hidden.append(h)
        z = h[:, : self.latent] if self.posterior else h
        distance, point = self.nearest_point(z)
        return distance, self.subclass_of(point), (2.0 * (z - self.points[point]),)

    def input_gradient(
        self, hidden: list[torch.Tensor], latent: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        """The score's gradient with respect to the inputs: the encoder's layers backwards
        from the gradient at the latents, through the ``hidden`` outputs, both kept for these
        rows by :meth:`score_keeping`."""
        (grad,) = latent
        g = functional.pad(grad, (0, self.latent)) if self.posterior else grad
        layers = blocks(self)
        for i in reversed(range(len(layers))):
            linear, norm, activation = layers[i]
            if norm is not None and activation is not None:
                if norm.running_var is None:
                    raise BundleError("a BatchNorm without running statistics")
                derivative = norm_derivative(norm.running_var, norm.weight, norm.eps)
                g = leaky_backward(g, hidden[i], activation.negative_slope) * derivative
            g = g @ linear.weight
        return g


class Ensemble(nn.Module):
    """An ensemble kind (mcdsvdd-ens, mcdsvdd-ens-lite): networks of its member kind whose
    references are the same training inliers in the same order (so that their distances can be
    added reference by reference)."""

    def __init__(self, members: list[AnomalyNet], kind: str = "mcdsvdd-ens") -> None:
        super().__init__()
        spec = get(kind)
        if spec.family != "ensemble":
            raise BundleError(f"{kind!r} is not an ensemble kind")
        if not members or any(m.kind != spec.member for m in members):
            raise BundleError(f"an ensemble holds one or more {spec.member} networks")
        self.kind: Final = kind
        self.members = nn.ModuleList(members)
        self._stacked = StackedMembers()

    def _nets(self) -> list[AnomalyNet]:
        return [m for m in self.members if isinstance(m, AnomalyNet)]

    @property
    def hidden(self) -> tuple[int, ...]:
        """The members' hidden widths."""
        return self._nets()[0].hidden

    def member_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's score of every row: (members, n)."""
        nets = self._nets()
        return self._stacked.distances(nets, self._stacked.embed(nets, x)).amin(dim=2)

    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The members' scores added, and the subclass of the reference with the least summed
        distance; the members run as one batched network (models.stacked, eval mode)."""
        nets = self._nets()
        return self.score_distances(self._stacked.distances(nets, self._stacked.embed(nets, x)))

    def score_keeping(
        self, x: torch.Tensor, hidden: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """:meth:`score` (bitwise), keeping the stacked hidden outputs in ``hidden``; the third:
        the members' latents [K, n, latent] and distances to their references [K, n, R], from
        which :meth:`input_gradient` finds the nearest references of the rows it explains
        only (a search over every row's distances would cost more than those rows' backward
        pass)."""
        nets = self._nets()
        z = self._stacked.embed(nets, x, hidden)
        distances = self._stacked.distances(nets, z)
        raw, nearest = self.score_distances(distances)
        return raw, nearest, (z, distances)

    def input_gradient(
        self, hidden: list[torch.Tensor], latent: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        """The members' input gradients added (models.stacked) of the score, the members'
        nearest distances added: each member's gradient at its latents is ``2 (z - nearest
        reference)``."""
        nets = self._nets()
        z, distances = latent
        closest = self._stacked.references_at(nets, distances.argmin(dim=2))
        return self._stacked.input_gradient(nets, hidden, 2.0 * (z - closest))

    def score_distances(self, distances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`score` from the members' squared distances to their references [K, n, R]."""
        raw = distances.amin(dim=2).sum(dim=0)
        summed = distances[0] + distances[1] if len(distances) > 1 else distances[0]
        for d in distances[2:]:
            summed += d
        return raw, self._nets()[0].reference_subclass[summed.argmin(dim=1)]


Network = AnomalyNet | Ensemble


def squared_distances(z: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """(n, m) squared Euclidean distances between rows, through one matrix product (memory n*m,
    not n*m*latent), clamped at 0 against rounding."""
    cross = z @ references.T
    out = (z * z).sum(dim=1, keepdim=True) - 2.0 * cross + (references * references).sum(dim=1)
    return out.clamp_min(0.0)


def nearest_reference(
    z: torch.Tensor, references: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distance of every latent to its nearest reference latent, and that reference's
    index."""
    return squared_distances(z, references).min(dim=1)
