"""Model bundles: one directory per (survey, top-level class, scorer) holding ``manifest.json``
and the weights in ``model.safetensors`` - or, for the Rubin tutorial's detectors (``iforest``,
``distclassipy``, :mod:`models.estimators`), the fitted estimator pickled in ``model.pkl.xz``, whose
SHA-256 is verified before it is unpickled. An unrouted bundle (top class ``All``,
:data:`models.taxonomy.UNROUTED`) is trained on every class.

The manifest carries everything needed to score without the training data: format version,
ordered feature names, fitted preprocessing, latent size, MCDSVDD centres and their subclasses,
score quantiles of the training inliers (percentile calibration), training description and
metrics, the configuration that trained it (``paper`` or ``ours``, models.configurations;
bundles written before the field existed were trained by what is now ``ours`` and load as such),
creation time and model version. Loading verifies the format version, the weights'
SHA-256 and the consistency of shapes, and fails with a :class:`BundleError` naming the problem.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors.torch import load_file, save_file

from models.configurations import ConfigurationName
from models.detectors import get_scorer
from models.detectors.spec import DetectorSpec
from models.exceptions import BundleError
from models.networks import AnomalyNet, Network
from models.preprocessing import Preprocessor
from models.scorers import ScorerKind, check_scorer
from models.training import CALIBRATION_LEVELS, TrainedModel, TrainingConfig

if TYPE_CHECKING:
    from models.estimators import Estimator

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
ESTIMATOR_FILE = "model.pkl.xz"  # models.estimators.ESTIMATOR_FILE (kept torch- and sklearn-free)
# The paper's best scorer per top-level class (Table 1): the default routing of the service.
SIMULATED_DATA_NOTICE = (
    "Trained on SIMULATED ZTF data (alert-anomaly simulate). Retrain on the ALeRCE labeled set "
    "before using scores for science."
)
SIMULATED_LSST_NOTICE = (
    "Trained on SIMULATED Rubin/LSST data (alert-anomaly simulate --survey lsst). Retrain on real "
    "labeled Rubin alerts before using scores for science."
)


def simulated_notice(survey: str) -> str:
    """The manifest notice of a bundle trained on the simulator's data for ``survey``."""
    return SIMULATED_LSST_NOTICE if survey == "lsst" else SIMULATED_DATA_NOTICE


class Calibration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    levels: list[float] = Field(description="percentile levels, 0-100")
    scores: list[float] = Field(description="raw-score quantiles of the training inliers")


class Weights(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str = WEIGHTS
    sha256: str


class Manifest(BaseModel):
    """The content of manifest.json (format version 1)."""

    model_config = ConfigDict(extra="forbid")
    format_version: int
    model_version: str
    survey: str
    top_class: str
    scorer: str
    configuration: ConfigurationName = "ours"
    feature_names: list[str]
    preprocessing: list[dict[str, Any]]
    latent_dim: int
    hidden: list[int]
    centres: list[list[float]] = Field(default_factory=list)
    centre_subclasses: list[str] = Field(default_factory=list)
    calibration: Calibration
    training: dict[str, Any]
    estimator: dict[str, Any] = Field(default_factory=dict)  # iforest, distclassipy: their state
    created_at: str
    notice: str = ""
    weights: Weights


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Bundle:
    """A loaded (or freshly trained) bundle: manifest, preprocessing and network, on the CPU."""

    def __init__(
        self,
        manifest: Manifest,
        net: Network | None,
        preprocessor: Preprocessor,
        estimator: Estimator | None = None,
    ) -> None:
        if (net is None) == (estimator is None):
            raise BundleError("a bundle holds either a network or an estimator")
        self.manifest = manifest
        self.net = net.eval() if net is not None else None
        self.estimator = estimator
        self.preprocessor = preprocessor.eval()

    @property
    def scorer(self) -> ScorerKind:
        return check_scorer(self.manifest.scorer)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.manifest.feature_names)

    @property
    def checksum(self) -> str:
        return self.manifest.weights.sha256

    @property
    def name(self) -> str:
        m = self.manifest
        return f"{m.survey}/{m.top_class.lower()}-{m.scorer}"

    @classmethod
    def from_training(
        cls,
        trained: TrainedModel,
        config: TrainingConfig,
        survey: str,
        feature_names: tuple[str, ...],
        data_description: dict[str, Any],
        model_version: str,
        notice: str = SIMULATED_DATA_NOTICE,
    ) -> Bundle:
        net = trained.net
        multi_centre = isinstance(net, AnomalyNet) and get_scorer(net.kind).multi_centre
        centres = net.centres.tolist() if isinstance(net, AnomalyNet) and multi_centre else []
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            model_version=model_version,
            survey=survey,
            top_class=config.top_class,
            scorer=config.scorer,
            configuration=config.configuration,
            feature_names=list(feature_names),
            preprocessing=trained.preprocessor.to_manifest(),
            latent_dim=config.resolved_latent,
            hidden=list(net.hidden) if net is not None else [],
            centres=centres,
            centre_subclasses=list(trained.centre_subclasses),
            calibration=Calibration(
                levels=list(CALIBRATION_LEVELS), scores=list(trained.calibration_scores)
            ),
            training={
                "data": data_description,
                "hyperparameters": config.as_dict(),
                "metrics": trained.metrics,
            },
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            notice=notice,
            estimator=trained.estimator.state() if trained.estimator is not None else {},
            weights=Weights(
                file=WEIGHTS if net is not None else ESTIMATOR_FILE, sha256=""
            ),  # sha256 set by save()
        )
        return cls(manifest, net, trained.preprocessor, trained.estimator)

    def save(self, directory: Path) -> Path:
        """Write the bundle to ``directory`` (created); returns the directory."""
        directory.mkdir(parents=True, exist_ok=True)
        if self.estimator is not None:
            weights = directory / ESTIMATOR_FILE
            weights.write_bytes(self.estimator.dumps())
        else:
            assert self.net is not None
            weights = directory / WEIGHTS
            state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
            save_file(state, str(weights), metadata={"format_version": str(FORMAT_VERSION)})
        weights.chmod(0o644)
        self.manifest.weights = Weights(file=weights.name, sha256=file_sha256(weights))
        text = json.dumps(self.manifest.model_dump(), indent=1)
        (directory / MANIFEST).write_text(text + "\n")
        return directory


