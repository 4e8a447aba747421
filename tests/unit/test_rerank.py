"""models.rerank: an expert's AADForest re-ranker learns from verdicts (labelled anomalies'
look-alikes move up, labelled regulars' look-alikes down), its artefact round-trips and refuses
damage, and ``verdicts retrain`` trains one from a SQLite store on the committed sample, or says
in one line (exit 2) what is wrong."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from numpy.typing import NDArray

from models.exceptions import ConfigurationError
from models.extras import MissingExtraError
from models.rerank import (
    ANOMALY,
    ARRAYS,
    MANIFEST,
    PERCENTILE,
    REGULAR,
    Reranker,
    RerankError,
    fit_reranker,
    labels_of,
    load_reranker,
)
from service.cli import main
from service.review.store import Verdict, open_store
from tests.conftest import REPO

SAMPLE = REPO / "models" / "data" / "ztf-sim-sample" / "objects.parquet"
NAMES = ("x", "y", "z")


def population(seed: int = 0) -> tuple[NDArray[np.float64], NDArray[np.intp], NDArray[np.intp]]:
    """A Gaussian bulk and two equally isolated clumps: A far along x, B far along y; the rows
    of A and of B."""
    rng = np.random.default_rng(seed)
    bulk = rng.normal(size=(600, 3))
    a = rng.normal(size=(20, 3)) * 0.3 + [6.0, 0.0, 0.0]
    b = rng.normal(size=(20, 3)) * 0.3 + [0.0, 6.0, 0.0]
    X = np.vstack([bulk, a, b])
    X[rng.random(X.shape) < 0.05] = np.nan  # undefined values are allowed
    return X, np.arange(600, 620), np.arange(620, 640)


def mean_quantile(reranker: Reranker, X: NDArray[np.float64]) -> float:
    return float(reranker.expert_quantile(reranker.rows(X, None)).mean())


def test_verdicts_are_coniferests_labels() -> None:
    assert labels_of(["anomaly", "not", "bogus"]).tolist() == [ANOMALY, REGULAR, REGULAR]
    assert (ANOMALY, REGULAR) == (-1, 1)  # coniferest.Label.ANOMALY, Label.REGULAR
    with pytest.raises(ConfigurationError, match="unknown verdict 'maybe'"):
        labels_of(["maybe"])


def test_labelled_anomalies_look_alikes_move_up() -> None:
    """Unsupervised, A and B are equally odd; after a few of A are marked anomalous and a few of
    B regular, the other members of A rank above those of B (and above where they were)."""
    X, a, b = population()
    prior = fit_reranker("ana", NAMES, X, X[:0], np.zeros(0, np.int8), seed=1)
    known = np.concatenate([a[:5], b[:5]])
    labels = np.array([ANOMALY] * 5 + [REGULAR] * 5, dtype=np.int8)
    learned = fit_reranker("ana", NAMES, X, X[known], labels, seed=1)
    unseen_a, unseen_b = X[a[5:]], X[b[5:]]
    assert abs(mean_quantile(prior, unseen_a) - mean_quantile(prior, unseen_b)) < 0.05
    assert mean_quantile(learned, unseen_a) > mean_quantile(learned, unseen_b) + 0.05
    assert mean_quantile(learned, unseen_a) >= mean_quantile(prior, unseen_a)


def test_the_reranked_score_follows_the_verdicts_not_only_the_percentile() -> None:
    """With the percentile as a column, B's look-alikes given the higher percentile still fall
    below A's after the verdicts; without verdicts the re-ranked score is the percentile."""
    X, a, b = population(2)
    pct = np.full(len(X), 50.0)
    pct[b] = 90.0  # the model prefers B
    none = fit_reranker(
        "ana", NAMES, X, X[:0], np.zeros(0, np.int8), reference_percentile=pct,
        known_percentile=pct[:0],
    )  # fmt: skip
    assert none.rerank(X, pct).tolist() == pct.tolist()
    known = np.concatenate([a[:5], b[:5]])
    labels = np.array([ANOMALY] * 5 + [REGULAR] * 5, dtype=np.int8)
    learned = fit_reranker(
        "ana", NAMES, X, X[known], labels, reference_percentile=pct, known_percentile=pct[known]
    )
    assert learned.columns == (*NAMES, PERCENTILE)
    assert learned.blend == 1.0  # the percentile ranked the anomalies last: it earned no say
    reranked = learned.rerank(X, pct)
    assert reranked[a[5:]].mean() > reranked[b[5:]].mean()


