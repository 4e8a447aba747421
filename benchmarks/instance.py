"""One service instance in a process of its own, for the benchmark's scaling run: scores until its
input has been idle for a while and prints its counts as JSON, with its acknowledged count
sampled over time (monotonic times are comparable between processes of one machine).

    python -m benchmarks.instance '<settings as JSON>'
"""

from __future__ import annotations

import json
import sys
import threading
import time

from service.config import load_settings
from service.live import ScoringService
from service.ops.logs import configure_logging

SAMPLE_S = 0.01  # the acknowledged count is sampled this often (the timeline)


def main() -> None:
    configure_logging("console", "warning")
    service = ScoringService(load_settings(None, json.loads(sys.argv[1])))
    timeline: list[tuple[float, int]] = []
    stopped = threading.Event()

    def sample() -> None:
        while not stopped.wait(SAMPLE_S):
            timeline.append((time.monotonic(), service.stats.acknowledged))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stats = service.run()
    stopped.set()
    sampler.join()
    timeline.append((time.monotonic(), stats.acknowledged))
    json.dump(
        {
            "acknowledged": stats.acknowledged,
            "first_consumed_at": stats.first_consumed_at,
            "last_acknowledged_at": stats.last_acknowledged_at,
            "timeline": timeline,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
