"""docker-compose.yml and Dockerfile.gpu stay consistent with the code (no Docker here: the
files are checked, not run)."""

from __future__ import annotations

import pytest
import yaml

from service.config import load_settings
from tests.conftest import REPO


def compose() -> dict[str, object]:
    loaded: dict[str, object] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def test_service_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose()["services"]
    assert isinstance(services, dict)
    for name in ("alert-anomaly", "alert-anomaly-gpu"):
        for key, value in services[name]["environment"].items():
            monkeypatch.setenv(key, str(value))
        settings = load_settings(None)
        assert settings.kafka.bootstrap_servers == "kafka:9092"
        assert settings.input.topics == ["lc_classifier"]
        assert settings.metrics_port == 9108


def test_bind_mounts_exist() -> None:
    services = compose()["services"]
    assert isinstance(services, dict)
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (REPO / source).exists(), f"{source} is mounted but missing"


def test_dockerfile_installs_the_pinned_torch() -> None:
    dockerfile = (REPO / "Dockerfile.gpu").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in pyproject
    assert "torch==2.13.0" in dockerfile
    for path in ("service", "models", "schemas", "pyproject.toml"):
        assert f"COPY {path}" in dockerfile
    assert 'ENTRYPOINT ["alert-anomaly"' in dockerfile
