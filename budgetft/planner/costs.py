"""What a run pays around training, and the check made before anything is spent.

`budgetft plan` and `budgetft run` share both, so they quote the same minimum budget, and the
check is the plan's own arithmetic: a budget that passes it still buys a useful trial once its
baselines and calibration are paid for.
"""

from __future__ import annotations

import os

from budgetft.planner.budget import Costs
from budgetft.scoring.class_bias import planned_seconds

# Imported inside functions: torch: importing this module must stay cheap (start-up time).

CALIBRATION_STEPS = 2  # timed steps per method (plus one warm-up step)
RESERVE_SECONDS = 30.0  # report + shutdown, kept back until the end
# Before spending, stored or estimated rates are taken as this much slower than they say: the
# check should not approve a budget that the plan refuses once calibration has measured this
# machine (seen: 35-73% of a cap spent on baselines and calibration, then no trial). A fixed
# factor, not the machine's load at that second: the same job was once refused at "$0.18" and
# later at "$0.35-0.41" on one machine, and `plan` quoted a third figure (issue 27, point 8).
# Where calibration still measures it slower, the run uses what is left (budgetft.planner.budget.
# plan_short) instead of refusing after money is spent. 1.25, not the busy worst case (1.5): at
# 1.5 the README job's minimum was $0.26, though its $0.25 runs on this 2-core CPU, idle and
# beside a busy core, trained 1,249-1,840 steps and beat the majority on held-out rows
# (benchmarks/README.md); at 1.25 it is $0.20.
PRECHECK_MARGIN = 1.25
# Of Costs.trial_startup_seconds' 20 s, what reading a small model takes (SmolLM2, MiniLM: <5 s on
# 2 CPU cores). A model whose measured read takes longer (an 8B model: minutes) pays the rest once
# per trial worker, which then keeps it for its later trials (budgetft.models.cache).
LOAD_IN_STARTUP_S = 5.0


def run_costs(
    task, rates, eval_rows_per_s: float, calibration_steps: int = CALIBRATION_STEPS, *, baselines_done: bool = False,
    calibration_done: bool = False, load_seconds: float | None = None,
) -> Costs:
    """What a run pays around training, in seconds, scoring at eval_rows_per_s: one evaluation of
    the selection rows (per trial that is evaluated); the baselines, unless done: with held-out
    test rows only the majority class (the zero-shot pass is the held-out test's, on the winner's
    model: MethodRate.test_seconds), else the zero-shot pass on the evaluation rows and ~5 s to
    load the model; calibration (each option's timed steps plus a warm-up step and ~3 s to apply
    it, and timing its model's scoring), unless done; per trial, fitting the verbalizer's class
    bias; and the report's reserve, kept back until the end."""
    eval_seconds = len(task.eval) / eval_rows_per_s
    steps = calibration_steps + 1
    if baselines_done:
        baselines = 0.0
    elif task.test is not None:
        baselines = 2.0  # the majority class: counting, no model
    else:
        baselines = len(task.eval) / eval_rows_per_s + 5
    # Each trial worker reads the model once (the workers at once read it side by side): the
    # measured read beyond what the per-trial start-up already holds, paid once up front.
    loading = max(0.0, float(load_seconds or 0.0) - LOAD_IN_STARTUP_S)
    return Costs(
        startup_seconds=Costs.startup_seconds + loading,
        eval_seconds=eval_seconds,
        baseline_seconds=baselines,
        calibration_seconds=0.0 if calibration_done else sum(steps * r.seconds_per_step + 3 + 5 for r in rates.values()),
        trial_startup_seconds=Costs.trial_startup_seconds + planned_seconds(task.job, 1 / eval_rows_per_s),
        reserve_seconds=RESERVE_SECONDS,
        selection_rows=len(task.eval),
        test_rows=len(task.test) if task.test is not None else None,
    )


def tuning_resources(packing: dict | None, cpus: int, gpus: int) -> tuple[int, dict]:
    """(trials at once, Ray resources per trial). On GPUs: one trial per GPU unless packing
    chose more (a fractional GPU each); CPU threads are split between the trials at once."""
    per_gpu = int((packing or {}).get("trials_per_gpu") or 1) if gpus else 1
    concurrency = max(1, gpus * per_gpu)
    gpu = float((packing or {}).get("gpu_fraction") or 1.0) if gpus and per_gpu > 1 else float(bool(gpus))
    return concurrency, {"cpu": max(1, cpus // concurrency), "gpu": gpu}


def cluster_tuning_resources(packing: dict | None, nodes: list[dict]) -> tuple[int, dict]:
    """(trials at once, Ray resources per trial) over a cluster's nodes ({cpus, gpus} each):
    each node runs what tuning_resources gives it alone, and a trial asks for the fewest CPUs any
    such node gives, so that every node fits its share. Nodes with GPUs run the trials when there
    are any (a trial sized for a GPU cannot run on a CPU node); else every node with a CPU does."""
    gpu_nodes = [n for n in nodes if n.get("gpus")]
    usable = gpu_nodes or [n for n in nodes if n.get("cpus")]
    if not usable:
        return 1, {"cpu": 1, "gpu": 0.0}
    shares = [tuning_resources(packing, max(1, int(n.get("cpus") or 1)), int(n.get("gpus") or 0)) for n in usable]
    concurrency = sum(c for c, _ in shares)
    return concurrency, {"cpu": min(r["cpu"] for _, r in shares), "gpu": shares[0][1]["gpu"]}


def machine_concurrency(packing: dict | None) -> int:
    """How many trials this machine runs at once under `packing` (1 on a CPU)."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return tuning_resources(packing, os.cpu_count() or 1, gpus)[0]