def test_the_artefact_round_trips(tmp_path: Path) -> None:
    X, a, b = population(3)
    pct = np.linspace(0, 100, len(X))
    known = np.concatenate([a[:4], b[:4]])
    labels = np.array([ANOMALY] * 4 + [REGULAR] * 4, dtype=np.int8)
    made = fit_reranker(
        "ana", NAMES, X, X[known], labels, reference_percentile=pct,
        known_percentile=pct[known], seed=5, trained_against={"model_version": "2.0.0"},
    )  # fmt: skip
    made.save(tmp_path / "ana")
    manifest = json.loads((tmp_path / "ana" / MANIFEST).read_text())
    assert manifest["expert"] == "ana"
    assert manifest["format_version"] == 1
    assert manifest["columns"] == [*NAMES, PERCENTILE]
    assert manifest["trained_against"] == {"model_version": "2.0.0"}
    assert manifest["verdicts"] == {"anomaly": 4, "regular": 4}
    assert manifest["coniferest_version"] == "0.2.2"
    loaded = load_reranker(tmp_path / "ana")
    assert loaded.expert == "ana"
    assert loaded.blend == made.blend
    np.testing.assert_allclose(loaded.rerank(X, pct), made.rerank(X, pct), rtol=1e-9)


def test_a_damaged_or_foreign_artefact_is_refused(tmp_path: Path) -> None:
    X, a, _ = population(4)
    made = fit_reranker("ana", NAMES, X, X[a[:3]], np.full(3, ANOMALY, np.int8))
    made.save(tmp_path / "r")
    with pytest.raises(RerankError, match="no re-ranker in"):
        load_reranker(tmp_path / "missing")
    (arrays,) = (tmp_path / "r").glob("arrays*.safetensors")
    blob = bytearray(arrays.read_bytes())
    blob[-1] ^= 0xFF
    arrays.write_bytes(bytes(blob))
    with pytest.raises(RerankError, match="does not match its checksum"):
        load_reranker(tmp_path / "r")
    made.save(tmp_path / "r")
    manifest = json.loads((tmp_path / "r" / MANIFEST).read_text())
    manifest["hyperparameters"]["seed"] = 99  # another forest than the one saved
    (tmp_path / "r" / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(RerankError, match="does not rebuild the forest"):
        load_reranker(tmp_path / "r")
    manifest["format_version"] = 7
    (tmp_path / "r" / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(RerankError, match="not a re-ranker of format 1"):
        load_reranker(tmp_path / "r")


def test_without_coniferest_the_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "coniferest", None)
    monkeypatch.setitem(sys.modules, "coniferest.aadforest", None)
    X, _, _ = population()
    with pytest.raises(MissingExtraError, match=r"needs the 'rerank' extra: pip install"):
        fit_reranker("ana", NAMES, X, X[:0], np.zeros(0, np.int8))


# --- verdicts retrain -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed sample scored by ``alert-anomaly score``."""
    out = tmp_path_factory.mktemp("scores") / "scores.parquet"
    assert main(["--log-level", "warning", "score", str(SAMPLE), str(out), "--no-progress"]) == 0
    return out


def store_with_verdicts(path: Path) -> list[str]:
    """A SQLite store where ``ana`` marked the first SLSNe anomalous and some RR Lyrae not."""
    rows = pq.read_table(SAMPLE, columns=["oid", "subclass"]).to_pylist()
    slsn = [r["oid"] for r in rows if r["subclass"] == "SLSN"][:8]
    rrl = [r["oid"] for r in rows if r["subclass"] == "RRL"][:8]
    with open_store(str(path)) as store:
        for oid in slsn:
            store.record(Verdict("ana", "ztf", oid, "anomaly"))
        for oid in rrl:
            store.record(Verdict("ana", "ztf", oid, "not"))
        store.record(Verdict("ana", "ztf", "ZTF00notinthesample", "bogus"))
        store.record(Verdict("bo", "ztf", rrl[0], "anomaly"))
    return slsn


def test_retrain_from_a_sqlite_store_on_the_sample(
    scored: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slsn = store_with_verdicts(tmp_path / "v.sqlite")
    out = tmp_path / "rerankers" / "ana"
    args = ["--db", str(tmp_path / "v.sqlite"), "--expert", "ana", "--scores", str(scored)]
    status = main(["verdicts", "retrain", str(out), *args, "--features", str(SAMPLE)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "on 3000 objects and 8 anomaly, 8 not; 1 on objects the tables lack" in printed
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["expert"] == "ana"
    assert manifest["verdicts"] == {"anomaly": 8, "regular": 8}
    assert {m["model_version"] for m in manifest["trained_against"]["models"]} == {
        "2.1.0+sim20261122"
    }
    assert len(manifest["columns"]) == 130
    assert manifest["columns"][-1] == PERCENTILE
    reranker = load_reranker(out)
    table = pq.read_table(SAMPLE).to_pandas()
    percentile = pq.read_table(scored, columns=["oid", "percentile"]).to_pandas()
    merged = table.merge(percentile, on="oid")
    X = merged[list(reranker.feature_names)].to_numpy(dtype=np.float64)
    reranked = reranker.rerank(X, merged["percentile"].to_numpy())
    is_slsn = (merged["subclass"] == "SLSN").to_numpy() & ~merged["oid"].isin(slsn).to_numpy()
    is_rrl = (merged["subclass"] == "RRL").to_numpy()
    assert reranked[is_slsn].mean() > reranked[is_rrl].mean()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--expert", "ana", "--features", "F"], "verdicts retrain needs --scores"),
        (["--expert", "ana"], "verdicts retrain needs --scores and --features"),
        (["--scores", "S", "--features", "F"], "verdicts retrain needs --expert"),
        (["--expert", "nobody", "--scores", "S", "--features", "F"], "no ztf verdicts of"),
        (["--expert", "ana", "--scores", "S", "--features", "nofile"], "no feature table at"),
        (["--expert", "ana", "--scores", "nofile", "--features", "F"], "no scores at"),
        (["--expert", "ana", "--scores", "S", "--features", "F", "--db", "nodb"], "no verdict"),
        (["--expert", "ana", "--scores", "S", "--features", "F", "--survey", "lsst"], "no lsst"),
    ],
)
def test_retrains_operator_errors_are_one_line(
    args: list[str],
    message: str,
    scored: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store_with_verdicts(tmp_path / "verdicts.sqlite")
    monkeypatch.chdir(tmp_path)
    pq.write_table(pa.table({"x": [1]}), tmp_path / "x.parquet")
    values = {"S": str(scored), "F": str(SAMPLE)}
    argv = ["verdicts", "retrain", "out", *[values.get(a, a) for a in args]]
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("alert-anomaly verdicts: error: "), err
    assert message in err, err
    assert not (tmp_path / "out").exists()


def test_retrain_without_out_or_into_a_file(
    scored: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store_with_verdicts(tmp_path / "verdicts.sqlite")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    rest = ["--expert", "ana", "--scores", str(scored), "--features", str(SAMPLE)]
    for out, message in (([], "needs OUT"), (["afile"], "OUT must be a directory")):
        assert main(["verdicts", "retrain", *out, *rest]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert message in err, err


def test_saving_over_a_reranker_switches_at_its_manifest(tmp_path: Path) -> None:
    """``verdicts retrain`` into the directory a running service watches: the arrays are
    written under a name of their own (readable by another user: 0644) and the manifest is
    replaced last, in one rename - at every moment the manifest names complete arrays - and
    the old arrays go; a manifest naming a file elsewhere is refused."""
    X, a, b = population(6)
    pct = np.linspace(0, 100, len(X))
    first = fit_reranker("ana", NAMES, X, X[a[:3]], np.full(3, ANOMALY, np.int8))
    second = fit_reranker("ana", NAMES, X, X[b[:3]], np.full(3, REGULAR, np.int8))
    where = tmp_path / "r"
    first.save(where)
    before = json.loads((where / MANIFEST).read_text())["arrays"]
    second.save(where)
    after = json.loads((where / MANIFEST).read_text())["arrays"]
    assert after["file"] != before["file"]
    assert sorted(p.name for p in where.iterdir()) == sorted([MANIFEST, after["file"]])
    assert (where / after["file"]).stat().st_mode & 0o777 == 0o644
    np.testing.assert_allclose(
        load_reranker(where).rerank(X, pct), second.rerank(X, pct), rtol=1e-9
    )
    manifest = json.loads((where / MANIFEST).read_text())
    manifest["arrays"]["file"] = "../elsewhere.safetensors"
    (where / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(RerankError, match="outside its directory"):
        load_reranker(where)


def test_a_reranker_saved_before_named_arrays_loads(tmp_path: Path) -> None:
    """Re-rankers saved before the arrays had a name of their own (``arrays.safetensors``)."""
    X, a, _ = population(7)
    pct = np.linspace(0, 100, len(X))
    made = fit_reranker("ana", NAMES, X, X[a[:3]], np.full(3, ANOMALY, np.int8))
    made.save(tmp_path)
    (arrays,) = tmp_path.glob("arrays*.safetensors")
    arrays.rename(tmp_path / ARRAYS)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest["arrays"]["file"] = ARRAYS
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    np.testing.assert_allclose(
        load_reranker(tmp_path).rerank(X, pct), made.rerank(X, pct), rtol=1e-9
    )
