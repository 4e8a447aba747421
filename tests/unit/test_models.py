"""Networks, preprocessing, training and scoring with tiny deterministic models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.bundle import Bundle, load_bundle
from models.exceptions import DataError
from models.features import paper_features
from models.networks import AnomalyNet, Ensemble, Network
from models.preprocessing import NAN_VALUE, FeatureScaling, Preprocessor, fit_scaling
from models.resources import bundles_dir
from models.scoring import Scorer
from models.table import AlertTable
from models.training import (
    CENTRE_EPS,
    TrainedModel,
    TrainingConfig,
    paper_columns,
    stratified_folds,
    stratified_split,
    train_model,
)

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
        ],
    ),
]


def leaky(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, 0.01 * x)


def reference_forward(net: AnomalyNet, x: np.ndarray) -> np.ndarray:
    """The encoder in numpy (eval-mode BatchNorm), written independently of torch's layers."""
    layers = list(net.encoder.net)
    h = x.astype(np.float64)
    for i, layer in enumerate(layers):
        if isinstance(layer, torch.nn.Linear):
            h = h @ layer.weight.detach().double().numpy().T
            if layer.bias is not None:
                h = h + layer.bias.detach().double().numpy()
        elif isinstance(layer, torch.nn.BatchNorm1d):
            mean = layer.running_mean.double().numpy()
            var = layer.running_var.double().numpy()
            h = (h - mean) / np.sqrt(var + layer.eps) * layer.weight.detach().double().numpy()
            h = h + layer.bias.detach().double().numpy()
        else:
            assert isinstance(layers[i], torch.nn.LeakyReLU)
            h = leaky(h)
    return h


def tiny_net(kind: str, n_features: int = 3, latent: int = 2, n_centres: int = 2) -> AnomalyNet:
    torch.manual_seed(1234)
    net = AnomalyNet(kind, n_features, latent, n_centres)  # type: ignore[arg-type]
    with torch.no_grad():  # non-trivial running statistics
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
        if kind == "mcdsvdd":
            net.centres.copy_(torch.tensor([[0.2, -0.1], [-0.3, 0.4]])[:n_centres])
    return net.eval()


def identity_preprocessor(n: int) -> Preprocessor:
    """Scaling whose output is tanh(x - 0.5 + 0.5) = tanh(x) for linear features."""
    return Preprocessor(tuple(FeatureScaling(f"f{i}", "linear", 0.0, -0.5, 0.5) for i in range(n)))


def bundle_for(net: Network, subclasses: tuple[str, ...] = ()) -> Bundle:
    from models.bundle import Calibration, Manifest, Weights

    first = net.members[0] if isinstance(net, Ensemble) else net
    assert isinstance(first, AnomalyNet)
    n = first.encoder.net[0].in_features
    manifest = Manifest(
        format_version=1,
        model_version="test",
        survey="ztf",
        top_class="Periodic",
        scorer=net.kind,
        feature_names=[f"f{i}" for i in range(n)],
        preprocessing=identity_preprocessor(n).to_manifest(),
        latent_dim=first.latent,
        hidden=[512, 256, 128],
        centres=first.centres.tolist() if isinstance(net, AnomalyNet) else [],
        centre_subclasses=list(subclasses),
        calibration=Calibration(levels=[0.0, 50.0, 100.0], scores=[0.0, 1.0, 3.0]),
        training={},
        created_at="2026-01-01T00:00:00+00:00",
        weights=Weights(sha256=""),
    )
    return Bundle(manifest, net, identity_preprocessor(n))


def test_encoder_layout_matches_the_paper() -> None:
    net = AnomalyNet("mcdsvdd", 91, 64, 6)
    linear = [m for m in net.encoder.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [
        (91, 512),
        (512, 256),
        (256, 128),
        (128, 64),
    ]
    assert [m.bias is not None for m in linear] == [True, True, True, False]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in net.encoder.net) == 3
    ae = AnomalyNet("ae", 91, 64)
    assert ae.decoder is not None
    dec = [m for m in ae.decoder.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in dec] == [
        (64, 128),
        (128, 256),
        (256, 512),
        (512, 91),
    ]
    assert AnomalyNet("vae", 91, 32).encoder.net[-1].out_features == 64  # mean and log-variance


