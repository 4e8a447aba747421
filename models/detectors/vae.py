"""``vae``: the variational autoencoder (negative ELBO), scored by the summed squared
reconstruction error of the posterior mean."""

from models.detectors.spec import DetectorSpec, NetworkLayout

SPEC = DetectorSpec(
    name="vae",
    label="VAE",
    family="network",
    group="paper",
    column=3,
    hooks="models.detectors.network:HOOKS",
    score="reconstruction",
    network=NetworkLayout(loss="elbo", posterior=True, decoder=True),
)
