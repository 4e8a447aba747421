"""Decoded alerts -> routed rows or dead letters.

Every group of alerts (:class:`service.io.codecs.decoding.Alerts`) is routed at once: to the
top-level class with the highest probability (the first on ties), whose model takes the features it
was trained on, by name, as float32. Alerts without classifier probabilities (Rubin's alert packets)
go to the unrouted model (class ``All``), with probability 1. The router finds what makes an
alert a dead letter - a probability not finite, no probabilities and no unrouted model, a class
without a model, fewer than ``model.min_feature_coverage`` of the model's features by name
(absent is not null: ALeRCE writes null for an undefined feature, and a stream named another way
lacks the names altogether), an infinite feature (or beyond float32), fewer than
``model.min_feature_values`` of the features with a value (a mostly empty record would score as
an outlier) - and :mod:`service.core.validation` decides the reason and message.

Undefined (null, NaN) features are normal and are scored. Coverage by name is measured for every
group of alerts and counted per class and per absent feature (:class:`Coverage`); each row's
coverage (:attr:`Row.coverage`, the scores' ``feature_coverage``) is the share of its model's
features that have a value, computed for the whole group at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import structlog
from numpy.typing import NDArray

from models.bundle import Bundle
from models.scoring import Scorer
from models.taxonomy import UNROUTED
from service.core.validation import listed, reject
from service.exceptions import InputError
from service.io.codecs.decoding import Alerts, Decoded
from service.records import Lineage, Routed, Row

log = structlog.get_logger(__name__)

REPORT_AFTER = 1000  # alerts routed before the one coverage report of a run


@dataclass(frozen=True)
class Route:
    """The model of one top-level class."""

    top_class: str
    scorer: Scorer
    path: Path  # the bundle directory

    @property
    def bundle(self) -> Bundle:
        return self.scorer.bundle

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.scorer.feature_names


ErrorOf = Callable[[int], InputError]  # the error of an alert of a group, by its index


class _Match(NamedTuple):
    """How a group's feature names meet a model's."""

    positions: NDArray[np.intp]  # column of each model feature in the group (absent: the last)
    coverage: float  # share of the model's features that the group's records carry by name
    absent: tuple[str, ...]


@dataclass
class Coverage:
    """Feature coverage of the routed alerts, for metrics and the one report of a run."""

    by_class: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # (coverage, n)
    absent: Counter[tuple[str, str]] = field(default_factory=Counter)  # (class, feature) -> n
    routed: int = 0


class Router:
    """Routes decoded alerts to the models of ``routes``."""

    def __init__(
        self, routes: dict[str, Route], min_coverage: float, min_values: float = 0.0
    ) -> None:
        """``min_coverage``: the least share of a model's features a record must carry by
        name; ``min_values``: the least share that must have a value (not null)."""
        self.routes = routes
        self.min_coverage = min_coverage
        self.min_values = min_values
        self._matches: dict[tuple[tuple[str, ...], str], _Match] = {}
        self.pending = Coverage()  # since the last take_coverage()
        self._totals = Coverage()  # until the report
        self._reported = False

    def match(self, names: tuple[str, ...], top: str) -> _Match:
        """Where the features of ``top``'s model are among ``names`` (cached)."""
        found = self._matches.get((names, top))
        if found is None:
            index = {name: i for i, name in enumerate(names)}
            wanted = self.routes[top].feature_names
            missing = len(names)
            positions = np.array([index.get(n, missing) for n in wanted], dtype=np.intp)
            absent = tuple(
                n for n, p in zip(wanted, positions.tolist(), strict=True) if p == missing
            )
            coverage = 1.0 - len(absent) / len(wanted) if wanted else 1.0
            found = self._matches[(names, top)] = _Match(positions, coverage, absent)
        return found

    def route(self, decoded: Decoded, sources: Sequence[Lineage]) -> list[Routed]:
        """Rows per message (in record order), or the error that makes it a dead letter (a
        message with several records: one of their errors)."""
        rows: dict[int, list[tuple[int, str, Row]]] = {}  # (alert index, class, row)
        errors = dict(decoded.errors)
        seen = 0
        for group in decoded.groups:
            for k, top, chosen, error in self._split(group):
                if error is not None:
                    for i in chosen.tolist():
                        errors.setdefault(int(group.inputs[i]), error(i))
                    continue
                self._take(group, k, top, chosen, sources, rows, errors, seen)
            seen += len(group.ids)
        self._report_once()
        out: list[Routed] = []
        for i in range(len(sources)):
            found = rows.get(i)
            if i in errors:
                out.append(errors[i])
            elif found is None:
                out.append([])
            elif len(found) == 1:  # one record per message: the common case
                out.append([found[0][1:]])
            else:
                out.append([(t, r) for _, t, r in sorted(found)])
        return out

    def _split(self, group: Alerts) -> list[tuple[int, str, NDArray[np.intp], ErrorOf | None]]:
        """The group's alerts by routed class (k, name, alerts), with the error of those that
        cannot be routed."""
        top = group.top
        everyone = np.arange(len(group.ids), dtype=np.intp)
        if not group.top_names:
            if UNROUTED in self.routes:
                return [(-1, UNROUTED, everyone, None)]
            return [(-1, "", everyone, _no_probabilities_error(tuple(self.routes)))]
        finite = np.isfinite(top).all(axis=1)
        parts: list[tuple[int, str, NDArray[np.intp], ErrorOf | None]] = []
        bad = np.flatnonzero(~finite)
        if len(bad):
            parts.append((-1, "", bad, _probability_error(group)))
        best = np.argmax(np.where(np.isfinite(top), top, -np.inf), axis=1)
        for k, name in enumerate(group.top_names):
            chosen = np.flatnonzero(finite & (best == k))
            if not len(chosen):
                continue
            if name not in self.routes:
                parts.append((k, name, chosen, _unknown_class_error(name, tuple(self.routes))))
            else:
                parts.append((k, name, chosen, None))
        return parts

    def _take(
        self,
        group: Alerts,
        k: int,
        top: str,
        chosen: NDArray[np.intp],
        sources: Sequence[Lineage],
        rows: dict[int, list[tuple[int, str, Row]]],
        errors: dict[int, InputError],
        seen: int,
    ) -> None:
        match = self.match(group.names, top)
        self._count(top, match, len(chosen))
        if match.coverage < self.min_coverage:
            error = _low_coverage_error(self.routes[top], match, self.min_coverage)
            for i in chosen.tolist():
                errors.setdefault(int(group.inputs[i]), error(i))
            return
        features = group.values[np.ix_(chosen, match.positions)].astype(np.float32)
        infinite = np.isinf(features)
        probabilities = group.top[chosen, k].tolist() if k >= 0 else [1.0] * len(chosen)
        inputs = group.inputs[chosen].tolist()
        bad_rows = set(np.flatnonzero(infinite.any(axis=1)).tolist())
        names = self.routes[top].feature_names
        n = features.shape[1]
        valued = n - np.isnan(features).sum(axis=1) if n else np.ones(len(chosen), np.intp)
        shares = valued / n if n else valued.astype(np.float64)
        sparse = set(np.flatnonzero(shares < self.min_values).tolist())
        coverage = shares.tolist()
        heads = group.heads[chosen].tolist() if group.heads is not None else [-1] * len(chosen)
        for j, (at, i) in enumerate(zip(inputs, chosen.tolist(), strict=True)):
            if j in bad_rows:
                name = names[int(np.argmax(infinite[j]))]
                value = group.values[i, match.positions[int(np.argmax(infinite[j]))]]
                errors.setdefault(at, reject("infinite_feature", name=name, value=value))
                continue
            if j in sparse:
                errors.setdefault(
                    at, _null_features_error(self.routes[top], int(valued[j]), self.min_values)
                )
                continue
            entry = (
                seen + i,
                top,
                Row(
                    sources[at],
                    group.ids[i],
                    probabilities[j],
                    features[j],
                    coverage[j],
                    head=heads[j],
                ),
            )
            found = rows.get(at)
            if found is None:
                rows[at] = [entry]
            else:
                found.append(entry)

    def _count(self, top: str, match: _Match, n: int) -> None:
        for stats in (self.pending, self._totals):
            stats.by_class.setdefault(top, []).append((match.coverage, n))
            for name in match.absent:
                stats.absent[(top, name)] += n
            stats.routed += n

    def take_coverage(self) -> Coverage:
        """The coverage counted since the last call (for metrics)."""
        taken, self.pending = self.pending, Coverage()
        return taken

    def _report_once(self, force: bool = False) -> None:
        if self._reported or not self._totals.routed:
            return
        if self._totals.routed < REPORT_AFTER and not force:
            return
        self._reported = True
        totals = self._totals
        classes = {}
        for top, seen in totals.by_class.items():
            n = sum(c for _, c in seen)
            classes[top] = {
                "alerts": n,
                "mean_coverage": round(sum(v * c for v, c in seen) / n, 4),
                "absent": {
                    name: count for (t, name), count in totals.absent.most_common() if t == top
                },
            }
        lacking = any(v["absent"] for v in classes.values())
        (log.warning if lacking else log.info)(
            "feature_coverage", routed=totals.routed, by_class=classes
        )

    def report(self) -> None:
        """The coverage report, if the run ends before :data:`REPORT_AFTER` alerts."""
        self._report_once(force=True)


def _probability_error(group: Alerts) -> ErrorOf:
    def error(i: int) -> InputError:
        j = int(np.argmax(~np.isfinite(group.top[i])))
        return reject("probability_not_finite", name=group.top_names[j], value=group.top[i, j])

    return error


def _no_probabilities_error(models: tuple[str, ...]) -> ErrorOf:
    error = reject("no_unrouted_model", unrouted=UNROUTED, models=", ".join(models))
    return lambda i: error


def _unknown_class_error(name: str, models: tuple[str, ...]) -> ErrorOf:
    error = reject("class_without_model", name=name, models=", ".join(models))
    return lambda i: error


def _null_features_error(route: Route, valued: int, minimum: float) -> InputError:
    n = len(route.feature_names)
    return reject(
        "few_values", valued=valued, n=n, model=route.bundle.name, share=valued / n, minimum=minimum
    )


def _low_coverage_error(route: Route, match: _Match, minimum: float) -> ErrorOf:
    n = len(route.feature_names)
    error = reject(
        "few_features",
        carried=n - len(match.absent),
        n=n,
        model=route.bundle.name,
        coverage=match.coverage,
        minimum=minimum,
        absent=listed(match.absent),
    )
    return lambda i: error
