"""``ocsvm``: the paper's one-class SVM, evaluated only (no bundle)."""

from models.detectors.spec import DetectorSpec

SPEC = DetectorSpec(
    name="ocsvm",
    label="One-class SVM",
    family="baseline",
    group="paper",
    reference_normality=True,
    column=1,
    hooks="models.detectors.estimator:OCSVM",
)
