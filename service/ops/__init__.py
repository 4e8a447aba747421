"""Operating the service: Prometheus metrics and health endpoints (``metrics``), logs (``logs``),
broker availability (``availability``) and secret redaction (``redaction``)."""
