"""Driver-side bookkeeping for trials under Ray Tune: who is running, how each one ended,
and the stop-everything switch that the machine meter flips when the money runs out."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

from ray import tune

from budgetft.money.ledger import read_charges
from budgetft.rundir import RunDir, read_json, write_json
from budgetft.runner.machine_meter import METER_FILE
from budgetft.runner.trainable import PHASE_FILE, settle_status, utc_now


def meter_stopped(run_dir: Path) -> bool:
    state = read_json(Path(run_dir) / METER_FILE, {}) or {}
    return bool(state.get("stop"))


class CapStopper(tune.Stopper):
    """Stops every trial once the meter can no longer pay for training time. It reads the
    meter's published state (meter.json), so it holds nothing that cannot be pickled."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def __call__(self, trial_id: str, result: dict) -> bool:
        return meter_stopped(self.run_dir)

    def stop_all(self) -> bool:
        return meter_stopped(self.run_dir)


def trial_costs(run: RunDir) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    if run.ledger.exists():
        for charge in read_charges(run.ledger):
            if charge.trial:
                totals[charge.trial] = totals.get(charge.trial, Decimal(0)) + charge.amount
    return totals


def finalize_trial(run: RunDir, trial_id: str, *, budget_stopped: bool, interrupted: bool = False, error: str | None = None) -> dict | None:
    """Give a trial its final status if its worker could not (ASHA or the stopper ended it)."""
    path = run.trial_dir(trial_id) / "trial.json"
    record = read_json(path)
    if record is None:
        return None
    settle_status(record, budget_stopped=budget_stopped, interrupted=interrupted, error=error)
    record["cost_usd"] = str(trial_costs(run).get(trial_id, Decimal(0)))
    write_json(path, record)
    (run.trial_dir(trial_id) / PHASE_FILE).unlink(missing_ok=True)
    return record


class TrialTracker(tune.Callback):
    def __init__(self, run: RunDir, on_change=None):
        self.run = run
        self.on_change = on_change or (lambda event=None: None)  # hears a one-line event
        self.ids: dict[str, str] = {}  # Ray's trial id -> ours
        self.running: set[str] = set()
        self.best: tuple[float, str] | None = None
        self.finished: list[dict] = []
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks with the experiment state; the live hooks stay behind.
        state = {k: v for k, v in self.__dict__.items() if k not in ("on_change", "_lock")}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.on_change = lambda event=None: None
        self._lock = threading.Lock()

    def phases(self) -> dict[str, str]:
        """Our running trial ids -> "training" | "evaluating", for the meter's charges."""
        out = {}
        with self._lock:
            running = list(self.running)
        for trial_id in running:
            phase_file = self.run.trial_dir(trial_id) / PHASE_FILE
            try:
                out[trial_id] = phase_file.read_text().strip() or "training"
            except FileNotFoundError:
                out[trial_id] = "starting"  # its worker is not up yet
        return out

    def on_trial_start(self, iteration, trials, trial, **info):
        ours = trial.config["trial"]["trial_id"]
        with self._lock:
            self.ids[trial.trial_id] = ours
            self.running.add(ours)
        self.on_change(f"{ours}: started")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        acc = result.get("accuracy")
        if acc is not None and (self.best is None or acc > self.best[0]):
            self.best = (acc, self.ids.get(trial.trial_id, "?"))
        ours = self.ids.get(trial.trial_id, "?")
        self.on_change(f"{ours}: step {result.get('step')}, accuracy {100 * acc:.1f}%" if acc is not None else None)

    def _end(self, trial, error: str | None) -> None:
        ours = self.ids.get(trial.trial_id, trial.config["trial"]["trial_id"])
        with self._lock:
            self.running.discard(ours)
        record = finalize_trial(self.run, ours, budget_stopped=meter_stopped(self.run.root), error=error)
        if record:
            self.finished.append(record)
        status = (record or {}).get("status", "ended")
        self.on_change(f"{ours}: {status.replace('_', ' ')} after {(record or {}).get('steps', '?')} steps")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, "the trial's process failed (see its trial.json or Ray's error file)")
