"""Measuring a method's training speed on this machine: a few real optimiser steps.

Step time depends on the batch's padded length, so the steps are converted to a rate per token
and scaled to the job's mean batch: seconds/step = mean tokens per step / tokens per second. The
first step is excluded (allocations, lazy initialisation), so each method runs `steps + 1` steps.
"""

from __future__ import annotations

import json
import resource
import time

from budgetft import methods
from budgetft.planner.rates import mean_step_tokens
from budgetft.search_space import parse_space, point
from budgetft.telemetry.device import reset_peak_memory, true_peak_bytes
from budgetft.telemetry.precision import pick_device
from budgetft.train.trial import TrialSettings, run_trial

# Imported inside functions: torch: importing this module must stay cheap (start-up time).


def peak_memory_mb(device) -> float:
    """The step's peak: on a GPU the true one (reserved memory at its highest plus the CUDA
    context: budgetft.telemetry.device.true_peak_bytes), on a CPU the process's resident peak."""
    if device.type == "cuda":
        return (true_peak_bytes(device.index or 0) or 0.0) / 2**20

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def calibrate_method(task, method_name: str, steps: int = 2, layout: dict | None = None) -> dict:
    """A few real steps of `method_name` (its default point in the job's space): seconds per step
    at the job's mean batch, examples/s, peak memory and trainable parameters. A phased method
    (MeZO, then the top k blocks) is measured phase by phase, and its step is the phases' steps
    weighted by their shares of the trial. `layout`: how the memory plan fits the option on this
    GPU (budgetft.planner.memory_plan.Fit.layout: micro-batch, checkpointing, the method it runs
    as); the result's "memory" says what it measured with it."""
    method = methods.get(method_name)
    config = point(parse_space(task.job.space_for(method.name)), method.defaults)
    if layout and layout.get("method") not in (None, method.name):  # a LoRA that fits only on a 4-bit base runs as QLoRA
        config = method.config(config)
        method = methods.get(layout["method"])
    if method.phases is None:
        return _measure(task, method.name, config, steps, layout)
    parts = method.phases(config)
    # Phases that run the same method alike are measured once (PET's: one LoRA per pattern).
    by_setting: dict[str, dict] = {}
    for p in parts:
        key = json.dumps([p.method, p.config], sort_keys=True, default=str)
        if key not in by_setting:
            by_setting[key] = _measure(task, p.method, dict(p.config), steps)
    measured = [by_setting[json.dumps([p.method, p.config], sort_keys=True, default=str)] for p in parts]
    weight = sum(p.share for p in parts) or 1.0
    s_per_step = sum(p.share / weight * m["seconds_per_step"] for p, m in zip(parts, measured))
    return {
        **measured[-1],
        "method": method.name,
        "config": config,
        "steps": sum(m["steps"] for m in by_setting.values()),
        "seconds_per_step": s_per_step,
        "examples_per_s": task.job.train.batch_size / s_per_step,
        "tokens_per_s": sum(p.share / weight * m["tokens_per_s"] for p, m in zip(parts, measured)),
        "peak_memory_mb": max(m["peak_memory_mb"] for m in measured),
        "trainable_params": max(m["trainable_params"] for m in measured),
        "wall_seconds": sum(m["wall_seconds"] for m in by_setting.values()),
        "phases": [{"method": p.method, "share": p.share, "seconds_per_step": m["seconds_per_step"]} for p, m in zip(parts, measured)],
    }


def _measure(task, method_name: str, config: dict, steps: int, layout: dict | None = None) -> dict:
    method = methods.get(method_name)
    settings = TrialSettings.from_job(task, method.name, config, steps=steps + 1)
    settings.eval_steps = []  # calibration measures training only
    settings.class_bias = "none"  # its forward passes are planned from the evaluation rate
    if layout:
        settings.micro_batch_size = int(layout.get("micro_batch") or 0) or settings.micro_batch_size
        settings.checkpointing = bool(layout.get("checkpointing", settings.checkpointing))
    device = pick_device()
    if device.type == "cuda":
        reset_peak_memory(device.index or 0)
    logs = []
    t0 = time.perf_counter()
    result, _ = run_trial(task, settings, on_step=logs.append)
    wall = time.perf_counter() - t0
    timed = logs[1:] or logs
    seconds = sum(log.seconds for log in timed)
    tokens = sum(log.tokens for log in timed)
    tokens_per_s = tokens / seconds if seconds else 0.0
    step_tokens = mean_step_tokens(task, settings.batch_size)
    s_per_step = step_tokens / tokens_per_s if tokens_per_s else float("inf")
    return {
        "method": method.name,
        "config": config,
        "steps": len(logs),
        "seconds_per_step": s_per_step,
        "examples_per_s": settings.batch_size / s_per_step,
        "tokens_per_s": tokens_per_s,
        "peak_memory_mb": peak_memory_mb(device),
        "trainable_params": result.trainable_params,
        "wall_seconds": wall,
        "device": device.type,
        # How it was laid out and what out of memory shrank (the micro-batch trials then start
        # from), and the longest batch it met (the prediction it is compared with is made there).
        "memory": {**(layout or {}), **result.memory, "measured_bytes": round(peak_memory_mb(device) * 2**20)},
    }


