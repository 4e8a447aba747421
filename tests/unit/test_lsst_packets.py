"""Issue 31, item 1: the simulator's Rubin packets carry what Rubin's carry, for every schema
version lsst-alert-packet ships - decoded by fastavro against the package's own schema files, the
three cutouts valid FITS of Rubin's stamp layout and size, 12 months of history, nulls where the
schema's documentation puts them - and the benchmark's size summary."""

from __future__ import annotations

import io
from functools import cache
from typing import Any

import fastavro
import numpy as np
import pytest

pytest.importorskip("lsst.alert.packet")

from lsst.alert.packet import Schema

from benchmarks.workload import describe_sizes, distribution
from models import rubin
from models.exceptions import DataError
from models.simulate import cutouts
from models.simulate.lsst import HISTORY_DAYS, LsstLightCurve, simulate_lightcurve, sky_position
from models.simulate.lsst_dataset import MIN_DETECTIONS, packet_bytes, simulate_packets
from models.simulate.lsst_packets import NULL_FIELDS, alert_packet
from models.taxonomy import ALL_SUBCLASSES

VERSIONS = [v.version for v in rubin.schema_versions()]
SEED = 5
N = 12
KINDS = ("cutoutDifference", "cutoutScience", "cutoutTemplate")
# null by the schemas' documentation for the alert of a diaObject (not a Solar System object)
DOCUMENTED_NULLS = {"ssObjectId", "parentDiaSourceId", "timeWithdrawnMjdTai"}
ALERT_NULLS = {"ssSource", "ssObject", "mpc_orbits", "MPCORB", "prvDiaNondetectionLimits"}


@cache
def objects() -> tuple[tuple[LsstLightCurve, int, float, float], ...]:
    """N simulated objects of different subclasses: (curve, diaObjectId, ra, dec)."""
    out = []
    for index in range(N):
        rng = np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=(index,)))
        curve, source = simulate_lightcurve(ALL_SUBCLASSES[index], rng, MIN_DETECTIONS)
        ra, dec = sky_position(rng, source.context)
        out.append((curve, 313 * 10**15 + index, ra, dec))
    return tuple(out)


def package_schema(version: str) -> dict[str, Any]:
    """The version's alert schema loaded by lsst-alert-packet itself (not models.rubin)."""
    return dict(Schema.from_file(str(rubin.get_version(version).alert_file)).definition)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_versions_packet_decodes_with_fastavro_against_the_packages_schema(
    version: str,
) -> None:
    curve, oid, ra, dec = objects()[3]
    packet = alert_packet(curve, oid, ra, dec, version)
    schema = fastavro.parse_schema(package_schema(version))
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, packet)
    decoded = fastavro.schemaless_reader(io.BytesIO(buffer.getvalue()), schema)
    assert isinstance(decoded, dict)
    assert buffer.getvalue() == rubin.serialize(alert_packet(curve, oid, ra, dec, version), version)
    assert decoded["diaObject"]["diaObjectId"] == oid
    assert len(decoded["prvDiaSources"]) == len(packet["prvDiaSources"]) > 0
    assert len(decoded["prvDiaForcedSources"]) == len(packet["prvDiaForcedSources"]) > 0
    fields = {f["name"] for f in package_schema(version)["fields"]}
    present = [k for k in KINDS if k in fields]
    assert len(present) == (3 if "cutoutScience" in fields else 2)  # science from 6.1 on
    for kind in present:
        assert decoded[kind] == packet[kind]
        assert len(cutouts.parse_fits(decoded[kind])) == 3
    # nulls exactly where the schema's documentation puts them, every other field filled
    for record in [
        decoded["diaSource"],
        *decoded["prvDiaSources"],
        *decoded["prvDiaForcedSources"],
    ]:
        for name, value in record.items():
            assert (value is None) == (name in DOCUMENTED_NULLS), (version, name)
    for name in fields:
        assert (decoded[name] is None) == (name in ALERT_NULLS), (version, name)
    assert NULL_FIELDS == DOCUMENTED_NULLS | ALERT_NULLS


def test_cutouts_are_rubins_fits_stamps() -> None:
    for curve, oid, ra, dec in objects():
        packet = alert_packet(curve, oid, ra, dec)
        source = packet["diaSource"]
        side = min(max(source["bboxSize"], 30), 102)
        assert side == cutouts.cutout_side(source["bboxSize"])
        for kind in KINDS:
            (h0, image), (h1, variance), (h2, psf) = cutouts.parse_fits(packet[kind])
            assert len(packet[kind]) % 2880 == 0
            assert image.shape == variance.shape == (side, side)
            assert image.dtype == variance.dtype == np.dtype(">f4")
            assert psf.shape == (25, 25)
            assert psf.dtype == np.dtype(">f8")
            assert (h0["SIMPLE"], h0["BUNIT"], h1["EXTNAME"], h2["EXTNAME"]) == (
                True, "nJy", "UNCERT", "PSFIMAGE",
            )  # fmt: skip
            assert (h0["CRVAL1"], h0["CRVAL2"]) == pytest.approx((ra, dec))
            assert psf.sum() == pytest.approx(1.0)
            assert np.all(variance > 0)
        # the difference stamp holds the diaSource's flux: a PSF fit within 5 sigma
        (_, image), (_, variance), _ = cutouts.parse_fits(packet["cutoutDifference"])
        profile = cutouts.psf_image(side)  # centred; the source is within half a pixel
        flux = float((image * profile).sum() / (profile**2).sum())
        error = float(np.sqrt(variance.mean() / (profile**2).sum()))
        assert abs(flux - source["psfFlux"]) < 5 * error + 0.1 * abs(source["psfFlux"])


