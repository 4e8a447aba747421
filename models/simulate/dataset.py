"""Simulation of a labeled data set: draw objects per subclass, observe them ZTF-like, extract
features (in parallel, deterministically), attach out-of-fold classifier probabilities."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import structlog
from numpy.typing import NDArray
from tqdm import tqdm

from models.exceptions import AlertAnomalyError, ConfigurationError
from models.simulate.sources import GENERATORS
from models.simulate.survey import ZTF_START_MJD, Observation, observe, ztf_epochs
from models.table import AlertTable
from models.taxonomy import ALERCE_LABELED_COUNTS, ALL_SUBCLASSES, TOP_OF

GENERATOR_VERSION = "2.0"
MAX_ATTEMPTS = 500  # redraws until an object has MIN_DETECTIONS detections in one band
TRUTH_KEYS = ("period", "tau_rise", "tau_fall", "redshift", "tau", "peak_mag")
_MJD_2018 = 58119.0

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Validated on creation (ConfigurationError with the reason)."""

    n_objects: int
    seed: int = 0
    classes: tuple[str, ...] = ALL_SUBCLASSES
    mix: Literal["uniform", "alerce"] = "uniform"
    jobs: int = 2
    folds: int = 5
    keep_lightcurves: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.n_objects <= 0:
            raise ConfigurationError(
                f"the number of objects must be positive, got {self.n_objects}"
            )
        if self.jobs <= 0:
            raise ConfigurationError(f"the number of jobs must be positive, got {self.jobs}")
        if not self.classes:
            raise ConfigurationError("at least one subclass is needed")
        unknown = [c for c in self.classes if c not in GENERATORS]
        if unknown:
            raise ConfigurationError(
                f"unknown subclass(es) {', '.join(map(repr, unknown))}; "
                f"known subclasses: {', '.join(ALL_SUBCLASSES)}"
            )
        if len(set(self.classes)) != len(self.classes):
            raise ConfigurationError(f"subclasses listed twice: {self.classes}")
        if self.mix not in ("uniform", "alerce"):
            raise ConfigurationError(f"unknown class mix {self.mix!r}; use 'uniform' or 'alerce'")
        if self.seed < 0:
            raise ConfigurationError(f"the seed must be non-negative, got {self.seed}")


@dataclass(frozen=True)
class SimulatedObject:
    subclass: str
    features: NDArray[np.float64]
    truth: dict[str, float]
    lightcurve: Observation | None = None


