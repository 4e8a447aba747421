"""Training of the anomaly networks with the paper's settings: Adam, batches of 1024 drawn with
balanced sampling by subclass, early stopping on the validation loss (patience 100), the paper's
learning rate and latent size per class and scorer.

MCDSVDD and Deep SVDD first pretrain an autoencoder; the encoder's mean latent per subclass (one
overall mean for Deep SVDD), with near-zero coordinates pushed to +-0.01, become the centres.
The encoder is then trained to pull each latent towards its own subclass's centre. How the
autoencoder is pretrained, whether the centres are recomputed after training, the preprocessing,
the initialisation and the stopping rule follow the named configuration
(:mod:`models.configurations`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog
import torch
from numpy.typing import NDArray
from tqdm import tqdm

from models.configurations import (
    DEFAULT_CONFIGURATION,
    Configuration,
    ConfigurationName,
    get_configuration,
)
from models.exceptions import ConfigurationError, DataError
from models.features import paper_features
from models.networks import AnomalyNet, Ensemble, Network, init_normal, squared_distances
from models.preprocessing import FeatureScaling, Preprocessor, fit_scaling, paper_scaling
from models.scorers import (
    ENSEMBLE_KINDS,
    ESTIMATOR_KINDS,
    MULTI_CENTRE_KINDS,
    SVDD_KINDS,
    ScorerKind,
    check_scorer,
)
from models.table import AlertTable
from models.taxonomy import check_model_class

if TYPE_CHECKING:
    from models.estimators import Estimator

log = structlog.get_logger(__name__)

CENTRE_EPS = 0.01
MAX_REFERENCES = 20_000  # training inliers kept as mcdsvdd-nn references (a random subset beyond)
ENSEMBLE_MEMBERS = 5  # the paper's K folds
CALIBRATION_LEVELS = tuple(float(q) for q in np.linspace(0.0, 100.0, 1001))

# (top-level class, scorer) -> (learning rate, latent size), from the paper's Table of settings.
PAPER_SETTINGS: dict[tuple[str, str], tuple[float, int]] = {
    ("Transient", "mcdsvdd"): (5e-4, 32),
    ("Transient", "ae"): (5e-4, 32),
    ("Periodic", "mcdsvdd"): (5e-4, 64),
    ("Periodic", "ae"): (1e-3, 64),
    ("Stochastic", "mcdsvdd"): (5e-4, 64),
    ("Stochastic", "ae"): (5e-3, 64),
}


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters; ``lr``/``latent`` default to the paper's values for the class, the rest
    of the method to the named configuration (models.configurations)."""

    scorer: ScorerKind
    top_class: str
    lr: float | None = None
    latent: int | None = None
    batch_size: int = 1024
    max_epochs: int = 1000
    pretrain_epochs: int | None = None  # default: ours 300, paper max_epochs
    patience: int = 100
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "cpu"
    configuration: ConfigurationName = DEFAULT_CONFIGURATION
    members: int = ENSEMBLE_MEMBERS  # mcdsvdd-ens: networks, one per fold of the inliers

    def __post_init__(self) -> None:
        check_scorer(self.scorer)
        check_model_class(self.top_class)
        get_configuration(self.configuration)
        if self.members < 2:
            raise ConfigurationError(f"an ensemble needs 2 or more members, got {self.members}")
        for name in ("batch_size", "max_epochs", "patience"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be positive, got {getattr(self, name)}")
        if self.pretrain_epochs is not None and self.pretrain_epochs < 0:
            raise ConfigurationError(f"pretrain_epochs must be >= 0, got {self.pretrain_epochs}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigurationError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}")
        if self.lr is not None and self.lr <= 0:
            raise ConfigurationError(f"lr must be positive, got {self.lr}")
        if self.latent is not None and self.latent <= 0:
            raise ConfigurationError(f"latent must be positive, got {self.latent}")

    @property
    def method(self) -> Configuration:
        return get_configuration(self.configuration)

    @property
    def _paper_settings(self) -> tuple[float, int]:
        same_network = self.scorer in ("mcdsvdd-nn", "mcdsvdd-ens")
        kind = "mcdsvdd" if same_network else self.scorer
        return PAPER_SETTINGS.get((self.top_class, kind), (5e-4, 64))

    @property
    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else self._paper_settings[0]

    @property
    def resolved_latent(self) -> int:
        if self.scorer in ESTIMATOR_KINDS:
            return 0  # no network
        return self.latent if self.latent is not None else self._paper_settings[1]

    @property
    def resolved_pretrain_epochs(self) -> int:
        if self.pretrain_epochs is not None:
            return self.pretrain_epochs
        return self.max_epochs if self.method.pretraining == "class_ae" else 300

    @property
    def pretrain_lr(self) -> float:
        """Learning rate of the (MC)DSVDD's autoencoder pretraining."""
        if self.method.pretraining == "class_ae":
            return PAPER_SETTINGS[(self.top_class, "ae")][0]
        return self.resolved_lr

    def as_dict(self) -> dict[str, Any]:
        if self.scorer in ESTIMATOR_KINDS:
            from models.estimators import DISTCLASSIPY_SETTINGS, IFOREST_SETTINGS

            settings = IFOREST_SETTINGS if self.scorer == "iforest" else DISTCLASSIPY_SETTINGS
            return {
                "configuration": self.configuration,
                "scorer": self.scorer,
                "top_class": self.top_class,
                "preprocessing": self.method.preprocessing,
                "settings": dict(settings),
                "known_classes": "subclasses" if self.scorer == "distclassipy" else None,
            }
        out: dict[str, Any] = {
            "configuration": self.configuration,
            "scorer": self.scorer,
            "top_class": self.top_class,
            "lr": self.resolved_lr,
            "latent": self.resolved_latent,
            "batch_size": self.batch_size,
            "max_epochs": self.max_epochs,
            "patience": self.patience,
            "val_fraction": self.val_fraction,
            "weight_decay": self.method.weight_decay,
            "initialisation": self.method.init,
            "seed": self.seed,
            "optimizer": "Adam",
            "sampling": "balanced by subclass",
        }
        if self.scorer in SVDD_KINDS:
            out["pretraining"] = {
                "kind": self.method.pretraining,
                "lr": self.pretrain_lr,
                "max_epochs": self.resolved_pretrain_epochs,
            }
            out["centres"] = "recomputed" if self.method.recompute_centres else "pretrained"
        if self.scorer in ENSEMBLE_KINDS:
            out["members"] = self.members
        return out


@dataclass
class TrainedModel:
    net: Network | None  # None for the estimator kinds
    preprocessor: Preprocessor
    centre_subclasses: tuple[str, ...]
    calibration_scores: tuple[
        float, ...
    ]  # score quantiles of training inliers at CALIBRATION_LEVELS
    metrics: dict[str, Any] = field(default_factory=dict)
    estimator: Estimator | None = None  # iforest, distclassipy (models.estimators)


def paper_columns(table: AlertTable) -> tuple[NDArray[np.float64], tuple[str, ...]]:
    """The table's features that the paper's models use (:func:`models.features.paper_features`,
    in that order) and their names; DataError naming the ones the table lacks."""
    names = paper_features()
    missing = [n for n in names if n not in table.feature_names]
    if missing:
        raise DataError(
            f"the table lacks {len(missing)} of the paper's {len(names)} features: "
            f"{', '.join(missing)}"
        )
    return table.columns(names), names


def model_columns(table: AlertTable) -> tuple[NDArray[np.float64], tuple[str, ...]]:
    """The features a model of the table's survey uses, in order: ZTF, the paper's
    (:func:`paper_columns`); LSST, the diaObject fields every Rubin alert schema version carries
    (the table's ``feature_sets['diaobject']`` metadata, else :func:`models.rubin.feature_set`).
    DataError naming the ones the table lacks."""
    if table.metadata.get("survey") != "lsst":
        return paper_columns(table)
    saved = table.metadata.get("feature_sets", {}).get("diaobject")
    if saved:
        names = tuple(str(n) for n in saved)
    else:
        from models.rubin import feature_set

        names = feature_set()
    missing = [n for n in names if n not in table.feature_names]
    if missing:
        raise DataError(f"the table lacks {len(missing)} of the LSST model's features: {missing}")
    return table.columns(names), names


def stratified_split(
    labels: NDArray[np.str_], fraction: float, rng: np.random.Generator
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Indices (train, held) with ``fraction`` of every label held out (at least one when the
    label has two or more rows)."""
    train, held = [], []
    for label in sorted(set(labels.tolist())):
        idx = rng.permutation(np.flatnonzero(labels == label))
        k = round(fraction * idx.size)
        k = min(max(k, 1), idx.size - 1) if idx.size >= 2 else 0
        held.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def stratified_folds(
    labels: NDArray[np.str_], k: int, rng: np.random.Generator
) -> list[NDArray[np.intp]]:
    """K disjoint folds covering every row, each label's rows dealt evenly among them."""
    order = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == lab)) for lab in sorted(set(labels.tolist()))]
    )
    return [np.sort(order[j::k]) for j in range(k)]


