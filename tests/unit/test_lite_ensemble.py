"""mcdsvdd-ens-lite: mcdsvdd-ens's training with the kind's widths (128, 64) and reference cap
(at most 256 training inliers, one random subset shared by the members) - the only two things
its spec changes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

import models.detectors
from models.detectors import get
from models.networks import AnomalyNet, Ensemble
from models.training import train_model
from tests.unit.test_ensemble_fidelity import _one_thread
from tests.unit.test_paper_fidelity import _blobs_in_paper_features

LIMIT = 60  # below the blobs' 170 rows, so that the cap takes a subset


def _widths(net: AnomalyNet) -> list[int]:
    return [layer.out_features for layer in net.encoder.net if isinstance(layer, nn.Linear)]


def test_the_lite_spec_differs_from_the_ensemble_in_widths_and_references_only() -> None:
    lite, full = get("mcdsvdd-ens-lite"), get("mcdsvdd-ens")
    assert (lite.hidden, lite.max_references) == ((128, 64), 256)
    assert (full.hidden, full.max_references) == ((512, 256, 128), 20_000)
    assert replace(lite, name=full.name, label=full.label, column=full.column) == replace(
        full, hidden=lite.hidden, max_references=lite.max_references
    )


def test_lite_members_are_small_and_share_one_capped_reference_subset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every member (and the autoencoder it was pretrained as, whose encoder it starts from)
    has the kind's widths; the members keep the same LIMIT training inliers (the random subset
    of the ensemble's seed) as references; the manifest's calibration comes from them."""
    spec = replace(get("mcdsvdd-ens-lite"), max_references=LIMIT)
    monkeypatch.setitem(models.detectors.REGISTRY, "mcdsvdd-ens-lite", spec)
    names, config, x, y = _blobs_in_paper_features(scorer="mcdsvdd-ens-lite", epochs=4)
    config = replace(config, members=3)
    with _one_thread():
        trained = train_model(x, y, names, config, progress=False)
    net = trained.net
    assert isinstance(net, Ensemble)
    assert net.kind == "mcdsvdd-ens-lite"
    assert net.hidden == (128, 64)
    members = net._nets()
    assert len(members) == 3
    order = torch.randperm(y.size, generator=torch.Generator().manual_seed(config.seed))
    keep = np.sort(order[:LIMIT].numpy())
    names_of = trained.centre_subclasses
    expected_groups = torch.as_tensor([names_of.index(s) for s in y[keep].tolist()])
    for member in members:
        assert member.kind == "mcdsvdd-nn"
        assert _widths(member) == [128, 64, config.resolved_latent]
        assert member.references.shape == (LIMIT, config.resolved_latent)
        assert torch.equal(member.reference_subclass, expected_groups)
    assert trained.metrics["n_references"] == LIMIT
    x_test = torch.randn(50, len(names))
    with torch.no_grad():
        raw, _ = net.score(x_test)
        alone = sum(m.score(x_test)[0] for m in members)
    torch.testing.assert_close(raw, alone)
