"""No drift between the service's settings, Dockerfile.gpu, the compose files, the rendered
deploy/k8s overlays and deploy/prometheus: settings, ports, topics, consumer group, partitions,
grace periods and images agree everywhere (no Docker or cluster here: the files are read)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import yaml

from service.cli import build_parser
from service.config import ENV_PREFIX, Settings, load_settings
from tests.conftest import REPO
from tests.unit.deploy_files import (
    OVERLAYS,
    compose,
    dockerfile,
    exec_form,
    healthz_port,
    instructions,
    one,
    rendered,
    seconds,
)

SCORER = "alert-anomaly"  # the scoring service in docker-compose.yml
SASL_MODES = {
    "PLAIN": "plaintext",
    "SCRAM-SHA-256": "scram_sha256",
    "SCRAM-SHA-512": "scram_sha512",
}


@pytest.fixture
def settings_from(monkeypatch: pytest.MonkeyPatch) -> Callable[[Mapping[str, object]], Settings]:
    """Load the settings from exactly these environment variables (nothing else set)."""

    def load(environment: Mapping[str, object]) -> Settings:
        with monkeypatch.context() as env:
            for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
                env.delenv(key)
            for key, value in environment.items():
                env.setenv(key, str(value))
            return load_settings(None)

    return load


def service_environment(gpu: bool, name: str = SCORER) -> dict[str, Any]:
    environment: dict[str, Any] = compose(gpu)["services"][name]["environment"]
    return environment


def k8s_environment(overlay: str) -> dict[str, str]:
    """What the Deployment's envFrom gives the container: the ConfigMap and the Secret."""
    docs = rendered(overlay)
    sources = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    names = {s.get("configMapRef", s.get("secretRef"))["name"] for s in sources}
    config, secret = one(docs, "ConfigMap"), one(docs, "Secret")
    assert names == {config["metadata"]["name"], secret["metadata"]["name"]}
    return {**config["data"], **secret["stringData"]}


