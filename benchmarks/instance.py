"""One service instance in a process of its own, for the benchmark's scaling run: scores until its
input has been idle for a while and prints its counts as JSON (monotonic times are comparable
between processes of one machine).

    python -m benchmarks.instance '<settings as JSON>'
"""

from __future__ import annotations

import json
import sys

from service.config import load_settings
from service.logs import configure_logging
from service.pipeline import ScoringService


def main() -> None:
    configure_logging("console", "warning")
    service = ScoringService(load_settings(None, json.loads(sys.argv[1])))
    stats = service.run()
    json.dump(
        {
            "acknowledged": stats.acknowledged,
            "first_consumed_at": stats.first_consumed_at,
            "last_acknowledged_at": stats.last_acknowledged_at,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
