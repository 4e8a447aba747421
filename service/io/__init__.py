"""The edges: where alerts come from (``sources``), where scores and dead letters go (``sinks``),
the wire formats (``codecs``) and the Kafka clients (``kafka``, ``embedded``)."""
