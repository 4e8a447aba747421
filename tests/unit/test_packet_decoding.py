"""Rubin alert packets decoded in batches (service.io.codecs.packetdecode, through
MessageDecoder): for every schema version lsst-alert-packet ships, the compiled walk gives what
fastavro gives - the object id and the diaObject's per-band values bit for bit, NaN for null or
non-finite, and when a model uses light-curve features the features of the sources it gathers -
on the package's sample alerts, on simulated packets and on fuzzed, cut and grown bytes; what it
turns down is decoded by fastavro (or is a dead letter), and it never reads outside its buffer."""

from __future__ import annotations

import copy
import math
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models import rubin
from models.simulate.lsst_dataset import simulate_object
from models.simulate.lsst_packets import alert_packet
from models.taxonomy import ALL_SUBCLASSES
from service.config import InputSettings
from service.io.codecs.decoding import MessageDecoder
from service.io.codecs.packetdecode import PacketDecoder, compile_packet
from service.io.codecs.surveys import SURVEYS
from tests.unit.test_decoding import by_message, only

VERSIONS = [v.version for v in rubin.schema_versions()]
LSST = SURVEYS["lsst"]


def decoder(lightcurves: bool = False, **settings: Any) -> MessageDecoder:
    return MessageDecoder(InputSettings(format="confluent", **settings), LSST, lightcurves)


@cache
def simulated(version: str, n: int = 12) -> tuple[dict[str, Any], ...]:
    """Simulated packets of ``version`` (one per subclass in turn; versions before 8.0 given
    the ``alertId`` the simulator leaves out)."""
    out = []
    fields = {f["name"] for f in rubin.alert_schema(version)["fields"]}
    for index in range(n):
        obj = simulate_object(ALL_SUBCLASSES[index % len(ALL_SUBCLASSES)], 31, index, False)
        packet = alert_packet(obj.curve, int(obj.oid), obj.ra, obj.dec, version)
        if "alertId" in fields and packet.get("alertId") is None:
            packet["alertId"] = packet["diaSource"]["diaSourceId"]
        out.append(completed(packet, rubin.alert_schema(version), {}))
    return tuple(out)


_ZERO = {"long": 0, "int": 0, "float": 0.0, "double": 0.0, "string": "", "boolean": False}


def completed(value: Any, schema: Any, named: dict[str, Any]) -> Any:
    """``value`` with a value in every non-nullable field the simulator leaves null (8.0's
    ``timestamp-micros`` fields, for one)."""
    if isinstance(schema, str):
        schema = named.get(schema, named.get(schema.rsplit(".", 1)[-1], schema))
    if isinstance(schema, list):
        if value is None:
            return None
        return completed(value, next(b for b in schema if b != "null"), named)
    if isinstance(schema, dict) and schema.get("type") == "record":
        named[schema["name"]] = schema
        named[f"{schema.get('namespace')}.{schema['name']}"] = schema
        return {
            f["name"]: completed(value.get(f["name"]), f["type"], named) for f in schema["fields"]
        }
    if isinstance(schema, dict) and schema.get("type") == "array":
        return [completed(v, schema["items"], named) for v in value or ()]
    if isinstance(schema, dict):
        if value is None and schema.get("logicalType") == "timestamp-micros":
            return 1_767_225_600 * 10**6
        return completed(value, schema["type"], named)
    return _ZERO.get(schema) if value is None else value


def fastavro_alerts(value: bytes) -> tuple[str, dict[str, bytes]] | None:
    """What fastavro decodes the whole packet to: its object id and per-band values as float64
    bytes (NaN for null or not finite); None when fastavro cannot decode it or it has no object."""
    try:
        _, record = rubin.parse_confluent(value)
    except Exception:  # any failure of fastavro: not decodable
        return None
    obj = record.get("diaObject")
    if not isinstance(obj, dict):
        return None
    features = rubin.diaobject_features(record)
    return str(obj["diaObjectId"]), {
        k: np.float64(math.nan if v is None else v).tobytes() for k, v in features.items()
    }


