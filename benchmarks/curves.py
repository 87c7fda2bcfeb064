"""Measure learning curves for the planner's shipped priors (budgetft/planner/curves.csv).

A learning curve says how many accuracy points over the majority answer a method buys after so
many training examples. The planner values its options by them, so they must never be measured on
rows a run reports on: this script holds rows out of the TRAINING split (the job's evaluation
split is not read at all), trains each (model, method) at its first-trial configuration with the
job's settings, and scores the held-out rows at a few step counts.

    .venv/bin/python benchmarks/curves.py                       # every option below, seeds 0 and 1
    .venv/bin/python benchmarks/curves.py --only full --seeds 0 --steps 100,200

Prints one line per evaluation, then the curves.csv rows: the median lift over the seeds, the
band their spread widened by 1.96 binomial standard errors of the held-out rows (a 95% interval
around each seed's score, which on n rows is itself that uncertain). Minutes: MiniLM full ~10 per seed to 1,000 steps,
SmolLM2 LoRA ~12 to 150 steps, on a 2-core CPU in bf16.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (model, method, evaluation steps, held-out rows): what the embedded default job may choose.
OPTIONS = [
    ("sentence-transformers/all-MiniLM-L6-v2", "full", [100, 200, 400, 600, 800, 1000], 400),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", "lora", [25, 50, 100, 150], 200),
    # The decoder methods table at $0.02 a method (docs/methods.md) had BitFit 7 points over the
    # majority after 23 steps: its curve, to 1,600 examples.
    ("HuggingFaceTB/SmolLM2-135M-Instruct", "bitfit", [25, 50, 100, 200], 200),
]
Z95 = 1.96  # the band: a 95% interval around each seed's measurement
HELD_OUT_SEED = 12345  # which training rows are held out: fixed, so every option sees the same rows


def held_out_job(job, model: str, rows: int, workdir: Path):
    """The job's variant for `model`, its data replaced by the training split cut in two files:
    the rest (trained on) and `rows` held-out rows (scored)."""
    from budgetft.data.sources import load_splits

    variant = job.variant(model)
    train = load_splits(variant.data, variant.seed).train
    order = list(range(len(train)))
    random.Random(HELD_OUT_SEED).shuffle(order)
    held, rest = sorted(order[:rows]), sorted(order[rows:])
    files = {}
    for name, idx in (("train", rest), ("validation", held)):
        path = workdir / f"{name}.jsonl"
        path.write_text("".join(json.dumps(train[i]) + "\n" for i in idx))
        files[name] = str(path)
    unlabelled = variant.data.unlabelled_split
    if unlabelled is not None:  # rows without labels, for a method that labels rows itself (iPET)
        from budgetft.data.sources import load_unlabelled

        path = workdir / "unlabelled.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in load_unlabelled(variant.data)))
        files["unlabelled"], unlabelled = str(path), "unlabelled"
    data = variant.data.model_copy(update={"name": str(workdir / "train.jsonl"), "source": "file", "files": files,
                                           "train_split": "train", "eval_split": "validation", "unlabelled_split": unlabelled})
    evaluation = variant.eval.model_copy(update={"limit": None, "test_rows": 0})
    return variant.model_copy(update={"data": data, "eval": evaluation})


def measure(job, method: str, steps: list[int], seed: int) -> tuple[float, list[tuple[int, float]]]:
    """(majority accuracy on the held-out rows, [(examples, accuracy)] at each step count)."""
    from budgetft import methods
    from budgetft.planner.configs import trial_configs
    from budgetft.scoring.baselines import majority_baseline
    from budgetft.task import prepare_task
    from budgetft.train.trial import TrialSettings, run_trial

    job = job.model_copy(update={"seed": seed})
    task = prepare_task(job)
    config = trial_configs(job.space_for(methods.get(method).name), method, 1, seed)[0]  # the plan's first trial
    settings = TrialSettings.from_job(task, method, config, steps=max(steps))
    settings.eval_steps = sorted(steps)
    majority = majority_baseline(task)["accuracy"]
    seen: list[tuple[int, float]] = []
    t0 = time.perf_counter()

    def on_eval(step: int, metrics: dict) -> None:
        seen.append((step * settings.batch_size, metrics["accuracy"]))
        print(f"  {job.model.name} {method} seed {seed}: step {step:5d} ({step * settings.batch_size:6d} examples) "
              f"accuracy {100 * metrics['accuracy']:.2f}% (majority {100 * majority:.2f}%), {time.perf_counter() - t0:.0f} s", flush=True)

    print(f"{job.model.name} {method} seed {seed}: config {config}", flush=True)
    run_trial(task, settings, on_eval=on_eval)
    return majority, seen


def csv_rows(model: str, data: str, method: str, rows: int, runs: list[tuple[float, list[tuple[int, float]]]], source: str) -> list[str]:
    by_size: dict[int, list[float]] = {}
    for majority, points in runs:
        for examples, acc in points:
            by_size.setdefault(examples, []).append(100 * (acc - majority))
    out = []
    for examples in sorted(by_size):
        lifts = by_size[examples]
        p = 0.6  # a BoolQ-like accuracy: its binomial standard error on `rows` rows, in points
        se = 100 * math.sqrt(p * (1 - p) / rows)
        lift = statistics.median(lifts)
        out.append(f"{model},{data},{method},{examples},{lift:.1f},{min(lifts) - Z95 * se:.1f},{max(lifts) + Z95 * se:.1f},{source}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", default="boolq-smollm2")
    parser.add_argument("--only", help="a method name: measure only the options with it")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--steps", help="comma-separated step counts (default: each option's own)")
    args = parser.parse_args()

    from budgetft.quiet import quiet_libraries
    from budgetft.spec import load_job
    import torch

    from budgetft.telemetry.device import device_name
    from budgetft.telemetry.precision import precision_for

    quiet_libraries()
    job = load_job(args.job)
    seeds = [int(s) for s in args.seeds.split(",")]
    results = []
    for model, method, steps, rows in OPTIONS:
        if args.only and method != args.only:
            continue
        if args.steps:
            steps = [int(s) for s in args.steps.split(",")]
        with tempfile.TemporaryDirectory() as tmp:
            variant = held_out_job(job, model, rows, Path(tmp))
            runs = [measure(variant, method, steps, seed) for seed in seeds]
        source = (f"measured by benchmarks/curves.py on {rows} rows held out from BoolQ's training split, seeds {args.seeds}, "
                  f"{precision_for(torch.device('cpu')).dtype_name}, {device_name()}, {time.strftime('%Y-%m-%d')}")
        results += csv_rows(model, job.data.name, method, rows, runs, f'"{source}"')
    print("\ncurves.csv rows (model,data,method,examples,lift,low,high,source):")
    print("\n".join(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
