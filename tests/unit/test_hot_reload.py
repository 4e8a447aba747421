"""Hot reload without a broker: the re-ranker slot swaps in a changed re-ranker only when its
fingerprint changes and the interval is up, keeps the old one when the new one fails (and tries
again only when the artefact changes again), a batch's re-ranker columns take the features the
re-ranker names, by name, from a bundle's order (all without I/O); a directory watch reports
each change once; the fingerprint follows a symlink swap and a rewrite (real files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from models.rerank import RerankError
from service.core.reloading import DirectoryWatch, fingerprint
from service.core.reranking import NO_RERANKER, LoadedReranker, RerankerSlot
from service.exceptions import SettingsError

WHERE = Path("/rerankers/current")


class FakeReranker:
    """Re-ranks to the sum of its features plus the percentile; remembers what it was given."""

    def __init__(self, expert: str, feature_names: tuple[str, ...]) -> None:
        self.expert, self.feature_names = expert, feature_names
        self.given: list[NDArray[np.float64]] = []

    def rerank(self, features: NDArray[np.float64], percentile: NDArray[Any]) -> NDArray[Any]:
        self.given.append(features)
        return np.nansum(features, axis=1) + percentile


class Artefacts:
    """The directory's state as the slot sees it: a fingerprint, and what loading it gives."""

    def __init__(self) -> None:
        self.fingerprint: str | None = "a"
        self.good = {"a": "ana", "b": "bob", "c": "cy", "d": "dee"}  # fingerprint -> expert
        self.loads: list[str | None] = []
        self.now = 0.0

    def load(self, directory: Path) -> LoadedReranker:
        assert directory == WHERE
        self.loads.append(self.fingerprint)
        if self.fingerprint not in self.good:
            raise RerankError(f"damaged: {self.fingerprint}")
        expert = self.good[self.fingerprint]
        return LoadedReranker(FakeReranker(expert, ("x",)), WHERE, self.fingerprint, "v1")

    def check(self, loaded: LoadedReranker) -> None:
        if loaded.expert == "dee":  # a re-ranker the bundles cannot feed
            raise SettingsError("dee reads other features")

    def slot(self, interval_s: float = 10.0) -> RerankerSlot:
        return RerankerSlot(
            WHERE,
            interval_s,
            loader=self.load,
            check=self.check,
            fingerprinter=lambda d: self.fingerprint,
            clock=lambda: self.now,
        )


def expert(slot: RerankerSlot) -> str | None:
    return None if slot.current is None else slot.current.expert


def test_a_changed_reranker_is_swapped_in_when_the_interval_is_up() -> None:
    disk = Artefacts()
    slot = disk.slot()
    assert expert(slot) == "ana"
    assert slot.poll() is None  # nothing changed
    disk.fingerprint, disk.now = "b", 5.0
    assert slot.poll() is None  # changed, but not time yet: not even looked at
    assert disk.loads == ["a"]
    disk.now = 10.0
    reload = slot.poll()
    assert reload is not None
    assert reload.outcome == "reloaded"
    assert reload.detail == "b"
    assert expert(slot) == "bob"
    disk.now = 20.0
    assert slot.poll() is None  # the same artefact is not loaded again
    assert disk.loads == ["a", "b"]


def test_a_failed_reload_keeps_the_old_reranker_and_retries_only_a_new_artefact() -> None:
    disk = Artefacts()
    slot = disk.slot(interval_s=1.0)
    for state, now in (("half-written", 1.0), (None, 2.0)):  # damaged, then removed
        disk.fingerprint, disk.now = state, now
        reload = slot.poll()
        assert reload is not None
        assert reload.outcome == "failed"
        assert expert(slot) == "ana"
    assert "no re-ranker manifest" in reload.detail
    disk.now = 3.0
    assert slot.poll() is None  # still missing: not reported again
    disk.fingerprint, disk.now = "c", 4.0
    reload = slot.poll()
    assert reload is not None
    assert reload.outcome == "reloaded"
    assert expert(slot) == "cy"
    assert disk.loads == ["a", "half-written", "c"]  # a missing one is not even loaded


