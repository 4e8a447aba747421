"""Step metrics as ALeRCE's steps report them on Kafka.

Their framework (``apf``, alercebroker/pipeline at 9a728060b; the facts are kept in
``tests/unit/upstream/alerce_metrics.json`` with a drift test) sends, for every batch a step
processes, one JSON message without a key to the metrics topic (``KafkaMetricsProducer``):
``timestamp_received`` (when the batch was received) and ``timestamp_sent`` (when its results
were sent) as ISO 8601 strings of UTC datetimes - the two fields their schema requires
(``schemas/lc_classification_step/metrics.json``, more fields allowed) -, ``execution_time`` (the
seconds between them), ``n_messages``, the extra metrics of the step's configuration (lists of a
field of each message), ``source`` (``METRICS_SOURCE``, by default the step's class name) and
``survey`` (``METRICS_SURVEY``, null when unset).

Ours, one message per scored micro-batch: received when the batch's scoring began, sent when
its outputs were handed to the producer; the extra metric is ``oid`` (the batch's object ids; the
``aid`` and ``candid`` their anomaly step configures are not fields of the classifier's records).
"""

from __future__ import annotations

import json
from datetime import datetime


def step_metrics(
    received: datetime, sent: datetime, oids: list[str], source: str, survey: str | None
) -> bytes:
    """The metrics message of one batch (``received`` and ``sent``: aware UTC datetimes)."""
    return json.dumps(
        {
            "timestamp_received": received.isoformat(),
            "timestamp_sent": sent.isoformat(),
            "execution_time": (sent - received).total_seconds(),
            "n_messages": len(oids),
            "oid": oids,
            "source": source,
            "survey": survey,
        },
        separators=(",", ":"),
    ).encode()
