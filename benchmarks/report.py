"""What a run of ``python -m benchmarks`` found (:class:`Report`), the targets it is held to
(:func:`targets`: the issues' bounds for a 2-core CPU machine) and the printed table."""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import confluent_kafka
import fastavro
import numpy as np
import torch

from benchmarks import workload
from benchmarks.common import STEADY, code_version
from service import __version__

if TYPE_CHECKING:
    from benchmarks.rubin import RubinDetail

ALERCE = "service with ALeRCE's outputs"  # the alerce row's name in the report
BASELINE = "service, the paper's best per class"  # the baseline row's name in the report
# issue 32: a new default must keep the service row at this rate or more, measured in the same
# run as the default before it (the baseline row)
DEFAULT_RULE_ALERTS_S = 45_000
# the rubin rows' names in the report (benchmarks.rubin)
RUBIN_PASSTHROUGH = "rubin passthrough"
RUBIN_SERVICE = "rubin service"  # the shipped LSST bundles: diaObject features
RUBIN_LIGHTCURVES = "rubin service, light-curve features"
# p99 latency bounds by offered load (alerts/s)
LATENCY_BOUNDS_MS = {1000.0: 100.0, 5000.0: 50.0}


@dataclass
class Latency:
    offered_per_second: float
    achieved_per_second: float
    alerts: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    flush_when_idle: bool = True  # batch.flush_when_idle (shipped: on)
    # CPU time per alert while the load ran, by process (the load's producer not included)
    cpu_us_per_alert: dict[str, float] = field(default_factory=dict)
    batches: dict[str, int] = field(default_factory=dict)  # micro-batches released, by why


@dataclass
class Burst:
    survey: str
    alerts: int
    seconds: float  # first input timestamp -> last output acknowledged
    produce_seconds: float  # how long the producer took to send the burst
    bytes_per_alert: float

    @property
    def per_second(self) -> float:
        return self.alerts / self.seconds


@dataclass
class Report:
    machine: str
    versions: dict[str, str | None]
    config: dict[str, Any]
    throughput: dict[str, float] = field(default_factory=dict)  # steady state, median run
    runs: dict[str, list[float]] = field(default_factory=dict)  # every run's steady rate
    first_to_last: dict[str, float] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    latency: list[Latency] = field(default_factory=list)
    bursts: list[Burst] = field(default_factory=list)
    stages_us_per_alert: dict[str, float] = field(default_factory=dict)
    decode_paths: dict[str, int] = field(default_factory=dict)
    cpu_us_per_alert: dict[str, dict[str, float]] = field(default_factory=dict)
    account: Account | None = None
    targets: list[Target] = field(default_factory=list)
    # the Rubin workload's packet sizes beside lsst-alert-packet's samples (workload.py)
    packet_sizes: dict[str, Any] = field(default_factory=dict)
    rubin: RubinDetail | None = None  # the Rubin rows' decode paths, account, stages


@dataclass
class Target:
    """One of the issue's targets for a 2-core CPU machine, and whether this run met it."""

    name: str
    measured: float
    bound: float
    at_least: bool  # measured >= bound (else measured <= bound)

    @property
    def met(self) -> bool:
        return self.measured >= self.bound if self.at_least else self.measured <= self.bound


@dataclass
class Account:
    """Where the service's CPU time per alert goes, in the saturation run."""

    thread_us_per_alert: float  # the service thread (the engine loop)
    other_threads_us_per_alert: float  # librdkafka's threads and the benchmark's own
    stages_us_per_alert: dict[str, float]  # the service thread's CPU time by stage (timed)


def targets(report: Report) -> list[Target]:
    """The targets that this run measured."""
    t, r = report.throughput, report.ratios
    out = []
    if "service" in t:
        out.append(Target("service alerts/s", t["service"], 10_000, True))
    if "service" in t and BASELINE in t:
        rule = "service alerts/s beside the previous default (the rule for a default)"
        out.append(Target(rule, t["service"], DEFAULT_RULE_ALERTS_S, True))
    bounds = {
        "service/passthrough": 0.5,
        "service/naive": 10,
        "service/peer": 10,
        "alerce/service": 0.8,
    }
    out += [
        Target(name.replace("/", " / "), r[name], bound, True)
        for name, bound in bounds.items()
        if name in r
    ]
    if "instances/service" in r:
        out.append(Target("instances / service", r["instances/service"], 1.0, True))
    out += [
        Target(
            f"p99 latency ms at {lat.offered_per_second:,.0f} alerts/s",
            lat.p99_ms,
            LATENCY_BOUNDS_MS[lat.offered_per_second],
            False,
        )
        for lat in report.latency
        if lat.offered_per_second in LATENCY_BOUNDS_MS and lat.flush_when_idle  # as shipped
    ]
    # issue 31, item 5: per replica, with the shipped (diaObject) models
    if RUBIN_SERVICE in t:
        out.append(Target(f"{RUBIN_SERVICE} packets/s", t[RUBIN_SERVICE], 10_000, True))
    ratio = f"{RUBIN_SERVICE}/{RUBIN_PASSTHROUGH}"
    if ratio in r:
        out.append(Target(ratio.replace("/", " / "), r[ratio], 0.5, True))
    return out


