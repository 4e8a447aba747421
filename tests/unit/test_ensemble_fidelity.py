"""The MCDSVDD-NN ensemble (``mcdsvdd-ens``) against MCDSVDD-NN (issue 32 item 5).

docs/results.md says member k of the ensemble is the MCDSVDD-NN network the evaluation trains on
the other K-1 folds, stopped early on fold k, with seed ``seed + k``, and that the ensemble's
score is the sum of its members' scores. Checked here on tiny data through the evaluation's own
detectors (models.evaluation.detectors), in the paper configuration: the members bitwise against
separately trained mcdsvdd-nn networks, and the ensemble's scores against those networks scored
one at a time (no stacked code); in ``ours``, the members against mcdsvdd-nn networks given the
ensemble's preprocessing. Beyond MAX_REFERENCES training inliers the members keep the
ensemble's one subset of them as references, not their own: same networks, other scores. The
shipped ensembles: tests/unit/test_shipped_ensembles.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
import torch

from models.configurations import get_configuration
from models.detectors import get
from models.evaluation.detectors import NeuralDetector, make_detector
from models.networks import AnomalyNet, Ensemble
from models.preprocessing import Preprocessor, fit_scaling
from models.training import (
    CALIBRATION_LEVELS,
    TrainingConfig,
    stratified_folds,
    train_model,
)
from tests.unit.test_paper_fidelity import _blobs_in_paper_features

MEMBERS, SEED, EPOCHS = 3, 4, 5


@dataclass(frozen=True)
class Trained:
    """An ensemble and the mcdsvdd-nn detectors of its folds, trained by the evaluation."""

    x: np.ndarray
    y: np.ndarray
    folds: list[np.ndarray]
    ensemble: NeuralDetector
    singles: list[NeuralDetector]


def _net(detector: NeuralDetector) -> torch.nn.Module:
    scorer = detector._scorer
    assert scorer is not None
    assert scorer.net is not None
    return scorer.net


def _manifest(detector: NeuralDetector) -> Any:
    assert detector._scorer is not None
    return detector._scorer.bundle.manifest


@pytest.fixture(scope="module")
def trained() -> Trained:
    """The ensemble as ``_fold_scores`` trains it for a cell, and each fold's mcdsvdd-nn as it
    trains that kind (models.evaluation.protocol), in the paper configuration."""
    names, _, x, y = _blobs_in_paper_features()
    method = get_configuration("paper")
    with _one_thread():
        ensemble = NeuralDetector("mcdsvdd-ens", "Periodic", names, method, EPOCHS, SEED, MEMBERS)
        ensemble.fit(x, y, (x[:0], y[:0]))
        folds = stratified_folds(y, MEMBERS, np.random.default_rng(SEED))
        singles = []
        for k, held in enumerate(folds):
            fit = np.setdiff1d(np.arange(y.size), held)
            single = make_detector("mcdsvdd-nn", "Periodic", names, method, EPOCHS, SEED + k)
            assert isinstance(single, NeuralDetector)
            single.fit(x[fit], y[fit], (x[held], y[held]))
            singles.append(single)
    return Trained(x, y, folds, ensemble, singles)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Train on one thread, as the evaluation's cells do: two threads on a loaded 2-core machine
    made this module's training ~13x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _test_rows(n_features: int) -> np.ndarray:
    """Rows the networks never saw: anywhere in the features' ranges, some values undefined."""
    _, _, x, _ = _blobs_in_paper_features()
    rng = np.random.default_rng(11)
    low, high = x.min(axis=0), x.max(axis=0)
    rows = np.asarray(low + rng.uniform(-0.2, 1.2, (200, n_features)) * (high - low), np.float64)
    rows[rng.random(rows.shape) < 0.05] = np.nan
    return rows


