"""Training and evaluation rates for the planner: measured by calibration, stored per machine,
or estimated.

Calibration (budgetft.stages.calibrate) measures a few real steps of each method; its rates are
stored per machine (cache/rates.json) so that a later `budgetft plan --no-calibrate`, or the
check before a run spends anything, can plan from them. With nothing stored, rates are
estimated from the model's size and a nominal speed (budgetft.models.speed), labelled as such.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

from budgetft.models.speed import eval_rows_per_second, parameter_count, train_seconds_per_step
from budgetft.paths import cache_root
from budgetft.planner.budget import MethodRate
from budgetft.files import write_json

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


def rate_key(job, method: str) -> str:
    return f"{job.model.name}|{method}|bs{job.train.batch_size}|len{job.prompt.max_length}"


def eval_key(job) -> str:
    return f"{job.model.name}|eval|len{job.prompt.max_length}"


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
    # Measurements that do not say what share of the machine they ran on (budgetft before it
    # recorded one) mix a busy machine's rates with an idle one's: they are dropped.
    history = [h for h in old.get("history") or [] if "share" in h]
    history = [*history, measurement][-KEPT_MEASUREMENTS:]
    entry[key] = {**{k: _robust(history, k) for k in measurement if k != "share"}, "history": history}


def _current(found: dict | None) -> dict | None:
    """A stored entry, if its measurements say what share of the machine they ran on."""
    return found if found and any("share" in h for h in found.get("history") or []) else None


def store_rates(job, device_name: str, calibration: dict[str, dict], eval_rows_per_s: float | None, share: float = 1.0) -> None:
    """Remember measured rates for this machine. `share`: the part of the machine the measurement
    computed on (on a CPU, threads / cores: a neighbour left the rest busy); rates are stored as
    the whole machine's, assuming speed proportional to the cores (which flatters a one-thread
    measurement a little: on 2 cores a MiniLM step took 0.95 s on one and 0.55 s on both, so it
    is stored as 0.48 s, and the check before spending adds budgetft.planner.costs.PRECHECK_MARGIN)."""
    share = min(1.0, max(share, 1e-3))
    path = _store_path()
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        data = {}
    entry = data.setdefault(machine_key(device_name), {})
    for name, c in calibration.items():
        measured = {k: c[k] for k in ("seconds_per_step", "examples_per_s", "peak_memory_mb", "trainable_params")}
        measured["seconds_per_step"] *= share
        measured["examples_per_s"] /= share
        _remember(entry, rate_key(job, name), {**measured, "share": round(share, 4)})
    if eval_rows_per_s:
        _remember(entry, eval_key(job), {"rows_per_s": eval_rows_per_s / share, "share": round(share, 4)})
    write_json(path, data)


def stored_rates(job, device_name: str, method_names: list[str]) -> tuple[dict[str, MethodRate], float | None]:
    try:
        entry = json.loads(_store_path().read_text()).get(machine_key(device_name), {})
    except (FileNotFoundError, json.JSONDecodeError):
        entry = {}
    rates = {}
    for name in method_names:
        found = _current(entry.get(rate_key(job, name)))
        if found:
            rates[name] = MethodRate(name, found["seconds_per_step"], found["examples_per_s"], found.get("peak_memory_mb"), found.get("trainable_params"), "stored")
    evals = _current(entry.get(eval_key(job)))
    return rates, (evals or {}).get("rows_per_s")


def mean_step_tokens(task, batch_size: int) -> float:
    """Mean padded tokens per training step (prompt + label word), for rate scaling."""
    lengths = task.train.lengths + max(len(t) for t in task.class_tokens)
    return float(lengths.mean()) * batch_size * 1.05  # length grouping leaves ~2-5% padding


def offline_rates(task, method_names: list[str], device_name: str, device_type: str) -> tuple[dict[str, MethodRate], float, str]:
    """Rates without measuring: those stored for this machine, with estimates for whatever is
    missing; and the evaluation rate (rows/s) and a line saying where they came from."""
    rates, eval_rows_per_s = stored_rates(task.job, device_name, method_names)
    if len(rates) == len(method_names) and eval_rows_per_s:
        return rates, eval_rows_per_s, "stored rates from an earlier calibration on this machine"
    est, est_eval = estimated_rates(task, method_names, device_type)
    source = "estimated rates (nothing stored for this machine: run without --no-calibrate to measure)"
    return {**est, **rates}, eval_rows_per_s or est_eval, source


def estimated_rates(task, method_names: list[str], device_type: str) -> tuple[dict[str, MethodRate], float]:
    """Every method at the nominal speed of budgetft.models.speed (one model of size and speed,
    shared with the cloud's instance choice), and the evaluation rate in rows/s."""
    n_params, _ = parameter_count(task.model.location, task.model.revision)
    batch = task.job.train.batch_size
    s_per_step = train_seconds_per_step(n_params, mean_step_tokens(task, batch), device_type)
    rates = {m: MethodRate(m, s_per_step, batch / s_per_step, None, None, "estimated") for m in method_names}
    return rates, eval_rows_per_second(n_params, float(task.eval.lengths.mean()), device_type)
