"""How many trials share one GPU, decided from measured figures only (no model, no guess).

Calibration runs one trial alone, and then, when that leaves the GPU idle and memory allows,
k trials together; each level is recorded as

    {"trials": k,                    # trials running at once on one GPU
     "examples_per_s_total": 41.0,   # training examples/s of all k together
     "mean_util_pct": 48.0,          # mean GPU utilization while they ran (NVML, %)
     "peak_mem_mb": 9100.0}          # peak GPU memory used by all k together, MiB (CUDA contexts included)

More than one trial per GPU is chosen only when it fits in memory with a margin and its
measured total throughput beats the current choice by `min_gain`. A trial that trains at the
same speed alone or packed costs the same per example; packing pays only when the GPU has
idle time to give, and measuring is the only honest way to know that it does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import mean

# Packing must beat one-at-a-time (and every step up must beat the step below) by 10%:
# smaller gains are within run-to-run noise of a few calibration steps, and each packed trial
# runs slower, so ASHA's early rungs arrive later.
MIN_GAIN = 0.10
# Keep 10% of GPU memory free: later batches can be longer than calibration's, and the
# allocator fragments; an out-of-memory error in a packed trial costs all of them time.
MEM_MARGIN = 0.10
# A trial alone keeping the GPU busier than this leaves too little idle time to fill.
BUSY_UTIL_PCT = 80.0
# Ray schedules fractional resources to 1/10000 of a unit (docs: "precision ... is 0.0001").
RAY_RESOLUTION = 10_000
# Input-bound heuristic: GPU mostly idle while the CPU is nearly saturated.
IDLE_GPU_PCT = 50.0
BUSY_CPU_PCT = 85.0


@dataclass(frozen=True)
class PackingDecision:
    trials_per_gpu: int
    gpu_fraction: float  # Ray Tune's per-trial {"gpu": fraction}
    reason: str
    figures: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"trials_per_gpu": self.trials_per_gpu, "gpu_fraction": self.gpu_fraction,
                "reason": self.reason, "figures": self.figures}


def gpu_fraction(trials_per_gpu: int) -> float:
    """1/k rounded DOWN to Ray's resolution, so k trials always fit on one GPU (3 x 0.3333 <= 1)."""
    if trials_per_gpu < 1:
        raise ValueError(f"trials_per_gpu must be >= 1, got {trials_per_gpu}")
    return math.floor(RAY_RESOLUTION / trials_per_gpu) / RAY_RESOLUTION


def memory_limit_mb(gpu_mem_mb: float, mem_margin: float = MEM_MARGIN) -> float:
    return gpu_mem_mb * (1 - mem_margin)


def packing_candidates(
    single: dict,
    gpu_mem_mb: float,
    *,
    max_trials: int = 4,
    busy_util_pct: float = BUSY_UTIL_PCT,
    mem_margin: float = MEM_MARGIN,
) -> list[int]:
    """Packing levels worth calibrating after one trial ran alone: none when that trial kept
    the GPU busy, else each k (2..max_trials) whose k x its peak memory fits with the margin."""
    util = single.get("mean_util_pct")
    peak = single.get("peak_mem_mb")
    if util is None or peak is None or peak <= 0 or util >= busy_util_pct:
        return []
    limit = memory_limit_mb(gpu_mem_mb, mem_margin)
    return [k for k in range(2, max_trials + 1) if k * peak <= limit]