@dataclass(frozen=True)
class SimulatedDataset:
    table: AlertTable
    lightcurves: dict[str, Observation] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def write_lightcurves(curves: dict[str, Observation], path: Path) -> None:
    """Write light curves as a long Parquet table: one row per detection or forced-photometry
    epoch (``forced``), magnitudes NaN where the total flux gives none."""
    parts = [
        (oid, c, forced)
        for oid, o in curves.items()
        for c, forced in ((o.detections, False), (o.forced, True))
    ]
    oids = [oid for oid, c, _ in parts for _ in range(len(c))]
    stacked = {
        name: np.concatenate([getattr(c, name) for _, c, _ in parts]) if parts else np.empty(0)
        for name in ("mjd", "band", "mag", "mag_err", "diff_flux", "diff_flux_err", "distnr")
    }
    arrow = pa.table(
        {
            "oid": oids,
            "forced": np.concatenate([np.full(len(c), f) for _, c, f in parts])
            if parts
            else np.empty(0, bool),
            "mjd": stacked["mjd"],
            "fid": (stacked["band"] + 1).astype(np.int8),  # ZTF filter id: 1 = g, 2 = r
            "mag": stacked["mag"].astype(np.float32),
            "e_mag": stacked["mag_err"].astype(np.float32),
            "diff_flux_ujy": stacked["diff_flux"].astype(np.float32),
            "e_diff_flux_ujy": stacked["diff_flux_err"].astype(np.float32),
            "distnr": stacked["distnr"].astype(np.float32),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(arrow, path, compression="zstd")


def class_counts(config: SimulationConfig) -> dict[str, int]:
    """Objects per subclass: equal shares (``uniform``) or proportional to the ALeRCE labeled
    set (``alerce``), at least ``folds`` each so out-of-fold probabilities exist; largest
    remainders decide the rounding."""
    weights = np.array(
        [1.0 if config.mix == "uniform" else ALERCE_LABELED_COUNTS[c] for c in config.classes]
    )
    floor = config.folds
    spare = config.n_objects - floor * len(config.classes)
    if spare < 0:
        raise ConfigurationError(
            f"{config.n_objects} objects are too few for {len(config.classes)} subclasses with "
            f"{config.folds} folds: need at least {floor * len(config.classes)}"
        )
    share = spare * weights / weights.sum()
    counts = np.floor(share).astype(int)
    for i in np.argsort(-(share - counts), kind="stable")[: spare - counts.sum()]:
        counts[i] += 1
    return {c: int(floor + k) for c, k in zip(config.classes, counts, strict=True)}


def make_oid(index: int, seed: int, start_mjd: float) -> str:
    """A ZTF-looking object id ('ZTF' + year + 7 letters), unique within a data set: the letters
    are an affine bijection of the index modulo 26**7."""
    value = (index * 1_594_323 + seed * 7_919 + 12_345) % 26**7  # 1594323 = 3**13, coprime to 26
    letters = ""
    for _ in range(7):
        value, digit = divmod(value, 26)
        letters = chr(ord("a") + digit) + letters
    year = 18 + int((start_mjd - _MJD_2018) // 365.25)
    return f"ZTF{year:02d}{letters}"


def simulate_object(
    subclass: str, seed: int, index: int, keep_lightcurve: bool
) -> tuple[str, SimulatedObject]:
    """One object of ``subclass``; depends only on (seed, index), not on the worker or order."""
    # The features and the classifier need the 'sim' extra; SimulationConfig and class_counts,
    # which the LSST simulation shares, do not.
    from models.simulate.features import extract_features
    from models.simulate.variability import MIN_DETECTIONS

    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    generator = GENERATORS[subclass]
    for _ in range(MAX_ATTEMPTS):
        start = rng.uniform(ZTF_START_MJD, ZTF_START_MJD + 1800.0)
        duration = 10.0 ** rng.uniform(np.log10(60.0), np.log10(1800.0))
        epochs = ztf_epochs(rng, start, duration)
        if epochs.mjd.size < MIN_DETECTIONS:
            continue
        source = generator(rng, epochs)
        obs = observe(rng, epochs, source.mag, source.reference, source.context["reference_offset"])
        band = obs.detections.band
        if max(int((band == 0).sum()), int((band == 1).sum())) >= MIN_DETECTIONS:
            break
    else:
        raise AlertAnomalyError(
            f"no {subclass} object with {MIN_DETECTIONS} detections in {MAX_ATTEMPTS} draws"
        )
    features = extract_features(obs, source.context)
    oid = make_oid(index, seed, float(obs.detections.mjd[0]))
    return oid, SimulatedObject(subclass, features, source.truth, obs if keep_lightcurve else None)


def _simulate_task(task: tuple[str, int, int, bool]) -> tuple[str, SimulatedObject]:
    return simulate_object(*task)


def _objects(config: SimulationConfig, labels: list[str]) -> Iterator[tuple[str, SimulatedObject]]:
    tasks = [(s, config.seed, i, config.keep_lightcurves) for i, s in enumerate(labels)]
    if config.jobs == 1:
        yield from map(_simulate_task, tasks)
        return
    # spawn: workers share nothing with the parent (no inherited threads or torch state).
    with multiprocessing.get_context("spawn").Pool(config.jobs) as pool:
        yield from pool.imap(_simulate_task, tasks, chunksize=8)


def simulate(config: SimulationConfig) -> SimulatedDataset:
    """Simulate ``config.n_objects`` objects and classify them (out-of-fold)."""
    # Imported first: without the 'sim' extra, the error comes before any simulation.
    from models.simulate.classifier import out_of_fold_probabilities
    from models.simulate.features import FEATURE_NAMES

    counts = class_counts(config)
    labels = [c for c in config.classes for _ in range(counts[c])]
    order = np.random.default_rng(config.seed).permutation(len(labels))
    labels = [labels[i] for i in order]
    log.info(
        "simulating", n_objects=len(labels), seed=config.seed, classes=counts, jobs=config.jobs
    )

    t0 = time.perf_counter()
    oids, objects = [], []
    bar = tqdm(total=len(labels), desc="simulate", unit="obj", disable=not config.progress)
    with bar:
        for oid, obj in _objects(config, labels):
            oids.append(oid)
            objects.append(obj)
            bar.update()
    t_sim = time.perf_counter() - t0

    features = np.vstack([o.features for o in objects])
    subclasses = np.asarray(labels)
    t1 = time.perf_counter()
    probs = out_of_fold_probabilities(features, subclasses, config.folds, config.seed, config.jobs)
    t_clf = time.perf_counter() - t1
    log.info("classified", seconds=round(t_clf, 1), folds=config.folds)

    truth = {k: np.array([o.truth.get(k, np.nan) for o in objects]) for k in TRUTH_KEYS}
    table = AlertTable(
        oid=np.asarray(oids),
        subclass=subclasses,
        top_class=np.asarray([TOP_OF[s] for s in labels]),
        features=features,
        feature_names=FEATURE_NAMES,
        prob_top=probs.top,
        prob_subclass=probs.subclass,
        truth=truth,
        metadata={
            "generator": "alert-anomaly simulate",
            "generator_version": GENERATOR_VERSION,
            "survey": "ztf",
            "seed": config.seed,
            "n_objects": len(labels),
            "mix": config.mix,
            "folds": config.folds,
            "class_counts": counts,
        },
    )
    curves = {oid: o.lightcurve for oid, o in zip(oids, objects, strict=True) if o.lightcurve}
    return SimulatedDataset(table, curves, {"simulate": t_sim, "classify": t_clf})
