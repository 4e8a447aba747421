"""``mcdsvdd``: multi-class Deep SVDD (the paper's), scored by the squared distance to the
nearest subclass centre (and which subclass that is)."""

from models.detectors.spec import DetectorSpec, NetworkLayout

SPEC = DetectorSpec(
    name="mcdsvdd",
    label="MCDSVDD",
    family="network",
    group="paper",
    column=5,
    hooks="models.detectors.network:HOOKS",
    score="centre",
    network=NetworkLayout(loss="svdd", multi_centre=True),
    pretrained=True,
)
