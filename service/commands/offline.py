"""What the offline commands (``score``, ``replay``, ``top``) tell their user at the end: the dead
letters as counts by reason with the first of each (the full list is in the command's
dead-letter output), a hint when the input looks like the other survey's, and an error (exit
status 2) when nothing was scored."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import fastavro
import pyarrow.parquet as pq

from models.exceptions import DataError
from models.resources import bundle_dirname
from models.resources import bundles_dir as shipped_bundles
from models.scorers import DEFAULT_SCORERS, SURVEY_DEFAULT_SCORERS
from service.config import Settings
from service.io.codecs.surveys import SURVEYS
from service.pipeline import Summary

TABLE_SUFFIXES = (".parquet", ".csv")


class NothingScoredError(DataError):
    """An offline command read alerts and scored none of them."""


def dead_letter_lines(summary: Summary, full_list: str | None) -> list[str]:
    """The dead letters as one line per reason (most frequent first) with its first example;
    ``full_list`` says where every one of them is."""
    if not summary.dead_lettered:
        return []
    where = f" (every one: {full_list})" if full_list else ""
    lines = [f"dead-lettered {summary.dead_lettered} of {summary.read} by reason{where}:"]
    width = max(len(r) for r in summary.by_reason)
    for reason, n in sorted(summary.by_reason.items(), key=lambda item: (-item[1], item[0])):
        first = summary.first_dead_letter.get(reason)
        example = ""
        if first is not None:
            stream, partition, offset, error = first
            at = f"{stream}{f'[{partition}]' if partition else ''} offset {offset}"
            example = f"  first: {at}: {error}"
        lines.append(f"  {reason:{width}s} {n:>8d}{example}")
    return lines


def conclude(
    summary: Summary,
    where: str,
    settings: Settings,
    paths: Sequence[Path] = (),
    full_list: str | None = None,
) -> None:
    """Print the dead letters by reason, a survey hint and the summary line; raise
    :class:`NothingScoredError` when alerts were read and none was scored."""
    for line in dead_letter_lines(summary, full_list):
        print(line)
    hint = survey_hint(settings, paths) if summary.dead_lettered else None
    if hint is not None:
        print(f"hint: {hint}")
    print(summary.line(where))
    if summary.read and not summary.scored:
        reasons = ", ".join(sorted(summary.by_reason))
        raise NothingScoredError(
            f"nothing scored: all {summary.read} inputs were dead-lettered ({reasons})"
            + (f"; {hint}" if hint else "")
        )


def survey_hint(settings: Settings, paths: Sequence[Path]) -> str | None:
    """``add --survey X`` when the input's feature names are those of survey X's models rather
    than the configured survey's (compared with the least share a model needs by name)."""
    names = input_feature_names(paths)
    if not names:
        return None
    current = settings.model.survey
    shares = {s: _model_share(settings, s, names) for s in SURVEYS}
    best = max(shares, key=lambda s: shares[s])
    needed = settings.model.min_feature_coverage
    if best == current or shares[best] < needed or shares[current] >= needed:
        return None
    return (
        f"the input's features are those of the {best} models ({shares[best]:.0%} of their "
        f"names, {shares[current]:.0%} of {current}'s): add --survey {best}"
    )


def _model_share(settings: Settings, survey: str, names: set[str]) -> float:
    """The largest share of a model's feature names among ``names``, over the survey's
    configured (its own: default) models; 0 when none can be read."""
    if survey == settings.model.survey:
        scorers: dict[str, str] = dict(settings.model.scorers)
    else:
        scorers = dict(SURVEY_DEFAULT_SCORERS.get(survey, DEFAULT_SCORERS))
    best = 0.0
    for top, scorer in scorers.items():
        wanted = _manifest_features(settings.model.bundles_dir, survey, top, scorer)
        if wanted:
            best = max(best, sum(n in names for n in wanted) / len(wanted))
    return best


def _manifest_features(root: Path, survey: str, top: str, scorer: str) -> list[str]:
    """A bundle's feature names, from the configured bundle root or else the shipped one."""
    for base in (root, shipped_bundles()):
        path = base / bundle_dirname(survey, top, scorer) / "manifest.json"
        try:
            names = json.loads(path.read_text(encoding="utf-8")).get("feature_names")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(names, list):
            return [str(n) for n in names]
    return []


def input_feature_names(paths: Iterable[Path]) -> set[str]:
    """The feature names of the first table or Avro file among ``paths`` (directories and
    tarballs searched as a replay reads them), each also under every survey's naming; empty
    when none can be read."""
    names: set[str] = set()
    try:
        for path in paths:
            found = _first_names(path)
            if found is not None:
                names = found
                break
    except Exception:  # a hint is a courtesy: whatever the file holds, it never fails the command
        return set()
    return names | {s.canonical(n) for s in SURVEYS.values() for n in names}


def _first_names(path: Path) -> set[str] | None:
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file() and child.suffix in (*TABLE_SUFFIXES, ".avro"):
                return _first_names(child)
        return None
    if path.suffix.lower() == ".parquet":
        return set(pq.read_schema(path).names)
    if path.suffix.lower() == ".csv":
        with open(path, encoding="utf-8", errors="replace") as fh:
            return {c.strip().strip('"') for c in fh.readline().split(",")}
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                if member.isfile() and member.name.endswith(".avro"):
                    handle = tar.extractfile(member)
                    return _avro_names(handle.read()) if handle else None
        return None
    return _avro_names(path.read_bytes())


def _avro_names(data: bytes) -> set[str] | None:
    """The feature names of an Avro container's first record: a classifier record's features,
    a Rubin alert packet's diaObject fields."""
    record: Any = next(iter(fastavro.reader(io.BytesIO(data))), None)
    if not isinstance(record, dict):
        return None
    names: set[str] = set()
    for part in ("features", "diaObject"):
        value = record.get(part)
        if isinstance(value, dict):
            names.update(value)
    return names