@pytest.mark.parametrize("device", DEVICES)
def test_mcdsvdd_scores_equal_an_independent_computation(device: str) -> None:
    net = tiny_net("mcdsvdd")
    x = np.array([[0.1, -0.2, 0.3], [0.5, 0.0, -0.4], [-0.9, 0.8, 0.05]], dtype=np.float32)
    z = reference_forward(net, np.tanh(x.astype(np.float64)))
    centres = net.centres.double().numpy()
    dist = ((z[:, None, :] - centres[None]) ** 2).sum(-1)
    scores = Scorer(bundle_for(net, ("RRL", "CEP")), device).score(x)
    np.testing.assert_allclose(scores.raw, dist.min(axis=1), rtol=1e-5, atol=1e-7)
    assert scores.nearest == tuple(("RRL", "CEP")[i] for i in dist.argmin(axis=1))
    expected_pct = np.interp(dist.min(axis=1), [0.0, 1.0, 3.0], [0.0, 50.0, 100.0])
    np.testing.assert_allclose(scores.percentile, expected_pct, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_mcdsvdd_nn_scores_are_the_distance_to_the_nearest_reference(device: str) -> None:
    net = tiny_net("mcdsvdd-nn")
    references = torch.tensor([[0.2, -0.1], [-0.3, 0.4], [1.0, 1.0], [0.0, 0.05]])
    net.references = references
    net.reference_subclass = torch.tensor([1, 0, 1, 0])
    x = np.array([[0.1, -0.2, 0.3], [0.5, 0.0, -0.4], [-0.9, 0.8, 0.05]], dtype=np.float32)
    z = reference_forward(net, np.tanh(x.astype(np.float64)))
    dist = ((z[:, None, :] - references.double().numpy()[None]) ** 2).sum(-1)
    scores = Scorer(bundle_for(net, ("RRL", "CEP")), device).score(x)
    np.testing.assert_allclose(scores.raw, dist.min(axis=1), rtol=1e-4, atol=1e-6)
    assert scores.nearest == tuple(("RRL", "CEP")[[1, 0, 1, 0][i]] for i in dist.argmin(axis=1))


@pytest.mark.parametrize("device", DEVICES)
def test_an_ensemble_adds_its_members_scores_and_names_the_consensus_subclass(device: str) -> None:
    members = []
    for seed, shift in ((1, 0.0), (2, 0.3)):
        net = tiny_net("mcdsvdd-nn")
        torch.manual_seed(seed)
        net.apply(
            lambda m: torch.nn.init.normal_(m.weight) if isinstance(m, torch.nn.Linear) else None
        )
        net.references = torch.tensor([[0.2, -0.1], [-0.3, 0.4], [1.0, 1.0], [0.0, 0.05]]) + shift
        net.reference_subclass = torch.tensor([1, 0, 1, 0])
        members.append(net.eval())
    x = np.array([[0.1, -0.2, 0.3], [0.5, 0.0, -0.4], [-0.9, 0.8, 0.05]], dtype=np.float32)
    distances = []
    for net in members:
        z = reference_forward(net, np.tanh(x.astype(np.float64)))
        refs = net.references.double().numpy()
        distances.append(((z[:, None, :] - refs[None]) ** 2).sum(-1))
    scores = Scorer(bundle_for(Ensemble(members), ("RRL", "CEP")), device).score(x)
    expected = sum(d.min(axis=1) for d in distances)
    np.testing.assert_allclose(scores.raw, expected, rtol=1e-4, atol=1e-6)
    consensus = (distances[0] + distances[1]).argmin(axis=1)
    assert scores.nearest == tuple(("RRL", "CEP")[[1, 0, 1, 0][i]] for i in consensus)


def test_an_ensemble_is_the_evaluation_folds_networks_on_shared_references() -> None:
    X, labels = blobs(150)
    names = tuple(f"f{i}" for i in range(6))
    common = {"top_class": "Periodic", "max_epochs": 6, "pretrain_epochs": 3, "latent": 4}
    config = TrainingConfig(scorer="mcdsvdd-ens", members=3, seed=5, **common)  # type: ignore[arg-type]
    ensemble = train_model(X, labels, names, config, progress=False)
    assert isinstance(ensemble.net, Ensemble)
    folds = stratified_folds(labels, 3, np.random.default_rng(5))
    inputs = ensemble.preprocessor(torch.tensor(X, dtype=torch.float32))
    scaling = fit_scaling(X, names)  # one preprocessing, fitted on every inlier
    loo = np.zeros(150)
    for k, (held, member) in enumerate(zip(folds, ensemble.net.members, strict=True)):
        fit = np.setdiff1d(np.arange(150), held)
        alone = TrainingConfig(scorer="mcdsvdd-nn", seed=5 + k, **common)  # type: ignore[arg-type]
        validation = (X[held], labels[held])
        expected = train_model(X[fit], labels[fit], names, alone, False, validation, scaling)
        assert expected.net is not None
        for key, value in expected.net.encoder.state_dict().items():
            torch.testing.assert_close(member.encoder.state_dict()[key], value, rtol=0, atol=0)
        references = member.references.double().numpy()  # every row, in the table's order
        np.testing.assert_allclose(references, reference_forward(member, inputs.numpy()), atol=1e-4)
        assert member.reference_subclass.tolist() == [("A", "B", "C").index(s) for s in labels]
        distances = ((references[:, None, :] - references[None]) ** 2).sum(-1)
        np.fill_diagonal(distances, np.inf)
        loo += distances.min(axis=1)
    assert ensemble.calibration_scores[0] == pytest.approx(loo.min(), abs=1e-6)
    assert ensemble.calibration_scores[-1] == pytest.approx(loo.max(), rel=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_autoencoder_score_is_summed_squared_reconstruction_error(device: str) -> None:
    net = tiny_net("ae")
    x = np.array([[0.1, -0.2, 0.3], [0.5, 0.0, -0.4]], dtype=np.float32)
    inputs = np.tanh(x.astype(np.float64))
    z = reference_forward(net, inputs)
    h = z
    assert net.decoder is not None
    for layer in net.decoder.net:
        if isinstance(layer, torch.nn.Linear):
            h = h @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()
        elif isinstance(layer, torch.nn.BatchNorm1d):
            h = (h - layer.running_mean.double().numpy()) / np.sqrt(
                layer.running_var.double().numpy() + layer.eps
            ) * layer.weight.detach().double().numpy() + layer.bias.detach().double().numpy()
        else:
            h = leaky(h)
    expected = ((np.tanh(h) - inputs) ** 2).sum(axis=1)
    scores = Scorer(bundle_for(net), device).score(x)
    np.testing.assert_allclose(scores.raw, expected, rtol=1e-5, atol=1e-7)
    assert scores.nearest == (None, None)


def test_scores_do_not_depend_on_batch_composition() -> None:
    scorer = Scorer(bundle_for(tiny_net("mcdsvdd"), ("A", "B")), "cpu")
    rows = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    whole = scorer.score(rows).raw
    parts = np.concatenate([scorer.score(rows[i : i + 7]).raw for i in range(0, 64, 7)])
    single = np.array([scorer.score(rows[i : i + 1]).raw[0] for i in range(64)])
    np.testing.assert_array_equal(whole, parts)
    np.testing.assert_array_equal(whole, single)
    np.testing.assert_array_equal(whole, scorer.score(rows).raw)


def test_every_shipped_bundle_scores_bitwise_alike_whatever_the_batching() -> None:
    """300 rows (two full chunks and a rest in small ones) scored at once, in pieces of 7, 33
    and 130 rows and (the first 10) one by one: the same bits, on every shipped bundle
    (features over 16 decades, some undefined)."""
    rng = np.random.default_rng(5)
    manifests = sorted(bundles_dir().glob("*/*/manifest.json"))
    for path in manifests:
        scorer = Scorer(load_bundle(path.parent), "cpu")
        assert scorer.small_chunks, path.parent.name  # on this machine's CPU: checked below
        n = len(scorer.feature_names)
        x = (rng.standard_normal((300, n)) * 10.0 ** rng.uniform(-8, 8, (300, n))).astype(
            np.float32
        )
        x[rng.random((300, n)) < 0.1] = np.nan
        whole = scorer.score(x)
        for size, rows in ((1, 10), (7, 300), (33, 300), (130, 300)):
            parts = [scorer.score(x[i : i + size]) for i in range(0, rows, size)]
            raw = np.concatenate([p.raw for p in parts])
            np.testing.assert_array_equal(raw.view(np.int32), whole.raw[:rows].view(np.int32))
            assert sum((p.nearest for p in parts), ()) == whole.nearest[:rows]


def test_every_shipped_bundle_names_the_configuration_that_trained_it() -> None:
    """Issue 32: no shipped manifest relies on the 'ours' fallback of older bundles; the ZTF
    bundles are the paper configuration, the best evaluated (docs/results.md), as `make bundles`
    trains them; LSST has no paper preprocessing (its features are not the paper's)."""
    named = {}
    for path in sorted(bundles_dir().glob("*/*/manifest.json")):
        manifest = json.loads(path.read_text())
        name = f"{path.parent.parent.name}/{path.parent.name}"
        named[name] = manifest.get("configuration")
        recorded = manifest["training"]["hyperparameters"].get("configuration")
        assert recorded in (None, named[name]), name  # the training record agrees
    assert len(named) == 21
    assert {v for k, v in named.items() if k.startswith("ztf/")} == {"paper"}
    assert {v for k, v in named.items() if k.startswith("lsst/")} == {"ours"}


class ChunkLog:
    """A network that records the rows of every chunk it scores; with ``drift``, its scores
    depend on the chunk's size (as a kernel that blocks differently would)."""

    def __init__(self, net: Network, drift: bool = False) -> None:
        self.net, self.drift, self.rows = net, drift, []

    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.rows.append(len(x))
        raw, nearest = self.net.score(x)
        return (raw + len(x) * 1e-3 if self.drift else raw), nearest


def test_small_batches_run_in_small_chunks_only_where_that_is_bitwise_the_same() -> None:
    scorer = Scorer(bundle_for(tiny_net("mcdsvdd"), ("A", "B")), "cpu")
    assert scorer.small_chunks
    rows = np.random.default_rng(1).normal(size=(300, 3)).astype(np.float32)
    log = ChunkLog(scorer.net)  # type: ignore[arg-type]
    scorer.net = log  # type: ignore[assignment]
    scorer.score(rows[:5])
    scorer.score(rows)
    assert log.rows == [32, 128, 128, 32, 32]  # 5 rows; 300 = 2 x 128 + 44 (in 2 x 32)
    drifting = ChunkLog(log.net, drift=True)
    scorer.net = drifting  # type: ignore[assignment]
    assert not scorer._small_chunks_agree()
    scorer.small_chunks = False
    drifting.rows.clear()
    scorer.score(rows[:5])
    assert drifting.rows == [128]


def test_scorer_rejects_a_matrix_of_the_wrong_width() -> None:
    from models.exceptions import DataError

    scorer = Scorer(bundle_for(tiny_net("ae")), "cpu")
    with pytest.raises(DataError, match="expects a matrix with 3 columns"):
        scorer.score(np.zeros((2, 4), dtype=np.float32))
    assert scorer.score(np.zeros((0, 3), dtype=np.float32)).raw.shape == (0,)


def test_preprocessing_by_hand() -> None:
    scaling = (
        FeatureScaling("lin", "linear", 0.0, 0.0, 10.0),
        FeatureScaling("log", "log", 0.01, -2.0, 2.0),
        FeatureScaling("asinh", "asinh", 2.0, -1.0, 1.0),
    )
    pre = Preprocessor(scaling)
    x = torch.tensor([[5.0, 100.0, 2.0], [np.nan, -3.0, np.inf], [20.0, 0.01, 0.0]])
    out = pre(x).double().numpy()
    expected = np.array(
        [
            [
                np.tanh(0.0),
                np.tanh((2.0 + 2.0) / 4.0 - 0.5),
                np.tanh((np.arcsinh(1.0) + 1.0) / 2.0 - 0.5),
            ],
            [NAN_VALUE, np.tanh((-2.0 + 2.0) / 4.0 - 0.5), NAN_VALUE],  # -3 clipped to the floor
            [np.tanh(1.5), np.tanh(-0.5), np.tanh(0.0)],
        ]
    )
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)


def whole_matrix_preprocessing(pre: Preprocessor, x: torch.Tensor) -> torch.Tensor:
    """The transform written over every column at once (what the bundles were calibrated with
    before the transforms ran on their own columns only)."""
    kinds = [s.kind for s in pre.scaling]
    is_log = torch.tensor([k == "log" for k in kinds])
    is_asinh = torch.tensor([k == "asinh" for k in kinds])
    param = torch.tensor([s.param for s in pre.scaling], dtype=torch.float32)
    low = torch.tensor([s.low for s in pre.scaling], dtype=torch.float32)
    span = torch.tensor([s.high for s in pre.scaling], dtype=torch.float32) - low
    missing = ~torch.isfinite(x)
    x = torch.where(missing, torch.zeros_like(x), x)
    x = torch.where(is_log, torch.log10(torch.maximum(x, torch.where(is_log, param, 1.0))), x)
    x = torch.where(is_asinh, torch.asinh(x / torch.where(is_asinh, param, 1.0)), x)
    x = torch.tanh((x - low) / span - 0.5)
    missing_values = torch.tensor([s.missing for s in pre.scaling], dtype=torch.float32)
    return torch.where(missing, missing_values.expand_as(x), x)


@pytest.mark.parametrize("rows", [1, 7, 128, 1000])
def test_preprocessing_is_bitwise_the_whole_matrix_transform(rows: int) -> None:
    rng = np.random.default_rng(rows)
    manifests = sorted(bundles_dir().glob("*/*/manifest.json"))
    assert len(manifests) >= 15  # every shipped bundle, ZTF and LSST
    for path in manifests:
        pre = load_bundle(path.parent).preprocessor
        n = pre.n_features
        x = (rng.standard_normal((rows, n)) * 10.0 ** rng.uniform(-8, 8, (rows, n))).astype(
            np.float32
        )
        for value, share in ((np.nan, 0.1), (np.inf, 0.01), (-np.inf, 0.01), (0.0, 0.05)):
            x[rng.random((rows, n)) < share] = value
        with torch.inference_mode():
            ours = pre(torch.from_numpy(x.copy())).numpy()
            theirs = whole_matrix_preprocessing(pre, torch.from_numpy(x.copy())).numpy()
        np.testing.assert_array_equal(ours.view(np.int32), theirs.view(np.int32), path.parent.name)


def test_fit_scaling_picks_a_transform_per_column_from_its_own_values() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    heavy_positive = 10 ** rng.uniform(-2, 4, n)
    heavy_signed = rng.standard_cauchy(n) * 5
    normal = rng.normal(3, 1, n)
    with_nan = normal.copy()
    with_nan[::3] = np.nan
    X = np.column_stack([normal, heavy_positive, heavy_signed, with_nan, np.full(n, 7.0)])
    scaling = fit_scaling(X, ("a", "b", "c", "d", "e"))
    assert [s.kind for s in scaling] == ["linear", "log", "asinh", "linear", "linear"]
    assert scaling[1].param == pytest.approx(heavy_positive.min())
    assert scaling[4].high > scaling[4].low  # constant column gets a unit range
    out = Preprocessor(scaling)(torch.tensor(X, dtype=torch.float32)).numpy()
    assert np.all(np.abs(out[:, :3]) < 1.0)
    assert np.mean(np.abs(out[:, 0]) < 0.47) > 0.98  # in-range values stay in tanh(+-0.5)
    np.testing.assert_array_equal(out[::3, 3], NAN_VALUE)


def test_stratified_split_holds_out_every_label() -> None:
    labels = np.array(["a"] * 10 + ["b"] * 3 + ["c"] * 1)
    train, held = stratified_split(labels, 0.2, np.random.default_rng(0))
    assert sorted(np.concatenate([train, held]).tolist()) == list(range(14))
    assert (labels[held] == "a").sum() == 2
    assert (labels[held] == "b").sum() == 1
    assert "c" in labels[train]


def blobs(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated subclasses in 6 features, with some NaN."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 5, 5, 5], [5, 5, 5, 0, 0, 0], [0, 5, 0, 5, 0, 5]], dtype=float)
    labels = np.array(["A", "B", "C"])[np.arange(n) % 3]
    X = centres[np.arange(n) % 3] + rng.normal(0, 0.5, (n, 6))
    X[rng.random((n, 6)) < 0.05] = np.nan
    return X, labels


@pytest.mark.parametrize("scorer", ["mcdsvdd", "deepsvdd", "ae", "vae", "mcdsvdd-nn"])
def test_training_reduces_the_loss_and_is_reproducible(scorer: str) -> None:
    X, labels = blobs()
    names = tuple(f"f{i}" for i in range(6))
    config = TrainingConfig(
        scorer=scorer,
        top_class="Periodic",
        max_epochs=40,
        pretrain_epochs=20,
        patience=40,
        latent=4,
        seed=3,
    )  # type: ignore[arg-type]
    a = train_model(X, labels, names, config, progress=False)
    b = train_model(X, labels, names, config, progress=False)
    for key, value in a.net.state_dict().items():
        torch.testing.assert_close(value, b.net.state_dict()[key], rtol=0, atol=0)
    history = a.metrics["train"]
    assert history["epochs"] >= 1
    assert np.isfinite(history["best_val_loss"])
    assert list(a.calibration_scores) == sorted(a.calibration_scores)
    if scorer in ("mcdsvdd", "mcdsvdd-nn"):
        assert a.centre_subclasses == ("A", "B", "C")
        assert a.net.centres.shape == (3, 4)
        assert torch.all(a.net.centres.abs() >= CENTRE_EPS - 1e-7)


def test_mcdsvdd_nn_keeps_every_training_inlier_and_calibrates_leaving_each_out() -> None:
    X, labels = blobs(150)
    names = tuple(f"f{i}" for i in range(6))
    common = {"top_class": "Periodic", "max_epochs": 10, "pretrain_epochs": 5, "latent": 4}
    held = (X[120:], labels[120:])

    def train(scorer: str) -> TrainedModel:
        config = TrainingConfig(scorer=scorer, **common)  # type: ignore[arg-type]
        return train_model(X[:120], labels[:120], names, config, False, validation=held)

    nn, plain = train("mcdsvdd-nn"), train("mcdsvdd")
    torch.testing.assert_close(nn.net.centres, plain.net.centres, rtol=0, atol=0)  # same network
    references = nn.net.references.double().numpy()
    assert references.shape == (150, 4)  # fitted, then validation rows
    inputs = nn.preprocessor(torch.tensor(X, dtype=torch.float32))
    np.testing.assert_allclose(references, reference_forward(nn.net, inputs.numpy()), atol=1e-4)
    distances = ((references[:, None, :] - references[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    fitted = np.sort(distances.min(axis=1)[: nn.metrics["n_train"]])
    assert nn.calibration_scores[0] == pytest.approx(fitted[0], abs=1e-6)
    assert nn.calibration_scores[-1] == pytest.approx(fitted[-1], rel=1e-4)
    assert nn.calibration_scores[500] > 0


def test_mcdsvdd_flags_an_unseen_cluster() -> None:
    X, labels = blobs(300)
    names = tuple(f"f{i}" for i in range(6))
    config = TrainingConfig(
        scorer="mcdsvdd", top_class="Periodic", max_epochs=60, pretrain_epochs=30, latent=4
    )
    trained = train_model(X[labels != "C"], labels[labels != "C"], names, config, progress=False)
    bundle = Bundle.from_training(trained, config, "ztf", names, {}, "test")
    scores = Scorer(bundle, "cpu").score(X.astype(np.float32))
    assert scores.raw[labels == "C"].mean() > 3 * np.median(scores.raw[labels != "C"])
    known = np.array([n for n, lab in zip(scores.nearest, labels, strict=True) if lab != "C"])
    assert np.mean(known == labels[labels != "C"]) > 0.9  # nearest centre = own subclass


def test_training_config_validation() -> None:
    from models.exceptions import BundleError, ConfigurationError

    with pytest.raises(BundleError, match="unknown scorer 'svm'"):
        TrainingConfig(scorer="svm", top_class="Periodic")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="unknown top-level class 'Variable'"):
        TrainingConfig(scorer="ae", top_class="Variable")
    with pytest.raises(ConfigurationError, match="max_epochs must be positive"):
        TrainingConfig(scorer="ae", top_class="Periodic", max_epochs=0)
    assert TrainingConfig(scorer="ae", top_class="Stochastic").resolved_lr == 5e-3
    assert TrainingConfig(scorer="mcdsvdd", top_class="Transient").resolved_latent == 32


def _table(names: tuple[str, ...]) -> AlertTable:
    n = 4
    features = np.arange(n * len(names), dtype=np.float64).reshape(n, len(names))
    labels = np.array(["RRL"] * n)
    return AlertTable(
        np.array([f"ZTF{i}" for i in range(n)]), labels, np.array(["Periodic"] * n), features,
        names, np.full((n, 3), 1 / 3), np.full((n, 15), 1 / 15),
    )  # fmt: skip


def test_training_uses_the_papers_features_in_their_order() -> None:
    names = paper_features()
    table = _table(("extra_feature", *reversed(names)))
    x, selected = paper_columns(table)
    assert selected == names
    np.testing.assert_array_equal(x[:, 0], table.features[:, table.feature_names.index(names[0])])


def test_a_table_without_some_of_the_papers_features_is_a_data_error() -> None:
    names = paper_features()
    with pytest.raises(
        DataError, match=f"lacks 2 of the paper's {len(names)} features: .*{names[3]}"
    ):
        paper_columns(_table(tuple(n for n in names if n not in names[2:4])))