def test_each_member_is_the_mcdsvdd_nn_network_of_its_fold_and_seed(trained: Trained) -> None:
    """Same kind, shapes, configuration and training record; every weight, BatchNorm statistic
    and centre bitwise; the same references (all the training inliers, in another order)."""
    ensemble = _net(trained.ensemble)
    assert isinstance(ensemble, Ensemble)
    members = ensemble._nets()
    assert len(members) == MEMBERS
    hyper = _manifest(trained.ensemble).training["hyperparameters"]
    recorded = _manifest(trained.ensemble).training["metrics"]["members"]
    for k, (member, single) in enumerate(zip(members, trained.singles, strict=True)):
        net = _net(single)
        assert isinstance(net, AnomalyNet)
        assert member.kind == net.kind == "mcdsvdd-nn"
        alone = _manifest(single)
        assert alone.training["hyperparameters"]["seed"] == SEED + k
        differ = {"scorer", "seed", "members"}
        assert {key: v for key, v in hyper.items() if key not in differ} == {
            key: v for key, v in alone.training["hyperparameters"].items() if key not in differ
        }
        assert alone.preprocessing == _manifest(trained.ensemble).preprocessing
        assert alone.centre_subclasses == _manifest(trained.ensemble).centre_subclasses
        assert {key: v for key, v in recorded[k].items() if key != "seconds"} == {
            key: v for key, v in alone.training["metrics"].items() if key != "seconds"
        }
        mine, theirs = member.state_dict(), net.state_dict()
        assert mine.keys() == theirs.keys()
        for key in mine.keys() - {"references", "reference_subclass"}:
            assert torch.equal(mine[key], theirs[key]), f"member {k}: {key}"
        # mcdsvdd-nn keeps its fitted rows' latents, then its held fold's: the same inliers
        held = trained.folds[k]
        order = torch.as_tensor(
            np.concatenate([np.setdiff1d(np.arange(trained.y.size), held), held])
        )
        assert torch.equal(member.references[order], net.references), f"member {k}"
        assert torch.equal(member.reference_subclass[order], net.reference_subclass)


def test_each_member_scores_every_row_as_its_mcdsvdd_nn(trained: Trained) -> None:
    """The evaluation's per-member scores of the ensemble (stacked) against each fold's
    mcdsvdd-nn scored by its own bundle: bitwise."""
    rows = _test_rows(trained.x.shape[1])
    members = trained.ensemble.member_scores(rows)
    assert members.shape == (MEMBERS, rows.shape[0])
    for k, single in enumerate(trained.singles):
        alone = single.score(rows)
        assert np.all(alone > 0)  # none of them on a reference: not trivial zeros
        assert members[k].tobytes() == alone.tobytes(), f"member {k}"


def test_the_ensemble_score_is_the_sum_of_its_members_scored_one_at_a_time(
    trained: Trained,
) -> None:
    """Raw score: the fold networks' scores added; nearest subclass: the training inlier with the
    least summed distance; calibration: the members' leave-one-out scores added. Computed here
    in float64 from each mcdsvdd-nn network's own latents (models.networks' unstacked embed)."""
    rows = _test_rows(trained.x.shape[1])
    assert trained.ensemble._scorer is not None
    scores = trained.ensemble._scorer.score(rows.astype(np.float32))
    alone = np.stack([s.score(rows) for s in trained.singles]).astype(np.float32)
    assert scores.raw.tobytes() == alone.sum(axis=0).tobytes()  # float32, in member order

    n = trained.y.size
    raw, rounding = np.zeros(rows.shape[0]), np.zeros(rows.shape[0])
    summed, loo, loo_rounding = np.zeros((rows.shape[0], n)), np.zeros(n), 0.0
    for k, single in enumerate(trained.singles):
        net = _net(single)
        assert isinstance(net, AnomalyNet)
        assert single._scorer is not None
        held = trained.folds[k]
        order = np.concatenate([np.setdiff1d(np.arange(n), held), held])
        with torch.no_grad():
            z = net.embed(single._scorer.preprocessor(torch.tensor(rows, dtype=torch.float32)))
        refs = np.empty((n, net.latent))
        refs[order] = net.references.double().numpy()  # back in the inliers' order
        latents = z.double().numpy()
        distances = ((latents[:, None, :] - refs[None]) ** 2).sum(axis=2)
        # float32's rounding of the expansion |z|^2 - 2 z.r + |r|^2 the networks compute
        rounding += 1e-6 * ((latents**2).sum(axis=1) + (refs**2).sum(axis=1).max())
        raw += distances.min(axis=1)
        summed += distances
        between = ((refs[:, None, :] - refs[None]) ** 2).sum(axis=2)
        np.fill_diagonal(between, np.inf)
        loo += between.min(axis=1)
        loo_rounding += 2e-6 * (refs**2).sum(axis=1).max()
    nearest = trained.y[summed.argmin(axis=1)]
    two = np.sort(summed, axis=1)[:, :2]
    clear = two[:, 1] - two[:, 0] > 2 * rounding  # not a near-tie within float32's rounding
    assert clear.mean() > 0.5, clear.mean()  # 79% of the rows here
    np.testing.assert_array_equal(np.array(scores.nearest)[clear], nearest[clear])
    assert np.all(np.abs(scores.raw - raw) <= rounding), np.abs(scores.raw - raw).max()
    calibration = _manifest(trained.ensemble).calibration.scores
    # a percentile moves no more than the values it is taken of
    expected = np.percentile(loo, CALIBRATION_LEVELS)
    np.testing.assert_allclose(calibration, expected, rtol=0, atol=loo_rounding)


