"""``distclassipy``: DistClassiPy's DistanceAnomaly, the Rubin tutorial's scorer
(models.estimators; the 'distclassipy' extra, GPL-3.0)."""

from models.detectors.spec import DetectorSpec

SPEC = DetectorSpec(
    name="distclassipy",
    label="DistClassiPy",
    family="estimator",
    group="tutorial",
    column=6,
    hooks="models.detectors.estimator:DISTCLASSIPY",
    score="estimator",
)
