"""Bundles on disk: round trip in a fresh process, and every load error named clearly."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.bundle import MANIFEST, WEIGHTS, Bundle, load_bundle
from models.exceptions import BundleError
from models.scoring import Scorer
from models.training import TrainingConfig, train_model

KINDS = ("mcdsvdd", "ae", "mcdsvdd-nn", "mcdsvdd-ens", "mcdsvdd-ens-lite")


def _blobs(n: int = 240) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    centres = np.array([[0, 0, 0, 4, 4], [4, 4, 4, 0, 0], [0, 4, 0, 4, 0]], dtype=float)
    labels = np.array(["A", "B", "C"])[np.arange(n) % 3]
    X = centres[np.arange(n) % 3] + rng.normal(0, 0.5, (n, 5))
    X[rng.random((n, 5)) < 0.05] = np.nan
    return X, labels


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A briefly trained MCDSVDD, our three variants and an autoencoder, saved."""
    X, labels = _blobs()
    names = tuple(f"feat_{i}" for i in range(5))
    saved = {}
    for scorer in KINDS:
        config = TrainingConfig(
            scorer=scorer,  # type: ignore[arg-type]
            top_class="Transient",
            max_epochs=15,
            pretrain_epochs=5,
            latent=4,
        )
        trained = train_model(X, labels, names, config, progress=False)
        bundle = Bundle.from_training(trained, config, "ztf", names, {"file": "blobs"}, "0.0.1")
        saved[scorer] = bundle.save(tmp_path_factory.mktemp(scorer) / "bundle")
    return saved


@pytest.fixture(params=KINDS)
def saved(request: pytest.FixtureRequest, bundles: dict[str, Path]) -> Path:
    return bundles[request.param]


@pytest.fixture
def copy(saved: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "copy"))


def test_round_trip_in_a_fresh_process_gives_identical_scores(saved: Path, tmp_path: Path) -> None:
    X = np.random.default_rng(1).normal(2, 2, (300, 5)).astype(np.float32)
    X[::17, 2] = np.nan
    np.save(tmp_path / "x.npy", X)
    child = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from models.bundle import load_bundle\n"
        "from models.scoring import Scorer\n"
        "s = Scorer(load_bundle(Path(sys.argv[1])), 'cpu').score(np.load(sys.argv[2]))\n"
        "np.save(sys.argv[3], s.raw)\n"
        "np.save(sys.argv[4], s.percentile)\n"
        "print(','.join(str(n) for n in s.nearest))\n"
    )
    raw_f, pct_f = tmp_path / "raw.npy", tmp_path / "pct.npy"
    result = subprocess.run(
        [sys.executable, "-c", child, str(saved), str(tmp_path / "x.npy"), str(raw_f), str(pct_f)],
        capture_output=True,
        text=True,
        check=True,
    )
    here = Scorer(load_bundle(saved), "cpu").score(X)
    np.testing.assert_array_equal(np.load(raw_f), here.raw)
    np.testing.assert_array_equal(np.load(pct_f), here.percentile)
    assert result.stdout.strip().split(",") == [str(n) for n in here.nearest]
    assert np.all((here.percentile >= 0) & (here.percentile <= 100))


def test_manifest_describes_the_bundle(saved: Path) -> None:
    manifest = json.loads((saved / MANIFEST).read_text())
    assert manifest["format_version"] == 1
    assert manifest["survey"] == "ztf"
    assert manifest["top_class"] == "Transient"
    assert manifest["feature_names"] == [f"feat_{i}" for i in range(5)]
    assert [p["name"] for p in manifest["preprocessing"]] == manifest["feature_names"]
    assert manifest["latent_dim"] == 4
    assert "SIMULATED" in manifest["notice"]
    assert len(manifest["calibration"]["levels"]) == len(manifest["calibration"]["scores"])
    assert manifest["training"]["data"] == {"file": "blobs"}
    assert manifest["configuration"] == "ours"
    if manifest["scorer"] in ("mcdsvdd", "mcdsvdd-nn"):
        assert manifest["centre_subclasses"] == ["A", "B", "C"]
        assert np.array(manifest["centres"]).shape == (3, 4)
    else:
        assert manifest["centres"] == []


