"""``deepsvdd``: Deep SVDD, scored by the squared distance of the latent to its single centre."""

from models.detectors.spec import DetectorSpec, NetworkLayout

SPEC = DetectorSpec(
    name="deepsvdd",
    label="Deep SVDD",
    family="network",
    group="paper",
    column=4,
    hooks="models.detectors.network:HOOKS",
    score="centre",
    network=NetworkLayout(loss="svdd"),
    pretrained=True,
)
