"""The detector registry (models.detectors): every kind answers, through its spec and hooks,
every question the code asks of it, and the settings accept exactly its scorers."""

from __future__ import annotations

import subprocess
import sys
from typing import get_args

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from models.configurations import get_configuration
from models.detectors import REGISTRY, get, get_scorer, kinds, scorer_kinds
from models.exceptions import BundleError, ConfigurationError
from models.networks import AnomalyNet, Ensemble
from models.scorers import DETECTORS, PAPER_DETECTORS, SCORER_KINDS, VARIANTS, ScorerKind
from models.training import TrainingConfig
from service.config import ModelSettings

KINDS = tuple(REGISTRY)
HOOKS = ("require", "build", "train", "hyperparameters", "describe", "load", "unavailable")


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_answers_every_question(kind: str) -> None:
    spec = get(kind)
    assert spec.name == kind
    assert spec.label
    assert spec.family in ("network", "ensemble", "estimator", "baseline")
    assert spec.group in ("paper", "tutorial", "variant")
    hooks = spec.implementation()
    for name in (*HOOKS, "evaluate"):
        assert callable(getattr(hooks, name, None)), f"{kind} has no {name} hook"
    names = ("a", "b", "c")
    detector = hooks.evaluate(spec, "Periodic", names, get_configuration("ours"), 2, 0, 2)
    assert callable(detector.fit)
    assert callable(detector.score)
    if not spec.scorer:  # evaluated only
        assert spec.family == "baseline"
        with pytest.raises(ConfigurationError):
            hooks.build(spec, 3, 2, 1)
        return
    assert spec.score is not None
    config = TrainingConfig(scorer=kind, top_class="Periodic")
    hyper = hooks.hyperparameters(spec, config)
    assert hyper["scorer"] == kind
    assert config.as_dict() == hyper
    if spec.family == "network":
        assert spec.network is not None
        state = {"references": torch.zeros(5, 2)} if spec.network.references else None
        net = hooks.build(spec, 3, 2, 2, state)
        assert isinstance(net, AnomalyNet)
        assert net.kind == kind
        assert net.centres.shape[0] == (2 if spec.multi_centre else 1)
        raw, nearest = net.eval().score(torch.zeros(4, 3))
        assert raw.shape == nearest.shape == (4,)
    elif spec.family == "ensemble":
        assert get(spec.member).family == "network"
        net = hooks.build(spec, 3, 2, 2)
        assert isinstance(net, Ensemble)
        assert net.kind == kind
    else:
        assert config.resolved_latent == 0  # no network
        with pytest.raises(ConfigurationError):
            hooks.build(spec, 3, 2, 1)


def test_the_kinds_the_settings_accept_are_the_registrys_scorers() -> None:
    scorers = tuple(k for k, s in REGISTRY.items() if s.scorer)
    assert scorer_kinds() == scorers == SCORER_KINDS
    assert get_args(ScorerKind) == scorers
    for kind in scorers:
        assert ModelSettings(scorers={"Periodic": kind}).scorers == {"Periodic": kind}
        assert get_scorer(kind).name == kind
    for kind in (*kinds(scorer=False), "svm"):
        with pytest.raises(ValidationError):
            ModelSettings(scorers={"Periodic": kind})
        with pytest.raises(BundleError, match=f"unknown scorer {kind!r}"):
            get_scorer(kind)


def test_the_evaluation_lists_every_kind_once_in_the_papers_order() -> None:
    assert sorted((*DETECTORS, *VARIANTS)) == sorted(KINDS)
    assert PAPER_DETECTORS == ("iforest", "ocsvm", "ae", "vae", "deepsvdd", "mcdsvdd")
    assert (*PAPER_DETECTORS, *kinds(group="tutorial")) == DETECTORS
    assert set(VARIANTS) == set(kinds(group="variant"))
    with pytest.raises(ConfigurationError, match="unknown detector 'svm'"):
        get("svm")


def test_listing_the_kinds_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "import models.detectors, models.scorers\n"
        "from models.detectors import REGISTRY\n"
        "assert [s.name for s in REGISTRY.values()]\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_estimator_scores_come_from_the_registrys_estimator_class() -> None:
    pytest.importorskip("sklearn")
    from models.estimators import fit_estimator

    x = np.random.default_rng(0).standard_normal((64, 3))
    fitted = fit_estimator("iforest", x, np.array(["a"] * 64))
    assert fitted.kind == "iforest"
    with pytest.raises(ConfigurationError, match="not an estimator kind"):
        fit_estimator("ae", x, np.array(["a"] * 64))
