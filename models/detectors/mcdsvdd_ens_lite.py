"""``mcdsvdd-ens-lite`` (ours): mcdsvdd-ens with small members - encoders of widths (128, 64)
instead of the paper's (512, 256, 128) - and at most 256 training inliers as references, so that
it scores at the rate of one paper MCDSVDD (models.detectors.ensemble)."""

from models.detectors.spec import DetectorSpec

SPEC = DetectorSpec(
    name="mcdsvdd-ens-lite",
    label="MCDSVDD-NN ensemble, small",
    family="ensemble",
    group="variant",
    column=9,
    hooks="models.detectors.ensemble:HOOKS",
    score="ensemble",
    member="mcdsvdd-nn",
    pretrained=True,
    paper_settings="mcdsvdd",
    hidden=(128, 64),
    max_references=256,
)
