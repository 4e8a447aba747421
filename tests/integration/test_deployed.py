"""The service as deploy/k8s deploys it: each overlay is rendered with `kubectl kustomize`, a pod of
its Deployment is assembled as Kubernetes would assemble it - the image's ENV and entrypoint
(Dockerfile.gpu), the service-link variables of every Service in the rendered output (a pod gets
them unless enableServiceLinks is false: tested both ways), envFrom and env - and the service is
started with exactly that environment and the container's command line.

What only exists in a cluster is mapped, never dropped: the image's /opt/venv/bin is this venv's
bin, volumes are directories under the test's temporary directory (emptyDir empty, ConfigMap and
Secret volumes holding their rendered files) and every path under a mount point, in the
environment or the arguments, is rewritten to it. For the scoring run the broker is the test's
(bootstrap servers, PLAINTEXT: the embedded broker has no TLS or SASL), topics and group are
unique to the test (the broker is shared) and the metrics port is 0.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from service.config import KafkaSettings
from service.demo import publish, read_topic, sample_messages
from service.io.codecs.avro import decode_output
from service.io.kafka import create_topics
from tests.unit.deploy_files import OVERLAYS, dockerfile, exec_form, one, rendered

Docs = tuple[dict[str, Any], ...]
CLUSTER_IPS = ipaddress.ip_network("10.96.0.0/12")  # kubeadm's default service range
N_ALERTS = 200


def image_environment() -> dict[str, str]:
    """ENV of the image's last stage, ``$VAR`` expanded against the base image's (ours)."""
    instructions = dockerfile()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    env: dict[str, str] = {"PATH": os.environ["PATH"]}
    for name, args in instructions[last_from:]:
        if name == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = os.path.expandvars(value.replace("$PATH", env["PATH"]))
    return env


def image_command() -> list[str]:
    (entrypoint,) = [a for n, a in dockerfile() if n == "ENTRYPOINT"]
    return exec_form(entrypoint)


KUBERNETES = {  # the API server's Service: its variables are in every pod, links or not
    "kind": "Service",
    "metadata": {"name": "kubernetes"},
    "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]},
}


def service_links(docs: Docs, namespace: bool) -> dict[str, str]:
    """The variables the kubelet injects (pkg/kubelet/envvars): {SVC}_SERVICE_HOST,
    _SERVICE_PORT, _SERVICE_PORT_{PORTNAME} and the Docker-link ones, for the kubernetes
    Service and - ``namespace``: enableServiceLinks - for every Service of the rendered output."""
    env: dict[str, str] = {}
    hosts = (str(ip) for ip in CLUSTER_IPS.hosts() if str(ip) != "10.96.0.1")
    services = [d for d in docs if d["kind"] == "Service"] if namespace else []
    for service in [*services, KUBERNETES]:
        spec = service["spec"]
        if spec.get("clusterIP") == "None":  # headless: no variables
            continue
        name = service["metadata"]["name"].upper().replace("-", "_")
        ip = spec.get("clusterIP") or next(hosts)
        env[f"{name}_SERVICE_HOST"] = ip
        for i, port in enumerate(spec["ports"]):
            number, proto = str(port["port"]), port.get("protocol", "TCP")
            if i == 0:
                env[f"{name}_SERVICE_PORT"] = number
            if port.get("name"):
                env[f"{name}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = number
            url = f"{proto.lower()}://{ip}:{number}"
            prefix = f"{name}_PORT_{number}_{proto.upper()}"
            if i == 0:
                env[f"{name}_PORT"] = url
            env |= {
                prefix: url,
                f"{prefix}_PROTO": proto.lower(),
                f"{prefix}_PORT": number,
                f"{prefix}_ADDR": ip,
            }
    return env


def _data(doc: dict[str, Any]) -> dict[str, str]:
    """A ConfigMap's or Secret's entries, decoded."""
    data = dict(doc.get("data", {}))
    if doc["kind"] == "Secret":
        data = {k: base64.b64decode(v).decode() for k, v in data.items()}
    return {**data, **doc.get("stringData", {})}


def _named(docs: Docs, kind: str, name: str) -> dict[str, str]:
    (found,) = (d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)
    return _data(found)


class Pod:
    """A pod of the rendered Deployment: its container's environment and command line, with
    the image's paths mapped to this machine."""

    def __init__(self, docs: Docs, root: Path, links: bool | None = None) -> None:
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        self.enable_service_links = pod.get("enableServiceLinks", True)
        links = self.enable_service_links if links is None else links
        self.mounts = self._volumes(docs, pod, container, root)
        # the image's ENV, then what the kubelet sets: service links < envFrom < env
        env = image_environment()
        env["PATH"] = env["PATH"].replace("/opt/venv/bin", str(Path(sys.executable).parent))
        env["HOSTNAME"] = "alert-anomaly-5d9c7b6f4-x2x7q"
        env |= service_links(docs, namespace=links)
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                values = _named(docs, "ConfigMap", source["configMapRef"]["name"])
            else:
                values = _named(docs, "Secret", source["secretRef"]["name"])
            env |= {source.get("prefix", "") + k: v for k, v in values.items()}
        for item in container.get("env", []):
            env[item["name"]] = self._value(docs, item)
        # PATH is this machine's beyond the image's first entry: not remapped
        self.env = {k: v if k == "PATH" else self.mapped(v) for k, v in env.items()}
        command = container.get("command") or image_command()
        args = container.get("args", [])  # the image's CMD is replaced by command, none here
        self.argv = [self.mapped(a) for a in [*command, *args]]
        executable = shutil.which(self.argv[0], path=self.env["PATH"])
        # the console script of `pip install -e` (absent while the venv is being installed)
        self.argv[:1] = [executable] if executable else [sys.executable, "-m", "service.cli"]

    @staticmethod
    def _value(docs: Docs, item: dict[str, Any]) -> str:
        if "value" in item:
            return str(item["value"])
        ref = item["valueFrom"]
        if "configMapKeyRef" in ref:
            return _named(docs, "ConfigMap", ref["configMapKeyRef"]["name"])[
                ref["configMapKeyRef"]["key"]
            ]
        if "secretKeyRef" in ref:
            return _named(docs, "Secret", ref["secretKeyRef"]["name"])[ref["secretKeyRef"]["key"]]
        raise AssertionError(f"env {item['name']}: valueFrom {ref} is not mapped by this test")

    @staticmethod
    def _volumes(
        docs: Docs, pod: dict[str, Any], container: dict[str, Any], root: Path
    ) -> dict[str, Path]:
        """mount path -> a directory here holding what the volume would hold."""
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            here = root / "volumes" / mount["name"]
            here.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume or "secret" in volume:
                kind = "ConfigMap" if "configMap" in volume else "Secret"
                ref = volume.get("configMap") or volume["secret"]
                files = _named(docs, kind, ref.get("name") or ref["secretName"])
                for item in ref.get("items") or [{"key": k, "path": k} for k in files]:
                    (here / item["path"]).write_text(files[item["key"]])
            else:
                assert "emptyDir" in volume, f"volume {mount['name']}: not mapped by this test"
            target = here / mount["subPath"] if mount.get("subPath") else here
            mounts[mount["mountPath"].rstrip("/")] = target
        return mounts

    def mapped(self, text: str) -> str:
        """A value with a path under a mount point rewritten to the mapped directory."""
        for mount in sorted(self.mounts, key=len, reverse=True):
            for prefix in (f"{mount}/", f"={mount}/"):
                if prefix in text:
                    text = text.replace(prefix, prefix.replace(mount, str(self.mounts[mount])))
            if text == mount:
                return str(self.mounts[mount])
        return text


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def adapted(pod: Pod, overlay: str) -> list[str]:
    """The command line; on a machine without a GPU the gpu overlay's model.device = cuda is
    overridden (its refusal to start without one is tested separately)."""
    if overlay == "gpu" and not cuda_available():
        return [*pod.argv, "--device", "cpu"]
    return pod.argv


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_rendered_pods_get_no_service_links(overlay: str, tmp_path: Path) -> None:
    pod = Pod(rendered(overlay), tmp_path)
    assert pod.enable_service_links is False
    assert "ALERT_ANOMALY_SERVICE_HOST" not in pod.env
    assert pod.env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"  # in every pod
    assert pod.env.get("NUMBA_CACHE_DIR", "").startswith(str(tmp_path))  # /tmp is an emptyDir


