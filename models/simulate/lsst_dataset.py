"""A labeled LSST data set: objects of the 15 subclasses observed Rubin-like
(:mod:`models.simulate.lsst`), their alert packets (:mod:`models.simulate.lsst_packets`), the
packets' features (diaObject fields and light-curve features, computed by :mod:`models.rubin`
exactly as the service does) and out-of-fold classifier probabilities as for ZTF
(:mod:`models.simulate.classifier`)."""

from __future__ import annotations

import io
import multiprocessing
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import structlog
from tqdm import tqdm

from models import rubin
from models.exceptions import DataError
from models.simulate.dataset import SimulationConfig, class_counts
from models.simulate.lsst import (
    BANDS,
    LsstLightCurve,
    dia_object_id,
    simulate_lightcurve,
    sky_position,
)
from models.simulate.lsst_packets import alert_packet, feature_names, packet_features
from models.table import AlertTable
from models.taxonomy import TOP_OF

GENERATOR_VERSION = "lsst-1.0"
MIN_DETECTIONS = 5  # in at least one band
TRUTH_KEYS = ("period", "tau_rise", "tau_fall", "redshift", "tau", "peak_mag")

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LsstObject:
    oid: str
    subclass: str
    features: np.ndarray
    truth: dict[str, float]
    curve: LsstLightCurve
    ra: float
    dec: float


