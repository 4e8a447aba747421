"""Noticing that a model directory changed, for hot reloads between micro-batches: the expert's
re-ranker (:mod:`service.core.reranking`) and the bundles (:meth:`Engine._reload_bundles
<service.core.engine.Engine>`).

A directory's fingerprint is its real path (symlinks resolved: an atomic symlink swap is a new
path), the SHA-256 of its ``manifest.json`` and the name, size and modification time of every
other file in it; it is read in well under a millisecond for a bundle. :class:`DirectoryWatch`
compares the fingerprints of a few directories with those last tried, at most every
``interval_s`` (a clock, replaceable in tests): a change is reported once, whether loading it
then succeeds or not, and again only when the directories change again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path

MANIFEST = "manifest.json"  # bundles and re-rankers alike


def fingerprint(directory: Path) -> str | None:
    """What changes when the model in ``directory`` does (None: no manifest there)."""
    try:
        real = directory.resolve(strict=True)
        manifest = (real / MANIFEST).read_bytes()
        files = sorted(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns)
            for p in real.iterdir()
            if p.name != MANIFEST and p.is_file()
        )
    except OSError:
        return None
    digest = hashlib.sha256(manifest).hexdigest()
    return f"{real}|{digest}|{files}"


class DirectoryWatch:
    """Says when the fingerprints of ``directories`` differ from those last seen, looking at
    most every ``interval_s`` (0: never)."""

    def __init__(
        self,
        directories: Sequence[Path],
        interval_s: float,
        *,
        fingerprinter: Callable[[Path], str | None] = fingerprint,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directories = tuple(directories)
        self.interval_s = interval_s
        self._fingerprint, self._clock = fingerprinter, clock
        self._seen = self._look()
        self._next = clock() + interval_s

    def _look(self) -> tuple[str | None, ...]:
        return tuple(self._fingerprint(d) for d in self.directories)

    def changed(self) -> bool:
        """True once per change of the directories (when the interval is up)."""
        if not self.directories or self.interval_s <= 0 or self._clock() < self._next:
            return False
        self._next = self._clock() + self.interval_s
        seen = self._look()
        if seen == self._seen:
            return False
        self._seen = seen
        return True

    @property
    def missing(self) -> list[Path]:
        """The directories without a manifest at the last look."""
        return [d for d, f in zip(self.directories, self._seen, strict=True) if f is None]
