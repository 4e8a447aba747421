"""The synthetic data generator: determinism, physical sanity per subclass, the classifier, the
table and the classifier records of every version."""

from __future__ import annotations

import io
from pathlib import Path

import fastavro
import numpy as np
import pytest

from models.exceptions import ConfigurationError
from models.features import canonical_name, ztf_feature_names
from models.records import RECORD_VERSIONS, input_records, input_schema, write_avro
from models.simulate.dataset import (
    SimulatedDataset,
    SimulationConfig,
    class_counts,
    make_oid,
    simulate,
    simulate_object,
)
from models.simulate.features import FEATURE_NAMES
from models.simulate.variability import TURBOFATS
from models.table import read_table, write_table
from models.taxonomy import ALL_SUBCLASSES, TOP_CLASSES, TOP_OF

PER_CLASS = 30


@pytest.fixture(scope="module")
def population() -> SimulatedDataset:
    """PER_CLASS objects of every subclass (~10 s on 2 cores)."""
    config = SimulationConfig(
        n_objects=PER_CLASS * len(ALL_SUBCLASSES), seed=11, jobs=2, folds=3, progress=False
    )
    return simulate(config)


def column(data: SimulatedDataset, name: str, subclass: str) -> np.ndarray:
    table = data.table
    return table.features[table.subclass == subclass, FEATURE_NAMES.index(name)]


def test_feature_names_are_alerces_current_ones(population: SimulatedDataset) -> None:
    """Every simulated feature is in ALeRCE's 2024 schema and vice versa, in its order."""
    assert population.table.feature_names == ztf_feature_names("2024")
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == 209


def test_object_depends_only_on_seed_and_index() -> None:
    oid_a, a = simulate_object("RRL", seed=5, index=17, keep_lightcurve=True)
    oid_b, b = simulate_object("RRL", seed=5, index=17, keep_lightcurve=True)
    _, c = simulate_object("RRL", seed=6, index=17, keep_lightcurve=False)
    assert oid_a == oid_b
    np.testing.assert_array_equal(a.features, b.features)  # NaNs compare equal here
    assert a.lightcurve is not None
    assert b.lightcurve is not None
    np.testing.assert_array_equal(a.lightcurve.detections.mag, b.lightcurve.detections.mag)
    np.testing.assert_array_equal(a.lightcurve.forced.diff_flux, b.lightcurve.forced.diff_flux)
    assert not np.array_equal(a.features, c.features, equal_nan=True)


def test_dataset_is_identical_with_one_or_two_workers() -> None:
    kwargs = {"n_objects": 45, "seed": 3, "folds": 2, "progress": False}
    one = simulate(SimulationConfig(jobs=1, **kwargs)).table  # type: ignore[arg-type]
    two = simulate(SimulationConfig(jobs=2, **kwargs)).table  # type: ignore[arg-type]
    np.testing.assert_array_equal(one.oid, two.oid)
    np.testing.assert_array_equal(one.subclass, two.subclass)
    np.testing.assert_array_equal(one.features, two.features)
    np.testing.assert_array_equal(one.prob_subclass, two.prob_subclass)


def test_every_object_has_statistics_in_a_band_and_none_where_too_few(
    population: SimulatedDataset,
) -> None:
    """The turbo-fats statistics are all defined or all NaN in a band (6 detections or fewer
    than 6), and every object has them in at least one band, with ZTF-range magnitudes."""
    table = population.table
    defined = []
    for suffix in ("_1", "_2"):
        block = table.features[:, [FEATURE_NAMES.index(f + suffix) for f in TURBOFATS]]
        # IAR_phi may be undefined for a constant curve; the others come together
        core = np.delete(block, TURBOFATS.index("IAR_phi"), axis=1)
        assert np.all(np.isnan(core).all(axis=1) | np.isfinite(core).all(axis=1))
        has = np.isfinite(core).all(axis=1)
        mean = table.features[has, FEATURE_NAMES.index(f"Mean{suffix}")]
        assert (mean > 12.0).all()
        assert (mean < 22.0).all()
        defined.append(has)
    assert np.all(defined[0] | defined[1])


def test_periods_of_rr_lyrae_and_cepheids_are_recovered(population: SimulatedDataset) -> None:
    table = population.table
    for subclass in ("RRL", "CEP"):
        sel = table.subclass == subclass
        found = table.features[sel, FEATURE_NAMES.index("Multiband_period_12")]
        true = table.truth["period"][sel]
        within = np.abs(found / true - 1.0) < 0.10
        assert within.mean() >= 0.6, f"{subclass}: {within.mean():.2f} recovered within 10%"


