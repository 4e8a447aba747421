"""service.review: the verdict store's contract on SQLite (the same checks run on a real
PostgreSQL server in tests/integration/test_review_postgres.py), its migrations, the exports,
and the candidates and light-curve layout of the review page."""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from models.exceptions import ConfigurationError, DataError
from service.exceptions import StoreError
from service.review.candidates import Points, layout, rank, read_scores
from service.review.export import export, message
from service.review.store import MIGRATIONS, SCHEMA_VERSION, Verdict, VerdictStore, open_store


def check_store_contract(store: VerdictStore) -> None:
    """What every backend does: migrated, one current verdict per expert and object (a new one
    replaces it, created_at kept), verdicts per expert, with the scoring context."""
    assert store.schema_version() == SCHEMA_VERSION
    first = store.record(
        Verdict(
            "ana", "ztf", "ZTF21a", "anomaly", tag="odd dip", scorer="mcdsvdd",
            top_class="Periodic", score=1.5, percentile=99.5, model_version="2.0.0",
            model_checksum="abc",
        )
    )  # fmt: skip
    assert first.created_at is not None
    assert first.created_at == first.updated_at
    assert first.created_at.tzinfo is not None
    store.record(Verdict("ana", "ztf", "ZTF21b", "bogus"))
    store.record(Verdict("ben", "ztf", "ZTF21a", "not", tag="RR Lyrae"))
    again = store.record(Verdict("ana", "ztf", "ZTF21a", "not", tag=None, score=1.4))
    assert again.created_at == first.created_at
    assert again.updated_at is not None
    assert again.updated_at >= first.updated_at
    assert (again.verdict, again.tag, again.score) == ("not", None, 1.4)
    ana = store.verdicts("ana")
    assert [(v.oid, v.verdict) for v in ana] == [("ZTF21b", "bogus"), ("ZTF21a", "not")]
    assert len(store.verdicts()) == 3
    assert store.experts() == ["ana", "ben"]
    ben = store.verdicts("ben", oid="ZTF21a", survey="ztf")
    assert [(v.verdict, v.tag) for v in ben] == [("not", "RR Lyrae")]
    assert store.verdicts("ana", survey="lsst") == []


