"""ALeRCE's pipeline as the tests know it: the facts read from alercebroker/pipeline and committed
in ``tests/unit/upstream/`` (:func:`facts`), the upstream files themselves for the drift tests
(:func:`upstream`, only where ``ALERCE_PIPELINE_GIT`` names a clone's git directory:
:data:`needs_clone`), and a deployment's environment in their variable names
(:func:`environment`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

FACTS = Path(__file__).parent / "unit" / "upstream"

needs_clone = pytest.mark.skipif(
    "ALERCE_PIPELINE_GIT" not in os.environ,
    reason="needs a clone of alercebroker/pipeline (ALERCE_PIPELINE_GIT: its git directory)",
)


def facts(name: str) -> Any:
    """The committed facts ``tests/unit/upstream/alerce_<name>.json``."""
    return json.loads((FACTS / f"alerce_{name}.json").read_text())


def upstream(path: str) -> str:
    """A file of alercebroker/pipeline at the clone's HEAD."""
    git_dir = os.environ["ALERCE_PIPELINE_GIT"]
    command = ["git", "--git-dir", git_dir, "show", f"HEAD:{path}"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def environment(brokers: str, password: str) -> dict[str, str]:
    """An ALeRCE deployment's environment for their anomaly step (lc_classification_step's
    README table), SASL on every client as on their brokers."""
    return {
        "CONSUMER_TOPICS": "lc_classifier_ztf_20261205,lc_classifier_ztf_20261206",
        "CONSUMER_SERVER": brokers,
        "CONSUMER_GROUP_ID": "lc-anomaly-step",
        "CONSUME_MESSAGES": "1000",
        "PRODUCER_TOPIC_FORMAT": "lc_anomaly_%s",
        "PRODUCER_DATE_FORMAT": "%Y%m%d",
        "PRODUCER_CHANGE_HOUR": "23",
        "PRODUCER_RETENTION_DAYS": "1",
        "PRODUCER_SERVER": brokers,
        "PRODUCER_SECURITY_PROTOCOL": "SASL_SSL",
        "PRODUCER_SASL_MECHANISM": "SCRAM-SHA-512",
        "SCRIBE_SERVER": brokers,
        "SCRIBE_TOPIC": "w_object",
        "METRICS_HOST": brokers,
        "METRICS_TOPIC": "metrics",
        "MODEL_CLASS": "alerce_classifiers.anomaly.model.AnomalyDetector",
        **{
            f"{client}_KAFKA_{part}": value
            for client in ("CONSUMER", "PRODUCER", "SCRIBE", "METRICS")
            for part, value in (("USERNAME", "alerce"), ("PASSWORD", password))
        },
    }
