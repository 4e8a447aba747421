"""The Rubin tutorial's detectors as bundle kinds: their settings and score orientation against
the tutorial's own calls, bundles of both kinds on disk, unrouted (All) training, and scores that
do not depend on the batch."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from models.bundle import ESTIMATOR_FILE, MANIFEST, Bundle, load_bundle
from models.detectors import kinds
from models.estimators import (
    DISTCLASSIPY_SETTINGS,
    IFOREST_SETTINGS,
    DistanceEstimator,
    IForestEstimator,
)
from models.exceptions import BundleError, ConfigurationError
from models.preprocessing import preprocess
from models.resources import bundle_dirname
from models.scorers import SCORER_KINDS
from models.scoring import Scorer
from models.taxonomy import UNROUTED, check_model_class, check_top_class
from models.training import TrainingConfig, train_model

ESTIMATOR_KINDS = kinds(family="estimator")  # the registry's estimator kinds

pytest.importorskip("distclassipy")


def _blobs(n: int = 600, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 4, 4, 1], [4, 4, 4, 0, 0, 1], [0, 4, 0, 4, 0, 3]], dtype=float)
    labels = np.array(["SNIa", "QSO", "RRL"])[np.arange(n) % 3]
    X = centres[np.arange(n) % 3] + rng.normal(0, 0.5, (n, 6))
    return X, labels


def test_the_settings_are_the_tutorials() -> None:
    # rng = np.random.RandomState(42); IsolationForest(max_samples=500, random_state=rng)
    assert IFOREST_SETTINGS == {"max_samples": 500, "random_state": 42}
    # DistanceAnomaly(cluster_agg="min", metric_agg="median", normalize_scores=True)
    assert DISTCLASSIPY_SETTINGS == {
        "cluster_agg": "min",
        "metric_agg": "median",
        "normalize_scores": True,
    }
    assert set(ESTIMATOR_KINDS) <= set(SCORER_KINDS)


def test_iforest_is_the_tutorials_forest_with_higher_more_anomalous() -> None:
    from sklearn.ensemble import IsolationForest

    X, labels = _blobs()
    ours = IForestEstimator.fit(X, labels)
    params = ours.model.get_params()
    assert params["max_samples"] == 500
    assert isinstance(params["random_state"], np.random.RandomState)  # as the tutorial's rng
    assert params["n_estimators"] == 100  # the library's default, as in the tutorial
    tutorial = IsolationForest(max_samples=500, random_state=np.random.RandomState(42)).fit(X)
    raw, nearest = ours.score(X)
    np.testing.assert_array_equal(raw, -tutorial.score_samples(X))
    assert not nearest.any()
    outlier = np.full((1, 6), 25.0)
    assert ours.score(outlier)[0][0] > np.max(raw)
    # the tutorial's ranking (argsort of score_samples, lowest first) is ours, highest first
    np.testing.assert_array_equal(
        np.argsort(tutorial.score_samples(X), kind="stable")[:20],
        np.argsort(-raw, kind="stable")[:20],
    )


def test_distclassipy_is_the_tutorials_detector_with_frozen_normalisation() -> None:
    from distclassipy.anomaly import DistanceAnomaly

    X, labels = _blobs()
    ours = DistanceEstimator.fit(X, labels)
    params = ours.model.get_params()
    for key, value in DISTCLASSIPY_SETTINGS.items():
        assert params[key] == value
    tutorial = DistanceAnomaly(cluster_agg="min", metric_agg="median", normalize_scores=True)
    tutorial.fit(X, labels)
    raw, nearest = ours.score(X)
    # on the training rows: DistClassiPy's own decision_function (higher = more anomalous; the
    # tutorial ranks by the lowest -decision_function)
    np.testing.assert_allclose(raw, tutorial.decision_function(X), rtol=0, atol=1e-12)
    assert ours.classes == ("QSO", "RRL", "SNIa")
    assert (np.asarray(ours.classes)[nearest] == labels).mean() > 0.95
    far = np.full((1, 6), 25.0)
    assert ours.score(far)[0][0] > np.max(raw)


def test_a_metric_spanning_only_rounding_is_constant() -> None:
    """A feature constant in every known class (std 0, so DistClassiPy weights it 1/eps) makes the
    correlation metric 0 up to rounding for every row; scaling that to [0, 1] would score the
    last bits of the arithmetic, which differ between machines and summation orders."""
    from dataclasses import replace

    X, labels = _blobs()
    X[:, 5] = 1.0
    estimator = DistanceEstimator.fit(X, labels)
    j = [str(m) for m in estimator.metrics].index("correlation")
    new = _blobs(100, seed=9)[0]
    new[:, 5] = 1.0
    exact, _ = estimator.metric_distances(new)
    assert np.abs(exact[:, j]).max() < 1e-12
    assert np.abs(estimator.normalisation.maximum[j]) < 1e-12
    exact[:, j] = 0.0
    rng = np.random.default_rng(3)
    scores = []
    for noise in (0.0, 2.2e-16, 6.7e-16):  # what other arithmetic leaves of the zeros
        distances = exact.copy()
        distances[:, j] += rng.uniform(0.0, noise, len(new))
        norm = estimator.normalisation
        minimum, maximum = norm.minimum.copy(), norm.maximum.copy()
        minimum[j], maximum[j] = 0.0, noise
        estimator.normalisation = replace(norm, minimum=minimum, maximum=maximum)
        estimator.metric_distances = lambda x, d=distances: (d, np.zeros(len(x), np.int64))  # type: ignore[method-assign,misc]
        scores.append(estimator.score(new)[0])
    np.testing.assert_allclose(scores[1], scores[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(scores[2], scores[0], rtol=0, atol=1e-12)


def test_scores_do_not_depend_on_the_batch() -> None:
    X, labels = _blobs()
    new = _blobs(100, seed=9)[0] * 1.5
    for estimator in (IForestEstimator.fit(X, labels), DistanceEstimator.fit(X, labels)):
        whole = estimator.score(new)[0]
        pieces = np.concatenate([estimator.score(new[i : i + 7])[0] for i in range(0, 100, 7)])
        np.testing.assert_array_equal(whole, pieces)
        single = np.array([estimator.score(new[i : i + 1])[0][0] for i in range(10)])
        np.testing.assert_array_equal(whole[:10], single)


@pytest.fixture(scope="module", params=ESTIMATOR_KINDS)
def saved(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    X, labels = _blobs()
    X[np.random.default_rng(1).random(X.shape) < 0.05] = np.nan  # undefined values are scored
    names = tuple(f"f{i}" for i in range(6))
    config = TrainingConfig(scorer=request.param, top_class=UNROUTED)
    trained = train_model(X, labels, names, config, progress=False)
    bundle = Bundle.from_training(trained, config, "lsst", names, {"file": "blobs"}, "0.1")
    root = tmp_path_factory.mktemp(request.param)
    return bundle.save(root / bundle_dirname("lsst", UNROUTED, request.param))


def test_bundles_of_the_new_kinds_round_trip(saved: Path) -> None:
    assert saved.name in ("all-iforest", "all-distclassipy")
    assert (saved / ESTIMATOR_FILE).is_file()
    bundle = load_bundle(saved)
    manifest = bundle.manifest
    assert manifest.top_class == UNROUTED
    assert manifest.latent_dim == 0
    assert manifest.hidden == []
    assert manifest.estimator["settings"][
        "max_samples" if bundle.scorer == "iforest" else "cluster_agg"
    ]
    X = _blobs(300, seed=2)[0].astype(np.float32)
    X[::11, 2] = np.nan
    scorer = Scorer(bundle, "auto")
    assert scorer.device.type == "cpu"
    first = scorer.score(X)
    again = Scorer(load_bundle(saved), "cpu").score(X)
    np.testing.assert_array_equal(first.raw, again.raw)
    np.testing.assert_array_equal(first.percentile, again.percentile)
    assert first.raw.dtype == np.float32
    assert np.all(np.isfinite(first.raw))
    assert np.all((first.percentile >= 0) & (first.percentile <= 100))
    # batching (here 1 and 37 rows) changes nothing
    pieces = [scorer.score(X[i : i + 37]).raw for i in range(0, 300, 37)]
    np.testing.assert_array_equal(np.concatenate(pieces), first.raw)
    np.testing.assert_array_equal(scorer.score(X[5:6]).raw, first.raw[5:6])
    if bundle.scorer == "distclassipy":
        assert set(first.nearest) <= {"QSO", "RRL", "SNIa"}
        assert manifest.centre_subclasses == ["QSO", "RRL", "SNIa"]
    else:
        assert set(first.nearest) == {None}
    # the calibration is that of the training rows: their median scores near the 50th percentile
    median = np.median(Scorer(bundle, "cpu").score(X).percentile)
    assert 10 < median < 90


def test_a_replaced_estimator_is_refused_before_unpickling(saved: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(saved, tmp_path / "copy"))
    import lzma

    (copy / ESTIMATOR_FILE).write_bytes(lzma.compress(b"cos\nsystem\n(S'echo pwned'\ntR."))
    with pytest.raises(BundleError, match=r"SHA-256 .* does not match"):
        load_bundle(copy)
    manifest = (copy / MANIFEST).read_text()
    assert '"model.pkl.xz"' in manifest


def test_preprocess_is_the_scoring_path() -> None:
    X, labels = _blobs()
    names = tuple(f"f{i}" for i in range(6))
    config = TrainingConfig(scorer="iforest", top_class=UNROUTED)
    trained = train_model(X, labels, names, config, progress=False)
    bundle = Bundle.from_training(trained, config, "lsst", names, {}, "0.1")
    assert trained.estimator is not None
    direct = trained.estimator.score(preprocess(trained.preprocessor, X[:50]))[0]
    np.testing.assert_array_equal(
        Scorer(bundle, "cpu").score(X[:50].astype(np.float32)).raw, direct.astype(np.float32)
    )


def test_unrouted_is_a_model_class_but_not_a_top_level_class() -> None:
    assert check_model_class(UNROUTED) == "All"
    assert check_model_class("Periodic") == "Periodic"
    with pytest.raises(ConfigurationError, match="unknown top-level class 'All'"):
        check_top_class(UNROUTED)
    with pytest.raises(ConfigurationError, match="unknown top-level class 'Variable'"):
        check_model_class("Variable")
    assert bundle_dirname("lsst", UNROUTED, "iforest") == Path("lsst/all-iforest")
    # an unrouted network trains on every subclass too
    X, labels = _blobs(240)
    config = TrainingConfig(scorer="ae", top_class=UNROUTED, max_epochs=3, latent=4)
    trained = train_model(X, labels, tuple(f"f{i}" for i in range(6)), config, progress=False)
    assert trained.metrics["subclass_counts"].keys() == {"QSO", "RRL", "SNIa"}


def test_evaluation_adds_detectors_to_existing_results(tmp_path: Path) -> None:
    from models.evaluation.config import EvaluationConfig
    from models.evaluation.protocol import _check_or_write_config

    six = EvaluationConfig(data="x", data_sha256="0" * 64, detectors=("iforest", "ae"))
    _check_or_write_config(tmp_path, six)
    seven = EvaluationConfig(
        data="x", data_sha256="0" * 64, detectors=("iforest", "ae", "distclassipy")
    )
    _check_or_write_config(tmp_path, seven)  # DistClassiPy's cells join the same results
    assert '"distclassipy"' in (tmp_path / "config.json").read_text()
    fewer = EvaluationConfig(data="x", data_sha256="0" * 64, detectors=("iforest",))
    with pytest.raises(ConfigurationError, match="detectors differ"):
        _check_or_write_config(tmp_path, fewer)
    other = EvaluationConfig(
        data="x", data_sha256="0" * 64, detectors=("iforest", "ae", "distclassipy"), epochs=9
    )
    with pytest.raises(ConfigurationError, match="epochs differ"):
        _check_or_write_config(tmp_path, other)


def test_distclassipy_is_the_seventh_detector() -> None:
    from models.configurations import get_configuration
    from models.evaluation.detectors import LABELS, make_detector
    from models.scorers import DETECTORS, PAPER_DETECTORS

    assert (*PAPER_DETECTORS, "distclassipy") == DETECTORS
    assert LABELS["distclassipy"] == "DistClassiPy"
    X, labels = _blobs()
    names = tuple(f"f{i}" for i in range(6))
    detector = make_detector("distclassipy", "All", names, get_configuration("ours"), 1, 0)
    detector.fit(X, labels, (X[:10], labels[:10]))
    scores = detector.score(np.vstack([X[:50], np.full((1, 6), 30.0)]))
    assert scores[-1] > scores[:50].max()  # higher = more anomalous
