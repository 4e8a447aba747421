"""The MCDSVDD-NN ensemble (``mcdsvdd-ens``) against MCDSVDD-NN (issue 32 item 5).

docs/results.md says member k of the ensemble is the MCDSVDD-NN network the evaluation trains on
the other K-1 folds, stopped early on fold k, with seed ``seed + k``, and that the ensemble's
score is the sum of its members' scores. Checked here on tiny data through the evaluation's own
detectors (models.evaluation.detectors): the members bitwise against separately trained
mcdsvdd-nn networks, the ensemble's scores against those networks scored one at a time (no
stacked code), and the shipped ensembles' manifests against what that training records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open

from models.bundle import file_sha256
from models.configurations import get_configuration
from models.evaluation.detectors import NeuralDetector, make_detector
from models.networks import AnomalyNet, Ensemble
from models.preprocessing import Preprocessor, paper_scaling
from models.resources import bundle_dirname, bundles_dir, sample_dir
from models.table import read_table
from models.taxonomy import TOP_CLASSES
from models.training import (
    CALIBRATION_LEVELS,
    ENSEMBLE_MEMBERS,
    TrainingConfig,
    paper_columns,
    stratified_folds,
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
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the evaluation's cells train; two threads on a loaded
    try:  # 2-core machine made this ~13x slower
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
    finally:
        torch.set_num_threads(threads)
    return Trained(x, y, folds, ensemble, singles)


def _test_rows(n_features: int) -> np.ndarray:
    """Rows the networks never saw: anywhere in the features' ranges, some values undefined."""
    _, _, x, _ = _blobs_in_paper_features()
    rng = np.random.default_rng(11)
    low, high = x.min(axis=0), x.max(axis=0)
    rows = low + rng.uniform(-0.2, 1.2, (200, n_features)) * (high - low)
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


def _shipped(top: str) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    directory = bundles_dir() / bundle_dirname("ztf", top, "mcdsvdd-ens")
    manifest = json.loads((directory / "manifest.json").read_text())
    with safe_open(str(directory / manifest["weights"]["file"]), "pt") as weights:
        shapes = {key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()}  # noqa: SIM118
    return manifest, shapes


@pytest.mark.parametrize("top", TOP_CLASSES)
def test_a_shipped_ensemble_records_five_mcdsvdd_nn_members_of_the_paper_configuration(
    top: str,
) -> None:
    """What (a) checks, as far as a manifest records it: the paper configuration, five members
    with the shapes of that configuration's mcdsvdd-nn, the settings mcdsvdd-nn records (but the
    scorer and the seed; member k's seed, ``seed + k``, is not recorded), each member fitted on
    the other four of the sample's folds of the recorded seed and stopped by the paper's rule."""
    manifest, shapes = _shipped(top)
    hyper, metrics = manifest["training"]["hyperparameters"], manifest["training"]["metrics"]
    assert manifest["scorer"] == hyper["scorer"] == "mcdsvdd-ens"
    assert manifest["configuration"] == hyper["configuration"] == "paper"
    assert hyper["members"] == ENSEMBLE_MEMBERS == 5
    ensemble = TrainingConfig(scorer="mcdsvdd-ens", top_class=top, configuration="paper")
    assert hyper == replace(ensemble, seed=hyper["seed"]).as_dict()
    member = TrainingConfig(scorer="mcdsvdd-nn", top_class=top, configuration="paper")
    differ = {"scorer", "seed", "members"}
    assert {k: v for k, v in hyper.items() if k not in differ} == {
        k: v for k, v in member.as_dict().items() if k not in differ
    }

    n_refs = metrics["n_references"]
    net = AnomalyNet(
        "mcdsvdd-nn", len(manifest["feature_names"]), member.resolved_latent,
        len(manifest["centre_subclasses"]), n_refs,
    )  # fmt: skip
    expected = {
        f"members.{k}.{key}": tuple(v.shape)
        for k in range(5)
        for key, v in net.state_dict().items()
    }
    assert shapes == expected

    data = sample_dir() / manifest["training"]["data"]["file"]
    assert file_sha256(data) == manifest["training"]["data"]["sha256"]
    table = read_table(data)
    inliers = table.take(table.top_class == top)
    x, _ = paper_columns(inliers)
    assert metrics["n_train"] == n_refs == x.shape[0]
    folds = stratified_folds(inliers.subclass, 5, np.random.default_rng(hyper["seed"]))
    stop = hyper["patience"] + get_configuration("paper").extra_patience  # 101 epochs
    assert len(metrics["members"]) == 5
    for k, (recorded, held) in enumerate(zip(metrics["members"], folds, strict=True)):
        fitted = np.delete(inliers.subclass, held)
        counts = {s: int((fitted == s).sum()) for s in manifest["centre_subclasses"]}
        assert recorded["subclass_counts"] == counts, f"member {k}"
        assert (recorded["n_train"], recorded["n_validation"]) == (fitted.size, held.size)
        assert recorded["n_references"] == n_refs
        for stage, limit in (
            ("pretrain", hyper["pretraining"]["max_epochs"]),
            ("train", hyper["max_epochs"]),
        ):
            history = recorded[stage]
            assert history["epochs"] == limit or history["epochs"] - history["best_epoch"] == stop


@pytest.mark.xfail(
    strict=True,
    reason="the shipped ensembles were trained at f93f956 (2026-11-30), before 7abc541 made the "
    "paper configuration's AE loss a mean over the features: their pretraining losses are sums "
    "(retraining them, issue 32 item 4, makes this pass: then drop this mark)",
)
@pytest.mark.parametrize("top", TOP_CLASSES)
def test_a_shipped_ensemble_was_pretrained_with_the_paper_loss_reduction(top: str) -> None:
    """The paper's class AE averages the squared error over the features: an AE that outputs
    zeros (about where its N(0, 0.02) initialisation starts) has the held fold's mean squared
    input as that loss, and the best loss of its training is no more than about that."""
    manifest, _ = _shipped(top)
    seed = manifest["training"]["hyperparameters"]["seed"]
    table = read_table(sample_dir() / manifest["training"]["data"]["file"])
    inliers = table.take(table.top_class == top)
    x, names = paper_columns(inliers)
    inputs = Preprocessor(paper_scaling(names))(torch.tensor(x, dtype=torch.float32)).numpy()
    folds = stratified_folds(inliers.subclass, 5, np.random.default_rng(seed))
    for recorded, held in zip(manifest["training"]["metrics"]["members"], folds, strict=True):
        zeros = float((inputs[held].astype(np.float64) ** 2).mean())
        assert recorded["pretrain"]["best_val_loss"] <= 2 * zeros
