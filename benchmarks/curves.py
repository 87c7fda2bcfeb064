"""Measure learning curves for the planner's shipped priors (budgetft/planner/curves.csv).

A learning curve says how many accuracy points over the majority answer a method buys after so
many training examples. The planner values its options by them and forecasts with them, so they
must be right and must never be measured on rows a run reports on: this script holds rows out of
the TRAINING split (the job's evaluation split is not read at all), trains each (model, method) at
its first-trial configuration with the job's settings, and scores the held-out rows.

Each point is the end of a schedule, as a plan's trial is: one trial per length (`--lengths`),
its learning rate decayed to zero at its last step, scored there. Several seeds per length give
the seed-to-seed spread the forecast's range needs.

    .venv/bin/python benchmarks/curves.py --only full --seeds 0,1,2 --rows 1200 --lengths 500,1000,1600 --log out.jsonl
    .venv/bin/python benchmarks/curves.py --only lora --rows 400 --skip 1200 --lengths 150 --set targets=attention --set learning_rate=5e-4
    .venv/bin/python benchmarks/curves.py --from-log out.jsonl     # curves.csv rows from measurements already made

`--skip N` holds out the rows after the first N of one fixed shuffle, so a screen of settings
(on rows 1,200-1,600, say) and the curve of the chosen one (rows 0-1,200) score disjoint rows.
Every evaluation is appended to `--log` as it comes (a long measurement keeps what it has). The
curves.csv rows: per size, the mean lift over the seeds, their standard deviation (sd), the
held-out rows and the seeds behind it, and a band from the lowest seed minus 1.96 binomial
standard errors of the rows to the highest plus as many. Minutes on a 2-core CPU: MiniLM full
about 0.6 s a step, SmolLM2 LoRA 3-5 s a step, plus scoring the held-out rows at each end.
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

# (model, method, trial lengths, held-out rows): what the embedded default job may choose.
OPTIONS = [
    ("sentence-transformers/all-MiniLM-L6-v2", "full", [500, 1000, 1600], 1200),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", "lora", [75, 150, 250], 1200),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", "bitfit", [50, 100, 200], 400),
]
Z95 = 1.96
ACCURACY = 0.6  # a BoolQ-like accuracy: its binomial standard error on n rows, for the band
HELD_OUT_SEED = 12345  # which training rows are held out: fixed, so every option sees the same rows


def held_out_job(job, model: str, rows: int, workdir: Path, skip: int = 0):
    """The job's variant for `model`, its data replaced by the training split cut in two files:
    the rest (trained on) and `rows` held-out rows (scored): the rows at positions skip..skip+rows
    of one fixed shuffle (HELD_OUT_SEED)."""
    from budgetft.data.sources import load_splits

    variant = job.variant(model)
    train = load_splits(variant.data, variant.seed).train
    order = list(range(len(train)))
    random.Random(HELD_OUT_SEED).shuffle(order)
    held, rest = sorted(order[skip:skip + rows]), sorted(order[:skip] + order[skip + rows:])
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


def measure(job, method: str, length: int, seed: int, overrides: dict, log: Path | None) -> dict:
    """One trial of `length` steps at the method's first-trial configuration (with `overrides`),
    scored on the held-out rows at its end. Returns the logged record."""
    from budgetft import methods
    from budgetft.planner.configs import trial_configs
    from budgetft.scoring.baselines import majority_baseline
    from budgetft.task import prepare_task
    from budgetft.train.trial import TrialSettings, run_trial

    job = job.model_copy(update={"seed": seed})
    task = prepare_task(job)
    config = trial_configs(job.space_for(methods.get(method).name), method, 1, seed)[0]  # the plan's first trial
    config.update(overrides)
    settings = TrialSettings.from_job(task, method, config, steps=length)
    settings.eval_steps = [length]
    majority = majority_baseline(task)["accuracy"]
    t0 = time.perf_counter()
    record: dict = {}

    def on_eval(step: int, metrics: dict) -> None:
        record.update({"model": job.model.name, "method": method, "config": config, "seed": seed, "steps": length, "step": step,
                       "examples": step * settings.batch_size, "accuracy": metrics["accuracy"], "majority": majority,
                       "rows": len(task.eval), "end_of_schedule": step == length, "seconds": round(time.perf_counter() - t0, 1),
                       "date": time.strftime("%Y-%m-%d %H:%M")})
        if log is not None:
            with log.open("a") as f:
                f.write(json.dumps(record) + "\n")
        print(f"  {job.model.name} {method} seed {seed}: {length} steps ({step * settings.batch_size} examples) accuracy "
              f"{100 * metrics['accuracy']:.2f}% (majority {100 * majority:.2f}%), {time.perf_counter() - t0:.0f} s", flush=True)

    print(f"{job.model.name} {method} seed {seed}, {length} steps: config {config}", flush=True)
    run_trial(task, settings, on_eval=on_eval)
    return record


def csv_rows(records: list[dict], data: str, source: str) -> list[str]:
    """curves.csv rows (model,data,method,examples,lift,low,high,sd,rows,seeds,source) from logged
    end-of-schedule evaluations: one row per size, over its seeds."""
    by_size: dict[tuple, list[dict]] = {}
    for r in records:
        if r.get("end_of_schedule"):
            by_size.setdefault((r["model"], r["method"], int(r["examples"])), []).append(r)
    out = []
    for (model, method, examples), group in sorted(by_size.items()):
        lifts = [100 * (r["accuracy"] - r["majority"]) for r in group]
        rows = min(int(r["rows"]) for r in group)
        se = 100 * math.sqrt(ACCURACY * (1 - ACCURACY) / rows)
        sd = f"{statistics.stdev(lifts):.2f}" if len(lifts) > 1 else ""
        out.append(f"{model},{data},{method},{examples},{statistics.mean(lifts):.2f},{min(lifts) - Z95 * se:.1f},{max(lifts) + Z95 * se:.1f},"
                   f"{sd},{rows},{len(lifts)},\"{source}\"")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", default="boolq-smollm2")
    parser.add_argument("--only", help="a method name: measure only the options with it")
    parser.add_argument("--model", help="only the options with this model (a substring)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--lengths", help="comma-separated trial lengths, one trial each (default: each option's own)")
    parser.add_argument("--rows", type=int, help="held-out rows (default: each option's own)")
    parser.add_argument("--skip", type=int, default=0, help="hold out the rows after the first SKIP of the fixed shuffle")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the first-trial configuration")
    parser.add_argument("--log", type=Path, help="append each evaluation to this JSON-lines file")
    parser.add_argument("--from-log", type=Path, help="print curves.csv rows from a log of measurements already made")
    parser.add_argument("--source", default="", help="with --from-log: the rows' source text")
    args = parser.parse_args()

    from budgetft.spec import load_job

    job = load_job(args.job)
    if args.from_log:
        records = [json.loads(line) for line in args.from_log.read_text().splitlines() if line.strip()]
        print("\n".join(csv_rows(records, job.data.name, args.source or f"measured by benchmarks/curves.py ({args.from_log.name})")))
        return 0

    from budgetft.quiet import quiet_libraries

    quiet_libraries()
    seeds = [int(s) for s in args.seeds.split(",")]
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value) if value[:1].isdigit() or value[:1] in "-[{" or value in ("true", "false") else value
    records = []
    for model, method, lengths, rows in OPTIONS:
        if args.only and method != args.only or args.model and args.model not in model:
            continue
        lengths = [int(x) for x in args.lengths.split(",")] if args.lengths else lengths
        rows = args.rows or rows
        with tempfile.TemporaryDirectory() as tmp:
            variant = held_out_job(job, model, rows, Path(tmp), args.skip)
            records += [measure(variant, method, length, seed, overrides, args.log) for seed in seeds for length in lengths]
    print("\ncurves.csv rows (model,data,method,examples,lift,low,high,sd,rows,seeds,source):")
    print("\n".join(csv_rows(records, job.data.name, f"measured by benchmarks/curves.py on {args.rows or 'its'} held-out training rows")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
