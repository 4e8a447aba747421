"""``mcdsvdd-nn`` (ours): the MCDSVDD network scored by the squared distance to the nearest
training inlier's latent (and that inlier's subclass)."""

from models.detectors.spec import DetectorSpec, NetworkLayout

SPEC = DetectorSpec(
    name="mcdsvdd-nn",
    label="MCDSVDD-NN",
    family="network",
    group="variant",
    column=7,
    hooks="models.detectors.network:HOOKS",
    score="reference",
    network=NetworkLayout(loss="svdd", multi_centre=True, references=True),
    pretrained=True,
    paper_settings="mcdsvdd",
)