def batch_alerts(
    version: str, values: Sequence[bytes | None], wanted: frozenset[str] | None = None
) -> list[tuple[str, dict[str, bytes]] | None]:
    """Per message: (id, name -> float64 bytes) of what the compiled walk takes; None for what
    it turns down."""
    program = compile_packet(
        rubin.alert_schema(version), None if wanted is None else wanted.__contains__
    )
    assert program is not None
    decoded = PacketDecoder(program, 5).decode([v or b"" for v in values])
    out: list[tuple[str, dict[str, bytes]] | None] = [None] * len(values)
    for j, i in enumerate(decoded.inputs.tolist()):
        row = {k: decoded.values[j, c].tobytes() for c, k in enumerate(decoded.names)}
        assert np.isnan(decoded.values[j, -1])
        out[i] = (decoded.ids[j], row)
    return out


def fuzzed(packet: dict[str, Any], version: str, rng: random.Random) -> dict[str, Any]:
    """``packet`` with random values in its diaObject's per-band fields: null, NaN, infinities,
    -0.0, tiny and huge numbers, integers up to 2**62 (as the field's type allows)."""
    out = copy.deepcopy(packet)
    obj = out["diaObject"]
    nullable = {
        f["name"] for f in rubin.record_fields("diaObject", version) if isinstance(f["type"], list)
    }
    floats = [None, math.nan, math.inf, -math.inf, -0.0, 0.0, 1e-40, 3.4e38, -1.5, 1e300]
    for name, value in obj.items():
        if rubin.diaobject.band_field(name) is None or rng.random() < 0.5:
            continue
        if isinstance(value, int) or "Ndata" in name:
            obj[name] = rng.choice([None, 0, -1, 63, 64, 2**31 - 1, -(2**31)])
        else:
            obj[name] = rng.choice(floats)
        if obj[name] is None and name not in nullable:
            obj[name] = 7
    if rng.random() < 0.3:
        obj["diaObjectId"] = rng.choice([0, -1, 2**62, -(2**63)])
    return out


def fuzzed_history(packet: dict[str, Any], version: str, rng: random.Random) -> dict[str, Any]:
    """``packet`` with random values in its sources' time, band, flux and error: null (where
    the schema allows), NaN, infinities, zero and negative errors, other bands, and times and
    bands of other sources (duplicates)."""
    out = copy.deepcopy(packet)
    sources = [out["diaSource"], *(out["prvDiaSources"] or ()), *(out["prvDiaForcedSources"] or ())]
    nullable = {
        f["name"]
        for record in ("diaSource", "prvDiaForcedSources")
        for f in rubin.record_fields(record, version)
        if isinstance(f["type"], list)
    }
    choices: dict[str, list[Any]] = {
        "time": [math.nan, math.inf, 60000.015625, 60000.0156249],
        "band": ["w", "", "rr", "u", "y"],
        "flux": [math.nan, -math.inf, 0.0, -0.0, 1e-40, 3.4e38],
        "err": [0.0, -1.0, math.nan, math.inf, 1e-30],
    }
    for source in rng.sample(sources, min(len(sources), 12)):
        names = dict(zip(("time", "band", "flux", "err"), source_names(source), strict=True))
        kind = rng.choice(list(names))
        name = names[kind]
        if rng.random() < 0.3:  # another source's time and band: a duplicate
            other = rng.choice(sources)
            for key in (names["time"], names["band"]):
                source[key] = other.get(key, source[key])
        elif name in nullable and rng.random() < 0.3:
            source[name] = None
        else:
            source[name] = rng.choice(choices[kind])
    return out


def source_names(source: dict[str, Any]) -> tuple[str, str, str, str]:
    """The names of a source's time, band, flux and error in its schema version."""
    if "midPointTai" in source:
        return "midPointTai", "filterName", "psFlux", "psFluxErr"
    return "midpointMjdTai", "band", "psfFlux", "psfFluxErr"


