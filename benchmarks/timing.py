"""Timing shared by the benchmark scripts (run as `python benchmarks/<name>.py`), and the name of
the CPU they ran on."""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path


def warm_timed(fn, repeats: int) -> tuple[float, float, float]:
    """(first, best, median) wall time of fn() in seconds: the first call is the warm-up (it
    compiles, fills caches) and is timed apart; best and median are over `repeats` calls after it."""
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times[0], min(times[1:]), statistics.median(times[1:])


def timed(fn, repeats: int) -> tuple[float, float]:
    """(best, median) wall time of fn() in seconds, after one untimed warm-up call."""
    _, best, median = warm_timed(fn, repeats)
    return best, median


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, for the record of where a benchmark ran."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
