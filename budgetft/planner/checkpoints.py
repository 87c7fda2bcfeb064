"""How often a trial checkpoints its training state, and what that costs (issue 27, point 3).

A checkpoint is everything a trial needs to go on from a step as if it had never stopped: the
weights it trains, AdamW's two moments for each of them, the schedule and the random state
(budgetft.train.checkpoint). An interruption (Ctrl-C, SIGTERM, a kill -9 of the driver, a worker
that dies) then loses only the steps since the last one. The schedule bounds that loss: at most
LOSS_SHARE of the trial's time (its money: a trial is paid by the second) or LOSS_SECONDS,
whichever is larger. Within that bound a trial checkpoints as often as costs no more than
OVERHEAD_SHARE of its time, so a cheap checkpoint (an adapter of a few MB) is taken every few
seconds and a dear one (a full fine-tune's gigabytes) only as often as the bound requires.

A checkpoint's seconds come from its size and the write speed of the run's disk: measured by
calibration (write_speed, fsynced), else WRITE_BYTES_PER_S.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from budgetft import methods

LOSS_SHARE = 0.10  # of a trial's time (and money): the most an interruption may lose...
LOSS_SECONDS = 60.0  # ...or this many seconds of it, whichever is larger
OVERHEAD_SHARE = 0.02  # checkpoint no more often than costs this share of a trial's time
# A disk of unknown speed: a cloud balanced persistent disk's lower sustained write (~140 MB/s,
# cloud.google.com/compute/docs/disks/performance), rounded down.
WRITE_BYTES_PER_S = 100e6
FIXED_S = 0.05  # a checkpoint's own files, fsyncs and the rename, beyond its bytes (s)
# Bytes a checkpoint holds per trained parameter: the fp32 weight twice (the training state's and
# the kept-weights copy that the held-out test reads) and AdamW's two fp32 moments.
BYTES_PER_PARAM = 4 + 4 + 8
PROBE_BYTES = 8 * 2**20  # what write_speed writes (and fsyncs) to time the disk
# AdaLoRA's rank allocator keeps its importance scores outside the model's parameters: its state
# cannot be saved whole, so its trials start afresh rather than continue.
NOT_CONTINUABLE = {"adalora"}


def continuable(method_name: str) -> bool:
    """Whether a trial of this method can checkpoint and go on: one phase (a phased method's
    ensembles and labelling are not one optimiser's state) and its whole state in its
    parameters. Only these trials checkpoint, so only their steps are priced for it."""
    try:
        method = methods.get(method_name)
    except (KeyError, ValueError):
        return False
    return method.phases is None and method.name not in NOT_CONTINUABLE


def checkpoint_bytes(trainable_params: int | float | None) -> int:
    """Bytes one checkpoint writes for a trial that trains `trainable_params` parameters (0 when
    unknown: only its fixed seconds are priced)."""
    return int(BYTES_PER_PARAM * float(trainable_params or 0)) + 64 * 1024  # + manifests and the schedule


def checkpoint_seconds(nbytes: int, write_bytes_per_s: float | None = None) -> float:
    """Seconds one checkpoint of `nbytes` takes at the disk's write speed (bytes/s)."""
    speed = float(write_bytes_per_s or WRITE_BYTES_PER_S)
    return FIXED_S + nbytes / max(speed, 1.0)


def interval_seconds(trial_seconds: float, seconds: float) -> float:
    """Seconds of training between two checkpoints that each take `seconds`, in a trial of
    `trial_seconds`: as often as OVERHEAD_SHARE allows, never rarer than the loss bound."""
    bound = max(LOSS_SHARE * trial_seconds, LOSS_SECONDS)
    return min(bound, seconds / OVERHEAD_SHARE)


def every_steps(max_steps: int, step_s: float, seconds: float) -> int | None:
    """The steps between checkpoints of a trial of `max_steps` steps at `step_s` seconds each;
    None when its first checkpoint would fall at or after its last step (nothing to keep: it
    ends first)."""
    if max_steps <= 1 or step_s <= 0:
        return None
    every = max(1, math.floor(interval_seconds(max_steps * step_s, seconds) / step_s))
    return every if every < max_steps else None


def overhead_share(step_s: float, seconds: float) -> float:
    """The most checkpoints add to a trial's time, as a share of it, whatever its length: the
    planner prices each step this much dearer. Checkpoints at the overhead's pace cost
    OVERHEAD_SHARE; at the loss bound's (a dear checkpoint), at most seconds/LOSS_SECONDS; and
    never more than one per step."""
    if step_s <= 0:
        return 0.0
    return min(seconds / step_s, max(OVERHEAD_SHARE, seconds / LOSS_SECONDS))


def write_speed(folder: Path | str, nbytes: int = PROBE_BYTES) -> float:
    """Bytes per second this disk writes and fsyncs, measured once in `folder` (calibration)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / ".write_speed.probe"
    block = os.urandom(2**20)
    t0 = time.perf_counter()
    try:
        with open(probe, "wb") as f:
            for _ in range(max(1, nbytes // len(block))):
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
        seconds = time.perf_counter() - t0
    finally:
        probe.unlink(missing_ok=True)
    return nbytes / max(seconds, 1e-6)
