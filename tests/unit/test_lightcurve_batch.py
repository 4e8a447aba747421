"""light-curve features of a batch of Rubin packets (models.rubin.lcbatch) are, bit for bit,
the per-packet ones (models.rubin.lightcurve_features): on every schema version's samples and
simulated packets, on hand-made edge cases (empty band, one point, NaN or infinite values,
non-positive errors, duplicates, times that round to a half), extracted one call each or by the
package's ``Extractor.many``; and MessageDecoder gives them when a model uses them."""

from __future__ import annotations

import copy
import math
import random
from typing import Any

import numpy as np
import pytest

from models import rubin
from models.rubin.lcbatch import _rounded_times, lightcurve_feature_rows
from models.simulate.lsst_dataset import simulate_object, simulate_packets
from models.simulate.lsst_packets import alert_packet
from models.taxonomy import ALL_SUBCLASSES
from service.config import InputSettings
from service.io.codecs.decoding import MessageDecoder
from service.io.codecs.surveys import SURVEYS
from tests.unit.test_decoding import by_message

VERSIONS = [v.version for v in rubin.schema_versions()]


def bits(features: dict[str, float | None]) -> dict[str, bytes | None]:
    return {k: None if v is None else np.float64(v).tobytes() for k, v in features.items()}


def assert_batch_is_per_packet(packets: list[dict[str, Any]]) -> None:
    expected = [bits(rubin.lightcurve_features(p)) for p in packets]
    for n_jobs in (None, 1, 2):
        got = [bits(row) for row in lightcurve_feature_rows(packets, n_jobs)]
        assert got == expected, f"n_jobs={n_jobs}"


def test_realistic_simulated_packets() -> None:
    packets = [packet for _, packet in simulate_packets(24, 5)]
    assert sum(len(p["prvDiaForcedSources"] or ()) for p in packets) > 24 * 20
    assert_batch_is_per_packet(packets)
    assert any(v is not None for row in lightcurve_feature_rows(packets) for v in row.values())


@pytest.mark.parametrize("version", VERSIONS)
def test_every_versions_samples_and_simulated_packets(version: str) -> None:
    packets = list(rubin.sample_alerts(version))
    for index in range(4):
        obj = simulate_object(ALL_SUBCLASSES[index], 8, index, False)
        packets.append(alert_packet(obj.curve, int(obj.oid), obj.ra, obj.dec, version))
    assert_batch_is_per_packet(packets)


def source(mjd: Any, band: Any, flux: Any, err: Any = 10.0) -> dict[str, Any]:
    return {"midpointMjdTai": mjd, "band": band, "psfFlux": flux, "psfFluxErr": err}


def edge_packets() -> list[dict[str, Any]]:
    """Packets whose light curves are empty, one point, hidden by NaN, infinite or non-positive
    values, duplicated, or decided by rounding their time to 1e-5 day."""
    rng = random.Random(3)
    t0 = 61000.0
    walk = [source(t0 + k * 0.7, "r", rng.gauss(100, 30), rng.uniform(1, 9)) for k in range(9)]
    return [
        {"diaSource": None, "prvDiaSources": None, "prvDiaForcedSources": None},
        {"diaSource": source(t0, "g", 5.0)},  # one point
        {"diaSource": source(t0, "g", 5.0), "prvDiaSources": [source(t0 - 1, "g", 6.0)]},
        {  # NaN, infinite, null, non-positive: left out, leaving one or two points
            "diaSource": source(t0, "i", 5.0),
            "prvDiaSources": [
                source(t0 - 1, "i", math.nan),
                source(t0 - 2, "i", 3.0, math.inf),
                source(t0 - 3, "i", 3.0, 0.0),
                source(t0 - 4, "i", 3.0, -1.0),
                source(None, "i", 3.0),
                source(t0 - 5, "i", None),
                source(math.inf, "i", 3.0),
                source(t0 - 6, None, 3.0),
                source(t0 - 7, "w", 3.0),
                source(t0 - 8, "i", 7.5),
                "not a source",
            ],
            "prvDiaForcedSources": [source(t0 - 9, "i", True), source(t0 - 10, "i", "1.0")],
        },
        {  # a detection hides forced photometry and duplicates at the same rounded time
            "diaSource": source(t0 + 0.015625, "z", 50.0),
            "prvDiaSources": [*walk, source(t0 + 0.015625, "z", 51.0), walk[3]],
            "prvDiaForcedSources": [
                source(t0 + 0.0156249, "z", 60.0),  # rounds to the detection's time
                source(t0 + 0.015635, "z", 61.0),
                source(t0 + 0.015625, "r", 62.0),
                source(t0 + 0.7 * 2, "r", 63.0),
                source(t0 - 3.0, "z", 64.0),
                source(t0 - 3.0, "z", 65.0),
                source(t0 - 3.000001, "y", 1.0),
                source(t0 - 3.000004, "y", 2.0),
                source(t0 - 3.000006, "y", 3.0),
                source(np.nextafter(t0 - 3.0, 0), "y", 4.0),
            ],
        },
        {  # the same sources in another packet: duplicates only within a packet
            "diaSource": source(t0 + 0.015625, "z", 50.0),
            "prvDiaSources": walk,
        },
        # the last point of a packet's light curves is the first of the next packet's
        {"diaSource": source(t0 + 2, "y", 1.0), "prvDiaSources": [source(t0 + 1, "y", 2.0)]},
        {"diaSource": source(t0 + 3, "y", 3.0), "prvDiaSources": [source(t0 + 2, "y", 4.0)]},
        {  # a constant light curve and an older schema's field names
            "diaSource": {"midPointTai": t0, "filterName": "u", "psFlux": 1.0, "psFluxErr": 1.0},
            "prvDiaSources": [
                {"midPointTai": t0 - k, "filterName": "u", "psFlux": 1.0, "psFluxErr": 1.0}
                for k in range(1, 4)
            ],
        },
    ]