def test_in_ours_each_member_is_the_mcdsvdd_nn_of_the_ensembles_preprocessing() -> None:
    """``ours`` fits the preprocessing on the training rows: the ensemble fits it once on every
    inlier and gives it to all its members (docs/results.md), so member k is bitwise the
    mcdsvdd-nn trained on its folds with seed ``seed + k`` and that preprocessing - not the
    evaluation's mcdsvdd-nn of the fold, which fits its own on the K-1 folds."""
    names, _, x, y = _blobs_in_paper_features()
    config = TrainingConfig(
        scorer="mcdsvdd-ens", top_class="Periodic", latent=4, max_epochs=EPOCHS,
        pretrain_epochs=2, seed=SEED, configuration="ours", members=MEMBERS,
    )  # fmt: skip
    scaling = fit_scaling(x, names)
    with _one_thread():
        ensemble = train_model(x, y, names, config, progress=False)
        assert isinstance(ensemble.net, Ensemble)
        assert ensemble.preprocessor.to_manifest() == Preprocessor(scaling).to_manifest()
        folds = stratified_folds(y, MEMBERS, np.random.default_rng(SEED))
        for k, (member, held) in enumerate(zip(ensemble.net._nets(), folds, strict=True)):
            fit = np.setdiff1d(np.arange(y.size), held)
            alone = train_model(
                x[fit], y[fit], names, replace(config, scorer="mcdsvdd-nn", seed=SEED + k),
                progress=False, validation=(x[held], y[held]), scaling=scaling,
            )  # fmt: skip
            assert isinstance(alone.net, AnomalyNet)
            theirs = alone.net.state_dict()
            for key, value in member.state_dict().items():
                if key not in ("references", "reference_subclass"):
                    assert torch.equal(value, theirs[key]), f"member {k}: {key}"
            assert fit_scaling(x[fit], names) != scaling  # the evaluation's own mcdsvdd-nn's


def test_beyond_max_references_the_members_share_one_subset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Beyond MAX_REFERENCES training inliers the ensemble keeps one random subset of them (seed
    ``seed``) as every member's references, so that its members' distances add reference by
    reference; an mcdsvdd-nn alone keeps its own subset (seed ``seed + k``). The networks are
    still bitwise the same; the references, and so the scores, are not."""
    import models.detectors.svdd

    limit = 100
    ensemble_spec = replace(get("mcdsvdd-ens"), max_references=limit)
    monkeypatch.setitem(models.detectors.REGISTRY, "mcdsvdd-ens", ensemble_spec)
    monkeypatch.setattr(models.detectors.svdd, "MAX_REFERENCES", limit)
    names, config, x, y = _blobs_in_paper_features(scorer="mcdsvdd-ens", epochs=EPOCHS)
    config = replace(config, seed=SEED, members=MEMBERS)
    with _one_thread():
        ensemble = train_model(x, y, names, config, progress=False)
        assert isinstance(ensemble.net, Ensemble)
        order = torch.randperm(y.size, generator=torch.Generator().manual_seed(SEED))
        keep = torch.as_tensor(np.sort(order[:limit].numpy()))
        inputs = ensemble.preprocessor(torch.tensor(x, dtype=torch.float32))
        folds = stratified_folds(y, MEMBERS, np.random.default_rng(SEED))
        for k, (member, held) in enumerate(zip(ensemble.net._nets(), folds, strict=True)):
            fit = np.setdiff1d(np.arange(y.size), held)
            alone = train_model(
                x[fit], y[fit], names, replace(config, scorer="mcdsvdd-nn", seed=SEED + k),
                progress=False, validation=(x[held], y[held]),
            )  # fmt: skip
            assert isinstance(alone.net, AnomalyNet)
            theirs = alone.net.state_dict()
            for key, value in member.state_dict().items():
                if key not in ("references", "reference_subclass"):
                    assert torch.equal(value, theirs[key]), f"member {k}: {key}"
            own_order = torch.randperm(y.size, generator=torch.Generator().manual_seed(SEED + k))
            own = torch.as_tensor(np.concatenate([fit, held])[own_order[:limit].numpy()])
            assert set(own.tolist()) != set(keep.tolist())
            with torch.no_grad():
                net = alone.net.eval()
                assert torch.equal(member.references, net.embed(inputs[keep])), f"member {k}"
                assert torch.equal(net.references, net.embed(inputs[own])), f"member {k}"
