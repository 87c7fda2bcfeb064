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
from budgetft.files import read_json, write_json
from budgetft.planner.inputs import ZERO_SHOT_LOAD_S
from budgetft.rundir import RunDir, utc_now
from budgetft.scoring.baselines import zero_shot_baseline
from budgetft.scoring.rows import evaluate
from budgetft.stages.baselines import task_on
from budgetft.telemetry.cpu_share import use_free_cores
from budgetft.train.persist import load_trained

# Imported inside functions: torch: importing this module must stay cheap (start-up time).


# Its scoring of the winner, kept while the test runs: a run killed during the test reuses it on
# resume when it is for the same winner and the same rows (issue 27, point 4).
PARTIAL_FILE = "test.partial.json"
MISSING = ("the held-out test is missing: {why}; the recommendation rests on the selection rows only, which chose it, "
           "so it is unproven")


def held_out_test(tasks: dict, run: RunDir, meter=None, note: Callable[[str], None] = lambda line: None, *,
                  money_left: Callable[[], float] | None = None) -> dict | None:
    """test.json, written once: None when the job holds no test rows. `tasks`: model name -> its
    task (the winner's model's is the one scored). A stage that resumes: the winner's scoring is
    kept in test.partial.json as soon as it is done, and a run killed before test.json is
    written scores the test on resume (the partial scoring reused for the same winner and rows).
    `money_left()`: machine seconds the cap still pays for beyond the report; a test it cannot
    pay for is not started, and test.json says the test is missing and why (a later resume with
    the money tries again)."""
    lead = next(iter(tasks.values()))
    if lead.test is None:
        return None
    if run.test_json.exists():
        done = run.test()
        if not done.get("missing"):
            return done
    winner = run.winner()
    baselines = run.baselines().get("test") or {}
    task = lead
    if winner is None:
        record = {"winner": None, "rows": len(task.test), "why": run.no_winner_reason() or "no trial kept weights", "at": utc_now()}
        run.write_test(record)
        return record
    task = tasks[winner.model or lead.job.model.name]
    partial_file = run.root / PARTIAL_FILE
    partial = read_json(partial_file, None) or {}
    reuse = partial.get("metrics") if (partial.get("winner") == winner.trial_id and partial.get("rows") == len(task.test)
                                       and partial.get("best_step") == winner.best_step) else None
    need = test_seconds(run, task, winner_scored=reuse is not None)
    if money_left is not None and need is not None and money_left() < need:
        why = f"what is left of the cap pays for {max(0.0, money_left()):.0f} s of the {need:.0f} s that scoring {winner.trial_id} and its untuned model on {len(task.test)} test rows takes"
        record = {"winner": winner.trial_id, "rows": len(task.test), "missing": MISSING.format(why=why), "metrics": None, "at": utc_now()}
        run.write_test(record)
        note(f"[yellow]{record['missing']}[/]")
        return record
    if meter is not None:
        meter.set_stage("evaluation")
    again = " (the winner's scoring kept from the interrupted test)" if reuse else ""
    note(f"held-out test: {winner.trial_id} and its untuned model on {len(task.test)} test rows that no decision saw{again}")

    use_free_cores()
    metrics = reuse
    if metrics is None:  # the test has begun: a resumed run comes straight back here (test_begun)
        write_json(partial_file, {"winner": winner.trial_id, "rows": len(task.test), "best_step": winner.best_step, "at": utc_now()})
        metrics = score_trial_on(task, run, winner)
        write_json(partial_file, {"winner": winner.trial_id, "rows": len(task.test), "best_step": winner.best_step, "metrics": metrics, "at": utc_now()})
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
    if reuse:
        record["reused"] = "the winner's scoring from the interrupted test (test.partial.json)"
    run.write_test(record)
    partial_file.unlink(missing_ok=True)
    return record


def test_begun(run: RunDir) -> bool:
    """Whether the run's held-out test had begun (training was over) and is not done yet."""
    return (run.root / PARTIAL_FILE).is_file() and not (run.test_json.exists() and not run.test().get("missing"))


def test_seconds(run: RunDir, task, winner_scored: bool = False) -> float | None:
    """Seconds the held-out test takes at this run's calibrated scoring rate: the winner and its
    untuned model on the test rows, each model loaded (the untuned one only, once the winner's
    scoring is kept); None before calibration."""
    rates = (run.calibration() or {}).get("eval_rows_per_s_by_model") or {}
    rate = rates.get(task.job.model.name) or (run.calibration() or {}).get("eval_rows_per_s")
    if not rate:
        return None
    passes = 1 if winner_scored else 2
    return passes * (len(task.test) / float(rate) + ZERO_SHOT_LOAD_S)


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
