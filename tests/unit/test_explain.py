"""Explanations (models.explain): what each scorer's contributions are, that they never change a
score, that they point at a feature pushed out of its range on purpose, and the service's path
with them on and off (``alert-anomaly score``, no broker)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import torch

from models.bundle import load_bundle
from models.estimators import distclassipy_available
from models.explain import contributions, score_keeping
from models.extras import available
from models.networks import AnomalyNet, Ensemble, Network
from models.records import input_records
from models.resources import bundles_dir, sample_dir
from models.scoring import Scorer
from models.table import read_table
from service.cli import main
from service.io.codecs.surveys import get_survey
from tests.unit.tiny_bundles import tiny_bundle

ZTF = read_table(sample_dir() / "objects.parquet")


def shipped(name: str) -> Scorer:
    return Scorer(load_bundle(bundles_dir() / name), "cpu")


def rows_of(scorer: Scorer, top: str, n: int, seed: int = 0) -> np.ndarray:
    chosen = np.flatnonzero(np.asarray(ZTF.top_class) == top)
    picked = np.random.default_rng(seed).choice(chosen, n, replace=False)
    return ZTF.columns(scorer.feature_names)[picked].astype(np.float32)


def score_and_contributions(
    net: Network, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores, nearest indices and every feature's contribution of one chunk ``x``."""
    raw, nearest, tape = score_keeping(net, x)
    return raw, nearest, contributions(net, tape)


def test_the_autoencoders_contributions_add_up_to_the_score() -> None:
    scorer = shipped("ztf/stochastic-ae")
    x = rows_of(scorer, "Stochastic", 150)  # a full chunk and a padded one
    every = scorer.score(x, explain=len(scorer.feature_names))
    assert every.explanation is not None
    contributions = every.explanation.contribution
    assert (contributions >= 0).all()
    np.testing.assert_allclose(contributions.sum(axis=1), every.raw, rtol=1e-5)
    assert (np.diff(contributions, axis=1) <= 0).all()  # largest first
    top = scorer.score(x, explain=3).explanation
    assert top is not None
    np.testing.assert_array_equal(top.index, every.explanation.index[:, :3])


@pytest.mark.parametrize(
    "name", ["ztf/periodic-mcdsvdd", "ztf/stochastic-ae", "ztf/transient-mcdsvdd-ens"]
)
def test_explaining_never_changes_a_score(name: str) -> None:
    scorer = shipped(name)
    x = rows_of(scorer, scorer.bundle.manifest.top_class, 40)
    plain, explained = scorer.score(x), scorer.score(x, explain=3)
    assert plain.explanation is None
    assert explained.explanation is not None
    assert explained.explanation.index.shape == (40, 3)
    assert plain.raw.tobytes() == explained.raw.tobytes()
    np.testing.assert_array_equal(plain.nearest_index, explained.nearest_index)


@pytest.mark.parametrize("name", ["ztf/periodic-mcdsvdd-ens-lite", "ztf/stochastic-ae"])
def test_warming_up_changes_nothing(name: str) -> None:
    """The inference's warm-up (one explained row of zeros at start) leaves a scorer's scores
    and explanations bitwise those of a scorer that never warmed up."""
    cold, warm = shipped(name), shipped(name)
    warm.warm_up(3)
    x = rows_of(cold, cold.bundle.manifest.top_class, 150)
    for explain_from in (0.0, 90.0):
        a, b = cold.score(x, 3, explain_from), warm.score(x, 3, explain_from)
        assert a.explanation is not None
        assert b.explanation is not None
        assert a.raw.tobytes() == b.raw.tobytes()
        assert a.explanation.index.tobytes() == b.explanation.index.tobytes()
        assert a.explanation.contribution.tobytes() == b.explanation.contribution.tobytes()


