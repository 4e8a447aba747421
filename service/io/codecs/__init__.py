"""Wire formats: Avro and JSON messages (``avro``), the surveys' record versions (``surveys``),
the stream's learned byte layouts (``layouts``, ``batchdecode``) and message bytes -> alert
columns (``decoding``)."""
