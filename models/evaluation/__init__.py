"""The ALeRCE anomaly paper's evaluation protocol (``alert-anomaly evaluate``) and the
top-anomalies report (``alert-anomaly top``)."""