def versions() -> dict[str, str | None]:
    return {
        "alert_anomaly": __version__,
        "commit": code_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "fastavro": fastavro.__version__,
        "confluent_kafka": importlib.metadata.version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
    }


def print_report(report: Report) -> None:
    t, r = report.throughput, report.ratios
    print(report.machine)
    print(", ".join(f"{k} {v}" for k, v in report.versions.items()))
    print(", ".join(f"{k}={v}" for k, v in report.config.items()))
    print()
    low, high = (f"{100 * f:.0f}%" for f in STEADY)
    print(f"throughput: alerts/s between {low} and {high} of the alerts (steady state), and from")
    print("the first message consumed to the last output acknowledged (first to last; also the")
    print("steady rate of a run too short to have one)")
    print(f"{'':42s} {'steady':>10s} {'x passthrough':>14s} {'first to last':>14s}")
    for name, rate in t.items():
        first_to_last = report.first_to_last[name]
        # the Rubin rows against the passthrough of the Rubin packets
        limit = RUBIN_PASSTHROUGH if name.startswith("rubin") else "passthrough"
        ratio = f"{rate / t[limit]:14.2f}" if limit in t else f"{'-':>14s}"
        print(f"{name:42s} {rate:10,.0f} {ratio} {first_to_last:14,.0f}")
    print(", ".join(f"{name}: {value:.2f} x" for name, value in r.items()))
    several = {name: rates for name, rates in report.runs.items() if len(rates) > 1}
    if several:
        print("every run's steady rate (the median run counts):")
        for name, rates in several.items():
            print(f"  {name:40s} {', '.join(f'{x:,.0f}' for x in rates)}")
    print()
    print("CPU time per alert (us), from the first message on (the median run's):")
    for phase, processes in report.cpu_us_per_alert.items():
        total = sum(processes.values())
        parts = ", ".join(f"{name} {us:.1f}" for name, us in processes.items())
        print(f"  {phase}: {parts} = {total:.1f}")
    print()
    if report.account is not None:
        a = report.account
        print(
            f"service process, by thread and stage (us/alert): the service thread "
            f"{a.thread_us_per_alert:.1f}, librdkafka's and other threads "
            f"{a.other_threads_us_per_alert:.1f}; the service thread by stage (timed):"
        )
        for stage, us in a.stages_us_per_alert.items():
            print(f"  {stage:44s} {us:6.1f}")
        print()
    print(f"{'latency (input timestamp -> output ack)':42s} p50 / p95 / p99 / max ms")
    for lat in report.latency:
        label = (
            f"offered {lat.offered_per_second:,.0f}/s (sent {lat.achieved_per_second:,.0f}/s)"
            f"{'' if lat.flush_when_idle else ', no idle flush'}"
        )
        print(
            f"{label:42s} {lat.p50_ms:.1f} / {lat.p95_ms:.1f} / {lat.p99_ms:.1f} / "
            f"{lat.max_ms:.1f}  ({lat.alerts} alerts)"
        )
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in lat.cpu_us_per_alert.items())
        print(f"{'':42s} CPU us/alert: {cpu}; batches released: {lat.batches}")
    print()
    if report.bursts:
        print(f"{'burst (first input timestamp -> last ack)':42s} {'seconds':>8s} {'alerts/s':>9s}")
        for b in report.bursts:
            label = f"{b.alerts:,} {b.survey} alerts ({b.bytes_per_alert / 1024:.1f} KiB each)"
            print(
                f"{label:42s} {b.seconds:8.2f} {b.per_second:9,.0f}  "
                f"(sent in {b.produce_seconds:.2f} s)"
            )
        print()
    if report.packet_sizes:
        print("\n".join(workload.describe_sizes(report.packet_sizes)))
        print()
    if report.rubin is not None:
        print("\n".join(report.rubin.lines()))
        print()
    if report.stages_us_per_alert or report.decode_paths:  # the ZTF rows' (--rows)
        print(f"{'stage':42s} {'us/alert':>10s}")
        for name, us in report.stages_us_per_alert.items():
            print(f"{name:42s} {us:10.1f}")
        print(f"decode paths in the saturation run: {report.decode_paths}")
        print()
    print(f"{'target':42s} {'measured':>10s} {'bound':>10s}")
    for target in report.targets:
        sign = ">=" if target.at_least else "<="
        verdict = "met" if target.met else "NOT MET"
        print(f"{target.name:42s} {target.measured:10,.2f} {sign} {target.bound:7,.1f}  {verdict}")
