"""A Prometheus histogram fed a whole batch of observations in one numpy call.

``prometheus_client``'s ``Histogram.observe`` costs microseconds per value, in Python; the
service observes every score, percentile and coverage of a micro-batch, so its per-value
histograms (:class:`service.ops.metrics.Metrics`) are :class:`BulkHistogram` instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


@dataclass
class _Series:
    counts: NDArray[np.int64]  # per bucket (not cumulative), +Inf last
    total: float = 0.0


class BulkHistogram(Collector):
    """A Prometheus histogram that takes a whole batch of observations in one numpy call
    (``prometheus_client``'s ``observe`` costs microseconds per value, in Python)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name, self.documentation = name, documentation
        self.labelnames = tuple(labelnames)
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self._series: dict[tuple[str, ...], _Series] = {}
        self._lock = threading.Lock()
        if not self.labelnames:
            self.observe_many(())  # the one series exists from the start
        registry.register(self)

    def observe_many(self, values: ArrayLike, *labelvalues: str) -> None:
        data = np.asarray(values, dtype=np.float64).ravel()
        if len(labelvalues) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}")
        # bucket i counts values <= bounds[i]; the last one is +Inf
        counts = np.bincount(
            np.searchsorted(self.bounds, data, side="left"), minlength=len(self.bounds) + 1
        )
        with self._lock:
            series = self._series.get(labelvalues)
            if series is None:
                series = self._series[labelvalues] = _Series(np.zeros(len(counts), np.int64))
            series.counts += counts
            series.total += float(data.sum())

    def collect(self) -> Iterable[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            snapshot = [(k, v.counts.cumsum(), v.total) for k, v in self._series.items()]
        bounds = [*(floatToGoString(b) for b in self.bounds), "+Inf"]  # type: ignore[no-untyped-call]
        for labelvalues, cumulative, total in snapshot:
            family.add_metric(
                list(labelvalues),
                [(b, float(c)) for b, c in zip(bounds, cumulative, strict=True)],
                total,
            )
        yield family

    def describe(self) -> Iterable[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
