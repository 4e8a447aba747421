"""The optional extras of ``pip install 'alert-anomaly[EXTRA]'`` and the one way to import what
they bring: :func:`require` imports a module or raises :class:`MissingExtraError`, whose message
is one line naming the extra to install (the CLI prints it and exits with status 2).

Every import of a module that only an extra installs goes through :func:`require` (at module
level only in modules that nothing else imports without the extra: the simulator's features and
classifier). Which extra brings what is in pyproject.toml; ``tests/install`` installs each one
alone into a fresh venv and runs the commands the README promises for it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Final

from models.exceptions import ConfigurationError

SIM: Final = "sim"  # the simulator, its classifier, the evaluation protocol and the plots
RUBIN: Final = "rubin"  # Rubin alert packets, their light-curve features, the iforest scorer
DISTCLASSIPY: Final = "distclassipy"  # DistClassiPy's DistanceAnomaly scorer (GPL-3.0)
EMBEDDED: Final = "embedded"  # the embedded Kafka-protocol broker (tansu)
DASK: Final = "dask"  # `batch`: a dataset scored partition by partition on a Dask cluster
SPARK: Final = "spark"  # scoring in Apache Spark (pyspark, pandas): service.spark
REVIEW: Final = "review"  # `review`'s web page (Flask) and PostgreSQL verdict stores (psycopg)
HATS: Final = "hats"  # `batch` of HATS catalogs (lsdb, hats): service.hats
RERANK: Final = "rerank"  # per-expert active re-rankers (coniferest's AADForest): models.rerank
EXTRAS: Final = (SIM, RUBIN, DISTCLASSIPY, EMBEDDED, DASK, SPARK, HATS, REVIEW, RERANK)


class MissingExtraError(ConfigurationError):
    """A feature needs a module that only an extra installs, and the extra is not installed."""

    def __init__(self, message: str, extra: str = "") -> None:
        super().__init__(message)
        self.extra = extra


def install_command(extra: str) -> str:
    """The command that installs ``extra``: ``pip install 'alert-anomaly[EXTRA]'``."""
    return f"pip install 'alert-anomaly[{extra}]'"


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` (dotted), which ``extra`` installs; without it, raise
    :class:`MissingExtraError`: ``<feature> needs the '<extra>' extra: pip install
    'alert-anomaly[<extra>]' (No module named '...')``."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r} (one of {', '.join(EXTRAS)})")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        detail = " ".join(str(exc).split()) or f"cannot import {module}"
        raise MissingExtraError(
            f"{feature} needs the '{extra}' extra: {install_command(extra)} ({detail})", extra
        ) from None


def available(module: str) -> bool:
    """Whether ``module`` imports (:func:`require` would return it)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def pyplot(feature: str) -> ModuleType:
    """``matplotlib.pyplot`` drawing to files (the Agg backend), or :class:`MissingExtraError`
    naming the 'sim' extra, which brings the plots."""
    require("matplotlib", SIM, feature).use("Agg")
    return require("matplotlib.pyplot", SIM, feature)
