"""Calibration: a few real optimiser steps per method on this hardware, before planning.

Step time depends on the batch's padded length, so a couple of steps are converted to a
rate per token and scaled to the job's mean batch: seconds/step = mean tokens per step /
tokens per second. The first step is excluded (allocations, lazy initialisation), so each
method runs `steps + 1` steps.

Measured rates are also stored per machine (cache/rates.json) so `budgetft plan
--no-calibrate` can plan from them; with nothing stored it falls back to an estimate from
model size and a nominal speed, labelled as such.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from budgetft import methods
from budgetft.paths import cache_root
from budgetft.planner import MethodRate
from budgetft.search_space import parse_space, point
from budgetft.task import Task
from budgetft.trial import TrialSettings, pick_device, run_trial

# Nominal sustained training speed when nothing was measured, FLOP/s (fp32 CPU ~1e11 as seen
# on 2 EPYC cores for the 135M model; a GPU gets a conservative 2e13).
NOMINAL_FLOPS = {"cpu": 1.0e11, "cuda": 2.0e13}


def peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def mean_step_tokens(task: Task, batch_size: int) -> float:
    """Mean padded tokens per training step (prompt + label word), for rate scaling."""
    lengths = task.train.lengths + max(len(t) for t in task.class_tokens)
    return float(lengths.mean()) * batch_size * 1.05  # length grouping leaves ~2-5% padding


def calibrate_method(task: Task, method_name: str, steps: int = 2) -> dict:
    method = methods.get(method_name)
    config = point(parse_space(task.job.space_for(method.name)), method.defaults)
    settings = TrialSettings.from_job(task, method.name, config, steps=steps + 1)
    settings.eval_steps = []  # calibration measures training only
    settings.class_bias = "none"  # its forward passes are planned from the evaluation rate
    device = pick_device()
    if device.type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(device)
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
    }


def rates_from(calibration: dict[str, dict], source: str = "calibrated") -> dict[str, MethodRate]:
    return {
        name: MethodRate(name, c["seconds_per_step"], c["examples_per_s"], c.get("peak_memory_mb"), c.get("trainable_params"), source)
        for name, c in calibration.items()
    }


# -- stored rates, per machine


def machine_key(device_name: str) -> str:
    return f"{platform.node()}|{device_name}"


def _store_path() -> Path:
    return cache_root() / "rates.json"


def rate_key(task: Task, method: str) -> str:
    j = task.job
    return f"{j.model.name}|{method}|bs{j.train.batch_size}|len{j.prompt.max_length}"


# Measurements kept per rate, newest last. A stored rate is their median, so that one run
# calibrated on a busy machine (bitfit measured at 14 s/step with a second run sharing the
# cores, against 2.9 s alone) cannot skew the plans that follow it.
KEPT_MEASUREMENTS = 5
FASTER_IS_HIGHER = {"rows_per_s", "examples_per_s"}


def _robust(history: list[dict], key: str) -> float | None:
    """The median of `key` over the kept measurements (the lower middle one of an even
    count's two: the faster, since contention only ever slows a measurement down)."""
    values = sorted(float(h[key]) for h in history if h.get(key) is not None)
    if not values:
        return None
    return values[len(values) // 2] if key in FASTER_IS_HIGHER else values[(len(values) - 1) // 2]


def _remember(entry: dict, key: str, measurement: dict) -> None:
    old = entry.get(key) or {}
    history = old.get("history") or ([{k: v for k, v in old.items() if k != "history"}] if old else [])
    history = [*history, measurement][-KEPT_MEASUREMENTS:]
    entry[key] = {**{k: _robust(history, k) for k in measurement}, "history": history}


def store_rates(task: Task, device_name: str, calibration: dict[str, dict], eval_rows_per_s: float | None) -> None:
    path = _store_path()
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        data = {}
    entry = data.setdefault(machine_key(device_name), {})
    for name, c in calibration.items():
        _remember(entry, rate_key(task, name), {k: c[k] for k in ("seconds_per_step", "examples_per_s", "peak_memory_mb", "trainable_params")})
    if eval_rows_per_s:
        _remember(entry, f"{task.job.model.name}|eval|len{task.job.prompt.max_length}", {"rows_per_s": eval_rows_per_s})
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def stored_rates(task: Task, device_name: str, method_names: list[str]) -> tuple[dict[str, MethodRate], float | None]:
    try:
        entry = json.loads(_store_path().read_text()).get(machine_key(device_name), {})
    except (FileNotFoundError, json.JSONDecodeError):
        entry = {}
    rates = {}
    for name in method_names:
        found = entry.get(rate_key(task, name))
        if found:
            rates[name] = MethodRate(name, found["seconds_per_step"], found["examples_per_s"], found.get("peak_memory_mb"), found.get("trainable_params"), "stored")
    evals = entry.get(f"{task.job.model.name}|eval|len{task.job.prompt.max_length}")
    return rates, (evals or {}).get("rows_per_s")


def offline_rates(task: Task, method_names: list[str], device_name: str, device_type: str) -> tuple[dict[str, MethodRate], float, str]:
    """Rates without measuring: those stored for this machine, with estimates for whatever is
    missing; and the evaluation rate (rows/s) and a line saying where they came from."""
    rates, eval_rows_per_s = stored_rates(task, device_name, method_names)
    if len(rates) == len(method_names) and eval_rows_per_s:
        return rates, eval_rows_per_s, "stored rates from an earlier calibration on this machine"
    from budgetft.models.loading import count_parameters

    est, est_eval = estimated_rates(task, count_parameters(task.model), device_type, method_names)
    source = "estimated rates (nothing stored for this machine: run without --no-calibrate to measure)"
    return {**est, **rates}, eval_rows_per_s or est_eval, source


def estimated_rates(task: Task, n_params: int, device_type: str, method_names: list[str]) -> tuple[dict[str, MethodRate], float]:
    """6·N FLOPs per training token (forward 2N + backward 4N; PEFT saves little of the
    backward since activations' gradients are still needed), 2·N per evaluation token."""
    flops = NOMINAL_FLOPS.get(device_type, NOMINAL_FLOPS["cpu"])
    step_tokens = mean_step_tokens(task, task.job.train.batch_size)
    s_per_step = 6 * n_params * step_tokens / flops
    rates = {m: MethodRate(m, s_per_step, task.job.train.batch_size / s_per_step, None, None, "estimated") for m in method_names}
    eval_rows_per_s = flops / (2 * n_params * float(task.eval.lengths.mean()))
    return rates, eval_rows_per_s