class _BalancedBatches:
    """Epochs of len(labels) indices drawn with replacement, each subclass equally likely."""

    def __init__(
        self, labels: NDArray[np.str_], batch_size: int, generator: torch.Generator
    ) -> None:
        counts = {lab: int((labels == lab).sum()) for lab in set(labels.tolist())}
        self.weights = torch.tensor(
            [1.0 / counts[lab] for lab in labels.tolist()], dtype=torch.float64
        )
        self.batch_size = batch_size
        self.generator = generator

    def __call__(self) -> list[torch.Tensor]:
        n = self.weights.numel()
        idx = torch.multinomial(self.weights, n, replacement=True, generator=self.generator)
        return list(idx.split(self.batch_size))


def balanced_resample(labels: NDArray[np.str_], seed: int) -> torch.Tensor:
    """len(labels) row indices drawn with replacement, every label equally likely (one epoch of
    the reference's weighted sampler)."""
    generator = torch.Generator().manual_seed(seed)
    (resample,) = _BalancedBatches(labels, len(labels), generator)()
    return resample


LossFn = Callable[[AnomalyNet, torch.Tensor, torch.Tensor], torch.Tensor]


def _reconstruction_loss(net: AnomalyNet, x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    return ((net.reconstruct(x) - x) ** 2).sum(dim=1).mean()


def _vae_loss(net: AnomalyNet, x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    """Negative ELBO: squared reconstruction error of a sample plus the KL to N(0, I)."""
    assert net.decoder is not None
    h = net.encoder(x)
    mu, logvar = h[:, : net.latent], h[:, net.latent :].clamp(-10.0, 10.0)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    recon = ((net.decoder(z) - x) ** 2).sum(dim=1)
    kl = -0.5 * (1.0 + logvar - mu**2 - logvar.exp()).sum(dim=1)
    return (recon + kl).mean()


def _svdd_loss(net: AnomalyNet, x: torch.Tensor, centre_index: torch.Tensor) -> torch.Tensor:
    z = net.embed(x)
    return ((z - net.centres[centre_index]) ** 2).sum(dim=1).mean()


@dataclass(frozen=True)
class _Data:
    """Network inputs and centre indices of the fitted and the validation rows."""

    x_train: torch.Tensor
    c_train: torch.Tensor
    x_val: torch.Tensor
    c_val: torch.Tensor
    subclasses: NDArray[np.str_]  # of the fitted rows, for balanced sampling

    def single_centre(self) -> _Data:
        c_train, c_val = torch.zeros_like(self.c_train), torch.zeros_like(self.c_val)
        return _Data(self.x_train, c_train, self.x_val, c_val, self.subclasses)


def _fit(
    net: AnomalyNet,
    params: list[torch.nn.Parameter],
    loss_fn: LossFn,
    data: _Data,
    config: TrainingConfig,
    lr: float,
    max_epochs: int,
    stage: str,
    progress: bool,
) -> dict[str, Any]:
    """Adam on balanced batches with early stopping on the validation loss; restores the best
    weights. Stops after ``patience`` (+ the configuration's extra) epochs without improvement."""
    batches = _BalancedBatches(
        data.subclasses, config.batch_size, torch.Generator().manual_seed(config.seed)
    )
    method = config.method
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=method.weight_decay)
    best, best_epoch, best_state = float("inf"), 0, copy.deepcopy(net.state_dict())
    train_loss = float("nan")
    bar = tqdm(
        range(1, max_epochs + 1), desc=stage, unit="epoch", disable=not progress, leave=False
    )
    epoch = 0
    for epoch in bar:
        net.train()
        total = 0.0
        for idx in batches():
            if idx.numel() < 2:  # BatchNorm needs two rows
                continue
            optimizer.zero_grad()
            loss = loss_fn(net, data.x_train[idx], data.c_train[idx])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * idx.numel()
        train_loss = total / data.x_train.shape[0]
        net.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(net, data.x_val, data.c_val))
        if val_loss < best:
            best, best_epoch, best_state = val_loss, epoch, copy.deepcopy(net.state_dict())
        log.debug(
            "epoch",
            stage=stage,
            epoch=epoch,
            train_loss=float(f"{train_loss:.4g}"),
            val_loss=float(f"{val_loss:.4g}"),
        )
        bar.set_postfix(train=f"{train_loss:.4g}", val=f"{val_loss:.4g}", best=f"{best:.4g}")
        if epoch - best_epoch >= config.patience + method.extra_patience:
            break
    net.load_state_dict(best_state)
    return {
        "epochs": epoch,
        "best_epoch": best_epoch,
        "best_val_loss": best,
        "last_train_loss": train_loss,
    }


