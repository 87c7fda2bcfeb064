"""Stage 2, calibrate: a few real steps of every method on this machine, before planning.

Each method's seconds per step, examples/s and peak memory (budgetft.tune.measure); on a GPU,
whether several trials sharing it train more examples per second than one (budgetft.tune.
packing_probe); and the evaluation rate, from the zero-shot baseline's timing. The rates are
stored per machine (budgetft.planner.rates) for plans made without measuring.
"""

from __future__ import annotations

import time
from typing import Callable

from budgetft.planner.costs import CALIBRATION_STEPS
from budgetft.planner.rates import store_rates
from budgetft.rundir import RunDir

PROBE_ROWS = 32  # rows timed for the evaluation rate when no baseline timed a full evaluation


def calibrate(
    task, run: RunDir | None = None, meter=None, note: Callable[[str], None] = lambda line: None,
    steps: int = CALIBRATION_STEPS, eval_rows_per_s: float | None = None,
    samples_during: Callable[[float, float], list[dict]] | None = None, watch: Callable[[dict], None] | None = None,
) -> dict:
    """{"methods": per method's measurement, "eval_rows_per_s", "device", "packing"}; read back
    from the run directory when it has it. Without a run (budgetft plan) the evaluation rate
    is timed on PROBE_ROWS rows unless given."""
    if run is not None and run.calibration_json.exists():
        return run.calibration()
    from budgetft.telemetry.device import device_name
    from budgetft.tune.measure import calibrate_method

    if meter is not None:
        meter.set_stage("calibration")
    results: dict[str, dict] = {}
    for name in task.job.methods:
        note(f"calibration: {name}, {steps + 1} steps")
        started = time.time()
        results[name] = calibrate_method(task, name, steps)
        results[name]["window"] = [started, time.time()]  # unix times, for its telemetry
    packing = calibrate_packing(task, results, steps, samples_during, watch, note) if samples_during else None
    if eval_rows_per_s is None:
        eval_rows_per_s = _eval_rate(task, run)
    record = {"methods": results, "eval_rows_per_s": eval_rows_per_s, "device": device_name(), "packing": packing}
    if run is not None:
        run.write_calibration(record)
    store_rates(task.job, device_name(), results, eval_rows_per_s)
    return record


def _eval_rate(task, run: RunDir | None) -> float:
    """Rows scored per second: from the zero-shot baseline's full evaluation when the run has
    one, else timed on the first PROBE_ROWS evaluation rows."""
    baselines = run.baselines() if run is not None else {}
    seconds = (baselines.get("zero_shot") or {}).get("seconds")
    if seconds:
        return len(task.eval) / seconds
    import copy

    from budgetft.data.encode import Encoded
    from budgetft.models.loading import load_model
    from budgetft.scoring.rows import evaluate

    small = copy.copy(task)
    n = min(PROBE_ROWS, len(task.eval))
    small.eval = Encoded(task.eval.prompts[:n], task.eval.labels[:n], 0)
    model = load_model(task.model)
    t0 = time.perf_counter()
    evaluate(model, small, task.job.eval.batch_size)
    return n / (time.perf_counter() - t0)


def calibrate_packing(task, results: dict[str, dict], steps: int, samples_during, watch, note) -> dict | None:
    """On a GPU: how many trials share it, from measured levels (budgetft.tune.packing_probe);
    None on a CPU, where trials run one at a time."""
    from budgetft.telemetry.device import device_type

    if device_type() != "cuda":
        return None
    import torch

    from budgetft.tune.packing_probe import calibrate_packing as decide, measure_level

    torch.cuda.empty_cache()  # the driver's cached blocks would count against packed levels
    gpu_mem_mb = torch.cuda.get_device_properties(0).total_memory / 2**20
    job = task.job.model_dump(mode="json")
    packing = decide(
        results, gpu_mem_mb, samples_during,
        lambda name, k: measure_level(job, name, k, steps, samples_during, watch or (lambda pids: None)),
        note=note,
    )
    note(f"packing: {packing['reason']}")
    return packing
