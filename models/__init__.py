"""Anomaly models of alert-anomaly: simulation of labeled alert features, preprocessing,
networks (MCDSVDD, autoencoder and the baselines), versioned model bundles and batch scoring."""