@pytest.mark.parametrize(
    "name", ["ztf/periodic-mcdsvdd-ens-lite", "ztf/stochastic-ae", "lsst/all-iforest"]
)
def test_only_the_rows_at_or_above_explain_from_are_explained(name: str) -> None:
    """``explain_from``: the rows at or above that percentile get the explanation they get
    when every row is explained (their own batch of fixed chunk shapes: the same top features,
    contributions to float32 rounding); the others indices -1; scores bitwise the same."""
    if name.endswith("iforest") and not available("sklearn.ensemble"):
        pytest.skip("the rubin extra (scikit-learn)")
    scorer = shipped(name)
    if name.startswith("lsst"):
        table = read_table(sample_dir().parent / "lsst-sim-sample" / "objects.parquet")
        x = table.columns(scorer.feature_names)[:300].astype(np.float32)
    else:
        x = rows_of(scorer, scorer.bundle.manifest.top_class, 300)  # 2 full chunks and more
    every, some = scorer.score(x, explain=3), scorer.score(x, explain=3, explain_from=90.0)
    assert every.explanation is not None
    assert some.explanation is not None
    assert some.raw.tobytes() == every.raw.tobytes()
    chosen = some.percentile >= 90.0
    assert 0 < chosen.sum() < len(x)
    assert (some.explanation.index[~chosen] == -1).all()
    assert (some.explanation.contribution[~chosen] == 0).all()
    np.testing.assert_array_equal(some.explanation.index[chosen], every.explanation.index[chosen])
    np.testing.assert_allclose(
        some.explanation.contribution[chosen],
        every.explanation.contribution[chosen],
        rtol=1e-5,
        atol=1e-7,
    )
    none = scorer.score(x, explain=3, explain_from=100.0 + 1e-3).explanation
    assert none is not None
    assert (none.index == -1).all()


def test_mcdsvdd_attributions_point_at_a_feature_pushed_out_of_range() -> None:
    """A tiny synthetic case: an untrained network whose centres are put where training puts
    them, on the inliers' latent (here the middle of every feature's range, where the
    preprocessing puts 0); rows there with a little noise, one feature pushed far out of its
    range; the attribution's top feature is that one, whichever it is, for nearly every row."""
    names = ("a", "b", "c", "d", "e", "f")
    bundle = tiny_bundle("ztf", "Periodic", "mcdsvdd", names)
    assert isinstance(bundle.net, AnomalyNet)
    with torch.no_grad():
        bundle.net.centres[:] = bundle.net.embed(torch.zeros(1, len(names)))
    scorer = Scorer(bundle, "cpu")
    rng = np.random.default_rng(3)
    found = 0
    for j in range(len(names)):
        x = (15.0 + rng.normal(0.0, 1.0, (20, len(names)))).astype(np.float32)  # mid-range
        x[:, j] = 400.0 * rng.choice([-1.0, 1.0], 20)
        explanation = scorer.score(x, explain=2).explanation
        assert explanation is not None
        hits = explanation.index[:, 0] == j
        # first order: a row or two can meet a bend of the network first
        assert hits.mean() >= 0.9, (j, explanation.index[:, 0])
        found += int(hits.sum())
    assert found >= 0.95 * 20 * len(names)


def test_shipped_mcdsvdd_attributions_find_most_pushed_features() -> None:
    """On the shipped Periodic MCDSVDD and real sample rows: among the rows that a feature
    pushed far out of its range makes anomalous (above the 99.5th percentile, 3x their score),
    that feature is among the three named in most of them (measured: 81% over every feature)."""
    scorer = shipped("ztf/periodic-mcdsvdd")
    x = rows_of(scorer, "Periodic", 30, seed=1)
    before = scorer.score(x).raw
    values = ZTF.columns(scorer.feature_names)
    found = cases = 0
    for j in range(0, len(scorer.feature_names), 4):
        low, high = np.nanpercentile(values[:, j], [1, 99])
        pushed = x.copy()
        pushed[:, j] = high + 20 * (high - low + 1e-3)
        scores = scorer.score(pushed, explain=3)
        assert scores.explanation is not None
        anomalous = (scores.percentile > 99.5) & (scores.raw > 3 * before)
        found += int((scores.explanation.index[anomalous] == j).any(axis=1).sum())
        cases += int(anomalous.sum())
    assert cases > 50
    assert found / cases > 0.6