def test_cutouts_read_back_with_astropy_at_the_size_astropy_writes() -> None:
    fits = pytest.importorskip("astropy.io.fits")
    nddata = pytest.importorskip("astropy.nddata")
    units = pytest.importorskip("astropy.units")
    wcs = pytest.importorskip("astropy.wcs")
    for side in (30, 47, 102):
        ours = cutouts.cutout_fits(np.random.default_rng(1), side, 500.0, 40.0, 10.0, -20.0, (0, 0))
        with fits.open(io.BytesIO(ours)) as hdus:
            hdus.verify("exception")
            assert [h.name for h in hdus] == ["PRIMARY", "UNCERT", "PSFIMAGE"]
        ccd = nddata.CCDData.read(io.BytesIO(ours), format="fits")
        assert ccd.shape == (side, side)
        assert ccd.unit == units.nJy
        assert ccd.psf.shape == (25, 25)
        assert type(ccd.uncertainty).__name__ == "VarianceUncertainty"
        # what packageAlerts writes for the same shapes: a CCDData with variance, WCS and PSF
        frame = wcs.WCS(naxis=2)
        frame.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        frame.wcs.cd = [[-5.6e-5, 0.0], [0.0, 5.6e-5]]
        theirs = io.BytesIO()
        nddata.CCDData(
            np.zeros((side, side), np.float32),
            uncertainty=nddata.VarianceUncertainty(np.ones((side, side), np.float32)),
            wcs=frame, psf=np.zeros((25, 25)), meta={"cutMinX": 1, "cutMinY": 2}, unit="nJy",
        ).write(theirs, format="fits")  # fmt: skip
        assert len(ours) == len(theirs.getvalue())


def test_histories_are_the_last_12_months() -> None:
    spans = []
    for curve, oid, ra, dec in objects():
        packet = alert_packet(curve, oid, ra, dec)
        t_alert = packet["diaSource"]["midpointMjdTai"]
        detections = curve.mjd[curve.detected]
        in_window = (curve.mjd >= t_alert - HISTORY_DAYS) & (curve.mjd < t_alert)
        expected_prv = np.sort(curve.mjd[curve.detected & in_window])
        prv = np.sort([s["midpointMjdTai"] for s in packet["prvDiaSources"]])
        forced = np.sort([s["midpointMjdTai"] for s in packet["prvDiaForcedSources"]])
        np.testing.assert_array_equal(prv, expected_prv)  # every detection of the year
        np.testing.assert_array_equal(forced, np.sort(curve.mjd[in_window]))  # every visit
        assert packet["diaObject"]["nDiaSources"] == detections.size  # all time
        assert len(prv) <= detections.size - 1
        spans.append(t_alert - min(forced.min(), prv.min() if prv.size else t_alert))
    assert max(spans) <= HISTORY_DAYS
    assert max(spans) > 300  # some objects fill the whole year
    assert min(spans) < 200  # and young transients do not


def test_packets_are_deterministic_and_sized_like_rubins() -> None:
    first = simulate_packets(4, 9)
    assert first == simulate_packets(4, 9)
    sizes = [len(rubin.confluent_bytes(p)) for _, p in first]
    # three 30-pixel stamps (25,920 bytes each) plus the records
    assert all(size > 3 * 25920 for size in sizes)
    assert all(sum(len(p[k]) for k in KINDS) == 3 * 25920 for _, p in first)


@pytest.mark.parametrize("version", [VERSIONS[0], VERSIONS[-1]])
def test_packet_bytes_are_rubins_framing_of_the_packets(version: str) -> None:
    packets = [alert_packet(c, oid, ra, dec, version) for c, oid, ra, dec in objects()[:3]]
    framed = list(packet_bytes(iter(packets), version=version))
    assert [v for _, v in framed] == [rubin.confluent_bytes(p, version) for p in packets]
    assert [k for k, _ in framed] == [str(p["diaObject"]["diaObjectId"]).encode() for p in packets]
    plain = [v for _, v in packet_bytes(iter(packets), "schemaless", version)]
    assert plain == [rubin.serialize(p, version) for p in packets]


def test_parse_fits_refuses_cut_bytes() -> None:
    data = cutouts.cutout_fits(np.random.default_rng(0), 30, 1.0, 1.0, 0.0, 0.0, (0, 0))
    with pytest.raises(DataError):
        cutouts.parse_fits(data[:-1])
    with pytest.raises(DataError):
        cutouts.parse_fits(data[:2880])


def test_the_benchmarks_size_summary() -> None:
    assert distribution([3, 1, 2, 10]) == {
        "n": 4, "min": 1.0, "median": 2.5, "p90": pytest.approx(7.9), "max": 10.0, "mean": 4.0,
    }  # fmt: skip
    d = distribution([100, 200])
    lines = describe_sizes(
        {
            "schema_version": "11.1",
            "simulated_bytes": d,
            "simulated_cutout_bytes": d,
            "simulated_prvDiaSources": d,
            "simulated_prvDiaForcedSources": d,
            "lsst_alert_packet_samples": {
                "11.1": {
                    "packet_bytes": [719],
                    "file_bytes": 42139,
                    "prvDiaSources": [2],
                    "prvDiaForcedSources": [0],
                    "cutouts": [0],
                }
            },
        }
    )
    assert "100 / 150 / 190 / 200  (n=2)" in lines[1]
    assert lines[-1].split() == ["11.1", "719;", "42,139;", "[2],", "[0],", "[0]"]
