"""A non-editable install (what Dockerfile.gpu does) ships the default bundles, the sample and the
schemas, and `alert-anomaly run` finds the bundles with no setting."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO

PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]


def test_the_wheel_ships_the_data_and_run_finds_the_bundles(tmp_path: Path) -> None:
    built = subprocess.run(
        [*PIP_WHEEL, "--wheel-dir", str(tmp_path / "dist"), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("alert_anomaly-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        "models/bundles": "models/bundles",
        "models/data": "models/data",
        "schemas": "models/_resources/schemas",
    }
    for source, target in shipped.items():
        files = [p for p in (REPO / source).rglob("*") if p.is_file()]
        assert files, source
        for path in files:
            inside = f"{target}/{path.relative_to(REPO / source).as_posix()}"
            assert inside in names, f"{inside} is missing from the wheel"

    # Installed = unpacked ahead of the source tree on sys.path (dependencies from this venv).
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_ANOMALY_")}
    env |= {"PYTHONPATH": str(site), "ALERT_ANOMALY_INPUT__TOPICS": '["lc_classifier"]'}

    def python(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            cwd=tmp_path,
        )

    where = python("-c", "import models.resources as r; print(r.bundles_dir())")
    assert where.stdout.strip() == str(site / "models" / "bundles"), where.stderr
    check = python("-m", "service.cli", "--log-format", "json", "run", "--check", "--offline")
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("models: ztf/"), check.stdout
    assert check.stdout.count("ztf/") == 3, check.stdout