def test_no_interval_loads_once_and_no_setting_reranks_nothing() -> None:
    disk = Artefacts()
    slot = disk.slot(interval_s=0)
    disk.fingerprint, disk.now = "b", 1e9
    assert slot.poll() is None
    assert expert(slot) == "ana"
    none = RerankerSlot(None, 1.0)
    assert none.poll() is None
    assert none.current is None
    assert none.columns(("x",), [np.zeros(1, np.float32)], np.zeros(1)) == NO_RERANKER
    assert all(v is None for v in NO_RERANKER.values())


def test_a_reranker_that_does_not_load_at_start_is_a_settings_error() -> None:
    disk = Artefacts()
    disk.fingerprint = "broken"
    with pytest.raises(SettingsError, match=r"model\.reranker: damaged: broken"):
        disk.slot()
    disk.fingerprint = "d"
    with pytest.raises(SettingsError, match=r"model\.reranker: dee reads other features"):
        disk.slot()


def test_a_new_reranker_the_bundles_cannot_feed_keeps_the_old_one() -> None:
    disk = Artefacts()
    slot = disk.slot(interval_s=1.0)
    disk.fingerprint, disk.now = "d", 1.0
    reload = slot.poll()
    assert reload is not None
    assert reload == ("failed", "dee reads other features")
    assert expert(slot) == "ana"


def test_the_batch_columns_take_the_rerankers_features_by_name() -> None:
    fake = FakeReranker("ana", ("b", "absent", "a"))
    loaded = LoadedReranker(fake, WHERE, "c" * 64, "2026-12-06T00:00:00+00:00")
    features = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]], dtype=np.float32)  # a, b, c
    columns = loaded.columns(("a", "b", "c"), features, np.array([50.0, 60.0]))
    np.testing.assert_array_equal(fake.given[0], [[2.0, np.nan, 1.0], [20.0, np.nan, 10.0]])
    assert columns == {
        "reranked_percentile": [53.0, 90.0],
        "reranker_expert": "ana",
        "reranker_version": "2026-12-06T00:00:00+00:00",
        "reranker_checksum": "c" * 64,
    }


def test_a_directory_watch_reports_each_change_once_when_the_interval_is_up() -> None:
    prints = {Path("/b/t"): "t1", Path("/b/p"): "p1"}
    now = [0.0]
    watch = DirectoryWatch(
        list(prints), 5.0, fingerprinter=lambda d: prints[d], clock=lambda: now[0]
    )
    assert not watch.changed()
    prints[Path("/b/p")] = "p2"
    now[0] = 4.0
    assert not watch.changed()  # not time yet
    now[0] = 5.0
    assert watch.changed()
    now[0] = 10.0
    assert not watch.changed()  # reported once
    prints[Path("/b/t")] = None  # removed
    now[0] = 15.0
    assert watch.changed()
    assert watch.missing == [Path("/b/t")]
    assert not DirectoryWatch([], 1.0).changed()


def test_the_fingerprint_follows_a_symlink_swap_and_a_rewrite(tmp_path: Path) -> None:
    for name, text in (("v1", "{}"), ("v2", "{}")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(text)
        (tmp_path / name / "model.safetensors").write_bytes(b"x")
    link = tmp_path / "current"
    link.symlink_to("v1")
    first = fingerprint(link)
    assert first is not None
    assert fingerprint(link) == first
    (tmp_path / "new").symlink_to("v2")
    (tmp_path / "new").replace(link)
    assert fingerprint(link) not in (None, first)  # same content, another directory
    (tmp_path / "v2" / "manifest.json").write_text('{"model_version": "2"}')
    second = fingerprint(link)
    assert second != fingerprint(tmp_path / "v1")
    (tmp_path / "v2" / "model.safetensors").write_bytes(b"xy")
    assert fingerprint(link) != second
    assert fingerprint(tmp_path / "absent") is None
