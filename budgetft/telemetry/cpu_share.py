"""How many of this machine's cores other programs leave free, so that torch computes on those only.

torch splits each operation across its threads and waits for the slowest: a thread that shares its
core with a busy neighbour holds every other thread back. Measured on the 2-core development
machine, a MiniLM training step (batch 8, bf16): 0.55 s with 2 threads on an idle machine; with
another process keeping one core busy, 1.65 s with 2 threads and 0.95 s with 1. So each process
that computes (calibration, a trial's worker, the held-out test) asks, as it starts, how many cores
are free and uses that many threads.
"""

from __future__ import annotations

import math
import os
import time

# Imported inside functions: torch: importing this module must stay cheap (start-up time).

TAKEN = 0.5  # a core counts as taken when other processes keep it more than half busy
WINDOW_S = 0.5  # how long the machine is watched, seconds
# A neighbour seen busy is looked at again this long after, seconds: Ray's worker and helper
# processes take about a second to exit after a trial (telemetry of a README run, 1 s samples).
SECOND_LOOK_AFTER_S = 1.5


def _cpu_seconds() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat") as f:
            line = f.readline()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return _busy_total(line, tick)


def _busy_total(line: str, tick: float) -> tuple[float, float] | None:
    """(busy, total) seconds from /proc/stat's "cpu" line: user nice system idle iowait irq
    softirq steal ... in ticks. Only idle and iowait are free. A niced neighbour takes a core
    too: torch's threads meet at every operation, and the thread that shares a core with it
    waits for its time slice at each meeting. Measured here, a MiniLM step with 2 threads beside
    a `nice -n 19` test run: 2.9 s, against 0.46 s alone."""
    try:
        fields = [float(x) for x in line.split()[1:]]
    except ValueError:
        return None
    if len(fields) < 4:
        return None
    free = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return (sum(fields) - free) / tick, sum(fields) / tick


def busy_cores(window_s: float = WINDOW_S) -> float:
    """Cores' worth of CPU that other processes used over the next `window_s` seconds (this
    process's own use subtracted); where /proc/stat is missing, the 1-minute load average."""
    before, own_before = _cpu_seconds(), os.times()
    if before is None:
        try:
            return float(os.getloadavg()[0])
        except OSError:
            return 0.0
    time.sleep(window_s)
    after, own_after = _cpu_seconds(), os.times()
    own = (own_after.user + own_after.system) - (own_before.user + own_before.system)
    return max(0.0, (after[0] - before[0] - own) / window_s)


def free_cores(window_s: float = WINDOW_S, second_look_after_s: float = SECOND_LOOK_AFTER_S) -> int:
    """The cores other processes leave free (at least 1). A core seen taken is looked at again
    `second_look_after_s` later, and only a neighbour seen both times counts: a process that is
    ending (a trial's worker and Ray's helpers, just before the held-out test) is busy for a
    second or two, and a decision made then holds for the whole stage. Measured: the test of a
    README run began as the trial's worker exited, saw one core taken, and scored 6,140 rows on
    one thread of an otherwise idle 2-core machine (154 s against its planned 96 s)."""
    cores = os.cpu_count() or 1
    busy = busy_cores(window_s)
    if _taken(busy) and second_look_after_s > 0:
        time.sleep(second_look_after_s)
        busy = min(busy, busy_cores(window_s))
    return max(1, min(cores, cores - _taken(busy)))


def _taken(busy: float) -> int:
    """Whole cores taken by `busy` cores' worth of others' work: half a core rounds up."""
    return math.floor(busy + (1.0 - TAKEN))


def use_free_cores(limit: int | None = None) -> int:
    """Set torch's threads to the free cores (at most `limit`); returns the number set."""
    import torch

    n = free_cores()
    if limit:
        n = min(n, int(limit))
    torch.set_num_threads(max(1, n))
    return max(1, n)