def mutated(value: bytes, rng: random.Random) -> bytes:
    """``value`` with bytes flipped, cut short or grown."""
    kind = rng.randrange(4)
    data = bytearray(value)
    if kind == 0:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(5, len(data))] = rng.randrange(256)
    elif kind == 1:
        data = data[: rng.randrange(len(data))]
    elif kind == 2:
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 9)))
    else:
        at = rng.randrange(5, len(data))
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 3)))
    return bytes(data)


def messages(version: str, n: int = 80) -> list[bytes | None]:
    """The version's sample alerts, simulated packets, fuzzed values and mutated bytes."""
    rng = random.Random(20261206)
    packets = [*rubin.sample_alerts(version), *simulated(version)]
    values = [rubin.confluent_bytes(p, version) for p in packets]
    for k in range(n):
        value = rubin.confluent_bytes(fuzzed(packets[k % len(packets)], version, rng), version)
        values.append(mutated(value, rng) if rng.random() < 0.5 else value)
    return [*values, None, b"", b"\0\0\0\x03"]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_versions_samples_and_simulated_packets_take_the_batch_path(version: str) -> None:
    packets = [*rubin.sample_alerts(version), *simulated(version)]
    values = [rubin.confluent_bytes(p, version) for p in packets]
    fast = decoder().decode(values)
    assert fast.paths == {"batch": len(values), "generic": 0}
    assert batch_alerts(version, values) == [fastavro_alerts(v) for v in values]
    slow = decoder(decoder="generic").decode(values)
    assert by_message(fast, len(values)) == by_message(slow, len(values))


@pytest.mark.parametrize("version", VERSIONS)
def test_fuzzed_cut_and_grown_packets_decode_as_fastavro_does(version: str) -> None:
    """Whatever the batch path takes, fastavro decodes the whole packet to the same id and
    values; what it turns down goes to fastavro: the same alerts and dead letters either way."""
    values = messages(version)
    wanted = frozenset(rubin.common_diaobject_fields()[::4])
    fast, slow = decoder(), decoder(decoder="generic")
    some = MessageDecoder(InputSettings(format="confluent"), LSST, wanted=wanted)
    taken = refused = 0
    for begin in range(0, len(values), 40):  # consumed batches of 40 messages
        chunk = values[begin : begin + 40]
        quick, generic, partial = fast.decode(chunk), slow.decode(chunk), some.decode(chunk)
        assert by_message(quick, len(chunk)) == by_message(generic, len(chunk))
        assert only(by_message(partial, len(chunk)), wanted) == only(
            by_message(generic, len(chunk)), wanted
        )
        taken_all = batch_alerts(version, chunk)
        for value, got in zip(chunk, taken_all, strict=True):
            if got is not None:  # taken: fastavro decodes the whole packet to the same
                assert value is not None
                assert got == fastavro_alerts(value)
        expected = [
            None if a is None else (a[0], {k: v for k, v in a[1].items() if k in wanted})
            for a in taken_all
        ]
        assert batch_alerts(version, chunk, wanted) == expected
        assert partial.paths == quick.paths
        taken += quick.paths["batch"]
        refused += quick.paths["generic"]
    assert taken > len(values) / 2, "the batch path took too little to prove anything"
    assert refused > len(values) / 10, "too few messages were refused to prove anything"


def test_a_packet_without_a_diaobject_is_a_dead_letter_not_a_batch_row() -> None:
    packet = copy.deepcopy(simulated(VERSIONS[-1])[0])
    packet["diaObject"] = None
    decoded = decoder().decode([rubin.confluent_bytes(packet)])
    assert decoded.paths == {"batch": 0, "generic": 1}
    assert by_message(decoded, 1) == ["no_object"]