def test_eclipsing_binaries_lock_onto_orbital_harmonics(population: SimulatedDataset) -> None:
    """Single-harmonic periodograms find P/2 for equal eclipses and P/k for narrow ones."""
    table = population.table
    period = table.features[:, FEATURE_NAMES.index("Multiband_period_12")]
    sel = (table.subclass == "E") & np.isfinite(period)  # 15 points in a band or more
    ratio = period[sel] / table.truth["period"][sel]
    harmonic = np.abs(np.outer(ratio, np.arange(1, 11)) - 1.0).min(axis=1) < 0.02
    assert sel.sum() >= 10
    assert harmonic.mean() >= 0.7
    assert (np.abs(ratio - 0.5) < 0.02).mean() >= 0.25  # P/2 is the most common answer


def test_supernova_time_scales_are_physical(population: SimulatedDataset) -> None:
    table = population.table
    rise = {s: np.nanmedian(column(population, "SPM_tau_rise_2", s)) for s in ("SNIa", "SLSN")}
    assert 0.5 < rise["SNIa"] < 15.0  # observer-frame SPM rise of SNe Ia: days
    assert rise["SLSN"] > 2 * rise["SNIa"]  # superluminous SNe rise much more slowly
    fall = {s: np.nanmedian(column(population, "SPM_tau_fall_1", s)) for s in ("SNIa", "SLSN")}
    assert 5.0 < fall["SNIa"] < 60.0
    assert fall["SLSN"] > 2 * fall["SNIa"]
    sn_ia = table.subclass == "SNIa"
    z = table.truth["redshift"][sn_ia]
    assert np.all((z > 0.005) & (z < 0.3))  # peak 16-19.3 mag at M ~ -19.2
    rest_rise = table.truth["tau_rise"][sn_ia] / (1 + z)
    assert np.all((rest_rise >= 1.5) & (rest_rise <= 4.0))


def test_colours_amplitudes_and_difference_signs_by_class(population: SimulatedDataset) -> None:
    colour = {s: np.nanmedian(column(population, "g_r_mean_corr_12", s)) for s in ALL_SUBCLASSES}
    assert colour["LPV"] > 1.2
    assert colour["YSO"] > 0.8
    assert colour["QSO"] < 0.5
    assert colour["SLSN"] < 0.4
    amplitude = {s: np.nanmedian(column(population, "Amplitude_1", s)) for s in ALL_SUBCLASSES}
    assert amplitude["LPV"] > amplitude["RRL"] > amplitude["Periodic-Other"]
    positive = {
        s: np.nanmedian(column(population, "positive_fraction_1", s)) for s in ALL_SUBCLASSES
    }
    for sn in ("SNIa", "SNIbc", "SNII", "SLSN"):
        assert positive[sn] == 1.0  # supernovae only brighten against an empty reference
    assert positive["E"] < 0.2  # eclipses only dim the binary
    wise = {s: np.nanmedian(column(population, "W1_W2", s)) for s in ALL_SUBCLASSES}
    assert wise["QSO"] > 0.6 > wise["RRL"]  # mid-infrared AGN colour (Stern et al. 2012)
    tau = {s: np.nanmedian(column(population, "GP_DRW_tau_1", s)) for s in ALL_SUBCLASSES}
    assert tau["QSO"] > 50.0 > 1.0 > tau["RRL"]  # quasar DRW time scales are months to years
    phi = {s: np.nanmedian(column(population, "IAR_phi_1", s)) for s in ALL_SUBCLASSES}
    assert phi["QSO"] > 0.9 > 0.5 > phi["DSCT"]
    host = {s: np.nanmedian(column(population, "mean_distnr_12", s)) for s in ALL_SUBCLASSES}
    assert host["SNIa"] > 0.8 > 0.6 > host["RRL"]  # supernovae sit off their host's centre
    forced = column(population, "n_forced_phot_band_before_1", "SNII")
    assert np.nanmedian(forced) >= 1  # forced photometry before the first detection


