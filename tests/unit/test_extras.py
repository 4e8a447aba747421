"""models.extras: an optional module imports, or one line names the extra that brings it.

Here the dev venv has every extra, so a missing module is made by hiding it (``sys.modules[name]
= None`` makes its import fail as if it were absent); tests/install checks the real installs."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from models.estimators import IForestEstimator, load_estimator
from models.exceptions import AlertAnomalyError, ConfigurationError
from models.extras import EXTRAS, MissingExtraError, available, install_command, require
from service.cli import main
from tests.conftest import REPO


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``modules`` (and what imports them at module level) fail to import."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_require_returns_the_module() -> None:
    assert require("json", "sim", "anything") is json
    assert available("json")


def test_a_missing_module_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "imblearn", "imblearn.ensemble")
    assert not available("imblearn")
    with pytest.raises(MissingExtraError) as caught:
        require("imblearn.ensemble", "sim", "the simulator's classifier")
    message = str(caught.value)
    assert message == (
        "the simulator's classifier needs the 'sim' extra: pip install 'alert-anomaly[sim]' "
        "(import of imblearn.ensemble halted; None in sys.modules)"
    )
    assert "\n" not in message
    assert caught.value.extra == "sim"
    assert isinstance(caught.value, ConfigurationError)
    assert caught.value.exit_code == 2


def test_the_extras_are_pyprojects() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert set(EXTRAS) == set(pyproject["project"]["optional-dependencies"]) - {"dev"}
    assert install_command("rubin") == "pip install 'alert-anomaly[rubin]'"
    with pytest.raises(ValueError, match="unknown extra"):
        require("json", "gpu", "anything")


def test_an_iforest_without_scikit_learn_names_the_rubin_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not unpickling's "No module named 'sklearn'" (which named no extra)."""
    rng = np.random.default_rng(0)
    fitted = IForestEstimator.fit(rng.normal(size=(600, 3)), np.array(["a"] * 600))
    data = fitted.dumps()
    hide(monkeypatch, "sklearn.ensemble")
    with pytest.raises(MissingExtraError, match=r"iforest scorer needs the 'rubin' extra"):
        load_estimator("iforest", data, fitted.state())


def test_the_cli_prints_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`top --plot` without matplotlib stops before scoring anything."""
    hide(monkeypatch, "matplotlib", "matplotlib.pyplot")
    sample = str(REPO / "models" / "data" / "ztf-sim-sample" / "objects.parquet")
    plot = ["--plot", str(tmp_path / "plots"), "--lightcurves", str(tmp_path / "lc.parquet")]
    status = main(["top", "--data", sample, *plot])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert err == (
        "alert-anomaly top: error: plotting (--plot, --report) needs the 'sim' extra: "
        "pip install 'alert-anomaly[sim]' (import of matplotlib halted; None in sys.modules)\n"
    )
    assert issubclass(MissingExtraError, AlertAnomalyError)
