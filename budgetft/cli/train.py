"""`budgetft train`: one trial of one method, with both baselines on the same rows."""

from __future__ import annotations

import json
import sys
import time
from typing import Optional

import typer

from budgetft.cli.common import JOB_ARG, SET_OPT, cli_errors, stderr_console, stdout_console, track_choices
from budgetft.quiet import quiet_libraries

# Imported inside functions: budgetft's domain code: `budgetft --help` loads none of it (start-up
# time).


def train(
    job: Optional[str] = JOB_ARG,
    method: str = typer.Option("lora", "--method", "-m", help="Method to train (see the registry: lora, prompt_tuning, p_tuning, prefix_tuning, ia3, bitfit, full)."),
    set_: list[str] = SET_OPT,
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Optimiser steps (default: the job's train.max_steps)."),
    eval_limit: Optional[int] = typer.Option(None, "--eval-limit", min=1, help="Evaluation rows, sampled with the job's seed (default: the job's eval.limit)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout (progress goes to stderr)."),
    track: list[str] = typer.Option(
        [], "--track", metavar="TRACKER",
        help="Record the trial in mlflow[=URI], wandb[=PROJECT] or tensorboard[=DIR] (repeatable; MLflow and W&B need the [track] extra), checked before training.",
    ),
) -> None:
    """Fine-tune one method configuration and score it against the majority and zero-shot baselines."""
    from budgetft.cli.train_view import TrainProgress, result_table
    from budgetft.methods import check_supports, get as get_method
    from budgetft.search_space import parse_space, point
    from budgetft.spec import load_job

    err = stderr_console()
    out = stdout_console()
    with cli_errors(err):
        overrides = list(set_)
        if steps is not None:
            overrides.append(f"train.max_steps={steps}")
        if eval_limit is not None:
            overrides.append(f"eval.limit={eval_limit}")
        spec = load_job(job, overrides)
        chosen = get_method(method)
        config = point(parse_space(spec.space_for(chosen.name)), chosen.defaults)
        quiet_libraries()
        from budgetft.task import prepare_task

        with err.status("checking and tokenizing data…"):
            task = prepare_task(spec)
        check_supports(chosen.name, task.model.architecture)
    trackers = track_choices(track, "train", err)

    from budgetft.models.loading import load_model
    from budgetft.stages.baselines import run_baselines
    from budgetft.train.trial import TrialSettings, run_trial

    settings = TrialSettings.from_job(task, chosen.name, config)
    tokens_per_step = settings.batch_size * task.stats["mean_prompt_tokens"]
    err.print(
        f"[bold]{spec.name}[/]: {task.model.describe()} on {task.data_origin} — "
        f"{task.stats['train_rows']:,} train rows ({task.stats['train_truncated']:,} truncated), "
        f"{task.stats['eval_rows']:,} eval rows; {settings.steps} steps × {settings.batch_size} rows "
        f"≈ {tokens_per_step:,.0f} prompt tokens/step"
    )
    t_start = time.perf_counter()
    with err.status("loading model…"):
        model = load_model(task.model)
    with err.status(f"scoring the untuned model on {len(task.eval)} rows (zero-shot baseline)…"):
        baselines = run_baselines(task, model=model)  # the same stage as a run's, on the same rows
    majority, zero_shot = baselines["majority"], baselines["zero_shot"]
    err.print(f"method {chosen.name}: {json.dumps({k: v for k, v in config.items()})}")
    tracking = _start_tracking(trackers, spec.name, chosen.name, config)
    with TrainProgress(err, settings.steps) as progress:
        on_step, on_eval = progress.step, progress.evaluated
        if tracking is not None:
            on_step, on_eval = _also(progress.step, tracking.step), _also(progress.evaluated, tracking.evaluated)
        try:
            result, _ = run_trial(task, settings, model=model, on_step=on_step, on_eval=on_eval)
        except BaseException:
            if tracking is not None:
                tracking.finish(None, "interrupted" if not isinstance(sys.exc_info()[1], Exception) else "failed")
            raise
    wall = time.perf_counter() - t_start

    record = {
        "job": spec.name,
        "model": task.model.describe(),
        "data": task.data_origin,
        "method": result.method,
        "config": result.config,
        "steps": result.steps,
        "examples": result.examples,
        "trainable_params": result.trainable_params,
        "total_params": result.total_params,
        "examples_per_s": result.examples_per_s,
        "padded_share": result.padded_share,
        "train_seconds": result.train_seconds,
        "eval_seconds": result.eval_seconds,
        "wall_seconds": wall,
        "class_bias": None if result.class_bias is None else dict(zip(task.class_names, result.class_bias)),
        "class_bias_seconds": result.class_bias_seconds,
        "data_stats": task.stats,
        "baselines": {"majority": _public(majority), "zero_shot": _public(zero_shot)},
        "evals": [_public(e) for e in result.evals],
        "final": _public(result.final),
    }
    if tracking is not None:
        lost = tracking.finish(record)
        where = f" (TensorBoard: {tracking.events_dir})" if tracking.events_dir else ""
        err.print(f"tracked as {tracking.name}{where}" + (f"; lost: {lost}" if lost else ""), markup=False)
    if as_json:
        print(json.dumps(record, indent=2))
    else:
        out.print(result_table(record, task.class_names))


def _start_tracking(choices: list, job: str, method: str, config: dict):
    if not choices:
        return None
    from budgetft.telemetry.device import device_name
    from budgetft.track.train_tracking import TrainTracking

    return TrainTracking(choices, job, method, config, device_name()).start()


def _also(first, second):
    """A callback that calls `first`, then `second` (which only queues: budgetft.track)."""

    def both(*args):
        answer = first(*args)
        second(*args)
        return answer

    return both


def _public(metrics: dict) -> dict:
    """Metrics without the per-row correctness vector (kept for significance tests in runs)."""
    return {k: v for k, v in metrics.items() if k != "correct"}
