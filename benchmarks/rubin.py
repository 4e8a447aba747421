"""The Rubin rows of the end-to-end benchmark (issue 31, item 5), measured in the same run as
ZTF's and on the same broker: N simulated Rubin alert packets (``benchmarks.workload``: schema
11.1 in Rubin's framing, their history and three FITS cutouts, ~100 KB each) pre-loaded into a
topic of their own, then, ``--repeat`` times in turn (each row's median run counts):

* ``rubin passthrough`` - the passthrough of ``benchmarks.e2e`` on these packets: consume and
  produce one score-sized output each (the Kafka limit for these packets);
* ``rubin service`` - the service with ``model.survey lsst`` as shipped: every packet goes to
  the unrouted ``lsst/all-iforest``, whose features (as every shipped LSST bundle's) are the 36
  per-band diaObject fields, so the history is stepped over and the cutouts skipped;
* ``rubin service, light-curve features`` - no shipped bundle uses light-curve features, so the
  service computes them only for a bundle whose manifest names ``lc_<band>_<feature>`` columns:
  an ``all-iforest`` trained here, as ``alert-anomaly train --survey lsst --top-class All
  --scorer iforest --features diaobject+lightcurve`` does, on the committed LSST sample (138
  features: the 36 diaObject fields and 102 light-curve features) and pointed at by
  ``model.bundles_dir`` with ``model.scorers = {All: iforest}``; the same scorer as the row
  above, so the difference is the history's decoding and the light-curve features.

Then one profiled run of ``rubin service`` (where the service thread's CPU time goes per
packet) and, with the ``stages`` row, each stage in isolation for both models. The topic is
deleted at the end, so that the broker holds what it held before.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import workload
from benchmarks.common import Throughput
from benchmarks.e2e import (
    Broker,
    drop_topics,
    new_topics,
    passthrough,
    sample_output,
    saturation,
    settings_values,
    stages,
)
from benchmarks.report import RUBIN_LIGHTCURVES, RUBIN_PASSTHROUGH, RUBIN_SERVICE, Account
from models.bundle import load_bundle
from models.resources import bundle_dirname, sample_dir
from models.rubin import LIGHTCURVE_PREFIX
from models.taxonomy import UNROUTED
from service.config import Settings, load_settings
from service.demo import publish
from service.io.codecs.avro import make_encoder

LIGHTCURVE_FEATURES = "diaobject+lightcurve"  # alert-anomaly train --features
LIGHTCURVE_SCORER = "iforest"  # LSST's default unrouted scorer, as in the diaObject row
LSST_SAMPLE = sample_dir().parent / "lsst-sim-sample" / "objects.parquet"  # committed
STAGE_PACKETS = 2000  # at most this many packets for the stages (fastavro takes ms each)


@dataclass
class RubinDetail:
    """What the Rubin rows measured besides their rates (those are in the report's throughput,
    runs and ratios beside ZTF's)."""

    packets: int
    bytes_per_packet: float  # mean over the workload's distinct packets
    models: dict[str, str]  # row -> what scored it
    # row -> its unrouted model's features: how many, and how many of them light-curve features
    features: dict[str, dict[str, int]] = field(default_factory=dict)
    decode_paths: dict[str, dict[str, int]] = field(default_factory=dict)  # row -> its median run's
    account: Account | None = None  # the profiled run of the rubin service row
    stages_us_per_packet: dict[str, dict[str, float]] = field(default_factory=dict)  # by row

    def lines(self) -> list[str]:
        """The detail as the report prints it."""
        out = [
            f"Rubin rows: {self.packets:,} packets pre-loaded "
            f"({self.bytes_per_packet / 1024:.1f} KiB each on average)"
        ]
        out += [f"  {row}: {model}" for row, model in self.models.items()]
        out += [
            f"  features of {row}'s model: {n['features']} ({n['lightcurve']} light-curve)"
            for row, n in self.features.items()
        ]
        out += [f"  decode paths, {row}: {paths}" for row, paths in self.decode_paths.items()]
        if self.account is not None:
            a = self.account
            out.append(
                f"  {RUBIN_SERVICE}, by thread and stage (us/packet): the service thread "
                f"{a.thread_us_per_alert:.1f}, librdkafka's and other threads "
                f"{a.other_threads_us_per_alert:.1f}; the service thread by stage (timed):"
            )
            out += [f"    {stage:52s} {us:8.1f}" for stage, us in a.stages_us_per_alert.items()]
        for row, stage_us in self.stages_us_per_packet.items():
            out.append(f"  stages in isolation, {row} (us/packet):")
            out += [f"    {stage:52s} {us:8.1f}" for stage, us in stage_us.items()]
        return out


def lightcurve_bundles(root: Path) -> Path:
    """A bundle root holding ``lsst/all-iforest`` trained on the committed LSST sample's diaObject
    and light-curve features (the command line's ``train``; about 5 s)."""
    from service.cli import main as cli

    out = root / bundle_dirname("lsst", UNROUTED, LIGHTCURVE_SCORER)
    argv = [  # the benchmark's logging as configured: console, warnings and errors only
        "--log-format",
        "console",
        "--log-level",
        "warning",
        "train",
        "--data",
        str(LSST_SAMPLE),
        "--survey",
        "lsst",
        "--top-class",
        UNROUTED,
        "--scorer",
        LIGHTCURVE_SCORER,
        "--features",
        LIGHTCURVE_FEATURES,
        "--out",
        str(out),
        "--no-progress",
        "--model-version",
        "bench-lightcurves",
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        status = cli(argv)
    if status != 0:
        raise RuntimeError(f"training the light-curve bundle failed (exit {status})")
    return root


def rubin_settings(
    kafka: Broker, topic: str, args: argparse.Namespace, bundles: Path | None = None
) -> Settings:
    """The settings of a Rubin row: survey lsst as shipped, or with ``bundles`` (a bundle root)
    its unrouted model only, from there."""
    values = settings_values(kafka, topic, args, "lsst")
    if bundles is not None:
        values["model"] = {
            **values["model"],
            "bundles_dir": str(bundles),
            "scorers": {UNROUTED: LIGHTCURVE_SCORER},
        }
    return load_settings(None, values)


def unrouted_features(settings: Settings) -> dict[str, int]:
    """How many features the unrouted (``All``) model of ``settings`` reads, and how many of them
    are light-curve features (the bundle the service loads for a packet)."""
    model = settings.model
    bundle = load_bundle(
        model.bundles_dir / bundle_dirname("lsst", UNROUTED, model.scorers[UNROUTED])
    )
    names = bundle.manifest.feature_names
    return {
        "features": len(names),
        "lightcurve": sum(name.startswith(LIGHTCURVE_PREFIX) for name in names),
    }


def measure(
    kafka: Broker, args: argparse.Namespace, with_stages: bool
) -> tuple[dict[str, list[Throughput]], RubinDetail]:
    """Every run of the Rubin rows (``args.rubin_n`` packets, ``args.repeat`` turns) and their
    detail: decode paths, the profiled run and (``with_stages``) the stages in isolation."""
    n = args.rubin_n
    topic = f"bench-rubin-{uuid.uuid4().hex[:8]}"
    sizes = [len(value) for _, value in workload.encoded_for("lsst")]
    with tempfile.TemporaryDirectory(prefix="bench-rubin-") as tmp:
        print("training the light-curve bundle (all-iforest, diaObject + light curves) ...")
        models: dict[str, Path | None] = {
            RUBIN_SERVICE: None,
            RUBIN_LIGHTCURVES: lightcurve_bundles(Path(tmp)),
        }
        detail = RubinDetail(
            n,
            float(np.mean(sizes)),
            {
                RUBIN_PASSTHROUGH: "consume + produce a score-sized output (no decoding)",
                RUBIN_SERVICE: "model.survey lsst as shipped: lsst/all-iforest (diaObject "
                "features)",
                RUBIN_LIGHTCURVES: f"all-{LIGHTCURVE_SCORER} trained here on the committed LSST "
                f"sample's '{LIGHTCURVE_FEATURES}' features (diaObject and light-curve)",
            },
        )
        detail.features = {
            row: unrouted_features(rubin_settings(kafka, topic, args, bundles))
            for row, bundles in models.items()
        }
        base = rubin_settings(kafka, topic, args)
        new_topics(base, args.partitions)
        print(f"pre-loading {n} Rubin alert packets into {topic} ...", flush=True)
        publish(kafka.bootstrap_servers, topic, workload.messages(n, "lsst"))
        payload = make_encoder("schemaless")(sample_output(base, "lsst"))
        runs: dict[str, list[Throughput]] = {}
        paths: dict[str, list[dict[str, int]]] = {}
        for turn in range(1, args.repeat + 1):
            of = f" (run {turn} of {args.repeat})" if args.repeat > 1 else ""
            print(f"{RUBIN_PASSTHROUGH}{of} ...", flush=True)
            runs.setdefault(RUBIN_PASSTHROUGH, []).append(
                passthrough(rubin_settings(kafka, topic, args), n, payload, kafka.pid)
            )
            drop_topics(base)
            for row, bundles in models.items():
                print(f"{row}{of} ...", flush=True)
                rate, decoded, _ = saturation(
                    rubin_settings(kafka, topic, args, bundles), n, kafka.pid
                )
                runs.setdefault(row, []).append(rate)
                paths.setdefault(row, []).append(decoded)
                drop_topics(base)
        for row, each in paths.items():  # the median run's (benchmarks.e2e.median_run)
            order = sorted(range(len(each)), key=lambda i: _steady(runs[row][i]))
            detail.decode_paths[row] = each[order[(len(order) - 1) // 2]]
        print(f"{RUBIN_SERVICE}, profiled (where its CPU time goes) ...", flush=True)
        profiled = rubin_settings(kafka, topic, args)
        _, _, detail.account = saturation(profiled, n, kafka.pid, profile=True)
        drop_topics(base)
        for row, bundles in models.items() if with_stages else ():
            print(f"stages, {row} ...", flush=True)
            settings = rubin_settings(kafka, topic, args, bundles)
            detail.stages_us_per_packet[row] = stages(settings, min(n, STAGE_PACKETS), "lsst")
        drop_topics(base, inputs=True)
    return runs, detail


def _steady(rate: Throughput) -> float:
    return rate.steady_per_second or rate.per_second


def report_config(args: argparse.Namespace, with_stages: bool) -> dict[str, Any]:
    """The Rubin rows' entries of the report's configuration."""
    out: dict[str, Any] = {
        "rubin_packets": args.rubin_n,
        "rubin_schema_version": "latest (lsst-alert-packet), Rubin's framing",
        "rubin_distinct_packets": workload.LSST_PACKETS,
    }
    if with_stages:
        out["rubin_stage_packets"] = min(args.rubin_n, STAGE_PACKETS)
    return out
