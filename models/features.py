"""ALeRCE's ZTF feature names, old and current, and the features the paper's models use.

ALeRCE's feature step has published two naming schemes (``schemas/ztf-features``): the 2023 names
of lc_classifier 1.x (fields of the version-1 classifier record, and the keys of the feature map
until April 2024) and the 2024 names in the map since then. Most features kept their names; the
multiband and colour ones were renamed (``'g-r_max'`` -> ``'g_r_max_12'``, ``'W1-W2'`` ->
``'W1_W2'``, ``'Power_rate_1/2'`` -> ``'Power_rate_1_2_12'``, ``'Multiband_period'`` ->
``'Multiband_period_12'``, ``'PPE'``/``'Period_fit'`` -> ``'PPE_12'``; ALeRCE's own column map in
``training/lc_classifier_ztf/ATAT_ALeRCE/data/utils.py`` and its 2024-04-12 schema commit show the
renames). Today's names are the canonical ones here; :data:`ALERCE_RENAMES` carries the old ones.

The paper's models use the features whose 2023 name belongs to a family of its preprocessing table
(:mod:`models.paper`) and that it does not exclude: 152 of the 178 2023 features. Of these, 129
exist in today's records; the 23 others (detection and non-detection features in magnitudes,
galactic coordinates, ``rb``) are no longer published and cannot be used on today's stream.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Final

from models.paper import EXCLUDED, family_of, first_family_of
from models.resources import schemas_dir

CURRENT_NAMING: Final = "2024"

# 2023 name -> 2024 name, for the features that were renamed and still exist.
ALERCE_RENAMES: Final[dict[str, str]] = {
    "Multiband_period": "Multiband_period_12",
    "Period_fit": "PPE_12",
    "PPE": "PPE_12",
    "Power_rate_1/2": "Power_rate_1_2_12",
    "Power_rate_1/3": "Power_rate_1_3_12",
    "Power_rate_1/4": "Power_rate_1_4_12",
    "Power_rate_2": "Power_rate_2_12",
    "Power_rate_3": "Power_rate_3_12",
    "Power_rate_4": "Power_rate_4_12",
    "g-r_max": "g_r_max_12",
    "g-r_max_corr": "g_r_max_corr_12",
    "g-r_mean": "g_r_mean_12",
    "g-r_mean_corr": "g_r_mean_corr_12",
    "W1-W2": "W1_W2",
    "W2-W3": "W2_W3",
    "g-W2": "g_W2",
    "g-W3": "g_W3",
    "r-W2": "r_W2",
    "r-W3": "r_W3",
}
_OLD_NAME: Final = {new: old for old, new in ALERCE_RENAMES.items() if old != "PPE"}


@cache
def ztf_feature_names(naming: str = CURRENT_NAMING) -> tuple[str, ...]:
    """The feature names of one of ALeRCE's ZTF namings ("2023" or "2024"), in ALeRCE's order."""
    path = schemas_dir() / "ztf-features" / naming / "features_record_ztf.avsc"
    with open(path) as fh:
        return tuple(field["name"] for field in json.load(fh)["fields"])


def canonical_name(name: str) -> str:
    """Today's name of a feature named either way."""
    return ALERCE_RENAMES.get(name, name)


def name_2023(name: str) -> str:
    """The 2023 name of a feature named today (the name the paper's tables use)."""
    return _OLD_NAME.get(name, name)


def paper_family(name: str, *, first_match: bool = False) -> str | None:
    """The family of the paper's preprocessing that a feature (named either way) belongs to;
    None for features the paper does not use. ``first_match``: the reference's own lookup
    (models.paper.first_family_of) instead of the longest matching family."""
    old = name_2023(canonical_name(name))
    if old in EXCLUDED or old not in ztf_feature_names("2023"):
        return None  # excluded on purpose, or computed only since 2024 (e.g. 'MHPS_high_30_1')
    return first_family_of(old) if first_match else family_of(old)


def paper_subset(names: tuple[str, ...]) -> tuple[str, ...]:
    """The features among ``names`` (named either way) that the paper's models use, in order."""
    return tuple(n for n in names if paper_family(n) is not None)


@cache
def paper_features() -> tuple[str, ...]:
    """The features of the paper's models that today's records carry, named and ordered as
    ALeRCE publishes them today."""
    return tuple(n for n in ztf_feature_names() if paper_family(n) is not None)
