"""``iforest``: the Isolation Forest, the Rubin tutorial's scorer (models.estimators) and one of
the paper's detectors in the evaluation (there with the configuration's trees)."""

from models.detectors.spec import DetectorSpec

SPEC = DetectorSpec(
    name="iforest",
    label="Isolation Forest",
    family="estimator",
    group="paper",
    reference_normality=True,
    column=0,
    hooks="models.detectors.estimator:IFOREST",
    score="estimator",
)
