"""Stage 5, test: the winner on the held-out test rows, once, against both baselines there.

The winner is chosen on the selection rows (RunDir.winner); the test rows were seen by no
decision: not the rung decisions, not the choice of the winner, not the choice of its kept
weights. Its accuracy there, with the Wilson interval, and McNemar's exact test against always
answering the majority class and against the untuned model on the same rows, are the report's
headline (test.json).
"""

from __future__ import annotations

import time
from typing import Callable

from budgetft.methods.context import context_for
from budgetft import methods
from budgetft.models.loading import load_model
from budgetft.models.placement import placement_for
from budgetft.report.stats import mcnemar_exact
from budgetft.rundir import RunDir, utc_now
from budgetft.scoring.baselines import zero_shot_baseline
from budgetft.scoring.rows import evaluate
from budgetft.stages.baselines import task_on
from budgetft.telemetry.cpu_share import use_free_cores
from budgetft.train.persist import load_trained

# Imported inside functions: torch: importing this module must stay cheap (start-up time).


def held_out_test(tasks: dict, run: RunDir, meter=None, note: Callable[[str], None] = lambda line: None) -> dict | None:
    """test.json, written once: None when the job holds no test rows. `tasks`: model name -> its
    task (the winner's model's is the one scored)."""
    lead = next(iter(tasks.values()))
    if lead.test is None:
        return None
    if run.test_json.exists():
        return run.test()
    winner = run.winner()
    baselines = run.baselines().get("test") or {}
    task = lead
    if winner is None:
        record = {"winner": None, "rows": len(task.test), "why": "no trial kept weights (none trained far enough to save them)", "at": utc_now()}
        run.write_test(record)
        return record
    task = tasks[winner.model or lead.job.model.name]
    if meter is not None:
        meter.set_stage("evaluation")
    note(f"held-out test: {winner.trial_id} and its untuned model on {len(task.test)} test rows that no decision saw")

    use_free_cores()
    metrics = score_trial_on(task, run, winner)
    zero_shot = score_untuned_on(task)

    record = {
        "winner": winner.trial_id,
        "model": task.job.model.name,
        "method": winner.method,
        "config": winner.config,
        "chosen_by": "selection accuracy" if winner.evals else "the only trial that kept weights",
        "selection_accuracy": max((e["accuracy"] for e in winner.evals), default=None),
        "rows": len(task.test),
        "rows_reason": run.run().get("test_rows_reason"),
        "metrics": metrics,
        "majority": baselines.get("majority"),
        "zero_shot": zero_shot,
        "at": utc_now(),
    }
    for name in ("majority", "zero_shot"):
        base = record[name]
        if base and base.get("correct"):
            test = mcnemar_exact(metrics["correct"], base["correct"])
            record[f"vs_{name}"] = {"test": test.test, "p_value": test.p_value, "better": test.better, "worse": test.worse, "verdict": test.verdict,
                                    "lift_points": round(100 * (metrics["accuracy"] - base["accuracy"]), 2)}
    run.write_test(record)
    return record


def score_untuned_on(task) -> dict:
    """The winner's model untuned (its zero-shot baseline), scored on the same test rows."""
    import torch

    torch.manual_seed(task.job.seed)  # an encoder's new head is drawn at random: the same head on every resume
    return zero_shot_baseline(load_model(task.model), task_on(task, task.test, task.test_rows), task.job.eval.batch_size)


def score_trial_on(task, run: RunDir, trial) -> dict:
    """The trial's kept weights (and class bias), scored on the task's test rows."""
    import torch

    torch.manual_seed(task.job.seed)  # what a method draws at random and does not save, drawn alike
    # On the trials' device and dtype (a QLoRA winner on its 4-bit base): budgetft.models.placement.
    placement = placement_for(quantization=methods.get(trial.method).quantization)
    model = load_trained(load_model(task.model, placement), trial.method, trial.config, run.weights_dir(trial.trial_id), context_for(task.job, task.tokenizer))
    t0 = time.perf_counter()
    metrics = evaluate(model, task_on(task, task.test, task.test_rows), task.job.eval.batch_size)
    metrics["seconds"] = time.perf_counter() - t0
    return metrics
