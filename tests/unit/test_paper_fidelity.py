"""The ``paper`` configuration step by step against values computed here from the reference code's
own numbers (mperezcarrasco/AnomalyALeRCE, src/utils/norm_scales.py and normalize.py, typed in
below rather than imported): fixed family scales, natural log and clip-then-log families, missing
value fill, centres recomputed on a class-balanced resample, N(0, 0.02) initialisation, the class
AE as pretraining and the reference's stopping rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.bundle import Bundle
from models.networks import AnomalyNet
from models.preprocessing import Preprocessor, paper_scaling
from models.scoring import Scorer
from models.training import TrainingConfig, balanced_resample, new_network, train_model

# feature (today's name) -> (reference family bounds, how the reference transforms it)
TABLE = {
    "Std_1": ((0.03, 0.6), "linear"),
    "g_r_max_12": ((-0.5, 2.2), "linear"),  # 'g-r_max' in 2023
    "PercentAmplitude_2": ((0.0, 0.2), "linear"),  # not 'Amplitude''s (0, 2.4): longest match
    "Eta_e_1": ((8e-4, 4.0), "log"),
    "Pvar_2": ((1e-5, 1.0), "log"),
    "MHPS_low_1": ((1e-4, 30.0), "clip_log"),
    "delta_period_1": ((3e-8, 5.0), "clip_log"),
}
NAMES = tuple(TABLE)
# rows of raw values: in range, out of range, zero/negative, below the clip bound, undefined
RAW = np.array(
    [
        [0.2, 0.7, 0.05, 0.3, 0.5, 2.0, 1e-3],
        [1.5, -2.0, 0.9, 40.0, 1e-7, 500.0, 20.0],
        [0.03, 2.2, 0.0, 0.0, -0.2, 1e-6, 0.0],
        [np.nan, np.inf, -0.1, 8e-4, np.nan, -3.0, -1.0],
    ]
)


def expected_inputs(raw: np.ndarray) -> np.ndarray:
    """The reference's transform with its log branch applied to every value of a log family."""
    out = np.empty_like(raw)
    for j, (low, high) in enumerate(bounds for bounds, _ in TABLE.values()):
        kind = TABLE[NAMES[j]][1]
        for i, x in enumerate(raw[:, j]):
            if not np.isfinite(x):
                out[i, j] = -1.1
            elif kind == "linear":
                out[i, j] = np.tanh((x - low) / (high - low) - 0.5)
            elif kind == "log" and x <= 0:
                out[i, j] = -1.0  # log(x) -> -inf: tanh's limit
            else:
                value = max(x, low) if kind == "clip_log" else x
                ratio = (np.log(value) - np.log(low)) / (np.log(high) - np.log(low))
                out[i, j] = np.tanh(ratio - 0.5)
    return out