def _push_from_zero(centres: torch.Tensor) -> torch.Tensor:
    """Coordinates closer to 0 than CENTRE_EPS pushed to +-CENTRE_EPS (Ruff et al. 2018)."""
    small = centres.abs() < CENTRE_EPS
    sign = torch.where(centres < 0, -1.0, 1.0)
    return torch.where(small, sign * CENTRE_EPS, centres)


def _group_means(z: torch.Tensor, groups: torch.Tensor, n: int) -> torch.Tensor:
    return torch.stack([z[groups == k].mean(dim=0) for k in range(n)])


def _centres(net: AnomalyNet, x: torch.Tensor, groups: torch.Tensor, n: int) -> torch.Tensor:
    """Mean latent per group of the rows ``x`` (eval mode), pushed away from zero."""
    net.eval()
    with torch.no_grad():
        z = net.embed(x)
    return _push_from_zero(_group_means(z, groups, n))


def _balanced_epoch_centres(
    net: AnomalyNet, data: _Data, groups: torch.Tensor, n: int, config: TrainingConfig
) -> torch.Tensor:
    """The reference's first centres: mean latent per group over one epoch of balanced batches
    with BatchNorm in training mode (batch statistics, running statistics updated)."""
    batches = _BalancedBatches(
        data.subclasses, config.batch_size, torch.Generator().manual_seed(config.seed)
    )
    latents, labels = [], []
    net.train()
    with torch.no_grad():
        for idx in batches():
            if idx.numel() < 2:
                continue
            latents.append(net.embed(data.x_train[idx]))
            labels.append(groups[idx])
    return _push_from_zero(_group_means(torch.cat(latents), torch.cat(labels), n))


