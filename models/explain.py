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
  of the batch's summed score is every row's own gradient). The forward pass is the scoring
  pass itself: it keeps each hidden layer's output (a :class:`Tape`), and once the scores
  say which rows to explain, only those rows run backwards, through the network's own
  layers written out (Linear, eval-mode BatchNorm, LeakyReLU; the scoring pass runs in
  inference mode, where autograd keeps no graph to run back). The distance's gradient,
  ``2 (z - nearest point)``, enters the backward pass at the latents (no backward pass
  through the distances to every centre or reference). Its
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

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from models.exceptions import BundleError
from models.networks import AnomalyNet, Network

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


@dataclass(frozen=True)
class Tape:
    """What a scoring pass keeps of its rows so that any of them can be explained afterwards
    without running the network forwards again: the network inputs and either every feature's
    reconstruction error (``reconstruction``) or the encoder's hidden outputs and what the
    network needs at its latents to start the backward pass there (the distance rules: the
    network's ``score_keeping``). Row ``i`` of every tensor is row ``i`` of the inputs (the
    rows are the second-to-last axis: an ensemble's [K, n, ...] tensors keep K first)."""

    inputs: torch.Tensor  # [n, features]
    hidden: tuple[torch.Tensor, ...] = ()  # [n, width] each
    latent: tuple[torch.Tensor, ...] = ()
    errors: torch.Tensor | None = None  # [n, features]

    def _map(self, op: Callable[[torch.Tensor, int], torch.Tensor]) -> Tape:
        def rows(t: torch.Tensor) -> torch.Tensor:
            return op(t, t.dim() - 2)

        errors = self.errors
        return Tape(
            rows(self.inputs),
            tuple(map(rows, self.hidden)),
            tuple(map(rows, self.latent)),
            None if errors is None else rows(errors),
        )

    def take(self, index: torch.Tensor) -> Tape:
        """The rows at ``index``."""
        return self._map(lambda t, dim: t.index_select(dim, index))

    def split(self, sizes: list[int]) -> list[Tape]:
        """Consecutive pieces of ``sizes`` rows."""
        starts = itertools.accumulate(sizes[:-1], initial=0)
        return [self._narrow(a, m) for a, m in zip(starts, sizes, strict=True)]

    def _narrow(self, start: int, length: int) -> Tape:
        return self._map(lambda t, dim: t.narrow(dim, start, length))

    @staticmethod
    def join(tapes: list[Tape], rows: int) -> Tape:
        """``tapes`` one after the other, zero rows added up to ``rows`` rows (padding: zero
        inputs contribute nothing)."""
        have = sum(t.inputs.shape[0] for t in tapes)

        def joined(parts: list[torch.Tensor]) -> torch.Tensor:
            dim = parts[0].dim() - 2
            shape = list(parts[0].shape)
            shape[dim] = rows - have
            return torch.cat([*parts, parts[0].new_zeros(shape)], dim=dim)

        errors = [t.errors for t in tapes if t.errors is not None]
        return Tape(
            joined([t.inputs for t in tapes]),
            tuple(joined(list(h)) for h in zip(*(t.hidden for t in tapes), strict=True)),
            tuple(joined(list(k)) for k in zip(*(t.latent for t in tapes), strict=True)),
            joined(errors) if errors else None,
        )


@torch.inference_mode()
def score_keeping(net: Network, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Tape]:
    """Scores and nearest-centre indices of a chunk of network inputs ``x`` (as ``net.score``,
    bitwise) and the :class:`Tape` that :func:`contributions` explains any of its rows from."""
    if isinstance(net, AnomalyNet) and net.rule == "reconstruction":
        errors = net.reconstruction_errors(x)
        nearest = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return errors.sum(dim=1), nearest, Tape(x, errors=errors)
    hidden: list[torch.Tensor] = []
    raw, nearest, latent = net.score_keeping(x, hidden)
    return raw, nearest, Tape(x, tuple(hidden), latent)


@torch.inference_mode()
def contributions(net: Network, tape: Tape) -> torch.Tensor:
    """Every feature's contribution (n, features) to the score of each row of ``tape``: its
    reconstruction errors, or gradient x input from one backward pass through the kept hidden
    outputs (the network's own layers backwards, no autograd; see the module docstring)."""
    if tape.errors is not None:
        return tape.errors
    if not tape.latent:
        raise BundleError("a tape with neither errors nor latents")
    return net.input_gradient(list(tape.hidden), tape.latent) * tape.inputs


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
