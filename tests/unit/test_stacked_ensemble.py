"""The ensemble's members evaluated as one batched network (models.stacked): bitwise the scores
of the members run one by one, on the shipped ensemble bundles (both kinds) and the sample
data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.bundle import load_bundle
from models.exceptions import BundleError
from models.networks import Ensemble, squared_distances
from models.resources import bundle_dirname, bundles_dir, sample_dir
from models.scoring import CHUNK_ROWS, SMALL_CHUNK_ROWS, Scorer
from models.table import read_table
from models.taxonomy import TOP_CLASSES

ROWS = 300  # 2 chunks of CHUNK_ROWS and a tail in chunks of SMALL_CHUNK_ROWS


def one_by_one(ensemble: Ensemble, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ensemble's score as it was before the members were stacked: each member's network
    and nearest-reference search in turn, the minima added, the summed distances' argmin."""
    nets = ensemble._nets()
    distances = [squared_distances(m.embed(x), m.references) for m in nets]
    raw = torch.stack([d.min(dim=1).values for d in distances]).sum(dim=0)
    nearest = sum(distances[1:], distances[0]).argmin(dim=1)
    return raw, nets[0].reference_subclass[nearest]


def scorer_chunks(scorer: Scorer, features: np.ndarray) -> list[torch.Tensor]:
    """The preprocessed, zero-padded chunks the scorer runs its network on."""
    n = features.shape[0]
    full = n // CHUNK_ROWS * CHUNK_ROWS
    step = SMALL_CHUNK_ROWS if scorer.small_chunks else CHUNK_ROWS
    padded = np.zeros((full + -(-(n - full) // step) * step, features.shape[1]), np.float32)
    padded[:n] = features
    x = scorer.preprocessor(torch.from_numpy(padded))
    return [*x[:full].split(CHUNK_ROWS), *x[full:].split(step)]


@pytest.mark.parametrize("kind", ["mcdsvdd-ens", "mcdsvdd-ens-lite"])
@pytest.mark.parametrize("top", TOP_CLASSES)
def test_a_shipped_ensemble_scores_bitwise_as_its_members_one_by_one(top: str, kind: str) -> None:
    scorer = Scorer(load_bundle(bundles_dir() / bundle_dirname("ztf", top, kind)), "cpu")
    table = read_table(sample_dir() / "objects.parquet")
    features = table.columns(scorer.feature_names)[:ROWS].astype(np.float32)
    ensemble = scorer.net
    assert isinstance(ensemble, Ensemble)
    scores = scorer.score(features)
    with torch.inference_mode():
        parts = [one_by_one(ensemble, chunk) for chunk in scorer_chunks(scorer, features)]
        raw = torch.cat([r for r, _ in parts])[:ROWS].numpy()
        nearest = torch.cat([i for _, i in parts])[:ROWS].numpy()
        x = scorer.preprocessor(torch.from_numpy(features))
        members = ensemble.member_scores(x)
        alone = torch.stack([m.score(x)[0] for m in ensemble._nets()])
    assert scores.raw.tobytes() == raw.tobytes()
    np.testing.assert_array_equal(scores.nearest_index, nearest)
    assert members.numpy().tobytes() == alone.numpy().tobytes()


def small_ensemble() -> Ensemble:
    """Two members of the shipped Transient ensemble."""
    shipped = load_bundle(bundles_dir() / bundle_dirname("ztf", "Transient", "mcdsvdd-ens")).net
    assert isinstance(shipped, Ensemble)
    return Ensemble(shipped._nets()[:2]).eval()


def test_the_stacked_weights_follow_changes_to_the_members() -> None:
    ensemble = small_ensemble()
    x = torch.randn(CHUNK_ROWS, 129)
    with torch.no_grad():
        before = ensemble.score(x)[0]
        first = ensemble._nets()[0].encoder.net[0]
        assert isinstance(first, torch.nn.Linear)
        first.weight.mul_(1.5)
        after = ensemble.score(x)[0]
        expected = one_by_one(ensemble, x)[0]
        second = ensemble._nets()[1]
        second.references = second.references[:10].clone()  # a buffer replaced, not changed
        ensemble._nets()[0].references = ensemble._nets()[0].references[:10].clone()
        fewer = ensemble.score(x)[0]
        expected_fewer = one_by_one(ensemble, x)[0]
    assert not torch.equal(before, after)
    assert torch.equal(after, expected)
    assert not torch.allclose(after, fewer)  # rebuilt: stale references would give `after`
    torch.testing.assert_close(fewer, expected_fewer)  # other kernels for 10 references


def test_the_stacked_ensemble_scores_in_eval_mode_only() -> None:
    ensemble = small_ensemble().train()
    with pytest.raises(BundleError, match="eval mode"):
        ensemble.score(torch.randn(4, 129))