def choose_packing(
    calib: list[dict],
    gpu_mem_mb: float,
    *,
    min_gain: float = MIN_GAIN,
    mem_margin: float = MEM_MARGIN,
    max_trials: int | None = None,
) -> PackingDecision:
    """Trials per GPU from recorded calibration levels (see the module docstring).

    Walks up the measured levels; level k replaces the current choice when its measured peak
    memory fits under (1 - mem_margin) x gpu_mem_mb and its total examples/s beats the current
    choice's by at least `min_gain`. The figures behind the decision are returned with it."""
    levels = {}
    for row in calib:
        k = int(row["trials"])
        if k >= 1 and (max_trials is None or k <= max_trials):
            levels[k] = row
    if 1 not in levels:
        raise ValueError("calibration has no one-trial level ({'trials': 1, ...}); packing needs it as the baseline")
    base = levels[1]
    base_rate = float(base.get("examples_per_s_total") or 0.0)
    limit = memory_limit_mb(gpu_mem_mb, mem_margin)
    figures = {
        "gpu_mem_mb": gpu_mem_mb,
        "mem_limit_mb": round(limit, 1),
        "min_gain_pct": round(100 * min_gain, 1),
        "levels": [],
    }
    chosen, chosen_rate = 1, base_rate
    verdicts = []
    for k in sorted(levels):
        row = levels[k]
        rate = float(row.get("examples_per_s_total") or 0.0)
        peak = row.get("peak_mem_mb")
        entry = {
            "trials": k,
            "examples_per_s_total": rate,
            "mean_util_pct": row.get("mean_util_pct"),
            "peak_mem_mb": peak,
            "speedup_vs_one": round(rate / base_rate, 3) if base_rate > 0 else None,
        }
        figures["levels"].append(entry)
        if k == 1:
            continue
        if peak is None:
            entry["verdict"] = "no peak memory recorded"
        elif float(peak) > limit:
            entry["verdict"] = f"peak {float(peak):.0f} MiB exceeds the {limit:.0f} MiB limit"
        elif chosen_rate <= 0 or rate < chosen_rate * (1 + min_gain):
            entry["verdict"] = f"{_gain(rate, chosen_rate)} vs {chosen} per GPU, below +{100 * min_gain:.0f}%"
        else:
            entry["verdict"] = f"{_gain(rate, chosen_rate)} vs {chosen} per GPU: chosen"
            chosen, chosen_rate = k, rate
        verdicts.append(f"{k} together: {rate:.1f} ex/s, {entry['verdict']}")

    util = base.get("mean_util_pct")
    alone = f"one trial alone: {base_rate:.1f} ex/s" + (f" at {util:.0f}% GPU utilization" if util is not None else "")
    if chosen > 1:
        reason = (f"{chosen} trials per GPU: {chosen_rate:.1f} examples/s in total against {base_rate:.1f} one at a "
                  f"time ({_gain(chosen_rate, base_rate)}), within the {limit:.0f} MiB memory limit")
    elif not verdicts:
        busy = util is not None and util >= BUSY_UTIL_PCT
        reason = "one trial per GPU: " + ("it keeps the GPU busy" if busy else "no packed level was measured")
    else:
        reason = "one trial per GPU: packing did not pay"
    measured = "; ".join([alone, *verdicts])
    reason += f" ({measured})"
    figures["chosen"] = chosen
    return PackingDecision(chosen, gpu_fraction(chosen), reason, figures)


def _gain(rate: float, against: float) -> str:
    if against <= 0:
        return "no baseline rate"
    return f"{100 * (rate / against - 1):+.0f}%"


def input_bound_warning(
    samples: list[dict],
    *,
    idle_gpu_pct: float = IDLE_GPU_PCT,
    busy_cpu_pct: float = BUSY_CPU_PCT,
) -> str | None:
    """A warning when the GPU was mostly idle while the CPU was nearly saturated: the trials
    are likely waiting on the input pipeline (tokenising, collating, host-to-device copies), which
    packing more trials on the GPU would only make worse. None otherwise, and for CPU-only runs."""
    gpu = [s for s in samples if s.get("source") == "nvml" and s.get("devices")]
    utils = [d["util_pct"] for s in gpu for d in s["devices"] if d.get("util_pct") is not None]
    cpus = [s["cpu_pct"] for s in gpu if s.get("cpu_pct") is not None]
    if len(utils) < 3 or len(cpus) < 3:  # a couple of seconds say nothing
        return None
    gpu_util, cpu_util = mean(utils), mean(cpus)
    if gpu_util >= idle_gpu_pct or cpu_util < busy_cpu_pct:
        return None
    return (
        f"GPU utilization averaged {gpu_util:.0f}% while the CPU was {cpu_util:.0f}% busy over {len(cpus)} samples: "
        "training is likely input-bound (tokenising, batching or copying data on the CPU starves the GPU). "
        "Pre-tokenise the data, cap CPU threads per trial (torch.set_num_threads), or use a machine with more "
        "vCPUs; packing more trials on this GPU would only compete for the same CPU."
    )