def test_classifier_probabilities_are_consistent_and_informative(
    population: SimulatedDataset,
) -> None:
    table = population.table
    np.testing.assert_allclose(table.prob_top.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(table.prob_subclass.sum(axis=1), 1.0, atol=1e-9)
    for j, top in enumerate(TOP_CLASSES):
        cols = [ALL_SUBCLASSES.index(s) for s in ALL_SUBCLASSES if TOP_OF[s] == top]
        np.testing.assert_allclose(table.prob_subclass[:, cols].sum(axis=1), table.prob_top[:, j])
    top_accuracy = np.mean(table.predicted_top() == table.top_class)
    sub_accuracy = np.mean(table.predicted_subclass() == table.subclass)
    assert top_accuracy > 0.85
    assert sub_accuracy > 0.5


def test_class_counts() -> None:
    uniform = class_counts(SimulationConfig(n_objects=100, classes=("SNIa", "QSO", "RRL")))
    assert uniform == {"SNIa": 34, "QSO": 33, "RRL": 33}
    alerce = class_counts(SimulationConfig(n_objects=1000, mix="alerce"))
    assert sum(alerce.values()) == 1000
    assert min(alerce.values()) == 5
    assert alerce["E"] > alerce["RRL"] > alerce["SNIa"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_objects": 0}, "positive"),
        ({"n_objects": -3}, "positive"),
        ({"n_objects": 10, "classes": ("SNIa", "Pulsar")}, "unknown subclass(es) 'Pulsar'"),
        ({"n_objects": 10, "jobs": 0}, "jobs must be positive"),
        ({"n_objects": 10, "classes": ()}, "at least one subclass"),
        ({"n_objects": 10, "mix": "zipf"}, "unknown class mix"),
    ],
)
def test_bad_configuration_is_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SimulationConfig(**kwargs)  # type: ignore[arg-type]


def test_too_few_objects_for_the_folds() -> None:
    with pytest.raises(ConfigurationError, match="too few"):
        class_counts(SimulationConfig(n_objects=20, folds=5))


def test_oids_are_unique_and_ztf_shaped() -> None:
    oids = [make_oid(i, seed=9, start_mjd=58500.0) for i in range(20000)]
    assert len(set(oids)) == len(oids)
    assert all(o.startswith("ZTF19") and len(o) == 12 for o in oids)


def test_table_round_trip(tmp_path: Path, population: SimulatedDataset) -> None:
    path = tmp_path / "objects.parquet"
    write_table(population.table, path)
    back = read_table(path)
    assert back.feature_names == FEATURE_NAMES
    np.testing.assert_array_equal(back.oid, population.table.oid)
    np.testing.assert_array_equal(back.subclass, population.table.subclass)
    np.testing.assert_array_equal(back.features, population.table.features.astype(np.float32))
    assert back.metadata["seed"] == 11
    np.testing.assert_array_equal(
        back.truth["period"], population.table.truth["period"].astype(np.float32)
    )


def test_avro_messages_follow_the_input_schema(
    tmp_path: Path, population: SimulatedDataset
) -> None:
    table = population.table.take(np.arange(20))
    path = tmp_path / "alerts.avro"
    write_avro(table, path)
    with open(path, "rb") as fh:
        records = list(fastavro.reader(fh))
    assert [r["oid"] for r in records] == table.oid.tolist()
    first = records[0]
    assert list(first["features"]) == list(ztf_feature_names("2024"))
    nan_features = {
        n for n, v in zip(table.feature_names, table.features[0], strict=True) if np.isnan(v)
    }
    assert {k for k, v in first["features"].items() if v is None} == nan_features
    top = first["lc_classification"]["hierarchical"]["top"]
    assert set(top) == set(TOP_CLASSES)
    assert first["lc_classification"]["class"] == table.predicted_subclass()[0]
    children = first["lc_classification"]["hierarchical"]["children"]
    for top_class, probs in children.items():
        if top[top_class] > 1e-6:
            assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("version", RECORD_VERSIONS)
def test_records_of_every_version_validate_and_decode(
    version: str, population: SimulatedDataset
) -> None:
    table = population.table.take(np.arange(10))
    schema = input_schema(version)
    records = list(input_records(table, version))
    key = "oid" if version == "3" else "aid"
    for record, oid, row in zip(records, table.oid, table.features, strict=True):
        assert fastavro.validation.validate(record, schema)
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema, record)
        buffer.seek(0)
        back = fastavro.schemaless_reader(buffer, schema, None)
        assert isinstance(back, dict)
        assert back[key] == oid
        features = back["features"]
        expected_names = ztf_feature_names("2024" if version == "3" else "2023")
        assert list(features) == list(expected_names)
        for name, value in features.items():
            today = canonical_name(name)
            if today not in table.feature_names:  # a 2023 feature ALeRCE no longer computes
                assert value is None, name
                continue
            truth = row[table.feature_names.index(today)]
            if np.isnan(truth):
                assert value is None, name
            else:
                assert value == pytest.approx(truth, rel=1e-6, abs=1e-30), name
        assert back["lc_classification"]["probabilities"].keys() == set(ALL_SUBCLASSES)


def test_unknown_record_version_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown ALeRCE record version '4'"):
        input_schema("4")