@pytest.mark.skipif(not available("sklearn.ensemble"), reason="the rubin extra (scikit-learn)")
def test_the_isolation_forests_credit_follows_the_isolating_feature() -> None:
    scorer = shipped("lsst/all-iforest")
    table = read_table(sample_dir().parent / "lsst-sim-sample" / "objects.parquet")
    values = table.columns(scorer.feature_names)
    x = values[:30].astype(np.float32)
    every = scorer.score(x, explain=len(scorer.feature_names))
    assert every.explanation is not None
    assert (every.explanation.contribution >= 0).all()
    assert every.raw.tobytes() == scorer.score(x).raw.tobytes()
    found = 0
    features = range(0, len(scorer.feature_names), 3)
    for j in features:
        low, high = np.nanpercentile(values[:, j], [1, 99])
        pushed = x.copy()
        pushed[:, j] = high + 20 * (high - low + 1e-3)
        explanation = scorer.score(pushed, explain=3).explanation
        assert explanation is not None
        found += int((explanation.index == j).any(axis=1).sum())
    assert found / (30 * len(features)) > 0.6  # a feature pushed in ordinary rows


@pytest.mark.skipif(not distclassipy_available(), reason="the distclassipy extra")
def test_distclassipy_scores_are_declared_unexplained() -> None:
    scorer = shipped("lsst/all-distclassipy")
    assert scorer.unexplained
    assert "no per-feature measure" in scorer.unexplained
    x = np.zeros((2, len(scorer.feature_names)), np.float32)
    assert scorer.score(x, explain=3).explanation is None


def _score(tmp_path: Path, out: str, monkeypatch: pytest.MonkeyPatch, explain: int) -> Path:
    records = list(input_records(ZTF.take(np.arange(60))))
    buffer = io.BytesIO()
    fastavro.writer(buffer, get_survey("ztf").schema(), records)
    alerts = tmp_path / "alerts.avro"
    alerts.write_bytes(buffer.getvalue())
    monkeypatch.setenv("ALERT_ANOMALY_MODEL__EXPLAIN_FEATURES", str(explain))
    assert main(["score", "--no-progress", str(alerts), str(tmp_path / out)]) == 0
    return tmp_path / out


@pytest.mark.parametrize("inference", ["inline", "process"])
def test_score_explains_the_candidates_and_off_writes_todays_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inference: str
) -> None:
    """By default only the scores at or above ``model.explain_min_percentile`` (90) are
    explained, each as with every score explained (0); off: no explanation, the same records
    otherwise."""
    monkeypatch.setenv("ALERT_ANOMALY_MODEL__INFERENCE", inference)
    monkeypatch.setenv("ALERT_ANOMALY_MODEL__EXPLAIN_MIN_PERCENTILE", "0")
    every = pq.read_table(_score(tmp_path, "every.parquet", monkeypatch, 3)).to_pylist()
    monkeypatch.delenv("ALERT_ANOMALY_MODEL__EXPLAIN_MIN_PERCENTILE")
    on = pq.read_table(_score(tmp_path, "on.parquet", monkeypatch, 3)).to_pylist()
    off = pq.read_table(_score(tmp_path, "off.parquet", monkeypatch, 0)).to_pylist()
    assert len(every) == len(on) == len(off) > 0
    candidates = [b["percentile"] >= 90.0 for b in on]
    assert 0 < sum(candidates) < len(on)
    for a, b, c, candidate in zip(every, on, off, candidates, strict=True):
        assert len(a["explanation"]) == 3
        bundle = load_bundle(bundles_dir() / "ztf" / f"{a['top_class'].lower()}-{a['scorer']}")
        assert {e["feature"] for e in a["explanation"]} <= set(bundle.feature_names)
        contributions = [e["contribution"] for e in a["explanation"]]
        assert contributions == sorted(contributions, reverse=True)
        assert b["explanation"] == (a["explanation"] if candidate else [])
        assert c["explanation"] == []
        same = ("explanation", "scored_at")
        assert {k: v for k, v in a.items() if k not in same} == {
            k: v for k, v in b.items() if k not in same
        }
        assert {k: v for k, v in a.items() if k not in same} == {
            k: v for k, v in c.items() if k not in same
        }


