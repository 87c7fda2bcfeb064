"""Room on the disk for what a run writes: checked before anything is spent, again before each
round of trials (with the calibrated sizes), and watched while the run goes on.

What a run writes (bytes):
  - each trial's kept weights: its trainable parameters at 4 bytes (fp32, the widest dtype a
    trial saves) plus its manifest and adapter config (WEIGHTS_OVERHEAD);
  - each trial's records: trial.json and Ray Tune's result files (TRIAL_RECORDS);
  - the checkpoints of the trials running at once (budgetft.planner.checkpoints.checkpoint_bytes:
    weights and AdamW's moments), twice over: a new one is written whole beside the last before
    it replaces it; a trial that ends settled deletes its own (budgetft.tune.worker);
  - the ledger and telemetry lines, about RECORDS_PER_S a second of the run's time (measured:
    ~300 bytes a second, a telemetry sample a second and ledger lines every 2-5 s per trial);
  - the report (REPORT_ROOM: report.md/json, results.csv and three plots of ~50 KiB: 0.2 MiB on
    the tiny model's two-session run, kept with a twenty-fold margin: plots grow with trials).
A trial's trainable parameters come from this run's calibration or from one stored for the
machine; before either exists, from the model's size: all of it for methods that train every
weight, a tenth of it for the others (LoRA-family adapters measured at 0.5-4% of SmolLM2-135M
and MiniLM; last_k at 3-13%).

While the run goes on, DiskWatch checks the free space every CHECK_EVERY_S seconds: below what
the next trial's weights and the report need, it stops the run (interrupted, as a signal does)
before a write fails, so that the report and every record so far can still be written.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path
from typing import Callable

from budgetft.disk import DiskFull, free_bytes, size_text
from budgetft.models.speed import parameter_count
from budgetft.planner.checkpoints import checkpoint_bytes

WEIGHTS_OVERHEAD = 64 * 1024
TRIAL_RECORDS = 64 * 1024
RECORDS_PER_S = 400
REPORT_ROOM = 4 * 1024 * 1024
CHECK_EVERY_S = 2.0
BYTES_PER_PARAM = 4
WHOLE_MODEL_METHODS = ("full", "mezo")  # train every weight of the base model
ADAPTER_SHARE = 0.10  # of the model's weights, for a method whose size is not measured yet


def method_of(option: str) -> str:
    """An option's method (options of a job with several models are "method@model")."""
    return option.split("@", 1)[0]


def weights_bytes(trainable_params: int) -> int:
    return int(trainable_params) * BYTES_PER_PARAM + WEIGHTS_OVERHEAD


def trainable_params(option: str, calibration: dict | None, model_params: float | None) -> int | None:
    """Trainable parameters of one planned option: measured (calibration), else estimated from
    the model's size; None when neither is known."""
    measured = ((calibration or {}).get("methods") or {}).get(option, {}).get("trainable_params")
    if measured:
        return int(measured)
    if not model_params:
        return None
    share = 1.0 if method_of(option) in WHOLE_MODEL_METHODS else ADAPTER_SHARE
    return int(model_params * share)


def run_writes(plan, calibration: dict | None, model_params: Callable[[str], float | None], run_seconds: float) -> dict[str, int]:
    """What the run `plan` describes writes, in bytes, by kind. model_params(option) is the
    parameter count of the option's model (None: unknown)."""
    weights = records = 0
    largest = largest_checkpoint = 0
    for mp in getattr(plan, "methods", []):
        params = trainable_params(mp.method, calibration, model_params(mp.method))
        one = weights_bytes(params) if params is not None else 0
        weights += mp.trials * one
        largest = max(largest, one)
        largest_checkpoint = max(largest_checkpoint, checkpoint_bytes(params) if params is not None else 0)
        records += mp.trials * TRIAL_RECORDS
    checkpoints = 2 * largest_checkpoint * max(1, int(getattr(plan, "concurrency", 1) or 1))
    return {"weights": weights, "checkpoints": checkpoints, "records": records + int(RECORDS_PER_S * max(0.0, run_seconds)), "report": REPORT_ROOM,
            "largest_weights": largest}


def option_params(spec, tasks: dict, fallback) -> Callable[[str], float | None]:
    """The parameter count of a planned option's model ("method@model", or the job's model),
    from its files or configuration; None where it cannot be read (no estimate)."""
    def params(option: str) -> float | None:
        task = tasks.get(option.split("@", 1)[1] if "@" in option else spec.model.name) or fallback
        try:
            return parameter_count(task.model.location, task.model.revision)[0]
        except Exception:  # noqa: BLE001 - a size we cannot read: no estimate
            return None

    return params


def needed(writes: dict[str, int]) -> int:
    return writes["weights"] + writes.get("checkpoints", 0) + writes["records"] + writes["report"]


def describe(writes: dict[str, int]) -> str:
    return (f"{size_text(writes['weights'])} of kept weights, {size_text(writes.get('checkpoints', 0))} of checkpoints, "
            f"{size_text(writes['records'])} of records and {size_text(writes['report'])} for the report")


def run_seconds(left_usd: Decimal, usd_per_hour: Decimal) -> float:
    """The machine seconds `left_usd` buys (a day at most: a free machine has no end)."""
    if usd_per_hour <= 0:
        return 86400.0
    return min(86400.0, float(left_usd / usd_per_hour * 3600))


def check_room(root: Path, writes: dict[str, int], when: str) -> None:
    """Raise DiskFull when the disk under `root` cannot take `writes`. when: what is about to
    start, for the message."""
    free = free_bytes(root)
    need = needed(writes)
    if free < need:
        raise DiskFull(root, needed=need, free=free, reason=f"not enough room on the disk for {when} ({describe(writes)})")


class DiskWatch:
    """A thread that stops the run (on_full) when the free space under `root` falls below
    `floor()` bytes: room for the largest write still to come and the report."""

    def __init__(self, root: Path, floor: Callable[[], int], on_full: Callable[[DiskFull], None], every_s: float = CHECK_EVERY_S):
        self.root, self.floor, self.on_full, self.every_s = Path(root), floor, on_full, every_s
        self.full: DiskFull | None = None
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> DiskFull | None:
        """One look at the disk (the thread's, and the driver's between stages)."""
        if self.full is not None:
            return self.full
        free, floor = free_bytes(self.root), self.floor()
        if free < floor:
            self.full = DiskFull(self.root, needed=floor, free=free,
                                 reason="the disk is nearly full (stopped before a write failed: the next trial's weights and the report need the rest)")
            self.on_full(self.full)
        return self.full

    def start(self) -> "DiskWatch":
        self._thread = threading.Thread(target=self._loop, name="budgetft-disk", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._halt.wait(self.every_s):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - a failed look must not end the watch
                continue

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
