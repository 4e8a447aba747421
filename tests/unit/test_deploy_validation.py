"""Offline validation of everything under deploy/ and of the compose files, with the real tools:
kubectl kustomize renders both overlays, kubernetes-validate checks the result against the
Kubernetes schemas (custom resources against deploy/k8s/schemas), check-jsonschema checks the
compose files against the Compose specification, hadolint lints Dockerfile.gpu. (promtool checks
deploy/prometheus in test_observability.py.)"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from referencing import Registry, Resource

from tests.conftest import REPO
from tests.unit.deploy_files import (
    COMPOSE_FILES,
    CRD_SCHEMAS,
    OVERLAYS,
    one,
    rendered,
    run_tool,
    tool,
)

KUBERNETES_VERSION = "1.32.0"
CUSTOM_RESOURCES = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.schema.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication.schema.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.schema.json",
}
EXPECTED_KINDS = {
    "ConfigMap",
    "Secret",
    "Deployment",
    "Service",
    "ServiceMonitor",
    "PodDisruptionBudget",
    "TriggerAuthentication",
    "ScaledObject",
}


def crd_validator(schema_file: str) -> jsonschema.Draft202012Validator:
    schemas = {p.name: json.loads(p.read_text()) for p in CRD_SCHEMAS.glob("*.schema.json")}
    registry: Registry[Any] = Registry().with_resources(
        (name, Resource.from_contents(schema)) for name, schema in schemas.items()
    )
    schema = schemas[schema_file]
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def crd_errors(doc: dict[str, Any]) -> list[str]:
    validator = crd_validator(CUSTOM_RESOURCES[doc["apiVersion"], doc["kind"]])
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_kustomize_renders_every_resource(overlay: str) -> None:
    docs = rendered(overlay)
    assert {d["kind"] for d in docs} == EXPECTED_KINDS
    assert len(docs) == len(EXPECTED_KINDS)


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_rendered_manifests_match_the_kubernetes_schemas(overlay: str) -> None:
    problems = []
    for doc in rendered(overlay):
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_RESOURCES:
            problems += [f"{where}: {e}" for e in crd_errors(doc)]
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{where}: {exc.message} at {'/'.join(map(str, exc.path))}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{where}: no schema (add one to deploy/k8s/schemas)")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("ScaledObject", ("spec", "triggers", 0, "metadata", "allowIdleConsumers"), False),
        ("ScaledObject", ("spec", "maxReplicas"), 4),
        ("ScaledObject", ("spec", "triggers", 0, "metadata", "sasl"), "SCRAM-SHA-512"),
        ("TriggerAuthentication", ("spec", "secretTargetRef", 0, "parameter"), None),
        ("ServiceMonitor", ("spec", "endpoints", 0, "interval"), "15 seconds"),
        ("ServiceMonitor", ("spec", "endpoints", 0, "portName"), "metrics"),
    ],
)
def test_the_custom_resource_schemas_catch_mistakes(
    kind: str, path: tuple[str | int, ...], value: object
) -> None:
    doc = copy.deepcopy(one(rendered("base"), kind))
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert crd_errors(doc), f"{kind} with {path}={value!r} passed its schema"


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_files_match_the_compose_specification(name: str) -> None:
    run_tool(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", name)


def test_dockerfile_passes_hadolint() -> None:
    run_tool(tool("hadolint"), str(REPO / "Dockerfile.gpu"))