def _recomputed_centres(
    net: AnomalyNet, data: _Data, groups: torch.Tensor, n: int, config: TrainingConfig
) -> torch.Tensor:
    """The reference's test-time centres: mean latent per group of the trained encoder (eval
    mode) over a class-balanced resample (with replacement) of the fitted rows."""
    resample = balanced_resample(data.subclasses, config.seed + 1)
    return _centres(net, data.x_train[resample], groups[resample], n)


def new_network(
    kind: ScorerKind, n_features: int, latent: int, n_centres: int, config: TrainingConfig
) -> AnomalyNet:
    """An untrained network, initialised as the configuration says, on the training device."""
    net = AnomalyNet(kind, n_features, latent, n_centres)
    if config.method.init == "normal":
        net.apply(init_normal)
    return net.to(torch.device(config.device))


def _train_svdd(
    net: AnomalyNet, data: _Data, n_centres: int, config: TrainingConfig, progress: bool
) -> dict[str, Any]:
    """Pretrain an autoencoder, take its encoder and first centres, train the encoder towards
    them, and (paper) recompute the centres from the trained encoder."""
    method = config.method
    data = data if config.scorer in MULTI_CENTRE_KINDS else data.single_centre()
    n_features = data.x_train.shape[1]
    metrics: dict[str, Any] = {}
    torch.manual_seed(config.seed)  # the paper's pretraining is the class's AE of this seed
    pretrain = new_network("ae", n_features, config.resolved_latent, 1, config)
    if config.resolved_pretrain_epochs:
        metrics["pretrain"] = _fit(
            pretrain, list(pretrain.parameters()), _reconstruction_loss, data, config,
            config.pretrain_lr, config.resolved_pretrain_epochs, f"{config.scorer}:pretrain",
            progress,
        )  # fmt: skip
    net.encoder.load_state_dict(pretrain.encoder.state_dict())
    if method.pretraining == "class_ae":
        centres = _balanced_epoch_centres(net, data, data.c_train, n_centres, config)
    else:
        centres = _centres(net, data.x_train, data.c_train, n_centres)
    net.centres.copy_(centres)
    metrics["train"] = _fit(
        net, list(net.encoder.parameters()), _svdd_loss, data, config, config.resolved_lr,
        config.max_epochs, config.scorer, progress,
    )  # fmt: skip
    if method.recompute_centres:
        net.centres.copy_(_recomputed_centres(net, data, data.c_train, n_centres, config))
    return metrics


