"""How many threads decoding uses: one per core that is idle when a generation starts.

Decoding steps are small matrix products split across torch's threads, and every step
waits for its slowest thread: with one core busy (a DAW, a browser, a build), a thread
that lands on it holds every step back. Measured on a 2-core machine (issue 24): idle, two
threads decode 1.25× as fast as one; with one core kept busy, two threads decode at a
third of one thread's speed. So decoding takes as many threads as there are idle cores,
at least one, read from ``/proc/stat`` over a twentieth of a second before each generation
(elsewhere, where that is not available, torch's own choice stands). A thread count the
user set (``OMP_NUM_THREADS``) is kept as it is. Training keeps every core.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

PROC_STAT = Path("/proc/stat")
SAMPLE_S = 0.05


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all cores, or None without /proc/stat."""
    try:
        fields = PROC_STAT.read_text().splitlines()[0].split()[1:9]
    except (OSError, IndexError):
        return None
    values = [int(value) for value in fields]
    return values[3] + values[4], sum(values)  # idle + iowait


def idle_cores(interval: float = SAMPLE_S) -> float | None:
    """How many cores were idle, on average, over the next ``interval`` seconds (None: unknown)."""
    before = _cpu_times()
    if before is None:
        return None
    time.sleep(interval)
    after = _cpu_times()
    if after is None or after[1] <= before[1]:
        return None
    return (os.cpu_count() or 1) * (after[0] - before[0]) / (after[1] - before[1])


def threads_for(idle: float | None, cores: int | None = None) -> int | None:
    """Threads for ``idle`` idle cores: each core at least three-quarters idle counts, at least
    one thread; None (torch's own choice) when the idle cores are unknown."""
    if idle is None:
        return None
    return max(1, min(cores or os.cpu_count() or 1, int(idle + 0.25)))


@contextlib.contextmanager
def decoding_threads() -> Iterator[int]:
    """Run the block with `threads_for` the cores idle now; torch's thread count comes back after."""
    import torch

    before = torch.get_num_threads()
    chosen = before if os.environ.get("OMP_NUM_THREADS") else threads_for(idle_cores()) or before
    torch.set_num_threads(chosen)
    try:
        yield chosen
    finally:
        torch.set_num_threads(before)
