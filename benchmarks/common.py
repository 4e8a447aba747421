"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import platform


def cores() -> int:
    return len(os.sched_getaffinity(0))


def machine() -> str:
    """One line describing where the numbers were measured."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(
                line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")
            )
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return f"machine: {cpu}, {cores()} cores, Python {platform.python_version()}"
