"""Synthetic ZTF alert features with light-curve-classifier probabilities
(``alert-anomaly simulate``)."""