def test_edge_cases() -> None:
    packets = edge_packets()
    assert_batch_is_per_packet(packets)
    rows = lightcurve_feature_rows(packets)
    assert all(v is None for row in rows[:2] for v in row.values())  # fewer than two points
    assert rows[2]["lc_g_mean"] == pytest.approx(5.5)
    assert rows[3]["lc_i_mean"] == pytest.approx(6.25)
    assert_batch_is_per_packet([packets[4]])
    assert_batch_is_per_packet([])


def test_a_packets_features_do_not_depend_on_its_batch() -> None:
    packets = [*edge_packets(), *[p for _, p in simulate_packets(6, 2)]]
    alone = [bits(lightcurve_feature_rows([p])[0]) for p in packets]
    together = [bits(row) for row in lightcurve_feature_rows(packets[::-1])][::-1]
    assert together == alone


def test_times_round_as_python_rounds_them() -> None:
    rng = np.random.default_rng(9)
    base = rng.uniform(50000, 70000, 4000)
    halves = (np.floor(base * 1e5) + 0.5) / 1e5  # the nearest doubles to a half
    dyadic = np.floor(base) + rng.integers(0, 64, 4000) / 64  # exact halves among them
    wide = rng.standard_normal(2000) * 10.0 ** rng.integers(-12, 300, 2000)
    near = np.concatenate([np.nextafter(halves, 0), np.nextafter(halves, np.inf)])
    times = np.concatenate([base, halves, dyadic, wide, near, [0.0, -0.0, 1.5e-5, -2.5e-5]])
    got = _rounded_times(times)
    expected = np.array([round(float(t), 5) for t in times])
    assert got.tobytes() == expected.tobytes()


def test_the_decoder_gives_the_per_packet_features_of_a_batch() -> None:
    survey = SURVEYS["lsst"]
    with_history = MessageDecoder(InputSettings(format="confluent"), survey, lightcurves=True)
    packets = [p for _, p in simulate_packets(6, 4)]
    bad = copy.deepcopy(packets[0])
    bad["diaObject"] = None
    values = [rubin.confluent_bytes(p) for p in [*packets, bad]]
    decoded = by_message(with_history.decode(values), len(values))
    parse = survey.parser(True)
    for value, got in zip(values[:-1], decoded[:-1], strict=True):
        alert = parse(rubin.parse_confluent(value)[1])
        want = {
            k: np.float64(math.nan if v is None else v).tobytes() for k, v in alert.features.items()
        }
        assert got == [(alert.oid, (), want)]
    assert decoded[-1] == "no_object"
    records = [rubin.parse_confluent(v)[1] for v in values[:2]]
    rows = by_message(with_history.decode_records(records), 1)[0]
    assert rows == [decoded[0][0], decoded[1][0]]
