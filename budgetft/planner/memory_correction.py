"""What calibration measured against what the memory plan predicted, per machine: the factor
later plans multiply their predictions by (budgetft.planner.memory_plan.device_fits).

Calibration on a GPU runs a few real steps of every option in the layout the plan chose for it
and measures the true peak: the caching allocator's reserved memory at its highest plus the CUDA
context (budgetft.telemetry.device.true_peak_bytes), which is what has to fit in the GPU. The
ratio measured / predicted is stored here (cache/memory.json, keyed by machine, as rates are:
budgetft.planner.rates) for the (model, method) it was measured on; the next plan on this
machine uses it, and its own model's other methods use the largest ratio seen for that model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from budgetft.paths import cache_root
from budgetft.planner.rates import machine_key

# Measurements kept per (model, method), newest last; the factor is their largest (a plan that
# trusts its smallest would run out of memory on the batch that measured the largest).
KEPT = 5
# The factor's range: a prediction is never believed to be more than twice too small (a larger
# miss is a bug to fix, not a factor to learn), nor more than 20% too large (the measured batch
# may have been shorter than the longest a trial meets).
LOWEST, HIGHEST = 0.8, 2.0


def _path() -> Path:
    return cache_root() / "memory.json"


def _read() -> dict:
    try:
        return json.loads(_path().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def record(device_name: str, model: str, method: str, predicted_bytes: float, measured_bytes: float) -> float:
    """Remember one calibration's ratio; returns it."""
    ratio = float(measured_bytes) / float(predicted_bytes) if predicted_bytes else 1.0
    data = _read()
    entry = data.setdefault(machine_key(device_name), {})
    key = f"{model}|{method}"
    entry[key] = [*entry.get(key, []), round(ratio, 4)][-KEPT:]
    path = _path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
    return ratio


def factor(device_name: str, model: str, method: str) -> float:
    """What to multiply a prediction for (model, method) on this machine by: its own measured
    ratio, else the largest of its model's other methods, else 1 (nothing measured here)."""
    entry = _read().get(machine_key(device_name), {})
    own = entry.get(f"{model}|{method}")
    if not own:
        own = [r for key, ratios in entry.items() if key.rsplit("|", 1)[0] == model for r in ratios]
    if not own:
        return 1.0
    return min(HIGHEST, max(LOWEST, max(own)))
