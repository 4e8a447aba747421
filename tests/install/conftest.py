"""Fresh venvs of the project's documented installs, for the install matrix (make install-matrix).

Once per session: the project's wheel (as Dockerfile.gpu builds it), then every dependency of
every extra downloaded by this venv's pip with the machine's own pip settings (its index, local
indexes and wheel directories: the CPU torch wheel where there is one) into one wheel house.
Each row is then a new venv on the base interpreter, filled by uv offline from that house only,
so that a row holds exactly what its requirements pull (1-2 s a venv from uv's cache, where
pip took ~25 s for torch alone). Everything is removed at the end of the session.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# The extras a user may install, each a row of the matrix; dev is the developers' own.
EXTRAS = tuple(sorted(set(PYPROJECT["project"]["optional-dependencies"]) - {"dev"}))
# The interpreter this venv was made from: the rows' venvs are made from it too.
BASE_PYTHON = str(Path(sys.base_prefix) / "bin" / "python{}.{}".format(*sys.version_info))


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> str:
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _uv() -> str:
    here = Path(sys.executable).parent / "uv"
    found = str(here) if here.is_file() else shutil.which("uv")
    assert found, "uv is missing: it comes with the dev extra (make install-dev)"
    return found


@dataclass
class Venv:
    """One row's venv."""

    name: str
    path: Path
    work: Path  # the commands' working directory (not the repository: nothing imported from it)
    seconds: float = 0.0  # to make it
    commands: list[tuple[str, float]] = field(default_factory=list)  # what ran, how long

    def run(
        self, program: str, *args: str, timeout: float = 600, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``program ARGS`` of this venv's bin/ in its working directory (or ``cwd``), as a
        user runs it (no ALERT_ANOMALY_* variable, nothing of this checkout on the path)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_ANOMALY_")}
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
        started = time.monotonic()
        result = subprocess.run(
            [str(self.path / "bin" / program), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd or self.work,
            timeout=timeout,
        )
        self.commands.append(
            (" ".join((program, *args)).splitlines()[0][:80], time.monotonic() - started)
        )
        return result

    def cli(
        self, *args: str, timeout: float = 600, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``alert-anomaly ARGS`` (a console script: its directory is on the path, not cwd)."""
        return self.run("alert-anomaly", *args, timeout=timeout, cwd=cwd)

    def python(self, code: str, *args: str) -> str:
        """Run ``code`` with this venv's Python; its stdout (it must succeed)."""
        result = self.run("python", "-c", code, *args)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    def imports(self, *modules: str) -> dict[str, bool]:
        """Which of ``modules`` import in this venv."""
        code = (
            "import importlib, json, sys\n"
            "def imports(name):\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except ImportError:\n"
            "        return False\n"
            "    return True\n"
            "print(json.dumps({name: imports(name) for name in sys.argv[1:]}))"
        )
        found: dict[str, bool] = json.loads(self.python(code, *modules))
        return found


@dataclass
class Installer:
    """The wheel, the wheel house and uv; :meth:`venv` makes a row."""

    root: Path
    wheel: Path
    house: Path
    uv: str
    env: dict[str, str]
    made: list[Venv] = field(default_factory=list)

    def project(self, extras: str = "") -> str:
        """The requirement of the project's wheel with ``extras`` ("a,b")."""
        return f"alert-anomaly{f'[{extras}]' if extras else ''} @ {self.wheel.as_uri()}"

    def venv(self, name: str, *requirements: str, no_deps: tuple[str, ...] = ()) -> Venv:
        """A new venv holding ``requirements`` (``-r FILE`` allowed) with their dependencies,
        then ``no_deps`` without theirs, all from the wheel house."""
        path = self.root / "venvs" / name
        started = time.monotonic()
        _run([self.uv, "venv", "--quiet", "--python", BASE_PYTHON, str(path)], self.env)
        install = [self.uv, "pip", "install", "--quiet", "--python", str(path / "bin" / "python")]
        install += ["--offline", "--no-index", "--find-links", str(self.house)]
        _run([*install, *requirements], self.env)
        if no_deps:
            _run([*install, "--no-deps", *no_deps], self.env)
        work = self.root / "work" / name
        work.mkdir(parents=True)
        venv = Venv(name, path, work, time.monotonic() - started)
        self.made.append(venv)
        return venv


@pytest.fixture(scope="session")
def installer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installer]:
    root = tmp_path_factory.mktemp("install-matrix")
    pip = [sys.executable, "-m", "pip"]
    started = time.monotonic()
    dist = root / "dist"
    _run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(REPO)])
    (wheel,) = dist.glob("alert_anomaly-*.whl")
    house = root / "house"
    _run([*pip, "download", "--quiet", "-d", str(house), f"{wheel}[{','.join(EXTRAS)}]"])
    env = dict(os.environ) | {
        "UV_CACHE_DIR": str(root / "uv-cache"),
        "UV_NO_CONFIG": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
    }
    env.pop("VIRTUAL_ENV", None)
    made = Installer(root, wheel, house, _uv(), env)
    print(f"\ninstall matrix: wheel and wheel house in {time.monotonic() - started:.1f} s")
    yield made
    for venv in made.made:
        ran = sum(seconds for _, seconds in venv.commands)
        print(f"install matrix: {venv.name}: venv {venv.seconds:.1f} s, commands {ran:.1f} s")
        for command, seconds in venv.commands:
            print(f"    {seconds:6.1f} s  {command}")
    shutil.rmtree(root, ignore_errors=True)  # ~2.5 GB: uv's cache, the house, the venvs
