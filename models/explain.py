"""Explanations of anomaly scores: per row, the few model features that contribute most to its
score, computed with the score in the same micro-batch (:meth:`models.scoring.Scorer.score`).

Contributions live in the network's input space (the bundle's preprocessed features, one
column per model feature; an undefined value is seen as its ``missing`` code, so it can be
named too). By rule:

- ``reconstruction`` (ae, vae): each feature's squared reconstruction error. This is an exact
  decomposition: the score *is* their sum (the same tensor, summed), so the contributions of
  all features add up to the score.
- ``centre``, ``reference`` (mcdsvdd, deepsvdd, mcdsvdd-nn) and ``ensemble`` (the ensembles):
  gradient x input of the score (the squared latent distance to the nearest centre or
  reference), ``x_j * d score / d x_j``. No exact per-feature decomposition exists for a deep
  non-linear encoder (the distance decomposes over latent dimensions, not inputs; Shapley
  values would need exponentially many evaluations), and integrated gradients, whose
  attributions do add up to ``score(x) - score(baseline)``, cost one backward pass per
  integration step. Gradient x input is the first-order term of the same expansion for one
  forward and one backward pass, batched (rows are independent in eval mode, so the gradient
  of the batch's summed score is every row's own gradient); the forward pass gives the scores
  too, and the distance's gradient, ``2 (z - nearest point)``, enters the backward pass at
  the latents (no backward pass through the distances to every centre or reference). Its
  baseline is the input 0, which is the middle of each feature's training range (the
  preprocessing maps it to tanh(0)): a contribution is large when the feature is far from
  its usual range *and* the score is sensitive to it there. Contributions are signed; they
  do not add up to the score. For the ensembles (mcdsvdd-ens, mcdsvdd-ens-lite) the score is
  the members' sum, so the attribution is the sum of the members' (the members run as one
  batched network here too, models.stacked).
- ``estimator``: the iforest's path-based credit (:func:`isolation_credit`); DistClassiPy's
  and other estimators' scores have no per-feature measure here: their explanation is empty
  (:func:`unsupported`).

The features kept are the ``k`` with the largest (most positive) contributions: those that
push the score up, largest first.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from models.networks import AnomalyNet, Ensemble, Network
from models.stacked import StackedMembers

UNSUPPORTED_REASON = (
    "{kind} has no per-feature measure of its score here (its score aggregates per-metric "
    "distances): explanations are empty"
)


@dataclass(frozen=True)
class Explanation:
    """The top-k features of each row: their indices among the bundle's features and their
    contributions, largest first (``k`` columns; fewer features than ``k``: all of them). A
    row left unexplained (below the scorer's ``explain_from`` percentile) has indices -1."""

    index: NDArray[np.int64]  # (n, k)
    contribution: NDArray[np.float32]  # (n, k)


def top_features(contributions: torch.Tensor, k: int) -> Explanation:
    """The ``k`` largest contributions of every row of an (n, features) matrix."""
    values, index = contributions.topk(min(k, contributions.shape[1]), dim=1)
    return Explanation(
        index.cpu().numpy().astype(np.int64, copy=False),
        values.float().cpu().numpy().astype(np.float32, copy=False),
    )


def score_and_contributions(
    net: Network, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores, nearest-centre indices (as ``net.score``, bitwise) and every feature's
    contribution (n, features) of a chunk of network inputs ``x``."""
    if isinstance(net, AnomalyNet) and net.rule == "reconstruction":
        errors = net.reconstruction_errors(x)
        return errors.sum(dim=1), torch.zeros(x.shape[0], dtype=torch.long, device=x.device), errors
    return gradient_x_input(net, x)


def gradient_x_input(
    net: Network, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores and nearest-centre indices of a distance rule (as ``net.score``, bitwise) and
    ``x * d score / d x`` of every row (see the module docstring), from one forward pass with
    autograd on: the scores are computed from its latents ``z``, and the gradient of a squared
    distance to the nearest point ``p``, ``2 (z - p)``, is carried back through the encoder by
    one batched backward pass. Works from inside ``torch.inference_mode`` (``x`` may be an
    inference tensor)."""
    with torch.inference_mode(False), torch.enable_grad():
        inputs = x.clone().requires_grad_(True)
        if isinstance(net, Ensemble):
            members, stack = net._nets(), _stacked(net)
            z = stack.embed(members, inputs)  # [K, n, latent]
            with torch.no_grad():
                latents = z.detach()
                distances = stack.distances(members, latents)
                raw, nearest = net.score_distances(distances)
                closest = stack.references_at(members, distances.argmin(dim=2))
        else:
            z = net.embed(inputs)
            with torch.no_grad():
                latents = z.detach()
                raw, point = net.nearest_point(latents)
                nearest, closest = net.subclass_of(point), net.points[point]
        (gradient,) = torch.autograd.grad(z, inputs, grad_outputs=2.0 * (latents - closest))
    return raw, nearest, (gradient * inputs).detach()


_STACKS: weakref.WeakKeyDictionary[Ensemble, StackedMembers] = weakref.WeakKeyDictionary()


def _stacked(net: Ensemble) -> StackedMembers:
    """The ensemble's members as one batched network, for autograd: stacked outside inference
    mode (the scorer's own stack is made inside it, and such tensors cannot take part in a
    backward pass); rebuilt when the members change, as the scorer's is."""
    stack = _STACKS.get(net)
    if stack is None:
        stack = _STACKS[net] = StackedMembers()
    return stack


def isolation_credit(model: Any, x: NDArray[np.float64]) -> NDArray[np.float32]:
    """Path-based credit of an Isolation Forest (scikit-learn's): in every tree, each split on
    the row's path from the root to its leaf credits its feature with how much it narrowed the
    row down, ``log2(samples at the node / samples in the child the row goes to)``; averaged
    over the trees. A row's credits add up to the mean of ``log2(root samples / leaf
    samples)``: the features that cut an anomaly off from the rest in a few large steps get
    most. Cost: one ``decision_path`` per tree (vectorised) and a sparse product."""
    n, width = x.shape
    credit = np.zeros((n, width), dtype=np.float64)
    for tree, features in zip(model.estimators_, model.estimators_features_, strict=True):
        structure = tree.tree_
        split = structure.feature  # per node; < 0 at a leaf
        samples = structure.n_node_samples.astype(np.float64)
        gain = np.zeros((split.shape[0], width), dtype=np.float64)  # node -> credit on entry
        columns = np.asarray(features)
        for children in (structure.children_left, structure.children_right):
            parents = np.flatnonzero(split >= 0)
            child = children[parents]
            gain[child, columns[split[parents]]] = np.log2(samples[parents] / samples[child])
        credit += np.asarray(tree.decision_path(x[:, features]) @ gain)
    return (credit / len(model.estimators_)).astype(np.float32)


def unsupported(kind: str) -> str:
    """Why ``kind``'s scores carry an empty explanation."""
    return UNSUPPORTED_REASON.format(kind=kind)
