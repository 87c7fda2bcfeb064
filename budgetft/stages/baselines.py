"""Stage 1, baselines: what every trial must beat.

The majority class (always answer the training split's most frequent class), scored before a
step is trained: on the selection rows (trials are ranked there) and on the held-out test rows.
The untuned model's own scores (zero-shot): on the evaluation rows when the job holds no test
rows; with test rows, the held-out test scores it on them for the winner's model (a job may name
several models, and only the winner's zero-shot is the headline's: budgetft.stages.test).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from budgetft.models.loading import load_model
from budgetft.rundir import RunDir
from budgetft.scoring.baselines import majority_baseline, zero_shot_baseline


def run_baselines(task, run: RunDir | None = None, meter=None, note: Callable[[str], None] = lambda line: None, model=None) -> dict:
    """{"majority", "zero_shot" (without test rows), "test": {"rows", "majority"}}; read back from
    the run directory when it has them already (a resumed run pays for them once). `model`: the
    untuned model if the caller has it loaded (budgetft train trains it next)."""
    if run is not None and run.baselines_json.exists():
        return run.baselines()

    if meter is not None:
        meter.set_stage("baselines")
    record = {"majority": majority_baseline(task)}
    if task.test is not None:
        note(f"baselines: the majority class on {len(task.eval)} selection rows and {len(task.test)} held-out test rows "
             "(the untuned model is scored on the test rows with the winner)")
        record["test"] = {"rows": len(task.test), "majority": majority_baseline(task_on(task, task.test, task.test_rows))}
    else:
        note(f"baselines: majority class and zero-shot on {len(task.eval)} evaluation rows")
        model = model if model is not None else load_model(task.model)
        record["zero_shot"] = zero_shot_baseline(model, task, task.job.eval.batch_size)
    if run is not None:
        run.write_baselines(record)
    return record


def task_on(task, rows, indices: list[int]):
    """The task with `rows` (e.g. the test rows) in place of its evaluation rows, for the scoring
    functions that read task.eval."""
    return replace(task, eval=rows, eval_rows=list(indices))


def zero_shot_seconds_per_row(baselines: dict) -> float | None:
    """Seconds the zero-shot pass took per row: the scoring rate the plan prices evaluations at."""
    zero = (baselines.get("test") or {}).get("zero_shot") or baselines.get("zero_shot") or {}
    return zero["seconds"] / zero["n"] if zero.get("seconds") and zero.get("n") else None
