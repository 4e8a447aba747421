"""``mcdsvdd-ens-lite`` (ours): mcdsvdd-ens with small members - encoders of widths (128, 64)
instead of the paper's (512, 256, 128) - and at most 256 training inliers as references, so that
it scores at the rate of one paper MCDSVDD (models.detectors.ensemble)."""

from dataclasses import replace

from models.detectors import mcdsvdd_ens

SPEC = replace(
    mcdsvdd_ens.SPEC,
    name="mcdsvdd-ens-lite",
    label="MCDSVDD-NN ensemble, small",
    column=9,
    hidden=(128, 64),
    max_references=256,
)
