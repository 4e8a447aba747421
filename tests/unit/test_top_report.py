"""The Rubin tutorial's report of `alert-anomaly top`: Rubin's band colours, the histogram and
5 x 4 grid PNGs, the top outlier's printout, from the unrouted model or a scores file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("lsst.alert.packet")

from models import rubin
from models.bundle import Bundle
from models.evaluation.top import (
    GRID_COLUMNS,
    GRID_ROWS,
    RUBIN_BAND_COLORS,
    RUBIN_BAND_SYMBOLS,
    read_report_lightcurves,
    top_outlier_lines,
    top_outliers,
)
from models.resources import bundle_dirname
from models.simulate.dataset import SimulationConfig
from models.simulate.lsst_dataset import simulate_lsst, write_lsst_lightcurves
from models.table import write_table
from models.taxonomy import UNROUTED
from models.training import TrainingConfig, train_model
from service.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def test_band_colours_and_symbols_are_rubins() -> None:
    plotting = pytest.importorskip("lsst.utils.plotting")
    assert plotting.get_multiband_plot_colors() == RUBIN_BAND_COLORS
    assert plotting.get_multiband_plot_symbols() == RUBIN_BAND_SYMBOLS
    assert list(RUBIN_BAND_COLORS) == list(rubin.BANDS)
    assert (GRID_ROWS, GRID_COLUMNS) == (5, 4)


def test_top_outliers_are_the_highest_scores() -> None:
    oid = np.array(["a", "b", "c", "d"])
    score = np.array([0.1, np.nan, 0.9, 0.5])
    assert top_outliers(oid, score, 2) == [2, 3]
    lines = top_outlier_lines("c", (10.5, -3.25), {"r_psfFluxMean": 12.0, "r_psfFluxSigma": 3.0})
    assert lines[:4] == ["Top Outlier", "  DiaObject ID: c", "  RA: 10.500000", "  Dec: -3.250000"]
    assert "  r-band PSF Flux Mean: 12" in lines


@pytest.fixture(scope="module")
def lsst_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small simulated LSST table, its light curves and packets, and an unrouted iforest."""
    root = tmp_path_factory.mktemp("lsst")
    config = SimulationConfig(n_objects=60, seed=8, folds=2, jobs=1, keep_lightcurves=True,
                              progress=False)  # fmt: skip
    dataset = simulate_lsst(config)
    write_table(dataset.table, root / "objects.parquet")
    write_lsst_lightcurves(dataset.curves, dataset.positions, root / "lc.parquet")
    rubin.write_container(dataset.packets(), root / "alerts.avro")
    names = rubin.common_diaobject_fields()
    table = dataset.table
    training = TrainingConfig(scorer="iforest", top_class=UNROUTED)
    trained = train_model(table.columns(names), table.subclass, names, training, progress=False)
    bundle = Bundle.from_training(trained, training, "lsst", names, {}, "test")
    bundle.save(root / "bundles" / bundle_dirname("lsst", UNROUTED, "iforest"))
    return {
        "table": root / "objects.parquet",
        "lc": root / "lc.parquet",
        "alerts": root / "alerts.avro",
        "bundles": root / "bundles",
        "root": root,
    }


def _pngs(report: Path) -> None:
    for name in ("histogram.png", "top20.png"):
        data = (report / name).read_bytes()
        assert data.startswith(PNG)
        assert len(data) > 5000  # drawn, not empty


def test_report_from_the_unrouted_model(
    lsst_run: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    report = lsst_run["root"] / "report"
    code = main([
        "top", "--survey", "lsst", "--bundles", str(lsst_run["bundles"]), "--data",
        str(lsst_run["table"]), "--scorer", "iforest", "--lightcurves", str(lsst_run["lc"]),
        "--report", str(report), "--n", "1",
    ])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    _pngs(report)
    assert "60 objects scored by lsst/all-iforest" in out
    top = out.split("Top Outlier")[1].splitlines()
    assert top[1].startswith("  DiaObject ID: 3130000008")
    assert top[2].startswith("  RA: ")
    assert "r-band PSF Flux Mean" in out


def test_report_from_a_scores_file_and_packets(
    lsst_run: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    curves, positions = read_report_lightcurves(lsst_run["alerts"])
    assert len(curves) == 60
    assert set(positions) == set(curves)
    oids = sorted(curves)
    scores = lsst_run["root"] / "scores.parquet"
    pq.write_table(
        pa.table({
            "oid": oids,
            "score": np.linspace(0.0, 1.0, len(oids)),
            "percentile": np.linspace(0.0, 100.0, len(oids)),
            "scorer": ["distclassipy"] * len(oids),
        }),
        scores,
    )  # fmt: skip
    report = lsst_run["root"] / "from-scores"
    args = ["top", "--survey", "lsst", "--scores", str(scores), "--lightcurves"]
    assert main([*args, str(lsst_run["alerts"]), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    _pngs(report)
    assert f"  DiaObject ID: {oids[-1]}" in out  # the highest score
    ra, _ = positions[oids[-1]]
    assert f"  RA: {ra:.6f}" in out