def _edit_manifest(directory: Path, **changes: object) -> None:
    path = directory / MANIFEST
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_bundles_without_a_configuration_load_as_ours(copy: Path) -> None:
    manifest = json.loads((copy / MANIFEST).read_text())
    del manifest["configuration"]  # written before the field existed
    (copy / MANIFEST).write_text(json.dumps(manifest))
    assert load_bundle(copy).manifest.configuration == "ours"
    _edit_manifest(copy, configuration="mine")
    with pytest.raises(BundleError, match="invalid manifest at configuration"):
        load_bundle(copy)


def test_missing_directory_manifest_and_weights(copy: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(copy / "nowhere")
    (copy / WEIGHTS).unlink()
    with pytest.raises(BundleError, match=r"has no weights file model\.safetensors"):
        load_bundle(copy)
    (copy / MANIFEST).unlink()
    with pytest.raises(BundleError, match=r"has no manifest\.json"):
        load_bundle(copy)


def test_corrupted_weights_fail_the_checksum(copy: Path) -> None:
    data = bytearray((copy / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (copy / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match the manifest"):
        load_bundle(copy)


def test_other_format_version_is_refused(copy: Path) -> None:
    _edit_manifest(copy, format_version=2)
    with pytest.raises(BundleError, match="format version 2; this alert-anomaly reads version 1"):
        load_bundle(copy)


def test_hidden_widths_other_than_the_kinds_are_refused(copy: Path) -> None:
    """The manifest states the kind's widths (the paper's, or the lite ensemble's 128, 64)."""
    manifest = json.loads((copy / MANIFEST).read_text())
    expected = [128, 64] if manifest["scorer"] == "mcdsvdd-ens-lite" else [512, 256, 128]
    assert manifest["hidden"] == expected
    _edit_manifest(copy, hidden=[256, 128])
    with pytest.raises(
        BundleError, match=r"has hidden widths \[.*\], the manifest says \[256, 128\]"
    ):
        load_bundle(copy)


def test_unknown_scorer_is_refused(copy: Path) -> None:
    _edit_manifest(copy, scorer="isolation-forest")
    with pytest.raises(BundleError, match="unknown scorer 'isolation-forest'"):
        load_bundle(copy)


def test_wrong_feature_count_is_refused(copy: Path) -> None:
    manifest = json.loads((copy / MANIFEST).read_text())
    _edit_manifest(
        copy,
        feature_names=manifest["feature_names"][:-1],
        preprocessing=manifest["preprocessing"][:-1],
    )
    with pytest.raises(BundleError, match=r"does not fit a [\w-]+ with 4 features"):
        load_bundle(copy)


def test_features_out_of_order_are_refused(copy: Path) -> None:
    manifest = json.loads((copy / MANIFEST).read_text())
    _edit_manifest(copy, feature_names=list(reversed(manifest["feature_names"])))
    with pytest.raises(BundleError, match="do not follow the feature order"):
        load_bundle(copy)


def test_invalid_manifest_names_the_field(copy: Path) -> None:
    _edit_manifest(copy, latent_dim="wide")
    with pytest.raises(BundleError, match="invalid manifest at latent_dim"):
        load_bundle(copy)
    (copy / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match="cannot read"):
        load_bundle(copy)


def test_centres_are_loaded_not_recomputed(bundles: dict[str, Path], tmp_path: Path) -> None:
    copy = Path(shutil.copytree(bundles["mcdsvdd"], tmp_path / "copy"))
    bundle = load_bundle(copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    np.testing.assert_array_equal(bundle.net.centres.numpy(), np.float32(manifest["centres"]))
    manifest["centres"][0][0] += 1.0
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="centres differ from the saved weights"):
        load_bundle(copy)
