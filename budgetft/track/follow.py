"""The driver's view of the trials for the trackers: what each trial's worker wrote, passed on.

Every POLL_S the follower reads the run directory: a new trial's trial.json opens its record
(params: method, model, configuration), the new scalars in its event files (written by its
worker, budgetft.track.tensorboard) go to its curves, and a trial whose status is settled and
whose worker closed its event files closes its record with its final numbers. A worker that
died without closing them is taken as closed GRACE_S after its trial was settled. The run's own
spend curve (spend/run_usd against seconds since the run started) comes from the ledger.

Its state (which trials are open or closed, how far each event file was read) is plain JSON, so
a resumed run goes on where the last session stopped instead of sending the same points twice.
"""

from __future__ import annotations

import time
from pathlib import Path

from budgetft.files import read_json
from budgetft.rundir import RunDir, TrialRecord
from budgetft.track.events import EventsReader
from budgetft.track.facts import RUN_SPEND, Point, TrialFacts, flat
from budgetft.track.spend import spent_so_far
from budgetft.track.tensorboard import CURVES_NOTES, trial_events_dir
from budgetft.track.trackers import Trackers

POLL_S = 5.0  # how often the run directory is read: the trackers lag the trials by about this
GRACE_S = 30.0  # a settled trial whose worker never closed its event files is closed after this


class TrialFollower:
    def __init__(self, run: RunDir, trackers: Trackers, state: dict | None = None, tags: dict[str, str] | None = None, clock=time.time,
                 started: float | None = None):
        self.run, self.trackers, self.clock = run, trackers, clock
        self.tags = dict(tags or {})  # the run's (cap, price, hardware): each trial carries them too
        self.trials: dict[str, dict] = {tid: dict(s) for tid, s in (state or {}).items()}
        self.readers: dict[str, EventsReader] = {}
        self.settled_at: dict[str, float] = {}
        self.started = clock() if started is None else started  # the run's start: a resumed session's spend goes on from there
        self.last_spend: float | None = None

    def state(self) -> dict:
        for trial_id, reader in self.readers.items():
            self.trials.setdefault(trial_id, {})["offsets"] = dict(reader.offsets)
        return {tid: dict(s) for tid, s in self.trials.items()}

    def poll(self, final: bool = False) -> None:
        """Pass on what is new; `final`: the run is ending, so close every record still open."""
        for record in self.run.trials():
            self._follow(record, final)
        spent = spent_so_far(self.run.ledger)
        if spent is not None and spent != self.last_spend:
            self.last_spend = spent
            now = self.clock()
            self.trackers.log([Point(int(now - self.started), RUN_SPEND, spent, now)], None)

    def _follow(self, record: TrialRecord, final: bool) -> None:
        trial_id = record.trial_id
        state = self.trials.setdefault(trial_id, {})
        if state.get("ended"):
            return
        if not state.get("started"):
            self.trackers.trial_started(trial_facts(record, self.tags))
            state["started"] = True
        reader = self.readers.get(trial_id)
        if reader is None:
            reader = self.readers[trial_id] = EventsReader(trial_events_dir(self.run.root, trial_id), dict(state.get("offsets") or {}))
        self.trackers.log(reader.read_new(), trial_id)
        if record.status == "running" and not final:
            return
        now = self.clock()
        self.settled_at.setdefault(trial_id, now)
        if final or _curves_closed(self.run.trial_dir(trial_id)) or now - self.settled_at[trial_id] >= GRACE_S:
            self.trackers.log(reader.read_new(), trial_id)  # what the worker wrote as it closed
            final_numbers, tags = trial_outcome(record)
            self.trackers.trial_ended(trial_id, record.status, final_numbers, tags)
            state["ended"] = True


def trial_facts(record: TrialRecord, run_tags: dict[str, str] | None = None) -> TrialFacts:
    params = flat({"method": record.method, "model": record.model or "", "max_steps": record.max_steps, "config": dict(record.config)})
    return TrialFacts(record.trial_id, params=params, tags={**(run_tags or {}), "budgetft.method": record.method})


def trial_outcome(record: TrialRecord) -> tuple[dict[str, float], dict[str, str]]:
    """A settled trial's final numbers (its best evaluation, steps, cost) and words (status,
    why it stopped or failed)."""
    numbers: dict[str, float] = {"steps": float(record.steps), "examples": float(record.examples)}
    best = max(record.evals, key=lambda e: e.get("accuracy", -1.0), default=None)
    if best is not None:
        for key in ("accuracy", "balanced_accuracy", "macro_f1"):
            if isinstance(best.get(key), (int, float)):
                numbers[f"best/{key}"] = float(best[key])
        numbers["best/step"] = float(best.get("step") or 0)
    for key in ("trainable_params", "examples_per_s"):
        value = getattr(record, key, None)
        if isinstance(value, (int, float)):
            numbers[key] = float(value)
    try:
        numbers["cost_usd"] = float(record.cost_usd or 0)
    except ValueError:
        pass
    words = {"budgetft.status": record.status}
    if record.stop_reason:
        words["budgetft.stop_reason"] = record.stop_reason[:500]
    if record.error:
        words["budgetft.error"] = record.error[:500]
    return numbers, words


def _curves_closed(trial_folder: Path) -> bool:
    return bool((read_json(trial_folder / CURVES_NOTES, None) or {}).get("closed") is not None)
