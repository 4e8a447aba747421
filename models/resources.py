"""Locations of the data files shipped with the code: Avro schemas, the synthetic sample and the
default model bundles. Works from a source checkout and from an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def schemas_dir() -> Path:
    """The `schemas/` tree (copied into the wheel as models/_resources/schemas)."""
    installed = _PACKAGE / "_resources" / "schemas"
    return installed if installed.is_dir() else _PACKAGE.parent / "schemas"


def sample_dir() -> Path:
    """The committed synthetic ZTF sample (objects.parquet and its data card)."""
    return _PACKAGE / "data" / "ztf-sim-sample"


def bundles_dir() -> Path:
    """The default model bundles shipped with the package."""
    return _PACKAGE / "bundles"


def bundle_dirname(survey: str, top_class: str, scorer: str) -> Path:
    """Relative directory of a bundle under a bundle root, e.g. ``ztf/periodic-mcdsvdd``."""
    return Path(survey, f"{top_class.lower()}-{scorer}")
