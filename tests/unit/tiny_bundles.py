"""Small untrained bundles with chosen feature names, for tests of decoding, routing and the
processor that must not depend on the shipped bundles (deterministic for a seed)."""

from __future__ import annotations

from pathlib import Path

import torch

from models.bundle import Bundle, Calibration, Manifest, Weights
from models.detectors import get
from models.networks import AnomalyNet, Ensemble, Network
from models.preprocessing import FeatureScaling, Preprocessor
from models.resources import bundle_dirname
from models.scorers import DEFAULT_SCORERS, PAPER_BEST_SCORERS
from models.taxonomy import SUBCLASSES


def tiny_bundle(
    survey: str, top_class: str, scorer: str, names: tuple[str, ...], seed: int = 0
) -> Bundle:
    torch.manual_seed(seed)
    spec = get(scorer)
    subclasses: tuple[str, ...] = ()
    if scorer == "mcdsvdd":
        subclasses = tuple(SUBCLASSES[top_class])
    elif spec.family == "ensemble":
        subclasses = tuple(SUBCLASSES[top_class][:3])
    net: Network
    if spec.family == "ensemble":  # two members, eight random references of three subclasses
        members = [AnomalyNet(spec.member, len(names), 4, 3, 8, spec.hidden) for _ in range(2)]
        references = torch.randn(8, 4)
        for member in members:
            member.references = references.clone()
            member.reference_subclass = torch.arange(8) % 3
        net = Ensemble(members, scorer).eval()
    else:
        net = AnomalyNet(scorer, len(names), 4, max(len(subclasses), 1)).eval()  # type: ignore[arg-type]
    preprocessor = Preprocessor(tuple(FeatureScaling(n, "linear", 0.0, -10.0, 40.0) for n in names))
    manifest = Manifest(
        format_version=1,
        model_version="test",
        survey=survey,
        top_class=top_class,
        scorer=scorer,
        feature_names=list(names),
        preprocessing=preprocessor.to_manifest(),
        latent_dim=4,
        hidden=list(net.hidden),
        centres=net.centres.tolist() if isinstance(net, AnomalyNet) and scorer == "mcdsvdd" else [],
        centre_subclasses=list(subclasses),
        calibration=Calibration(levels=[0.0, 50.0, 100.0], scores=[0.0, 1.0, 10.0]),
        training={},
        created_at="2026-01-01T00:00:00+00:00",
        weights=Weights(sha256=""),
    )
    return Bundle(manifest, net, preprocessor)


def write_bundles(root: Path, survey: str, names: tuple[str, ...]) -> Path:
    """A bundle root with the default scorer and the paper's best of every top-level class, all
    using ``names``."""
    for i, top in enumerate(DEFAULT_SCORERS):
        for scorer in dict.fromkeys((DEFAULT_SCORERS[top], PAPER_BEST_SCORERS[top])):
            tiny_bundle(survey, top, scorer, names, seed=i).save(
                root / bundle_dirname(survey, top, scorer)
            )
    return root
