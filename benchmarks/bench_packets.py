"""Rubin packet decoding per packet: the generic path (fastavro, one call per message; the
service's projection without history) against the batch path (the compiled walk of
``service.io.codecs.packetdecode``), over simulated packets in Rubin's Confluent wire format, in
consumed batches, both through ``MessageDecoder``; and fastavro reading the whole packet.

    python benchmarks/bench_packets.py [--objects 400] [--batch 500] [--repeat 5] [--version 11.1]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable, Sequence

import fastavro

from models import rubin
from models.simulate.lsst_dataset import simulate_packets
from service.config import InputSettings
from service.io.codecs.decoding import MessageDecoder
from service.io.codecs.surveys import SURVEYS


def _per_packet(run: Callable[[], object], n: int, repeat: int) -> tuple[float, float]:
    """The medians over ``repeat`` runs of the wall and CPU seconds per packet (CPU time
    tells the cost where other processes share the cores)."""
    wall, cpu = [], []
    for _ in range(repeat):
        began, began_cpu = time.perf_counter(), time.process_time()
        run()
        wall.append((time.perf_counter() - began) / n)
        cpu.append((time.process_time() - began_cpu) / n)
    return statistics.median(wall), statistics.median(cpu)


def _batches(decoder: MessageDecoder, values: Sequence[bytes], size: int) -> Callable[[], None]:
    def run() -> None:
        for begin in range(0, len(values), size):
            decoded = decoder.decode(values[begin : begin + size])
            assert not decoded.errors

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=400)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--version", default=None, help="schema version (default: latest)")
    args = parser.parse_args()
    version = args.version or rubin.latest_version()
    print(f"simulating {args.objects} packets (schema {version})...", flush=True)
    packets = [p for _, p in simulate_packets(args.objects, seed=31)]
    values = [rubin.confluent_bytes(p, version) for p in packets] * max(1, 2000 // args.objects)
    n = len(values)
    sizes = sorted(len(v) for v in values)
    lsst = SURVEYS["lsst"]
    wanted = frozenset(rubin.common_diaobject_fields())
    batch = MessageDecoder(InputSettings(format="confluent"), lsst, wanted=wanted)
    generic = MessageDecoder(
        InputSettings(format="confluent", decoder="generic"), lsst, wanted=wanted
    )
    assert batch.decode(values[:10]).paths["batch"] == 10
    schema = fastavro.parse_schema(rubin.alert_schema(version))

    def whole() -> None:
        for value in values:
            fastavro.schemaless_reader(io.BytesIO(value[5:]), schema)

    rows = [
        ("fastavro, whole packet", _per_packet(whole, n, args.repeat)),
        ("generic path (fastavro, history skipped)", _per_packet(
            _batches(generic, values, args.batch), n, args.repeat)),
        ("batch path (compiled walk)", _per_packet(
            _batches(batch, values, args.batch), n, args.repeat)),
    ]  # fmt: skip
    print(
        f"{n} packets, {sizes[0]}-{sizes[-1]} bytes (median {sizes[n // 2]}), "
        f"batches of {args.batch}, median of {args.repeat} runs:"
    )
    print(f"  {'':<44} {'wall us/packet':>15} {'CPU us/packet':>15} {'packets/s (CPU)':>16}")
    for name, (wall, cpu) in rows:
        print(f"  {name:<44} {wall * 1e6:15.1f} {cpu * 1e6:15.1f} {1 / cpu:16,.0f}")
    speedup = rows[1][1][1] / rows[2][1][1]
    print(
        f"  batch path over the generic path (CPU time): {speedup:.0f}x; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
