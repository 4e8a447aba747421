"""What we restate from other projects has not drifted from them.

The fingerprints below were computed from the upstream files themselves (read with git from
mirrors of the public repositories; this machine has no network at test time):

* alercebroker/pipeline ``schemas/lc_classification_step/output_ztf.avsc`` at 4b6d301de
  (version 1, 2023-11-14), fe0b99da4 (version 2, 2023-12-04) and b8f5ee5c2 (version 3,
  2024-01-03, unchanged at 9a728060b of 2026-02-13), and ``schemas/feature_step/
  features_record_ztf.avsc`` at 017acf963 (2024-11-13, unchanged at 9a728060b): SHA-256 of the
  Avro Parsing Canonical Form, which keeps names, types and order and drops docs - so our files
  may explain, but not change, a single field.
* mperezcarrasco/AnomalyALeRCE ``src/utils/norm_scales.py`` and ``src/utils/normalize.py`` at
  115c4dd: SHA-256 of the scales, log and clip-then-log families, excluded features and the
  missing-value fill, as canonical JSON.

A failing test here means our copy of a fact changed: re-read the upstream file, then update the
fact and its fingerprint together.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from fastavro.schema import to_parsing_canonical_form

from models import paper
from models.features import ALERCE_RENAMES, paper_features, ztf_feature_names
from models.resources import schemas_dir

UPSTREAM_SCHEMAS = {
    "ztf-lc-classifier/1/probabilities_and_features.avsc": (
        "2628375ff55f30b3d7b4b06265e515be88601c81aed04903a944f69b82353dfd"
    ),
    "ztf-lc-classifier/2/probabilities_and_features.avsc": (
        "f8ce11fab55df7e58829afec4cad252660b4665954364e9ce3cef328f5435265"
    ),
    "ztf-lc-classifier/3/probabilities_and_features.avsc": (
        "dda5c15104cd5bba1d572d37bd9d86f7dac17a91bc0f28ec21686e549b4f8001"
    ),
    "ztf-features/2024/features_record_ztf.avsc": (
        "2f859ef067ea6e88f4ab0ebd9552adf22a0fc0a22700426944fe73bd9d151a11"
    ),
}
UPSTREAM_PAPER = "f6576e76c0ee5e755f4f9a5b73aae1341890b3c0568f2ca27de63e0699602165"


@pytest.mark.parametrize("path", sorted(UPSTREAM_SCHEMAS))
def test_alerce_schemas_are_alerces(path: str) -> None:
    schema = json.loads((schemas_dir() / path).read_text())
    canonical = to_parsing_canonical_form(schema)
    assert hashlib.sha256(canonical.encode()).hexdigest() == UPSTREAM_SCHEMAS[path]


def test_the_2023_names_are_the_fields_of_version_1() -> None:
    version_1 = json.loads(
        (schemas_dir() / "ztf-lc-classifier/1/probabilities_and_features.avsc").read_text()
    )
    features = json.loads(
        (schemas_dir() / "ztf-features/2023/features_record_ztf.avsc").read_text()
    )
    assert features["fields"] == version_1["fields"][1]["type"]["fields"]


def test_renames_lead_from_2023_names_to_todays() -> None:
    old, new = set(ztf_feature_names("2023")) | {"PPE"}, set(ztf_feature_names("2024"))
    for before, after in ALERCE_RENAMES.items():
        assert before in old, before
        assert before not in new, before
        assert after in new, after
        assert after not in old, after


def test_the_papers_facts_are_the_reference_codes() -> None:
    document = {
        "scales": [[k, [float(lo), float(hi)]] for k, (lo, hi) in paper.FAMILY_SCALES.items()],
        "log": sorted(paper.LOG_FAMILIES),
        "clip_log": sorted(paper.CLIP_LOG_FAMILIES),
        "excluded": sorted(paper.EXCLUDED),
        "missing": paper.MISSING_VALUE,
    }
    digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
    assert digest == UPSTREAM_PAPER


def test_the_papers_selection_on_todays_names() -> None:
    selected = paper_features()
    assert len(selected) == 129
    assert set(selected) <= set(ztf_feature_names("2024"))
    # the paper's families on the 2023 names: 152 features, 23 of which ALeRCE no longer publishes
    in_2023 = [
        n for n in ztf_feature_names("2023") if paper.family_of(n) and n not in paper.EXCLUDED
    ]
    assert len(in_2023) == 152
    gone = {n for n in in_2023 if ALERCE_RENAMES.get(n, n) not in selected}
    assert len(gone) == 23
    assert {"rb", "gal_b", "gal_l", "dmag_first_det_fid_1"} <= gone
    assert paper.family_of("PercentAmplitude_1") == "PercentAmplitude"  # not 'Amplitude'