def container(overlay: str) -> dict[str, Any]:
    (only,) = one(rendered(overlay), "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(only)


def init_job() -> dict[str, Any]:
    """The topic-creation job's settings: topics, partitions, bootstrap servers."""
    job = compose()["services"]["kafka-init"]
    environment = job["environment"]
    script = job["command"][0]
    for variable in ("TOPICS", "PARTITIONS", "BOOTSTRAP_SERVERS"):
        assert f"$${variable}" in script, f"kafka-init does not use {variable}"
    assert "--create" in script
    return {
        "topics": environment["TOPICS"].split(),
        "partitions": int(environment["PARTITIONS"]),
        "bootstrap": environment["BOOTSTRAP_SERVERS"],
    }


def keda_trigger(overlay: str) -> dict[str, Any]:
    (trigger,) = one(rendered(overlay), "ScaledObject")["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    return dict(trigger)


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_compose_environments_are_valid_settings(gpu: bool, settings_from: Any) -> None:
    scorer = settings_from(service_environment(gpu))
    producer = settings_from(service_environment(gpu, "sample-producer"))
    assert scorer.kafka.bootstrap_servers == producer.kafka.bootstrap_servers == "kafka:9092"
    assert producer.input.topics == scorer.input.topics
    assert scorer.model.device == ("cuda" if gpu else "auto")


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_configmap_and_secret_are_valid_settings(overlay: str, settings_from: Any) -> None:
    environment = k8s_environment(overlay)
    assert all(key.startswith(ENV_PREFIX) for key in environment), sorted(environment)
    settings = settings_from(environment)
    assert settings.kafka.sasl_password is not None  # the secret reaches the settings
    assert settings.model.device == ("cuda" if overlay == "gpu" else "auto")


def test_compose_and_k8s_agree_on_topics_and_group(settings_from: Any) -> None:
    local = settings_from(service_environment(gpu=False))
    for overlay in OVERLAYS:
        cluster = settings_from(k8s_environment(overlay))
        assert cluster.input.topics == local.input.topics
        assert cluster.input.group_id == local.input.group_id
        assert cluster.output.topic == local.output.topic
        assert cluster.output.dead_letter_topic == local.output.dead_letter_topic
        assert cluster.metrics_port == local.metrics_port
        assert cluster.drain_timeout_s == local.drain_timeout_s


def test_the_topic_job_creates_every_topic_the_service_uses(settings_from: Any) -> None:
    job = init_job()
    settings = settings_from(service_environment(gpu=False))
    used = [*settings.input.topics, settings.output.topic, settings.output.dead_letter_topic]
    assert sorted(job["topics"]) == sorted(used)
    assert job["bootstrap"] == settings.kafka.bootstrap_servers
    kafka = compose()["services"]["kafka"]["environment"]
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # a wrong name fails, not appears


# -- KEDA ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_keda_scales_the_service_on_its_own_group_and_topic(
    overlay: str, settings_from: Any
) -> None:
    docs = rendered(overlay)
    settings = settings_from(k8s_environment(overlay))
    scaled = one(docs, "ScaledObject")
    trigger = keda_trigger(overlay)
    metadata = trigger["metadata"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == one(docs, "Deployment")["metadata"]["name"]
    assert [metadata["topic"]] == settings.input.topics
    assert metadata["consumerGroup"] == settings.input.group_id
    assert metadata["bootstrapServers"] == settings.kafka.bootstrap_servers
    assert metadata["offsetResetPolicy"] == settings.input.auto_offset_reset
    assert metadata["sasl"] == SASL_MODES[str(settings.kafka.sasl_mechanism)]
    assert metadata["tls"] == ("enable" if "SSL" in settings.kafka.security_protocol else "disable")
    # KEDA authenticates with the service's own credentials, from the same Secret
    auth = one(docs, "TriggerAuthentication")
    secret = one(docs, "Secret")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert set(refs) == {"username", "password"}
    for parameter, ref in refs.items():
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] == f"{ENV_PREFIX}KAFKA__SASL_{parameter.upper()}"
        assert ref["key"] in secret["stringData"]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_keda_max_replicas_is_the_partition_count(overlay: str) -> None:
    spec = one(rendered(overlay), "ScaledObject")["spec"]
    assert spec["maxReplicaCount"] == init_job()["partitions"]
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert keda_trigger(overlay)["metadata"]["allowIdleConsumers"] == "false"


# -- ports and probes ----------------------------------------------------------------------------


def test_one_metrics_port_everywhere(settings_from: Any) -> None:
    port = Settings.model_fields["metrics_port"].default
    assert port == 9108
    # image
    assert instructions("EXPOSE") == [str(port)]
    (healthcheck,) = instructions("HEALTHCHECK")
    assert healthz_port(healthcheck) == port
    # compose
    for gpu in (False, True):
        assert settings_from(service_environment(gpu)).metrics_port == port
    scorer = compose()["services"][SCORER]
    assert scorer["ports"] == [f"{port}:{port}"]
    assert healthz_port(" ".join(scorer["healthcheck"]["test"])) == port
    # Prometheus (compose) scrapes it
    scrape = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["static_configs"] == [{"targets": [f"{SCORER}:{port}"]}]
    # Kubernetes: container port, probes, Service, ServiceMonitor
    for overlay in OVERLAYS:
        docs = rendered(overlay)
        assert settings_from(k8s_environment(overlay)).metrics_port == port
        c = container(overlay)
        assert c["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
        probes = {p: c[p]["httpGet"] for p in ("startupProbe", "livenessProbe", "readinessProbe")}
        assert {p: g["port"] for p, g in probes.items()} == dict.fromkeys(probes, "metrics")
        assert probes["livenessProbe"]["path"] == "/healthz"
        assert probes["readinessProbe"]["path"] == "/readyz"
        (service_port,) = one(docs, "Service")["spec"]["ports"]
        assert service_port == {
            "name": "metrics",
            "port": port,
            "targetPort": "metrics",
            "protocol": "TCP",
        }
        (endpoint,) = one(docs, "ServiceMonitor")["spec"]["endpoints"]
        assert endpoint["port"] == service_port["name"]
        assert endpoint["path"] == "/metrics"


def test_scrape_job_name_matches_the_alert_rules() -> None:
    """The alert rules select job="alert-anomaly": the compose job name, and in Kubernetes the
    Service name (the ServiceMonitor's default job label)."""
    rules = (REPO / "deploy/prometheus/alerts.yml").read_text()
    jobs = set(re.findall(r'job="([^"]+)"', rules))
    assert jobs == {SCORER}
    scrape = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    assert [j["job_name"] for j in scrape["scrape_configs"]] == [SCORER]
    for overlay in OVERLAYS:
        docs = rendered(overlay)
        assert "jobLabel" not in one(docs, "ServiceMonitor")["spec"]
        assert one(docs, "Service")["metadata"]["name"] == SCORER


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_selectors_match_the_pods(overlay: str) -> None:
    docs = rendered(overlay)
    deployment = one(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selected = [
        deployment["spec"]["selector"]["matchLabels"],
        one(docs, "Service")["spec"]["selector"],
        one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    ]
    for selector in selected:
        assert selector.items() <= pod_labels.items()
    monitor = one(docs, "ServiceMonitor")["spec"]["selector"]["matchLabels"]
    assert monitor.items() <= one(docs, "Service")["metadata"]["labels"].items()


# -- shutdown ------------------------------------------------------------------------------------


def test_grace_periods_exceed_the_drain_timeout(settings_from: Any) -> None:
    for gpu in (False, True):
        drain = settings_from(service_environment(gpu)).drain_timeout_s
        assert seconds(compose(gpu)["services"][SCORER]["stop_grace_period"]) > drain
    for overlay in OVERLAYS:
        drain = settings_from(k8s_environment(overlay)).drain_timeout_s
        pod = one(rendered(overlay), "Deployment")["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > drain


# -- images --------------------------------------------------------------------------------------


def test_the_image_runs_alert_anomaly_run_as_non_root() -> None:
    (entrypoint,) = instructions("ENTRYPOINT")
    argv = exec_form(entrypoint)
    assert argv[0] == "alert-anomaly"
    assert build_parser().parse_args(argv[1:]).command == "run"
    assert not instructions("CMD")
    (user,) = instructions("USER")
    uid = int(user.split(":")[0])
    assert uid >= 1000
    for overlay in OVERLAYS:
        pod = one(rendered(overlay), "Deployment")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == uid
        assert pod["securityContext"]["runAsNonRoot"] is True
    sample = compose()["services"]["sample-producer"]["entrypoint"]
    assert build_parser().parse_args(sample[1:]).command == "publish-sample"


def test_the_image_installs_the_pinned_torch_and_the_project_wheel() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in pyproject
    runs = " ".join(instructions("RUN"))
    assert "torch==2.13.0" in runs
    assert "pip wheel --no-deps" in runs  # package data (bundles) go in through the wheel
    for path in ("pyproject.toml", "service", "models", "schemas"):
        assert any(c.startswith(path) for c in instructions("COPY")), path
    # dependencies before code: the code is copied after the dependencies are installed
    steps = dockerfile()
    install = next(i for i, (ins, a) in enumerate(steps) if "--requirement" in a)
    code = [i for i, (ins, a) in enumerate(steps) if ins == "COPY" and a.startswith("service")]
    assert code
    assert all(install < i for i in code)


def test_compose_and_k8s_use_the_same_images() -> None:
    dockerfile_args = dict(a.partition("=")[::2] for a in instructions("ARG"))
    for gpu, overlay, tag in ((False, "base", "cpu"), (True, "gpu", "gpu")):
        services = compose(gpu)["services"]
        image = f"alert-anomaly:{tag}"
        assert services[SCORER]["image"] == services["sample-producer"]["image"] == image
        assert container(overlay)["image"] == image
        build_args = services[SCORER]["build"]["args"]
        assert set(build_args) <= set(dockerfile_args)
        if gpu:  # the GPU image is Dockerfile.gpu with its defaults
            assert build_args == {k: dockerfile_args[k] for k in build_args}


def test_gpu_is_reserved_only_in_the_gpu_variants() -> None:
    assert "deploy" not in compose()["services"][SCORER]
    (device,) = compose(gpu=True)["services"][SCORER]["deploy"]["resources"]["reservations"][
        "devices"
    ]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert "nvidia.com/gpu" not in container("base")["resources"].get("limits", {})
    assert container("gpu")["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_bind_mounts_exist() -> None:
    for service in compose()["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (REPO / source).exists(), f"{source} is mounted but missing"


def test_start_order_uses_health_and_completion() -> None:
    services = compose()["services"]
    expected = {
        "kafka-init": {"kafka": "service_healthy"},
        SCORER: {"kafka-init": "service_completed_successfully"},
        "sample-producer": {SCORER: "service_healthy"},
        "grafana": {"prometheus": "service_healthy"},
    }
    for name, dependencies in expected.items():
        got = {k: v["condition"] for k, v in services[name]["depends_on"].items()}
        assert got == dependencies, name
    for dependencies in expected.values():
        for dependency, condition in dependencies.items():
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], dependency
    for one_shot in ("kafka-init", "sample-producer"):
        assert services[one_shot]["restart"] == "no"
    assert services["sample-producer"]["healthcheck"] == {"disable": True}  # not the service


def test_the_readme_states_the_cpu_request_of_the_manifest() -> None:
    [deployment] = [d for d in rendered("base") if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    request = str(container["resources"]["requests"]["cpu"])
    readme = (REPO / "README.md").read_text()
    stated = re.findall(r"requests `cpu: (\w+)`", readme)
    assert stated, "the README no longer states the CPU request"
    assert set(stated) == {request}, (stated, request)
