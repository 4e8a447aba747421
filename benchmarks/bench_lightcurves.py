"""Rubin light-curve features per packet: packet by packet
(``models.rubin.lightcurve_features``) against a batch at once (``models.rubin.lcbatch``:
numpy photometry, then the extractor called per light curve or ``Extractor.many`` on 1 or 2
threads), over simulated packets already decoded; and through ``MessageDecoder`` from the bytes,
by fastavro (generic path) or by the compiled walk gathering the sources (batch path).

    python benchmarks/bench_lightcurves.py [--objects 200] [--batch 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.bench_packets import _per_packet
from models import rubin
from models.rubin import lcbatch
from models.simulate.lsst_dataset import simulate_packets
from service.config import InputSettings
from service.io.codecs.decoding import MessageDecoder
from service.io.codecs.surveys import SURVEYS


def _in_batches(
    run: Callable[[Sequence[Any]], object], items: Sequence[Any], size: int
) -> Callable[[], None]:
    def batches() -> None:
        for begin in range(0, len(items), size):
            run(items[begin : begin + size])

    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"simulating {args.objects} packets...", flush=True)
    packets = [p for _, p in simulate_packets(args.objects, seed=31)]
    values = [rubin.confluent_bytes(p) for p in packets] * max(1, 500 // args.objects)
    records = [rubin.parse_confluent(v)[1] for v in values]
    n = len(values)
    sources = lcbatch.gather_sources(records[: args.objects])
    lsst = SURVEYS["lsst"]
    decoder = MessageDecoder(InputSettings(format="confluent"), lsst, lightcurves=True)
    generic = MessageDecoder(InputSettings(format="confluent", decoder="generic"), lsst, True)
    assert decoder.decode(values[:10]).paths["batch"] == 10

    def one_by_one(batch: Sequence[Any]) -> None:
        for record in batch:
            rubin.lightcurve_features(record)

    def together(n_jobs: int | None) -> Callable[[Sequence[Any]], object]:
        return lambda batch: lcbatch.lightcurve_feature_rows(batch, n_jobs)

    rows = [
        ("packet by packet (lightcurve_features)", _in_batches(one_by_one, records, args.batch)),
        ("batch, extractor per light curve", _in_batches(together(None), records, args.batch)),
        ("batch, Extractor.many n_jobs=1", _in_batches(together(1), records, args.batch)),
        ("batch, Extractor.many n_jobs=2", _in_batches(together(2), records, args.batch)),
        ("gathering the sources (part of the batch rows)", _in_batches(
            lcbatch.gather_sources, records, args.batch)),
        ("bytes to features, generic path (fastavro)", _in_batches(
            generic.decode, values, args.batch)),
        ("bytes to features, batch path (walk)", _in_batches(decoder.decode, values, args.batch)),
    ]  # fmt: skip
    timed = [(name, _per_packet(run, n, args.repeat)) for name, run in rows]
    per_packet = len(sources.mjd) / args.objects
    print(
        f"{n} packets ({per_packet:.0f} sources each on average), batches of {args.batch}, "
        f"median of {args.repeat} runs:"
    )
    print(f"  {'':<44} {'wall us/packet':>15} {'CPU us/packet':>15}")
    for name, (wall, cpu) in timed:
        print(f"  {name:<44} {wall * 1e6:15.1f} {cpu * 1e6:15.1f}")
    print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
