"""The Ray Tune trial function: one trial of one method configuration, in a worker process.

It keeps `trials/<id>/trial.json` current (the driver and reports read it while the run goes
on), saves the weights whenever the accuracy improves, and checks before every step that the
step is paid for (meter.json): a worker never trains on money the run does not have.

ASHA needs one clock for all trials, but each method has its own rung steps (g, gη, gη²): the
trial reports `rung_time` = step / g, so every method's rungs fall at 1, η, η² on one scale.
"""

from __future__ import annotations

import os
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from budgetft.rundir import RunDir, read_json, write_json
from budgetft.runner.machine_meter import METER_FILE

PHASE_FILE = "phase"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def trial_cost(run_dir: Path, trial_id: str) -> str:
    from budgetft.money.ledger import read_charges

    path = Path(run_dir) / "ledger.jsonl"
    if not path.exists():
        return "0"
    return str(sum((c.amount for c in read_charges(path) if c.trial == trial_id), start=__import__("decimal").Decimal(0)))


def train_trial(config: dict, ctx: dict) -> None:
    """config["trial"]: {trial_id, method, config, max_steps, grace, eval_steps}."""
    spec = config["trial"]
    run = RunDir(ctx["run_dir"])
    folder = run.trial_dir(spec["trial_id"])
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "trial_id": spec["trial_id"],
        "method": spec["method"],
        "config": spec["config"],
        "status": "running",
        "max_steps": spec["max_steps"],
        "steps": 0,
        "examples": 0,
        "started": utc_now(),
        "ended": None,
        "error": None,
        "evals": [],
        "best_step": None,
        "pid": os.getpid(),  # for the telemetry sampler's per-trial memory
    }
    write_json(folder / "trial.json", record)
    (folder / PHASE_FILE).write_text("starting")  # imports, data, model: overhead, not training
    t_start = time.perf_counter()
    try:
        _train(spec, ctx, run, folder, record, t_start)
    except BaseException as exc:  # ASHA's stop arrives here as well as real failures
        if isinstance(exc, Exception) and not _is_tune_stop(exc):
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=8))
        elif _is_tune_stop(exc):  # ASHA at a rung or its last step, or the cap's stop-all
            meter = read_json(run.root / METER_FILE, {}) or {}
            settle_status(record, budget_stopped=bool(meter.get("stop")))
        record["ended"] = utc_now()
        record["cost_usd"] = trial_cost(run.root, spec["trial_id"])
        write_json(folder / "trial.json", record)
        raise
    finally:
        (folder / PHASE_FILE).unlink(missing_ok=True)


def settle_status(record: dict, *, budget_stopped: bool, interrupted: bool = False, error: str | None = None) -> None:
    """Give a trial that is still "running" its final status. The worker (when Tune stops it)
    and the driver's tracker (when the worker could not) both call this: whichever writes
    last writes the same answer."""
    if record.get("status") != "running":
        return
    if error:
        record["status"], record["error"] = "failed", record.get("error") or error
    elif record.get("steps", 0) >= record.get("max_steps", 0):
        record["status"] = "finished"  # every planned step done, whatever stopped it after
    elif budget_stopped:
        record["status"] = "stopped_by_cap"
    elif interrupted:
        record["status"] = "interrupted"
    else:
        record["status"] = "stopped_early"  # ASHA cut it at a rung
    record["ended"] = record.get("ended") or utc_now()


def _is_tune_stop(exc: BaseException) -> bool:
    return "StopIteration" in type(exc).__name__ or "Stop" in type(exc).__name__


def _train(spec: dict, ctx: dict, run: RunDir, folder: Path, record: dict, t_start: float) -> None:
    import torch
    from ray import tune

    from budgetft.cli.common import quiet_libraries
    from budgetft.runner.machine_meter import worker_may_continue
    from budgetft.spec import validate_job
    from budgetft.task import prepare_task
    from budgetft.class_bias import class_bias_of
    from budgetft.trial import TrialSettings, count_params, run_trial

    quiet_libraries()
    torch.set_num_threads(max(1, int(ctx.get("threads") or os.cpu_count() or 1)))
    task = prepare_task(validate_job(ctx["job"]))
    settings = TrialSettings.from_job(task, spec["method"], spec["config"], steps=spec["max_steps"])
    settings.eval_steps = list(spec["eval_steps"])
    last_step_s = [0.0]
    best = [-1.0]

    def on_step(log) -> None:
        if log.step == 1:  # what a trial costs before it learns anything, for future plans
            record["startup_s"] = round(time.perf_counter() - t_start - log.seconds, 2)
            (folder / PHASE_FILE).write_text("training")
        last_step_s[0] = log.seconds
        record["steps"], record["examples"] = log.step, log.step * settings.batch_size
        record["examples_per_s"] = log.examples_per_s

    def may_continue() -> bool:
        ok, why, by_meter = worker_may_continue(run.root, next_seconds=last_step_s[0], session=ctx.get("session"))
        if not ok:
            record["stop_reason"], record["stopped_by_meter"] = why, by_meter
        return ok

    def on_phase(phase: str) -> None:
        (folder / PHASE_FILE).write_text(phase)

    def on_eval(step: int, metrics: dict) -> None:
        metrics = dict(metrics, elapsed_s=time.perf_counter() - t_start, cost_usd=trial_cost(run.root, spec["trial_id"]))
        record["evals"].append(metrics)
        if metrics["accuracy"] > best[0]:
            best[0] = metrics["accuracy"]
            record["best_step"] = step
            _save_weights(model_ref[0], spec, folder / "adapter")
        write_json(folder / "trial.json", record)
        tune.report(
            {
                "rung_time": step / spec["grace"],
                "step": step,
                "accuracy": metrics["accuracy"],
                "balanced_accuracy": metrics["balanced_accuracy"],
                "eval_loss": metrics["eval_loss"],
                "trial_id": spec["trial_id"],
            }
        )

    model_ref: list = [None]

    def on_model(model) -> None:
        # Recorded now: a trial that Tune stops never returns from run_trial.
        model_ref[0] = model
        record["trainable_params"], record["total_params"] = count_params(model)
        record["class_bias"] = class_bias_of(model)  # as fitted, before step 1
    from budgetft.models.loading import load_model

    result, _ = run_trial(
        task,
        settings,
        model=load_model(task.model),
        on_step=on_step,
        on_eval=on_eval,
        may_continue=may_continue,
        on_phase=on_phase,
        on_model=on_model,
    )
    record.update(
        trainable_params=result.trainable_params,
        total_params=result.total_params,
        examples_per_s=result.examples_per_s,
        padded_share=result.padded_share,
        train_seconds=result.train_seconds,
        eval_seconds=result.eval_seconds,
        ended=utc_now(),
        cost_usd=trial_cost(run.root, spec["trial_id"]),
    )
    if record.get("stop_reason"):
        # The meter said stop (money) -> cap; nobody paying (the driver died) -> interrupted.
        record["status"] = "stopped_by_cap" if record.get("stopped_by_meter") else "interrupted"
    elif result.steps >= spec["max_steps"]:
        record["status"] = "finished"
    write_json(folder / "trial.json", record)


def _save_weights(model, spec: dict, path: Path) -> None:
    """The trial's best weights: the adapter (peft) or the trainable tensors (ours)."""
    if model is None:
        return
    try:
        from budgetft.methods.persist import save_trained
    except ImportError:  # pragma: no cover - persistence module not installed
        return
    save_trained(model, spec["method"], spec["config"], path)