def test_family_scales_logs_clips_and_missing_values() -> None:
    pre = Preprocessor(paper_scaling(NAMES))
    got = pre(torch.tensor(RAW, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(got, expected_inputs(RAW), rtol=2e-6, atol=2e-7)
    # spot values worked by hand: the centre of a range is tanh(0) and a clipped value tanh(-0.5)
    assert got[0, 3] == pytest.approx(np.tanh((np.log(0.3 / 8e-4) / np.log(5e3)) - 0.5), abs=1e-6)
    assert got[2, 0] == pytest.approx(np.tanh(-0.5), abs=1e-6)
    assert got[2, 5] == pytest.approx(np.tanh(-0.5), abs=1e-6)
    np.testing.assert_array_equal(got[3, [0, 1, 4]], np.float32(-1.1))


def test_features_without_a_family_are_refused() -> None:
    from models.exceptions import DataError

    with pytest.raises(DataError, match="no scale for 1 features \\(Bazin_A_1\\)"):
        paper_scaling(("Std_1", "Bazin_A_1"))


def test_the_preprocessing_survives_a_bundle(tmp_path: object) -> None:
    names, config, x, y = _blobs_in_paper_features()
    trained = train_model(x, y, names, config, progress=False, validation=(x[:30], y[:30]))
    bundle = Bundle.from_training(trained, config, "ztf", names, {}, "test")
    assert bundle.manifest.configuration == "paper"
    assert {e["missing"] for e in bundle.manifest.preprocessing} == {-1.1}
    pre = Preprocessor.from_manifest(bundle.manifest.preprocessing)
    torch.testing.assert_close(
        pre(torch.tensor(x[:5], dtype=torch.float32)),
        trained.preprocessor(torch.tensor(x[:5], dtype=torch.float32)),
        rtol=0,
        atol=0,
    )
    assert Scorer(bundle, "cpu").score(x[:5].astype(np.float32)).raw.shape == (5,)


def _blobs_in_paper_features(
    scorer: str = "mcdsvdd", patience: int = 100, epochs: int = 6
) -> tuple[tuple[str, ...], TrainingConfig, np.ndarray, np.ndarray]:
    """Three subclasses of unequal size in the table's features, in their families' ranges."""
    rng = np.random.default_rng(5)
    counts = {"A": 90, "B": 50, "C": 30}
    y = np.repeat(list(counts), list(counts.values()))
    lows = np.array([b[0] for b, _ in TABLE.values()])
    highs = np.array([b[1] for b, _ in TABLE.values()])
    shift = {"A": 0.2, "B": 0.5, "C": 0.8}
    position = np.array([shift[s] for s in y])[:, None] + rng.normal(0, 0.05, (y.size, len(NAMES)))
    x = lows + np.clip(position, 0.01, 1.0) * (highs - lows)
    config = TrainingConfig(
        scorer=scorer,  # type: ignore[arg-type]
        top_class="Periodic",
        latent=4,
        max_epochs=epochs,
        patience=patience,
        seed=2,
        configuration="paper",
    )
    return NAMES, config, x, y


def numpy_embed(net: AnomalyNet, x: np.ndarray) -> np.ndarray:
    """The encoder in eval mode, computed with numpy from the layers' parameters."""
    h = x.astype(np.float64)
    for layer in net.encoder.net:
        if isinstance(layer, torch.nn.Linear):
            h = h @ layer.weight.detach().double().numpy().T
            if layer.bias is not None:
                h = h + layer.bias.detach().double().numpy()
        elif isinstance(layer, torch.nn.BatchNorm1d):
            assert layer.running_mean is not None
            assert layer.running_var is not None
            h = (h - layer.running_mean.double().numpy()) / np.sqrt(
                layer.running_var.double().numpy() + layer.eps
            )
            h = h * layer.weight.detach().double().numpy() + layer.bias.detach().double().numpy()
        else:
            h = np.where(h > 0, h, 0.01 * h)
    return h


def test_centres_are_recomputed_from_the_trained_encoder_on_a_balanced_resample() -> None:
    names, config, x, y = _blobs_in_paper_features()
    fit, held = np.arange(x.shape[0]) % 5 != 0, np.arange(x.shape[0]) % 5 == 0
    trained = train_model(
        x[fit], y[fit], names, config, progress=False, validation=(x[held], y[held])
    )
    resample = balanced_resample(y[fit], config.seed + 1).numpy()
    # the resample draws every subclass about equally often, whatever its size
    drawn = np.unique(y[fit][resample], return_counts=True)[1] / resample.size
    np.testing.assert_allclose(drawn, 1 / 3, atol=0.1)
    z = numpy_embed(trained.net, expected_inputs(x[fit])[resample])
    labels = y[fit][resample]
    means = np.stack([z[labels == s].mean(axis=0) for s in trained.centre_subclasses])
    expected = np.where(np.abs(means) < 0.01, np.where(means < 0, -0.01, 0.01), means)
    np.testing.assert_allclose(trained.net.centres.double().numpy(), expected, rtol=1e-4, atol=1e-5)
    # not the centres of all fitted rows: those weight the subclasses by their sizes
    plain = numpy_embed(trained.net, expected_inputs(x[fit])).mean(axis=0)
    assert not np.allclose(trained.net.centres.double().numpy().mean(axis=0), plain, atol=1e-4)


def test_initialisation_is_normal_with_std_002_for_weights_and_biases() -> None:
    def linear_parameters(configuration: str) -> np.ndarray:
        config = TrainingConfig(scorer="ae", top_class="Periodic", configuration=configuration)  # type: ignore[arg-type]
        torch.manual_seed(0)
        net = new_network("ae", 129, 64, 1, config)
        values = [
            p.detach().numpy().ravel()
            for m in net.modules()
            if isinstance(m, torch.nn.Linear)
            for p in (m.weight, m.bias)
            if p is not None
        ]
        return np.concatenate(values)

    paper = linear_parameters("paper")
    assert paper.size > 300_000
    assert abs(paper.mean()) < 3 * 0.02 / np.sqrt(paper.size)
    assert paper.std() == pytest.approx(0.02, rel=0.01)
    assert np.mean(np.abs(paper) > 2 * 0.02) == pytest.approx(0.0455, abs=0.002)  # Gaussian tails
    ours = linear_parameters("ours")  # PyTorch's uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert ours.std() > 0.03
    config = TrainingConfig(scorer="ae", top_class="Periodic", configuration="paper")
    batch_norms = [
        m
        for m in new_network("ae", 5, 4, 1, config).modules()
        if isinstance(m, torch.nn.BatchNorm1d)
    ]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in batch_norms)


def test_pretraining_is_the_class_autoencoder() -> None:
    names, config, x, y = _blobs_in_paper_features(epochs=12)
    validation = (x[::4], y[::4])
    svdd = train_model(x, y, names, config, progress=False, validation=validation)
    ae_config = TrainingConfig(
        scorer="ae", top_class="Periodic", latent=4, max_epochs=12, seed=2, configuration="paper"
    )
    ae = train_model(x, y, names, ae_config, progress=False, validation=validation)
    assert svdd.metrics["pretrain"] == ae.metrics["train"]  # same AE: lr 1e-3, epochs, patience
    assert ae_config.resolved_lr == 1e-3
    assert config.resolved_lr == 5e-4


@pytest.mark.parametrize(("configuration", "waited"), [("paper", 4), ("ours", 3)])
def test_early_stopping_waits_patience_plus_one_epochs_in_the_paper(
    configuration: str, waited: int
) -> None:
    names, _, x, y = _blobs_in_paper_features()
    config = TrainingConfig(
        scorer="ae", top_class="Periodic", latent=4, max_epochs=400, patience=3, seed=1,
        configuration=configuration,  # type: ignore[arg-type]
    )  # fmt: skip
    trained = train_model(x, y, names, config, progress=False, validation=(x[::3], y[::3]))
    history = trained.metrics["train"]
    assert history["epochs"] < 400  # stopped early
    assert history["epochs"] - history["best_epoch"] == waited


@pytest.mark.parametrize("configuration", ["paper", "ours"])
def test_the_autoencoder_loss_is_reduced_as_the_configuration_says(configuration: str) -> None:
    """The reference trains its AE on ``F.mse_loss(x_hat, x, reduction='mean')``: the squared
    error averaged over features and rows; ``ours`` sums over the features. The validation loss
    the training reports is that loss of the network it returns."""
    names, _, x, y = _blobs_in_paper_features()
    config = TrainingConfig(
        scorer="ae", top_class="Periodic", latent=4, max_epochs=5, seed=3,
        configuration=configuration,  # type: ignore[arg-type]
    )  # fmt: skip
    held = (x[::3], y[::3])
    trained = train_model(x, y, names, config, progress=False, validation=held)
    net = trained.net.eval()
    with torch.no_grad():
        inputs = trained.preprocessor(torch.tensor(held[0], dtype=torch.float32))
        squared = torch.nn.functional.mse_loss(net.reconstruct(inputs), inputs, reduction="none")
    expected = squared.mean() if configuration == "paper" else squared.sum(dim=1).mean()
    assert trained.metrics["train"]["best_val_loss"] == pytest.approx(float(expected), rel=1e-5)
    other = squared.sum(dim=1).mean() if configuration == "paper" else squared.mean()
    assert trained.metrics["train"]["best_val_loss"] != pytest.approx(float(other), rel=1e-2)
