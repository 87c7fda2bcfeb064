"""The function Ray Tune runs for one trial: it sets up the trial's worker (budgetft.tune.worker)
where the trial runs, trains, and records how the trial ended, however it ended.

On a cluster (ctx["home"]: the run's actor, budgetft.tune.home) the trial works in a scratch run
directory on its node: the record of a trial that goes on, and its checkpoint, are fetched from
the run first, and its curves are sent home as it ends.
"""

from __future__ import annotations

import os
import shutil
import traceback
from pathlib import Path

from budgetft.money.machine_meter import stopped_by_cap
from budgetft.rundir import PHASE_FILE, RunDir, TrialRecord, utc_now
from budgetft.track.tensorboard import TrialCurves, trial_events_dir
from budgetft.train import checkpoint as trial_checkpoint
from budgetft.tune import chaos
from budgetft.tune.home import home_for
from budgetft.tune.trial_files import continued_record, error_in_words
from budgetft.tune.worker import Worker, _train


def train_trial(config: dict, ctx: dict) -> None:
    """config["trial"]: {trial_id, method, config, max_steps, grace, eval_steps, step_s, eval_s}."""
    spec = dict(config["trial"])
    home = home_for(ctx, RunDir(ctx["run_dir"]))
    run = home.run  # the run directory itself, or this node's scratch copy of its layout
    record = TrialRecord(
        trial_id=spec["trial_id"], method=spec["method"], config=spec["config"], max_steps=spec["max_steps"], model=spec.get("model"),
        started=utc_now(), pid=os.getpid(),  # the pid, for the telemetry sampler's per-trial memory
        node=getattr(home, "node", None),
    )
    if spec.get("resume_from"):  # an interrupted trial goes on: its record, evaluations and kept weights stay
        record = continued_record(home, spec, record)
        if home.cluster:  # its checkpoint, from the run's into this node's scratch
            relative = str(Path(spec["resume_from"]).relative_to(Path(ctx["run_dir"]).resolve()))
            local = home.fetch(relative)
            spec["resume_from"] = str(local) if local is not None else None
    worker = Worker(spec, ctx, run, record, home=home)
    worker.best = max((e["accuracy"] for e in record.evals), default=-1.0)
    chaos.inject(worker, chaos.parse(ctx.get("chaos")))  # faults on purpose, only when a chaos run asks
    worker.folder.mkdir(parents=True, exist_ok=True)
    worker.save()
    worker.announce("starting", 0.0)  # imports, data, model: overhead, not training
    worker.curves = TrialCurves.for_trial(run.root, spec["trial_id"], worker.folder, run.ledger, {"method": spec["method"], **spec["config"]})
    try:
        _train(worker)
    except BaseException as exc:  # ASHA's stop arrives here as well as real failures
        if _is_tune_stop(exc):  # ASHA at a rung or its last step, or the meter's stop-all (the cap, a signal, a full disk)
            meter = worker.meter_state()
            if meter.get("stop") and not record.evals and record.best_step is None and record.steps > 0:
                _keep_last_weights(worker)  # stopped before any evaluation: keep what it trained
            record.settle(budget_stopped=stopped_by_cap(meter), interrupted=bool(meter.get("interrupted")))
        elif isinstance(exc, Exception):
            record.traceback = traceback.format_exc(limit=8)
            record.settle(budget_stopped=False, error=error_in_words(exc))
        else:  # KeyboardInterrupt: the worker is being shut down
            record.stop_reason = record.stop_reason or f"the worker was shut down ({type(exc).__name__})"
            record.settle(budget_stopped=False, interrupted=True)
        record.ended = record.ended or utc_now()
        record.cost_usd = home.cost(spec["trial_id"])
        worker.save()
        raise
    finally:
        worker.curves.close()  # the last points flushed, at most a few seconds
        (worker.folder / PHASE_FILE).unlink(missing_ok=True)
        if home.cluster:
            _send_home_last(worker)
        if record.status not in ("running", "interrupted"):  # settled for good: nothing will go on from its checkpoint
            shutil.rmtree(trial_checkpoint.folder_of(worker.folder), ignore_errors=True)


def _send_home_last(worker: Worker) -> None:
    """A cluster's trial as it ends: its curves home, its phase gone, its scratch's files freed
    (the worker process may run the next trial). Best effort: the record is home already."""
    home = worker.home
    try:
        home.phase(worker.trial_id, None)
        home.sent(trial_events_dir(worker.run.root, worker.trial_id), "the trial's curves")
    except Exception:  # noqa: BLE001 - losing the curves must not hide how the trial ended
        pass
    if worker.record.status not in ("running", "interrupted"):
        shutil.rmtree(worker.folder, ignore_errors=True)


def _is_tune_stop(exc: BaseException) -> bool:
    """Tune ends a stopped trial's function (ASHA at a rung, the cap's stop-all) by raising
    SystemExit in it at its next report (ray.train's session); older releases raised their own
    stop exceptions."""
    return isinstance(exc, SystemExit) or "StopIteration" in type(exc).__name__ or "Stop" in type(exc).__name__


def _keep_last_weights(worker: Worker) -> None:
    """Best effort, on the way out: the trained weights of a trial the cap stopped before its
    first evaluation, for the held-out test to score (run with the reserve's time)."""
    try:
        worker.keep_weights()
        worker.record.best_step = worker.record.steps
    except Exception:  # noqa: BLE001 - a failed save must not hide why the trial stopped
        pass
