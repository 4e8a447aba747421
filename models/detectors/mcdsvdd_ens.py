"""``mcdsvdd-ens`` (ours): K mcdsvdd-nn networks, one per fold of the training inliers, scored
by the sum of their scores (models.detectors.ensemble)."""

from models.detectors.spec import DetectorSpec

SPEC = DetectorSpec(
    name="mcdsvdd-ens",
    label="MCDSVDD-NN ensemble",
    family="ensemble",
    group="variant",
    column=8,
    hooks="models.detectors.ensemble:HOOKS",
    score="ensemble",
    member="mcdsvdd-nn",
    pretrained=True,
    paper_settings="mcdsvdd",
)