def test_a_csv_holds_the_explanation_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_ANOMALY_MODEL__INFERENCE", "inline")
    table = pa_csv.read_csv(_score(tmp_path, "scores.csv", monkeypatch, 2))
    explanations = [json.loads(text) for text in table.column("explanation").to_pylist()]
    candidates = [p >= 90.0 for p in table.column("percentile").to_pylist()]
    assert [bool(e) for e in explanations] == candidates  # explained: the candidates only
    explained = [i for i, e in enumerate(explanations) if e]
    assert explained
    first = explanations[explained[0]]
    assert [sorted(e) for e in first] == [["contribution", "feature"]] * 2
    top = table.column("top_class")[explained[0]].as_py()
    kind = table.column("scorer")[explained[0]].as_py()
    bundle = load_bundle(bundles_dir() / "ztf" / f"{top.lower()}-{kind}")
    assert {e["feature"] for e in first} <= set(bundle.feature_names)


def test_the_ensembles_attribution_is_the_sum_of_its_members() -> None:
    """mcdsvdd-ens scores the members' summed distances, batched (models.stacked): its
    gradient x input is every member's own, added."""
    scorer = shipped("ztf/periodic-mcdsvdd-ens")
    # rows of another class: the sample's own are training inliers, at distance 0 (no gradient)
    x = rows_of(scorer, "Transient", 50)
    every = scorer.score(x, explain=len(scorer.feature_names)).explanation
    assert every is not None
    assert isinstance(scorer.net, Ensemble)
    with torch.inference_mode():
        inputs = scorer.preprocessor(torch.from_numpy(x.copy()))
    members = sum(score_and_contributions(m, inputs)[2] for m in scorer.net.members)
    assert isinstance(members, torch.Tensor)
    expected = np.take_along_axis(members.numpy(), every.index, axis=1)
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(every.contribution, expected, atol=1e-6)


@pytest.mark.parametrize(
    "name", ["ztf/periodic-mcdsvdd", "ztf/transient-mcdsvdd-ens-lite", "ztf/stochastic-mcdsvdd-ens"]
)
def test_the_shortcut_gradient_is_autograds_gradient_of_the_score(name: str) -> None:
    """``2 (z - nearest point)`` entering the backward pass at the latents gives the gradient
    that autograd gives through the whole score (for an ensemble: its members one by one, the
    distances to every reference included), and the scores of ``net.score``, bitwise."""
    scorer = shipped(name)
    x = rows_of(scorer, "Transient" if "periodic" in name else "Periodic", 50)
    with torch.inference_mode():
        inputs = scorer.preprocessor(torch.from_numpy(x.copy()))
        expected_raw, expected_nearest = scorer.net.score(inputs)
    raw, nearest, contributions = score_and_contributions(scorer.net, inputs)
    assert raw.numpy().tobytes() == expected_raw.numpy().tobytes()
    assert torch.equal(nearest, expected_nearest)
    nets = scorer.net.members if isinstance(scorer.net, Ensemble) else [scorer.net]
    with torch.enable_grad():
        leaf = inputs.clone().requires_grad_(True)
        total = sum(net.score(leaf)[0].sum() for net in nets)
        assert isinstance(total, torch.Tensor)
        (gradient,) = torch.autograd.grad(total, leaf)
    expected = (gradient * inputs).numpy()
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(contributions.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["vae", "deepsvdd", "ae", "mcdsvdd"])
def test_every_network_kind_explains_without_changing_its_scores(kind: str) -> None:
    """The untrained tiny networks of the other kinds: same scores bitwise, an explanation of
    each row (the VAE's, like the AE's, adds up to the score)."""
    names = tuple("abcdefgh")
    scorer = Scorer(tiny_bundle("ztf", "Periodic", kind, names), "cpu")
    x = np.random.default_rng(0).normal(15.0, 20.0, (70, len(names))).astype(np.float32)
    plain, explained = scorer.score(x), scorer.score(x, explain=len(names))
    assert plain.raw.tobytes() == explained.raw.tobytes()
    assert explained.explanation is not None
    assert explained.explanation.index.shape == (70, len(names))
    assert (np.sort(explained.explanation.index, axis=1) == np.arange(len(names))).all()
    if kind in ("ae", "vae"):
        total = explained.explanation.contribution.sum(axis=1)
        np.testing.assert_allclose(total, explained.raw, rtol=1e-5)