def test_sqlite_store_keeps_verdicts_across_reopening(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "verdicts.sqlite"
    with open_store(str(db)) as store:
        check_store_contract(store)
    with open_store(f"sqlite:///{db}") as store:  # sqlite:////abs/path
        assert len(store.verdicts()) == 3
        assert store.schema_version() == SCHEMA_VERSION


def test_a_database_of_schema_1_is_migrated_keeping_its_verdicts(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as old:  # what the first release wrote
        old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in MIGRATIONS[0]:
            old.execute(statement)
        old.execute("INSERT INTO schema_version VALUES (1)")
        stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).isoformat()
        old.execute(
            "INSERT INTO verdicts VALUES ('ana', 'ztf', 'ZTF20x', 'bogus', 'ghost', ?, ?)",
            (stamp, stamp),
        )
    old.close()
    with open_store(str(db)) as store:
        assert store.schema_version() == SCHEMA_VERSION == 2
        (kept,) = store.verdicts()
        assert (kept.oid, kept.verdict, kept.tag, kept.score) == ("ZTF20x", "bogus", "ghost", None)
        assert kept.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_a_newer_schema_or_a_bad_url_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "new.sqlite"
    open_store(str(db)).close()
    with sqlite3.connect(db) as newer:
        newer.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    newer.close()
    with pytest.raises(StoreError, match="newer than this alert-anomaly knows"):
        open_store(str(db))
    with pytest.raises(ConfigurationError, match="unknown database URL 'mysql://h/db'"):
        open_store("mysql://user:secret@h/db")
    with pytest.raises(DataError, match="no verdict database at"):
        open_store(str(tmp_path / "typo.sqlite"), create=False)
    assert not (tmp_path / "typo.sqlite").exists()
    with pytest.raises(ConfigurationError, match="no file in the database URL"):
        open_store("sqlite://nofile")
    with pytest.raises(StoreError, match="cannot open the verdict database"):
        open_store(str(tmp_path))  # a folder
    with pytest.raises(ConfigurationError, match="unknown verdict 'maybe'"):
        Verdict("ana", "ztf", "x", "maybe")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_export_writes_every_field(tmp_path: Path, suffix: str) -> None:
    with open_store(str(tmp_path / "v.sqlite")) as store:
        store.record(Verdict("ana", "lsst", "170", "anomaly", tag="t", score=2.0, percentile=99.9))
        store.record(Verdict("ana", "ztf", "ZTF1", "not"))
        verdicts = store.verdicts()
    out = export(verdicts, tmp_path / f"out{suffix}")
    readers: dict[str, Callable[[Path], list[dict[str, object]]]] = {
        ".csv": lambda p: list(csv.DictReader(p.open())),
        ".jsonl": lambda p: [json.loads(line) for line in p.read_text().splitlines()],
        ".parquet": lambda p: pq.read_table(p).to_pylist(),
    }
    rows = readers[suffix](out)
    assert [r["oid"] for r in rows] == ["170", "ZTF1"]
    assert rows[0]["tag"] == "t"
    assert rows[0]["verdict"] == "anomaly"
    assert str(rows[0]["created_at"]).startswith(str(datetime.now(UTC).year))
    with pytest.raises(ConfigurationError, match="OUT must end in"):
        export(verdicts, tmp_path / "out.txt")
    key, value = message(verdicts[0])
    assert key == b"ana/lsst/170"
    assert json.loads(value)["verdict_schema"] == SCHEMA_VERSION


def test_rank_orders_by_percentile_then_score_per_class(tmp_path: Path) -> None:
    rows = [
        {"oid": "a", "top_class": "T", "score": 1.0, "percentile": 90.0, "survey": "ztf"},
        {"oid": "b", "top_class": "T", "score": 3.0, "percentile": 99.0, "survey": "ztf"},
        {"oid": "c", "top_class": "T", "score": 2.0, "percentile": 99.0, "survey": "ztf"},
        {"oid": "a", "top_class": "T", "score": 0.5, "percentile": 10.0, "survey": "ztf"},
        {"oid": "d", "top_class": "P", "score": float("nan"), "percentile": 50.0},
        {"oid": "170", "top_class": "P", "score": 1.0, "percentile": 50.0, "survey": "lsst"},
    ]
    ranked = rank(rows)
    assert [c.oid for c in ranked["T"]] == ["b", "c", "a"]
    assert ranked["T"][2].percentile == 90.0  # an object's highest score is kept
    assert [c.oid for c in ranked["P"]] == ["170"]
    assert dict(ranked["T"][0].links)["ALeRCE"] == "https://alerce.online/object/b"
    assert dict(ranked["P"][0].links)["Fink"] == "https://lsst.fink-portal.org/170"
    with pytest.raises(DataError, match="no scores at"):
        read_scores(tmp_path / "missing.parquet")


def test_layout_puts_bright_magnitudes_up_and_fluxes_up() -> None:
    mags = Points((1.0, 2.0, 3.0), ("g", "r", "g"), (18.0, 19.0, 20.0), (0.1, 0.1, 0.1), True)
    plot = layout(mags, "ztf")
    assert plot is not None
    g = next(s for s in plot.series if s.band == "g")
    assert g.points[0][1] < g.points[1][1]  # mag 18 above mag 20 (smaller y)
    assert g.color == "#2ca02c"
    flux = Points((1.0, 2.0), ("u", "y"), (10.0, 100.0), (1.0, 1.0), False)
    lsst = layout(flux, "lsst")
    assert lsst is not None
    (u, y) = lsst.series
    assert (u.band, y.band) == ("u", "y")
    assert u.points[0][1] > y.points[0][1]
    assert u.color == "#1600EA"
    assert layout(Points((), (), (), (), True), "ztf") is None


def test_rank_puts_the_rerankers_order_first_when_the_scores_have_one() -> None:
    """Scores written with an expert's re-ranker (anomaly-score 1.3) are listed by their
    re-ranked percentile; rows without one (older scores) after them."""
    rows = [
        {"oid": "a", "top_class": "T", "score": 3.0, "percentile": 99.0},
        {"oid": "b", "top_class": "T", "score": 1.0, "percentile": 50.0},
        {"oid": "c", "top_class": "T", "score": 2.0, "percentile": 90.0},
        {"oid": "d", "top_class": "T", "score": 9.0, "percentile": 99.9},
    ]
    for row, reranked in zip(rows, (40.0, 98.0, 70.0, None), strict=True):
        row |= {"reranked_percentile": reranked, "reranker_expert": reranked and "ana"}
    ranked = rank(rows)["T"]
    assert [c.oid for c in ranked] == ["b", "c", "a", "d"]
    assert (ranked[0].reranked, ranked[0].reranker) == (98.0, "ana")
    assert (ranked[3].reranked, ranked[3].reranker) == (None, None)
    plain = rank([{k: v for k, v in r.items() if not k.startswith("rerank")} for r in rows])
    assert [c.oid for c in plain["T"]] == ["d", "a", "c", "b"]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_candidate_carries_its_explanation_from_either_scores_format(
    tmp_path: Path, suffix: str
) -> None:
    """The explanation as `score` writes it: a list of structs in Parquet, JSON text in CSV;
    a score below the explained percentile has none."""
    from service.io.sinks.files import write_scores_file

    drivers = [
        {"feature": "Amplitude_1", "contribution": 0.5},
        {"feature": "Mean_2", "contribution": -0.125},
    ]
    path = tmp_path / f"scores{suffix}"
    top = {"top_class": "T", "score": 3.0, "percentile": 99.0}
    low = {"top_class": "T", "score": 1.0, "percentile": 50.0}
    write_scores_file(
        [{"oid": "a", **top, "explanation": drivers}, {"oid": "b", **low, "explanation": []}], path
    )
    (first, second) = rank(read_scores(path))["T"]
    assert first.explanation == (("Amplitude_1", 0.5), ("Mean_2", -0.125))
    assert second.explanation == ()


def test_an_explanation_that_is_not_one_is_a_data_error() -> None:
    row = {"oid": "a", "top_class": "T", "score": 3.0, "percentile": 99.0}
    with pytest.raises(DataError, match="explanation of a is not JSON"):
        rank([{**row, "explanation": "[{"}])
    with pytest.raises(DataError, match="not a list of feature and contribution"):
        rank([{**row, "explanation": '[{"name": "x"}]'}])
