"""``ae``: the autoencoder, scored by its summed squared reconstruction error."""

from models.detectors.spec import DetectorSpec, NetworkLayout

SPEC = DetectorSpec(
    name="ae",
    label="AE",
    family="network",
    group="paper",
    column=2,
    hooks="models.detectors.network:HOOKS",
    score="reconstruction",
    network=NetworkLayout(loss="reconstruction", decoder=True),
)