def _read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST
    if not directory.is_dir():
        raise BundleError(f"model bundle {directory} does not exist or is not a directory")
    if not path.is_file():
        raise BundleError(f"model bundle {directory} has no {MANIFEST}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, or not JSON
        raise BundleError(f"cannot read {path}: {exc}") from exc
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{path} has format version {version!r}; this alert-anomaly reads version "
            f"{FORMAT_VERSION} (retrain or convert the bundle)"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BundleError(f"{path}: invalid manifest at {where}: {first['msg']}") from exc


def load_bundle(directory: Path) -> Bundle:
    """Load and verify a bundle, as its kind's hooks do (models.detectors); every inconsistency
    is a BundleError naming the file."""
    manifest = _read_manifest(directory)
    spec = get_scorer(manifest.scorer)
    n_features = len(manifest.feature_names)
    if len(manifest.preprocessing) != n_features:
        raise BundleError(
            f"{directory}: {n_features} feature names but {len(manifest.preprocessing)} "
            "preprocessing entries"
        )
    if [p.get("name") for p in manifest.preprocessing] != manifest.feature_names:
        raise BundleError(f"{directory}: preprocessing entries do not follow the feature order")
    if len(manifest.calibration.levels) != len(manifest.calibration.scores):
        raise BundleError(f"{directory}: calibration levels and scores differ in length")
    weights = directory / manifest.weights.file
    if not weights.is_file():
        raise BundleError(f"model bundle {directory} has no weights file {manifest.weights.file}")
    return spec.implementation().load(spec, manifest, weights)


def check_digest(weights: Path, digest: str, manifest: Manifest) -> None:
    """BundleError unless ``digest`` (of the weights' bytes) is the manifest's."""
    if digest != manifest.weights.sha256:
        raise BundleError(
            f"{weights}: SHA-256 {digest[:12]}... does not match the manifest's "
            f"{manifest.weights.sha256[:12]}... (corrupted or replaced weights)"
        )


def load_network(spec: DetectorSpec, manifest: Manifest, weights: Path) -> Bundle:
    """The bundle of a network or ensemble kind: safetensors weights in the shapes the kind's
    hooks build (the kind's hidden widths, which the manifest states), and (multi-centre) the
    manifest's centres equal to the saved ones."""
    check_digest(weights, file_sha256(weights), manifest)
    if manifest.hidden != list(spec.hidden):
        raise BundleError(
            f"{weights.parent}: a {spec.name} has hidden widths {list(spec.hidden)}, the "
            f"manifest says {manifest.hidden}"
        )
    n_features = len(manifest.feature_names)
    n_centres = max(len(manifest.centre_subclasses), 1)
    try:
        state = load_file(str(weights))
        hooks = spec.implementation()
        net = hooks.build(spec, n_features, manifest.latent_dim, n_centres, state)
        net.load_state_dict(state, strict=True)
    except (RuntimeError, OSError, ValueError) as exc:
        raise BundleError(
            f"{weights} does not fit a {spec.name} with {n_features} features and latent size "
            f"{manifest.latent_dim}: {str(exc).splitlines()[0]}"
        ) from exc
    if isinstance(net, AnomalyNet) and spec.multi_centre:
        saved = torch.tensor(manifest.centres, dtype=torch.float32)
        if saved.shape != net.centres.shape or not torch.allclose(saved, net.centres):
            raise BundleError(f"{weights.parent}: manifest centres differ from the saved weights")
    return Bundle(manifest, net, Preprocessor.from_manifest(manifest.preprocessing))