def test_off_computes_nothing_and_writes_one_empty_explanation_per_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``model.explain_features = 0``: no contribution is computed, and the batch's records
    share one empty explanation (a value for the batch, encoded once: no per-row work)."""
    import models.scoring
    from service.config import load_settings
    from service.core.processing import AlertProcessor
    from service.records import Lineage, Row

    def forbidden(*args: object) -> None:
        raise AssertionError("contributions computed with explanations off")

    monkeypatch.setattr(models.scoring, "score_keeping", forbidden)
    settings = load_settings(
        None, {"input": {"topics": ["t"]}, "model": {"explain_features": 0, "inference": "inline"}}
    )
    processor = AlertProcessor(settings)
    route = processor.routes["Periodic"]
    x = rows_of(route.scorer, "Periodic", 5)
    scores = route.scorer.score(x, processor.explain)
    rows = [Row(Lineage("t", 0, i, None), f"o{i}", 0.9, x[i], 1.0) for i in range(5)]
    batch = processor.scored_batch(
        "Periodic", rows, scores.raw, scores.percentile, scores.nearest_index, 0.0
    )
    assert batch.columns["explanation"] == ()
    assert [r["explanation"] for r in batch.records] == [()] * 5


@pytest.mark.parametrize("k", [3, 1, 0])
def test_the_records_explanations_are_each_rows_top_features(k: int) -> None:
    """The score records' explanation column: per row, its k features by name with their
    contributions, in order (k = 0, or a row left unexplained: an empty list)."""
    from models.explain import Explanation
    from service.core.processing import _explanations

    class Named:
        feature_names = ("a", "b", "c", "d")

    index = np.array([[3, 0, 1], [-1, -1, -1], [2, 2, 0]], dtype=np.int64)[:, :k]
    contribution = np.array([[0.5, 0.25, 0.125], [0, 0, 0], [2.0, 1.0, 0.0]], np.float32)[:, :k]
    rows = _explanations(Named(), Explanation(index, contribution))  # type: ignore[arg-type]
    expected = [
        [{"feature": "dab"[j], "contribution": [0.5, 0.25, 0.125][j]} for j in range(k)],
        [],  # left unexplained (below model.explain_min_percentile)
        [{"feature": "cca"[j], "contribution": [2.0, 1.0, 0.0][j]} for j in range(k)],
    ]
    assert rows == expected


def test_alerce_step_records_carry_no_explanation_so_none_is_computed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``output.format alerce`` writes ALeRCE's step record, which has no field for an
    explanation: with ``model.explain_features`` at its default, the processor and both kinds
    of inference are given k = 0, and no contribution is computed."""
    import models.scoring
    import service.core.processing as processing
    from service.config import load_settings

    def forbidden(*args: object) -> None:
        raise AssertionError("contributions computed for records that cannot carry them")

    monkeypatch.setattr(models.scoring, "score_keeping", forbidden)
    given: list[int] = []
    monkeypatch.setattr(processing, "ProcessInference", lambda *args: given.append(args[4]))
    values: dict[str, Any] = {"input": {"topics": ["t"]}, "output": {"format": "alerce"}}
    settings = load_settings(None, {**values, "model": {"inference": "inline"}})
    assert settings.model.explain_features == 3
    assert settings.explained_features == 0
    processor = processing.AlertProcessor(settings)
    assert processor.explain == 0
    inline = processing.start_inference(settings, processor.routes)
    assert isinstance(inline, processing.InlineInference)
    assert inline.explain == 0
    route = processor.routes["Periodic"]
    inline.submit("Periodic", list(rows_of(route.scorer, "Periodic", 5)), None)
    assert [done.explanation for done in inline.completed()] == [None]
    processing.start_inference(
        load_settings(None, {**values, "model": {"inference": "process"}}), processor.routes
    )
    assert given == [0]
    ours = load_settings(None, {"input": {"topics": ["t"]}})  # our record: explained
    assert ours.explained_features == 3
