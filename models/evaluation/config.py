"""An evaluation's settings (what ``evaluate`` writes to its ``config.json``), checked when made.

Light on purpose: the ``evaluate`` command builds one from its arguments, and so reports an
operator's mistake, before it imports torch and the detectors.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from models.configurations import DEFAULT_CONFIGURATION, Configuration, configured
from models.exceptions import ConfigurationError
from models.scorers import DETECTORS, VARIANTS
from models.taxonomy import TOP_CLASSES


@dataclass(frozen=True)
class EvaluationConfig:
    """The data (path and digest), the protocol's sizes, what is evaluated and how."""

    data: str
    data_sha256: str
    folds: int = 5
    epochs: int = 100
    detectors: tuple[str, ...] = DETECTORS
    classes: tuple[str, ...] = TOP_CLASSES
    seed: int = 0
    test_fraction: float = 0.2
    configuration: str = DEFAULT_CONFIGURATION
    reference_bugs: tuple[str, ...] = ()  # put back to measure their effect (paper only)

    @property
    def method(self) -> Configuration:
        """The training method: the named configuration with its reference bugs, if any."""
        return configured(self.configuration, self.reference_bugs)

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ConfigurationError("--folds must be at least 2 (one fold stops the training)")
        if self.epochs < 1:
            raise ConfigurationError("--epochs must be positive")
        configured(self.configuration, self.reference_bugs)
        unknown = [d for d in self.detectors if d not in DETECTORS + VARIANTS]
        if unknown:
            known = DETECTORS + VARIANTS
            raise ConfigurationError(f"unknown detector(s) {unknown} (known: {known})")
        wrong = [c for c in self.classes if c not in TOP_CLASSES]
        if wrong:
            raise ConfigurationError(f"unknown top-level class(es) {wrong}")


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (hex): the data an evaluation ran on."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
