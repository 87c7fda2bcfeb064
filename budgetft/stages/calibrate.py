"""Stage 2, calibrate: a few real steps of every option the plan may use, on this machine.

Per option ((model, method) pair with a learning curve, or every option when none has one): its
seconds per step, examples/s and peak memory (budgetft.train.measure); per model, its scoring
rate; on a GPU, whether several trials sharing it train more examples per second than one
(budgetft.train.packing_probe). The rates are stored per machine (budgetft.planner.rates) for
plans made without measuring.
"""

from __future__ import annotations

import copy
import os
import time
from typing import Callable

from budgetft.data.encode import Encoded
from budgetft.models import cache
from budgetft.models.loading import load_model
from budgetft.planner.costs import CALIBRATION_STEPS
from budgetft.planner.checkpoints import write_speed
from budgetft.planner.inputs import considered
from budgetft.planner.rates import store_rates
from budgetft.rundir import RunDir
from budgetft.scoring.rows import evaluate
from budgetft.stages import device_memory
from budgetft.stages.baselines import zero_shot_seconds_per_row
from budgetft.telemetry.cpu_share import use_free_cores
from budgetft.telemetry.device import device_name, device_type
from budgetft.train.measure import calibrate_method
from budgetft.train.memory import OutOfMemoryAtLoad, free_cached, is_out_of_memory, shrinking
from budgetft.train.packing_probe import calibrate_packing as decide, measure_level

# Imported inside functions: torch: importing this module must stay cheap (start-up time).

PROBE_ROWS = 32  # rows timed for a model's scoring rate when no baseline timed a full pass


def calibrate(
    tasks: dict, job, run: RunDir | None = None, meter=None, note: Callable[[str], None] = lambda line: None,
    steps: int = CALIBRATION_STEPS, samples_during: Callable[[float, float], list[dict]] | None = None,
    watch: Callable[[dict], None] | None = None,
) -> dict:
    """{"methods": option key -> measurement (with its model and method), "eval_rows_per_s" (the
    job's own model, or the first measured), "eval_rows_per_s_by_model", "device", "packing"};
    read back from the run directory when it has it. `tasks`: model name -> prepared task."""
    if run is not None and run.calibration_json.exists():
        return run.calibration()

    if meter is not None:
        meter.set_stage("calibration")
    threads = use_free_cores()  # measured at the threads a trial would use now (budgetft.telemetry.cpu_share)

    # On a CPU a step's speed follows the cores it computes on: the stored rates are those of the
    # whole machine, so that a check made beside a neighbour does not count the neighbour twice.
    share = threads / (os.cpu_count() or 1) if device_type() == "cpu" else 1.0
    options, _ = considered(job)
    results: dict[str, dict] = {}
    # On a GPU each option runs as the memory plan fits it there; one that fits no way is dropped
    # before it is paid for (budgetft.stages.device_memory).
    planned, dropped = device_memory.layouts(job, options)
    dropped = {k: f"does not fit {device_name()}: {why}" for k, why in dropped.items()}
    for key, why in dropped.items():
        note(f"[yellow]calibration: {key} dropped: {why}[/]")
    for c in options:
        if c.key in dropped:
            continue
        if c.key in planned:
            note(device_memory.describe(c.key, planned[c.key]))
        note(f"calibration: {c.key}, {steps + 1} steps")
        started = time.time()
        try:
            results[c.key] = {**calibrate_method(tasks[c.model], c.method, steps, planned.get(c.key)), "model": c.model, "window": [started, time.time()]}
            device_memory.correct(job, c, results[c.key], note)
        except BaseException as exc:
            if not is_out_of_memory(exc) and not isinstance(exc, OutOfMemoryAtLoad):
                raise
            # The option is dropped, never the run: the plan goes on with the others.
            dropped[c.key] = f"out of memory in calibration on {device_name()} ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
            note(f"[yellow]calibration: {c.key} dropped: {dropped[c.key]}[/]")
            free_cached()
    if not results:
        raise RuntimeError(f"no option fits this machine's memory: {'; '.join(f'{k}: {v}' for k, v in dropped.items())}; "
                           "use the qlora method, a smaller micro-batch (train.micro_batch_size) or a GPU with more memory")
    options = [c for c in options if c.key in results]
    eval_rates = {m: eval_rate(tasks[m], run) for m in dict.fromkeys(c.model for c in options)}
    # What reading each model took here (this process read it once: budgetft.models.cache): the plan
    # prices each trial worker's first load with it.
    load_seconds = {m: cache.held_seconds(tasks[m].model.location) for m in eval_rates}
    lead = job.model.name if job.model.name in eval_rates else next(iter(eval_rates))
    packing = calibrate_packing(tasks[options[0].model], results, steps, samples_during, watch, note) if samples_during else None
    record = {"methods": results, "eval_rows_per_s": eval_rates[lead], "eval_rows_per_s_by_model": eval_rates,
              "device": device_name(), "packing": packing, "dropped": dropped,
              "load_seconds_by_model": {m: round(s, 2) for m, s in load_seconds.items() if s is not None}}
    if run is not None:  # the disk the trials' checkpoints go to, timed (budgetft.planner.checkpoints)
        record["write_bytes_per_s"] = round(write_speed(run.root), 0)
        run.write_calibration(record)
    for c in options:
        variant = tasks[c.model].job
        store_rates(variant, device_name(), {c.method: results[c.key]}, eval_rates[c.model], share=share)
    return record


def eval_rate(task, run: RunDir | None = None) -> float:
    """Rows a model scores per second: from a zero-shot pass over the evaluation rows when the run
    has one for this model, else timed on the first PROBE_ROWS evaluation rows."""
    baselines = run.baselines() if run is not None else {}
    per_row = zero_shot_seconds_per_row(baselines) if baselines.get("zero_shot") else None
    if per_row:
        return 1.0 / per_row

    small = copy.copy(task)
    n = min(PROBE_ROWS, len(task.eval))
    small.eval = Encoded(task.eval.prompts[:n], task.eval.labels[:n], 0)
    model = load_model(task.model)  # the trials' device and dtype (budgetft.models.placement)
    shrunk: list = []
    _, batch = shrinking(lambda b: evaluate(model, small, b), task.job.eval.batch_size, "evaluation batch", shrunk)  # warm-up, untimed
    t0 = time.perf_counter()
    evaluate(model, small, batch)
    return n / (time.perf_counter() - t0)


def calibrate_packing(task, results: dict[str, dict], steps: int, samples_during, watch, note) -> dict | None:
    """On a GPU: how many trials share it, from measured levels (budgetft.train.packing_probe);
    None on a CPU, where trials run one at a time."""
    if device_type() != "cuda":
        return None
    import torch

    torch.cuda.empty_cache()  # the driver's cached blocks would count against packed levels
    gpu_mem_mb = torch.cuda.get_device_properties(0).total_memory / 2**20
    job = task.job.model_dump(mode="json")
    packing = decide(
        results, gpu_mem_mb, samples_during,
        lambda name, k: measure_level(job, results[name].get("method", name), k, steps, samples_during, watch or (lambda pids: None),
                                      layout=(results[name].get("memory") or {}) or None),
        note=note,
    )
    note(f"packing: {packing['reason']}")
    return packing
