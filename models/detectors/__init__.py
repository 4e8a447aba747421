"""The detector registry: one :class:`~models.detectors.spec.DetectorSpec` per kind, each in its
own module here. Adding a kind is its module and one line in :data:`REGISTRY`.

Nothing here imports torch: the settings and the CLI list the kinds without loading networks;
a spec's hooks (:meth:`DetectorSpec.implementation`) import what they need on first use.
"""

from __future__ import annotations

from typing import Final

from models.detectors import (
    ae,
    deepsvdd,
    distclassipy,
    iforest,
    mcdsvdd,
    mcdsvdd_ens,
    mcdsvdd_ens_lite,
    mcdsvdd_nn,
    ocsvm,
    vae,
)
from models.detectors.spec import DetectorHooks, DetectorSpec, Family, Group
from models.exceptions import BundleError, ConfigurationError

__all__ = [
    "REGISTRY",
    "DetectorHooks",
    "DetectorSpec",
    "evaluation_order",
    "get",
    "get_scorer",
    "kinds",
    "scorer_kinds",
]

# In this order in the settings' and the CLI's lists of scorers.
REGISTRY: Final[dict[str, DetectorSpec]] = {
    spec.name: spec
    for spec in (
        mcdsvdd.SPEC,
        ae.SPEC,
        deepsvdd.SPEC,
        vae.SPEC,
        mcdsvdd_nn.SPEC,
        mcdsvdd_ens.SPEC,
        mcdsvdd_ens_lite.SPEC,
        iforest.SPEC,
        distclassipy.SPEC,
        ocsvm.SPEC,
    )
}


def kinds(
    *, family: Family | None = None, group: Group | None = None, scorer: bool | None = None
) -> tuple[str, ...]:
    """The kinds with the given family, evaluation group and bundle format, in registry order."""
    return tuple(
        s.name
        for s in REGISTRY.values()
        if (family is None or s.family == family)
        and (group is None or s.group == group)
        and (scorer is None or s.scorer == scorer)
    )


def scorer_kinds() -> tuple[str, ...]:
    """The kinds with a bundle format: the scorers the settings and ``train`` accept."""
    return kinds(scorer=True)


def evaluation_order(*groups: Group) -> tuple[str, ...]:
    """The kinds of the given evaluation groups, in the order the evaluation reports them."""
    chosen = [s for s in REGISTRY.values() if s.group in groups]
    return tuple(s.name for s in sorted(chosen, key=lambda s: s.column))


def get(kind: str) -> DetectorSpec:
    """The spec of ``kind``; ConfigurationError naming the known kinds otherwise."""
    try:
        return REGISTRY[kind]
    except KeyError:
        known = ", ".join(REGISTRY)
        raise ConfigurationError(f"unknown detector {kind!r} (known: {known})") from None


def get_scorer(kind: str) -> DetectorSpec:
    """The spec of a kind with a bundle format; BundleError naming the known scorers otherwise."""
    spec = REGISTRY.get(kind)
    if spec is None or not spec.scorer:
        known = ", ".join(scorer_kinds())
        raise BundleError(f"unknown scorer {kind!r}; known scorers: {known}")
    return spec
