"""What machine a benchmark ran on: the CPU model as /proc/cpuinfo names it (for docs/performance.md)."""

from __future__ import annotations

import platform


def cpu_model() -> str:
    """``model name`` of the first CPU in /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "unknown CPU"