@pytest.mark.parametrize("version", VERSIONS)
def test_light_curve_features_of_the_batch_path_are_fastavros(version: str) -> None:
    """With light-curve features, the walk gathers the sources too: every version's samples,
    simulated packets and packets with fuzzed sources (then fuzzed diaObjects, cut and grown
    bytes) give, bit for bit, what the generic path gives, in batches of 40."""
    rng = random.Random(31)
    packets = [*rubin.sample_alerts(version), *simulated(version)]
    packets += [fuzzed_history(packets[k % len(packets)], version, rng) for k in range(30)]
    values: list[bytes | None] = [rubin.confluent_bytes(p, version) for p in packets]
    whole = len(values)
    values += messages(version, 40)
    values += [mutated(v, rng) for v in values[len(packets) - 30 : len(packets)] if v]
    fast, slow = decoder(True), decoder(True, decoder="generic")
    taken = 0
    for begin in range(0, len(values), 40):
        chunk = values[begin : begin + 40]
        quick, generic = fast.decode(chunk), slow.decode(chunk)
        assert by_message(quick, len(chunk)) == by_message(generic, len(chunk))
        if begin + 40 <= whole:
            assert quick.paths == {"batch": len(chunk), "generic": 0}
        taken += quick.paths["batch"]
    assert taken > len(values) / 2
    assert any(k.startswith("lc_") for group in fast.decode(values[:1]).groups for k in group.names)


def test_sources_that_do_not_fit_the_first_guess_are_read_again() -> None:
    version = VERSIONS[-1]
    values = [rubin.confluent_bytes(p, version) for p in simulated(version, 4)]
    program = compile_packet(rubin.alert_schema(version), history=True)
    assert program is not None
    roomy, tight = PacketDecoder(program, 5), PacketDecoder(program, 5)
    tight._rows = 1
    expected, got = roomy.decode(values).sources, tight.decode(values).sources
    assert expected is not None
    assert got is not None
    assert tight._rows > 1
    assert len(expected.mjd) == sum(
        1 + len(p["prvDiaSources"] or ()) + len(p["prvDiaForcedSources"] or ())
        for p in simulated(version, 4)
    )
    for name in ("packet", "mjd", "band", "flux", "flux_err", "detected"):
        assert getattr(got, name).tobytes() == getattr(expected, name).tobytes(), name


def test_schemas_that_are_no_rubin_packets_do_not_compile() -> None:
    assert compile_packet(LSST.schema("1.0")) is None  # a classifier record
    assert compile_packet({"type": "record", "name": "x", "fields": []}) is None


_CUT_AND_GROWN = """
import random
from models import rubin
from service.io.codecs.packetdecode import PacketDecoder, compile_packet
from tests.unit.test_packet_decoding import VERSIONS, simulated
for version, history in [(v, h) for v in VERSIONS for h in (False, True)]:
    walk = PacketDecoder(compile_packet(rubin.alert_schema(version), history=history), 5)
    for packet in [*rubin.sample_alerts(version), simulated(version, 2)[1]]:
        whole = rubin.confluent_bytes(packet, version)
        rng = random.Random(len(whole))
        size = len(whole)  # a simulated packet ~100 KB: every cut near its ends, a stride between
        ends = {*range(5, min(size, 2000)), *range(max(5, size - 2000), size)}
        cut = [whole[:n] for n in sorted(ends | set(range(2000, size - 2000, 1 + size // 1000)))]
        grown = [whole + bytes(rng.randrange(256) for _ in range(k)) for k in range(1, 9)]
        for value in cut + grown:
            assert len(walk.decode([whole, value]).inputs) == 1  # last: at the buffer's end
        assert len(walk.decode(cut).inputs) == 0
print("ok")
"""


@pytest.mark.slow
def test_the_compiled_walk_never_reads_outside_its_buffer(tmp_path: Path) -> None:
    """With numba's bounds checks on (a fresh compilation), cut and grown packets of every
    version, last in their batch, are decoded or turned down, with and without the sources - no
    read or write leaves its buffer (every cut of the samples; of a simulated packet, those
    within 2,000 bytes of its ends and one every size/1000 bytes between: all of its ~100 KB
    would be a batch of gigabytes)."""
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", _CUT_AND_GROWN], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == "ok"
