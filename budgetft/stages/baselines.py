"""Stage 1, baselines: what every trial must beat, scored before a step is trained.

The majority class (always answer the training split's most frequent class) and the untuned
model's own label-word scores (zero-shot), on the same evaluation rows as every trial. The
zero-shot pass also times an evaluation of these rows, which the plan prices.
"""

from __future__ import annotations

from typing import Callable

from budgetft.rundir import RunDir


def run_baselines(task, run: RunDir | None = None, meter=None, note: Callable[[str], None] = lambda line: None, model=None) -> dict:
    """{"majority": metrics, "zero_shot": metrics + seconds}; read back from the run directory
    when it has them already (a resumed run pays for them once). `model`: the untuned model if
    the caller has it loaded (budgetft train reuses it for training)."""
    if run is not None and run.baselines_json.exists():
        return run.baselines()
    from budgetft.models.loading import load_model
    from budgetft.scoring.baselines import majority_baseline, zero_shot_baseline

    if meter is not None:
        meter.set_stage("baselines")
    note(f"baselines: majority class and zero-shot on {len(task.eval)} evaluation rows")
    model = model if model is not None else load_model(task.model)
    record = {"majority": majority_baseline(task), "zero_shot": zero_shot_baseline(model, task, task.job.eval.batch_size)}
    if run is not None:
        run.write_baselines(record)
    return record