def _set_references(net: AnomalyNet, data: _Data, seed: int) -> None:
    """mcdsvdd-nn: the latents of every training inlier (fitted and validation rows; at most
    MAX_REFERENCES, a random subset beyond) and their subclass indices."""
    x = torch.cat([data.x_train, data.x_val])
    groups = torch.cat([data.c_train, data.c_val])
    if x.shape[0] > MAX_REFERENCES:
        keep = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
        x, groups = x[keep[:MAX_REFERENCES]], groups[keep[:MAX_REFERENCES]]
    net.eval()
    with torch.no_grad():
        net.references = net.embed(x)
    net.reference_subclass = groups


def _leave_one_out_scores(references: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Each reference's squared distance to its nearest other reference: what a new inlier's
    mcdsvdd-nn score is distributed like (its own distance, 0, would say nothing)."""
    out = []
    for start in range(0, references.shape[0], chunk):
        distances = squared_distances(references[start : start + chunk], references)
        rows = torch.arange(distances.shape[0])
        distances[rows, start + rows] = float("inf")
        out.append(distances.min(dim=1).values)
    return torch.cat(out)


def _inlier_scores(net: AnomalyNet, data: _Data) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Scores of the fitted and the validation rows (leave-one-out for mcdsvdd-nn)."""
    net.eval()
    with torch.no_grad():
        if net.kind == "mcdsvdd-nn" and net.references.shape[0] > 1:
            scores = _leave_one_out_scores(net.references)
            n = data.x_train.shape[0]
            if scores.shape[0] == n + data.x_val.shape[0]:
                return scores[:n].cpu().double().numpy(), scores[n:].cpu().double().numpy()
            return scores.cpu().double().numpy(), scores.cpu().double().numpy()
        train = net.score(data.x_train)[0].cpu().double().numpy()
        return train, net.score(data.x_val)[0].cpu().double().numpy()


def _scaling(
    x: NDArray[np.float64], names: tuple[str, ...], config: TrainingConfig
) -> tuple[FeatureScaling, ...]:
    """The configuration's preprocessing: the paper's fixed scales, or ours fitted on ``x``."""
    return paper_scaling(names) if config.method.preprocessing == "paper" else fit_scaling(x, names)


def preprocess(preprocessor: Preprocessor, features: NDArray[np.float64]) -> NDArray[np.float64]:
    """Network inputs of raw features (NaN = undefined) as float64, computed on the CPU in
    float32 chunks of 128 rows (the scoring path's layout, models.scoring)."""
    n = features.shape[0]
    padded = np.zeros((-(-n // 128) * 128, features.shape[1]), np.float32)
    padded[:n] = features
    with torch.inference_mode():
        x = preprocessor(torch.from_numpy(padded))
    return np.asarray(x.numpy()[:n], dtype=np.float64)


def _train_estimator(
    preprocessor: Preprocessor,
    fit: tuple[NDArray[np.float64], NDArray[np.str_]],
    held: tuple[NDArray[np.float64], NDArray[np.str_]],
    config: TrainingConfig,
    names: tuple[str, ...],
    started: float,
) -> TrainedModel:
    """Fit the tutorial's detector on the preprocessed fitted rows; calibrate on their scores."""
    from models.estimators import fit_estimator

    x_fit, y_fit = preprocess(preprocessor, fit[0]), fit[1]
    estimator = fit_estimator(config.scorer, x_fit, y_fit)
    train_scores = estimator.score(x_fit)[0].astype(np.float32).astype(np.float64)
    val_scores = estimator.score(preprocess(preprocessor, held[0]))[0].astype(np.float32)
    calibration = tuple(float(v) for v in np.percentile(train_scores, CALIBRATION_LEVELS))
    metrics: dict[str, Any] = {
        "n_train": int(x_fit.shape[0]),
        "n_validation": int(held[0].shape[0]),
        "subclass_counts": {s: int((y_fit == s).sum()) for s in names},
        "validation_score_median": float(np.median(val_scores)),
        "train_score_median": float(np.median(train_scores)),
        "seconds": round(time.perf_counter() - started, 2),
    }
    centre_names: tuple[str, ...] = tuple(getattr(estimator, "classes", ()))
    return TrainedModel(None, preprocessor, centre_names, calibration, metrics, estimator)


def train_model(
    features: NDArray[np.float64],
    subclasses: NDArray[np.str_],
    feature_names: tuple[str, ...],
    config: TrainingConfig,
    progress: bool = True,
    validation: tuple[NDArray[np.float64], NDArray[np.str_]] | None = None,
    scaling: tuple[FeatureScaling, ...] | None = None,
) -> TrainedModel:
    """Train one scorer on the inliers ``features`` (raw, NaN = undefined) of one class.

    Early stopping uses ``validation`` (features, subclasses) when given, e.g. the held-out fold
    of the evaluation; otherwise a stratified ``val_fraction`` of the rows, which are not fitted.
    ``scaling`` fixes the preprocessing (default: the configuration's). An ensemble
    (``mcdsvdd-ens``) makes its own folds: see :func:`train_ensemble`.
    """
    if features.shape[0] != subclasses.shape[0]:
        raise DataError("features and labels have different lengths")
    if features.shape[0] < 8:
        raise DataError(f"{features.shape[0]} objects are too few to train a {config.scorer}")
    if config.scorer in ENSEMBLE_KINDS:
        return train_ensemble(features, subclasses, feature_names, config, progress)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    if validation is None:
        rng = np.random.default_rng(config.seed)
        train_idx, val_idx = stratified_split(subclasses, config.val_fraction, rng)
        x_fit, y_fit = features[train_idx], subclasses[train_idx]
        x_held, y_held = features[val_idx], subclasses[val_idx]
    else:
        x_fit, y_fit = features, subclasses
        x_held, y_held = validation
    names = tuple(sorted(set(y_fit.tolist())))
    unknown = sorted(set(y_held.tolist()) - set(names))
    if unknown:
        raise DataError(f"validation subclasses {unknown} have no training rows")
    preprocessor = Preprocessor(scaling or _scaling(x_fit, feature_names, config))
    if config.scorer in ESTIMATOR_KINDS:
        return _train_estimator(
            preprocessor, (x_fit, y_fit), (x_held, y_held), config, names, started
        )
    device = torch.device(config.device)

    def inputs(x: NDArray[np.float64], y: NDArray[np.str_]) -> tuple[torch.Tensor, torch.Tensor]:
        tensor = preprocessor(torch.as_tensor(x, dtype=torch.float32)).to(device)
        return tensor, torch.as_tensor([names.index(s) for s in y.tolist()], device=device)

    data = _Data(*inputs(x_fit, y_fit), *inputs(x_held, y_held), y_fit)
    n_centres = len(names) if config.scorer in MULTI_CENTRE_KINDS else 1
    net = new_network(config.scorer, len(feature_names), config.resolved_latent, n_centres, config)
    metrics: dict[str, Any] = {
        "n_train": int(x_fit.shape[0]),
        "n_validation": int(x_held.shape[0]),
        "subclass_counts": {s: int((y_fit == s).sum()) for s in names},
    }
    if config.scorer in SVDD_KINDS:
        metrics.update(_train_svdd(net, data, n_centres, config, progress))
        if config.scorer == "mcdsvdd-nn":
            _set_references(net, data, config.seed)
            metrics["n_references"] = int(net.references.shape[0])
    else:
        loss = _vae_loss if config.scorer == "vae" else _reconstruction_loss
        metrics["train"] = _fit(
            net, list(net.parameters()), loss, data, config, config.resolved_lr,
            config.max_epochs, config.scorer, progress,
        )  # fmt: skip

    train_scores, val_scores = _inlier_scores(net, data)
    calibration = tuple(float(v) for v in np.percentile(train_scores, CALIBRATION_LEVELS))
    metrics["validation_score_median"] = float(np.median(val_scores))
    metrics["train_score_median"] = float(np.median(train_scores))
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    centre_names = names if config.scorer in MULTI_CENTRE_KINDS else ()
    return TrainedModel(net.cpu(), preprocessor, centre_names, calibration, metrics)


def train_ensemble(
    features: NDArray[np.float64],
    subclasses: NDArray[np.str_],
    feature_names: tuple[str, ...],
    config: TrainingConfig,
    progress: bool = True,
) -> TrainedModel:
    """mcdsvdd-ens: the inliers are split in ``config.members`` folds stratified by subclass (as
    the evaluation splits them); member k is an mcdsvdd-nn fitted on the other folds, stopped
    early on fold k, with seed ``config.seed + k``. One preprocessing for all (fitted on every
    inlier for ``ours``). Every member's references are then the same inliers in the same order
    (all of them, or one random subset beyond MAX_REFERENCES), and the calibration scores are the
    members' leave-one-out scores added."""
    started = time.perf_counter()
    scaling = _scaling(features, feature_names, config)
    folds = stratified_folds(subclasses, config.members, np.random.default_rng(config.seed))
    member_config = replace(config, scorer="mcdsvdd-nn")
    members: list[TrainedModel] = []
    for k, held in enumerate(folds):
        fit = np.setdiff1d(np.arange(features.shape[0]), held)
        member = train_model(
            features[fit], subclasses[fit], feature_names,
            replace(member_config, seed=config.seed + k), progress,
            validation=(features[held], subclasses[held]), scaling=scaling,
        )  # fmt: skip
        members.append(member)
    names = members[0].centre_subclasses
    if any(m.centre_subclasses != names for m in members):
        raise DataError("every subclass needs a row in every fold: too few rows for an ensemble")
    keep = np.arange(features.shape[0])
    if keep.size > MAX_REFERENCES:
        order = torch.randperm(keep.size, generator=torch.Generator().manual_seed(config.seed))
        keep = np.sort(order[:MAX_REFERENCES].numpy())
    preprocessor = Preprocessor(scaling)
    with torch.no_grad():
        x = preprocessor(torch.as_tensor(features[keep], dtype=torch.float32))
    groups = torch.as_tensor([names.index(s) for s in subclasses[keep].tolist()])
    nets: list[AnomalyNet] = []
    loo = torch.zeros(keep.size, dtype=torch.float64)
    for member in members:
        net = member.net
        assert isinstance(net, AnomalyNet)
        net.eval()
        with torch.no_grad():
            net.references = net.embed(x)
        net.reference_subclass = groups.clone()  # saved once per member
        loo += _leave_one_out_scores(net.references).double()
        nets.append(net)
    scores = loo.numpy()
    metrics: dict[str, Any] = {
        "n_train": int(features.shape[0]),
        "n_references": int(keep.size),
        "members": [m.metrics for m in members],
        "train_score_median": float(np.median(scores)),
        "seconds": round(time.perf_counter() - started, 2),
    }
    calibration = tuple(float(v) for v in np.percentile(scores, CALIBRATION_LEVELS))
    return TrainedModel(Ensemble(nets), preprocessor, names, calibration, metrics)