@pytest.mark.parametrize("links", [None, True], ids=["as-rendered", "with-service-links"])
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_check_passes_in_the_pod_environment(
    overlay: str, links: bool | None, tmp_path: Path
) -> None:
    pod = Pod(rendered(overlay), tmp_path, links=links)
    if links:
        assert pod.env["ALERT_ANOMALY_SERVICE_HOST"]
        assert pod.env["ALERT_ANOMALY_PORT_9108_TCP"].startswith("tcp://")
    result = subprocess.run(
        [*adapted(pod, overlay), "--check", "--offline"],
        env=pod.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "check passed" in result.stdout


def test_the_gpu_overlay_without_a_gpu_refuses_in_one_line(tmp_path: Path) -> None:
    if cuda_available():
        pytest.skip("this machine has a GPU: the gpu overlay's check passes above")
    pod = Pod(rendered("gpu"), tmp_path, links=True)
    assert pod.env["ALERT_ANOMALY_MODEL__DEVICE"] == "cuda"
    result = subprocess.run(
        [*pod.argv, "--check", "--offline"],
        env=pod.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "cuda" in errors[0]


class Running:
    """The service started from a pod's command line; its JSON log events as they come."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.process = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.raw.append(line)
            with contextlib.suppress(json.JSONDecodeError):
                self.events.append(json.loads(line))

    def event(self, name: str, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in list(self.events):
                if event.get("event") == name:
                    return event
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no {name} within {timeout} s:\n{''.join(self.raw[-20:])}")


def test_the_pod_scores_alerts_on_the_test_broker(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """One scoring run, of the base pod with the service links a namespace injects (the
    environment that crash-looped): every overlay and both link cases pass ``--check``
    above, and the overlays differ from base in the image and the device only."""
    overlay = "base"
    pod = Pod(rendered(overlay), tmp_path, links=True)
    names = [f"{topic_prefix}-in", f"{topic_prefix}-scores", f"{topic_prefix}-dlq"]
    create_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), names)
    publish(kafka_bootstrap, names[0], sample_messages(N_ALERTS))
    overrides = ["--bootstrap-servers", kafka_bootstrap, "--metrics-port", "0"]
    overrides += ["--topic", names[0], "--output-topic", names[1], "--dead-letter-topic", names[2]]
    overrides += ["--group-id", topic_prefix]
    env = pod.env | {"ALERT_ANOMALY_KAFKA__SECURITY_PROTOCOL": "PLAINTEXT"}
    service = Running([*adapted(pod, overlay), *overrides], env)
    try:
        url = service.event("metrics_serving")["url"]
        outputs = read_topic(kafka_bootstrap, names[1], N_ALERTS, timeout_s=180)
        assert len(outputs) == N_ALERTS
        records = [decode_output(m.value()) for m in outputs]
        assert {r["source_offset"] for r in records} == set(range(N_ALERTS))
        with urllib.request.urlopen(url.replace("/metrics", "/healthz"), timeout=10) as response:
            assert response.status == 200
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(120) == 0, "".join(service.raw[-20:])
    finally:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait(10)