@dataclass(frozen=True)
class LsstDataset:
    table: AlertTable
    curves: dict[str, LsstLightCurve] = field(default_factory=dict)
    positions: dict[str, tuple[float, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def packets(self) -> Iterator[dict[str, Any]]:
        """The alert packets of the objects, in table order."""
        yield from alert_packets(self.curves, self.positions, self.table.oid.tolist())


def simulate_object(subclass: str, seed: int, index: int, lightcurve: bool) -> LsstObject:
    """One object; depends only on (seed, index)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    curve, source = simulate_lightcurve(subclass, rng, MIN_DETECTIONS)
    ra, dec = sky_position(rng, source.context)
    object_id = dia_object_id(seed, index)
    packet = alert_packet(curve, object_id, ra, dec)
    # The features of the packet as the service decodes it (Avro floats are 32-bit).
    schema = _parsed_schema(rubin.latest_version())
    decoded = fastavro.schemaless_reader(io.BytesIO(_avro(packet, schema)), schema)
    if not isinstance(decoded, dict):
        raise DataError("a simulated packet did not decode to a record")
    values = packet_features(decoded, lightcurve)
    names = feature_names(lightcurve)
    features = np.array([np.nan if values.get(n) is None else values[n] for n in names])
    return LsstObject(str(object_id), subclass, features, source.truth, curve, ra, dec)


def _task(task: tuple[str, int, int, bool]) -> LsstObject:
    return simulate_object(*task)


def simulate_lsst(config: SimulationConfig, lightcurve_features: bool = True) -> LsstDataset:
    """Simulate ``config.n_objects`` LSST objects and classify them (out-of-fold)."""
    # The classifier needs the 'sim' extra (imported here: the demo's packets and the report's
    # light curves do not), the packets the 'rubin' extra: both checked before simulating.
    from models.simulate.classifier import out_of_fold_probabilities

    rubin.latest_version()
    if lightcurve_features:
        rubin.lightcurve_feature_names()
    counts = class_counts(config)
    labels = [c for c in config.classes for _ in range(counts[c])]
    order = np.random.default_rng(config.seed).permutation(len(labels))
    labels = [labels[i] for i in order]
    tasks = [(s, config.seed, i, lightcurve_features) for i, s in enumerate(labels)]
    log.info("simulating", survey="lsst", n_objects=len(labels), seed=config.seed, jobs=config.jobs)
    t0 = time.perf_counter()
    objects: list[LsstObject] = []
    bar = tqdm(total=len(tasks), desc="simulate lsst", unit="obj", disable=not config.progress)
    with bar:
        if config.jobs == 1:
            for task in tasks:
                objects.append(_task(task))
                bar.update()
        else:
            with multiprocessing.get_context("spawn").Pool(config.jobs) as pool:
                for obj in pool.imap(_task, tasks, chunksize=8):
                    objects.append(obj)
                    bar.update()
    t_sim = time.perf_counter() - t0
    features = np.vstack([o.features for o in objects])
    subclasses = np.asarray(labels)
    t1 = time.perf_counter()
    probs = out_of_fold_probabilities(features, subclasses, config.folds, config.seed, config.jobs)
    t_clf = time.perf_counter() - t1
    truth = {k: np.array([o.truth.get(k, np.nan) for o in objects]) for k in TRUTH_KEYS}
    truth["ra"] = np.array([o.ra for o in objects])
    truth["dec"] = np.array([o.dec for o in objects])
    names = feature_names(lightcurve_features)
    table = AlertTable(
        oid=np.asarray([o.oid for o in objects]),
        subclass=subclasses,
        top_class=np.asarray([TOP_OF[s] for s in labels]),
        features=features,
        feature_names=names,
        prob_top=probs.top,
        prob_subclass=probs.subclass,
        truth=truth,
        metadata={
            "generator": "alert-anomaly simulate",
            "generator_version": GENERATOR_VERSION,
            "survey": "lsst",
            "schema_version": rubin.latest_version(),
            "seed": config.seed,
            "n_objects": len(labels),
            "mix": config.mix,
            "folds": config.folds,
            "class_counts": counts,
            "feature_sets": {
                "diaobject": list(rubin.common_diaobject_fields()),
                "diaobject-latest": list(rubin.diaobject_fields(rubin.latest_version())),
                "lightcurve": list(rubin.lightcurve_feature_names()) if lightcurve_features else [],
            },
        },
    )
    curves = {o.oid: o.curve for o in objects} if config.keep_lightcurves else {}
    positions = {o.oid: (o.ra, o.dec) for o in objects}
    return LsstDataset(table, curves, positions, {"simulate": t_sim, "classify": t_clf})


# --- light curves on disk ----------------------------------------------------------------------
def write_lsst_lightcurves(
    curves: Mapping[str, LsstLightCurve], positions: Mapping[str, tuple[float, float]], path: Path
) -> None:
    """One row per visit of every object (PRECOVERY_DAYS before its first detection to its
    alert): ``oid``, ``mjd``, ``band`` (u..y), difference flux ``psfFlux`` and
    ``psfFluxErr`` (nJy), direct-image ``scienceFlux`` and ``scienceFluxErr``, ``detected``;
    the object's ``ra``/``dec`` in the metadata-free columns of its first row's kind (float64)."""
    oids = list(curves)
    n = [len(curves[o]) for o in oids]

    def stack(attr: str) -> np.ndarray:
        return np.concatenate([getattr(curves[o], attr) for o in oids]) if oids else np.empty(0)

    arrow = pa.table(
        {
            "oid": pa.array(np.repeat(np.asarray(oids, dtype=np.int64), n)),
            "mjd": stack("mjd"),
            "band": pa.array(np.asarray(BANDS)[stack("band").astype(int)]).dictionary_encode(),
            "psfFlux": stack("diff").astype(np.float32),
            "psfFluxErr": stack("diff_err").astype(np.float32),
            "scienceFlux": stack("science").astype(np.float32),
            "scienceFluxErr": stack("science_err").astype(np.float32),
            "detected": stack("detected").astype(bool),
            "ra": np.repeat([positions[o][0] for o in oids], n),
            "dec": np.repeat([positions[o][1] for o in oids], n),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        arrow,
        path,
        compression="zstd",
        compression_level=19,
        use_dictionary=["oid", "band", "ra", "dec"],
    )


def read_lsst_lightcurves(
    path: Path,
) -> tuple[dict[str, LsstLightCurve], dict[str, tuple[float, float]]]:
    """Light curves and positions written by :func:`write_lsst_lightcurves`."""
    if not path.is_file():
        raise DataError(f"light-curve file {path} does not exist")
    arrow = pq.read_table(path)
    need = {"oid", "mjd", "band", "psfFlux", "psfFluxErr", "detected"}
    if not need <= set(arrow.column_names):
        raise DataError(f"{path} is not an LSST light-curve file (needs {sorted(need)})")
    col = {n: arrow.column(n).to_numpy(zero_copy_only=False) for n in arrow.column_names}
    band_index = {b: i for i, b in enumerate(BANDS)}
    bands = np.array([band_index[str(b)] for b in col["band"]], dtype=np.int8)
    oid = col["oid"].astype(np.int64)
    curves, positions = {}, {}
    starts = np.flatnonzero(np.concatenate([[True], oid[1:] != oid[:-1]]))
    ends = np.append(starts[1:], oid.size)
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        key = str(oid[a])
        sci = col.get("scienceFlux", col["psfFlux"])[a:b].astype(np.float64)
        sci_err = col.get("scienceFluxErr", col["psfFluxErr"])[a:b].astype(np.float64)
        curves[key] = LsstLightCurve(
            col["mjd"][a:b].astype(np.float64), bands[a:b],
            col["psfFlux"][a:b].astype(np.float64), col["psfFluxErr"][a:b].astype(np.float64),
            sci, sci_err, col["detected"][a:b].astype(bool),
        )  # fmt: skip
        if "ra" in col:
            positions[key] = (float(col["ra"][a]), float(col["dec"][a]))
    return curves, positions


def alert_packets(
    curves: Mapping[str, LsstLightCurve],
    positions: Mapping[str, tuple[float, float]],
    oids: list[str] | None = None,
    version: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Alert packets of the objects (in ``oids``' order, default the curves' order)."""
    for oid in oids if oids is not None else list(curves):
        ra, dec = positions.get(oid, (0.0, 0.0))
        yield alert_packet(curves[oid], int(oid), ra, dec, version)


@cache
def _parsed_schema(version: str) -> Any:
    """The version's alert schema parsed once (fastavro parses an unparsed one at every call:
    most of the time of encoding a packet)."""
    return fastavro.parse_schema(rubin.alert_schema(version))


def _avro(packet: Mapping[str, Any], schema: Any) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, dict(packet))
    return buffer.getvalue()


def packet_bytes(
    packets: Iterator[dict[str, Any]], framing: str = "confluent", version: str | None = None
) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) Kafka messages of packets: key the diaObjectId (UTF-8), value Rubin's
    Confluent wire format (magic byte, schema id, Avro) or plain schemaless Avro; the same bytes
    as ``rubin.confluent_bytes`` and ``rubin.serialize``."""
    if framing not in ("confluent", "schemaless"):
        raise DataError(f"unknown framing {framing!r} (confluent or schemaless)")
    entry = rubin.get_version(version)
    schema = _parsed_schema(entry.version)
    for packet in packets:
        key = str(packet["diaObject"]["diaObjectId"]).encode()
        payload = _avro(packet, schema)
        if framing == "confluent":
            yield key, rubin.confluent_frame(payload, entry.schema_id)
        else:
            yield key, payload


def simulate_packets(
    n_objects: int, seed: int, classes: tuple[str, ...] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """(true subclass, alert packet) of ``n_objects`` simulated objects, subclasses dealt in
    turn (shuffled by the seed), without features or classifier: raw Rubin alerts for demos and
    tests. Deterministic for (n_objects, seed); the object of index i is the one
    :func:`simulate_lsst` would draw for the same subclass, seed and index."""
    from models.taxonomy import ALL_SUBCLASSES

    names = classes or ALL_SUBCLASSES
    order = np.random.default_rng(seed).permutation(n_objects)
    packets = []
    for index in range(n_objects):
        subclass = names[int(order[index]) % len(names)]
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
        curve, source = simulate_lightcurve(subclass, rng, MIN_DETECTIONS)
        ra, dec = sky_position(rng, source.context)
        packets.append((subclass, alert_packet(curve, dia_object_id(seed, index), ra, dec)))
    return packets
