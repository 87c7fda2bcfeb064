"""Every method on the same job, the same training examples and the same evaluation rows.

    python benchmarks/methods.py [JOB] [--train-examples 64] [--eval-rows 100] [--max-length 192]
                                 [--methods lora,bitfit,...] [--out results.jsonl]
    python benchmarks/methods.py --table results.jsonl     # the table of a (partial) run
    python benchmarks/methods.py --usd 0.05 --price-per-hour 1.00 --eval-rows 300 [--model NAME]
                                                           # real-budget mode (below)

Prints, per method: trainable parameters, training examples/s, peak memory, and accuracy and
lift over the majority baseline on the same evaluation rows (with the zero-shot model for
reference). Each method runs in its own process, so its peak memory (resident set on CPU,
allocated CUDA memory on a GPU) is its own and not the maximum of everything before it.

Every method gets the configuration `budgetft train` would run (the job's space or the
method's default space, at its default or centre) and ceil(train-examples / batch size)
optimiser steps. The default budget (64 examples, 8 steps of 8, 100 evaluation rows, prompts
cut to 192 tokens) is sized for a 2-core CPU, where the 135M embedded model trains at ~1-2
examples/s: about half an hour for all methods. Eight steps measure cost faithfully; accuracy
after eight steps is mostly the label prior, so read the accuracy column as "did it break
anything / did it start to move", not as what each method reaches with a real budget.

Real-budget mode (--usd, --price-per-hour): every method gets the same money, so the same
seconds of training on this machine (usd / price x 3600), not the same steps: its step time is
measured first (budgetft's calibration, not counted), its trial planned for as many steps as
the seconds buy, and stopped if a step would pass them. Training draws from the whole training
split less the scored rows: every method is scored on the same rows held out from the TRAINING
split (curves.py's, at least 300 for a usable interval; the job's evaluation split is not read,
since a method may be chosen by this table), with McNemar's exact test against the majority answer.
--model picks another of the job's models (e.g. all-MiniLM-L6-v2 for the encoder methods).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ZERO_SHOT = "zero_shot"


def overrides(args) -> list[str]:
    out = [*args.set, f"eval.limit={args.eval_rows}", f"train.batch_size={args.batch_size}"]
    if args.max_length or not args.usd:  # the cheap mode cuts prompts to 192 tokens; a real budget keeps the job's
        out.append(f"prompt.max_length={args.max_length or 192}")
    return out if args.usd else [f"train.train_limit={args.train_examples}", *out]


def budget_seconds(args) -> float:
    return float(args.usd) / float(args.price_per_hour) * 3600


def load_spec(args):
    from budgetft.spec import load_job

    spec = load_job(args.job, overrides(args))
    if not args.model:
        return spec
    names = {v.model.name: v for v in spec.variants()} | {v.model.name.rsplit("/", 1)[-1]: v for v in spec.variants()}
    if args.model not in names:
        sys.exit(f"--model {args.model!r}: the job's models are {', '.join(v.model.name for v in spec.variants())}")
    return names[args.model]


def train_for_seconds(task, method, config, seconds: float, model):
    """Train `method` for as many steps as `seconds` buy here, then score the evaluation rows."""
    from budgetft.scoring.rows import evaluate
    from budgetft.train.trial import TrialSettings, run_trial
    from budgetft.train.measure import calibrate_method

    per_step = calibrate_method(task, method.name, 2)["seconds_per_step"]
    # PET's later members each fit a class bias and iPET's later generations label unlabelled
    # rows, as many as their steps can use: a run's planner prices both into the trial (budgetft.
    # planner.inputs.phases_seconds), so the same money buys the most steps that leave room for them.
    steps = max(1, math.floor(seconds / per_step))
    if method.phases is not None:
        from budgetft.planner.inputs import phases_seconds
        from budgetft.stages.calibrate import eval_rate

        per_row = 1.0 / eval_rate(task)
        while steps > 1 and steps * per_step + phases_seconds(task, method.name, per_row, steps) > seconds:
            steps -= 1
        extra = phases_seconds(task, method.name, per_row, steps)
        if extra + steps * per_step > seconds:
            raise SystemExit(f"{method.name}: its labelling and class-bias fits alone take ~{extra:.0f} s, "
                             f"more than the {seconds:.0f} s the money buys here")
    settings = TrialSettings.from_job(task, method.name, config, steps=steps)
    settings.eval_steps = []
    spent = {"s": 0.0}
    logs = []

    def on_step(log):
        logs.append(log)
        spent["s"] += log.seconds

    def may_continue(what: str) -> bool:  # stop before a step that would pass the seconds
        mean = spent["s"] / len(logs) if logs else per_step
        return spent["s"] + mean <= seconds

    result, model = run_trial(task, settings, model=model, on_step=on_step, may_continue=may_continue)
    return result, evaluate(model, task, task.job.eval.batch_size), spent["s"] + result.class_bias_seconds + result.labelling_seconds


def peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def full_split_majority(spec, task) -> dict:
    """The majority baseline with the most frequent class of the whole training split: the
    benchmark trains on a small sample of it, whose own majority can be the minority class
    (64 BoolQ rows with seed 0 hold 31 "true" and 33 "false"; the split is 62% "true")."""
    from collections import Counter

    import numpy as np

    from budgetft.data.checks import class_lookup, class_of
    from budgetft.data.sources import load_splits
    from budgetft.metrics import classification_metrics

    lookup = class_lookup(spec.prompt.labels)
    counts = Counter(class_of(row[spec.data.label_field], lookup) for row in load_splits(spec.data, spec.seed).train)
    majority = max(range(len(task.class_names)), key=lambda c: (counts.get(c, 0), -c))
    metrics = classification_metrics(task.eval.labels, np.full(len(task.eval), majority, dtype=np.int64), task.class_names)
    metrics["majority_class"] = task.class_names[majority]
    return metrics


def run_one(args) -> dict:
    """One method (or the zero-shot model) in this process; returns its record."""
    from budgetft.quiet import quiet_libraries

    quiet_libraries()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        return _run_one(args, load_spec(args) if not args.usd else _held_out_spec(args, Path(tmp)))


def _held_out_spec(args, workdir: Path):
    """Real-budget mode scores rows held out from the training split (curves.py's rows), never
    the job's evaluation split: this table compares what each method buys, a user may choose a
    method by it, and a choice must not be made on the rows a run reports on."""
    from budgetft.spec import load_job

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from curves import held_out_job

    return held_out_job(load_job(args.job, overrides(args)), load_spec(args).model.name, args.eval_rows, workdir)


def _run_one(args, spec) -> dict:
    from budgetft import methods
    from budgetft.models.loading import load_model
    from budgetft.search_space import parse_space, point
    from budgetft.task import prepare_task
    from budgetft.train.trial import TrialSettings, run_trial
    from budgetft.methods.counting import count_model
    from budgetft.scoring.rows import evaluate
    from budgetft.telemetry.precision import pick_device

    task = prepare_task(spec)
    device = pick_device()
    model = load_model(task.model)
    majority = full_split_majority(spec, task)
    record = {"method": args.one, "majority_accuracy": majority["accuracy"], "majority_class": majority["majority_class"],
              "eval_rows": len(task.eval), "device": device.type}
    t0 = time.perf_counter()
    if args.one == ZERO_SHOT:
        model.to(device)
        metrics = evaluate(model, task, spec.eval.batch_size)
        trainable, total = 0, count_model(model)[1]
        record.update(trainable_params=trainable, total_params=total, examples=0, examples_per_s=None, config={})
    elif args.usd:
        method = methods.get(args.one)
        config = point(parse_space(spec.space_for(method.name)), method.defaults)
        result, metrics, trained = train_for_seconds(task, method, config, budget_seconds(args), model)
        record.update(
            trainable_params=result.trainable_params, total_params=result.total_params, examples=result.examples, steps=result.steps,
            examples_per_s=result.examples_per_s, train_seconds=trained, config=config,
        )
    else:
        method = methods.get(args.one)
        config = point(parse_space(spec.space_for(method.name)), method.defaults)
        steps = math.ceil(args.train_examples / args.batch_size)
        settings = TrialSettings.from_job(task, method.name, config, steps=steps)
        settings.eval_steps = [steps]
        result, _ = run_trial(task, settings, model=model)
        metrics = result.final
        record.update(
            trainable_params=result.trainable_params, total_params=result.total_params, examples=result.examples,
            examples_per_s=result.examples_per_s, train_seconds=result.train_seconds, config=config,
        )
    from budgetft.report.stats import mcnemar_exact

    majority_index = task.class_names.index(majority["majority_class"])
    paired = mcnemar_exact(metrics["correct"], [bool(y == majority_index) for y in task.eval.labels])
    record.update(
        accuracy=metrics["accuracy"], accuracy_ci95=metrics.get("accuracy_ci95"), balanced_accuracy=metrics.get("balanced_accuracy"),
        lift=metrics["accuracy"] - majority["accuracy"], seconds=time.perf_counter() - t0, peak_memory_mb=peak_memory_mb(device),
        mcnemar_p=paired.p_value, model=task.job.model.name, max_length=task.job.prompt.max_length,
    )
    return record


def table(records: list[dict], args) -> str:
    ok = [r for r in records if "error" not in r]
    majority = (f"majority baseline (always {ok[0]['majority_class']!r}, the training split's majority) "
                f"{100 * ok[0]['majority_accuracy']:.1f}%") if ok else "no method finished"
    bought = (f"${args.usd} each at ${args.price_per_hour}/h ({budget_seconds(args):.0f} s of training), batch {args.batch_size}"
              if args.usd else f"{args.train_examples} training examples ({math.ceil(args.train_examples / args.batch_size)} steps of {args.batch_size})")
    lines = [
        f"{ok[0].get('model', '') + ': ' if ok else ''}{bought}, "
        f"{ok[0]['eval_rows'] if ok else args.eval_rows} {'rows held out from the training split' if args.usd else 'evaluation rows'}, prompts ≤ {ok[0].get('max_length', args.max_length) if ok else args.max_length} tokens; {majority}; "
        f"device {ok[0]['device'] if ok else '?'}",
        "",
        "| method | trainable params | share | steps | examples/s | peak memory (MB) | accuracy | lift vs majority | McNemar p |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        if "error" in r:
            lines.append(f"| {r['method']} | error: {r['error']} | | | | | | | |")
            continue
        share = r["trainable_params"] / r["total_params"] if r["total_params"] else 0.0
        speed = f"{r['examples_per_s']:.2f}" if r.get("examples_per_s") else "–"
        p = f"{r['mcnemar_p']:.2g}" if r.get("mcnemar_p") is not None else "–"
        lines.append(
            f"| {r['method']} | {r['trainable_params']:,} | {100 * share:.3g}% | {r.get('steps', '–')} | {speed} | {r['peak_memory_mb']:,.0f} | "
            f"{100 * r['accuracy']:.1f}% | {100 * r['lift']:+.1f} pt | {p} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("job", nargs="?", default="boolq-smollm2")
    parser.add_argument("--train-examples", type=int, default=64)
    parser.add_argument("--eval-rows", type=int, default=100)
    parser.add_argument("--max-length", type=int, default=None, help="prompt tokens (default: 192, or the job's with --usd)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--methods", default="", help="comma-separated (default: every registered method)")
    parser.add_argument("--out", type=Path, default=None, help="also append each record to this JSONL file as it finishes")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads per method (default: torch's choice; 1 is faster on a busy machine)")
    parser.add_argument("--table", type=Path, default=None, help="only print the table of a JSONL file written by --out")
    parser.add_argument("--usd", default=None, help="real-budget mode: this many dollars of training per method")
    parser.add_argument("--price-per-hour", default="1.00", help="the machine's price, USD/h (real-budget mode)")
    parser.add_argument("--model", default=None, help="another of the job's models (name or its last part)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a job override, as `budgetft run --set` (e.g. data.unlabelled_split=test: iPET's unlabelled rows)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child process: run one method
    parser.add_argument("--record", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        args.record.write_text(json.dumps(run_one(args)))
        return
    if args.table:
        print(table([json.loads(line) for line in args.table.read_text().splitlines() if line.strip()], args))
        return

    from budgetft import methods

    names = [n.strip() for n in args.methods.split(",") if n.strip()] or methods.names()
    from budgetft.models.loading import detect_architecture, resolve_model

    spec = load_spec(args)
    architecture = detect_architecture(resolve_model(spec.model), spec.model.architecture)
    skipped = [n for n in names if not methods.get(n).supports(architecture)]
    if skipped:
        print(f"not run on this {architecture} model (the method does not support it): {', '.join(skipped)}", file=sys.stderr)
    names = [ZERO_SHOT] + [methods.get(n).name for n in names if n not in skipped]
    records = []
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for name in names:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            record_file = Path(tmp) / "record.json"
            cmd = [sys.executable, __file__, args.job, "--one", name, "--record", str(record_file),
                   "--train-examples", str(args.train_examples), "--eval-rows", str(args.eval_rows),
                   *(["--max-length", str(args.max_length)] if args.max_length else []), "--batch-size", str(args.batch_size), "--threads", str(args.threads),
                   *(["--usd", str(args.usd), "--price-per-hour", str(args.price_per_hour)] if args.usd else []),
                   *(["--model", args.model] if args.model else []), *(f"--set={kv}" for kv in args.set)]
            done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if done.returncode == 0 and record_file.exists():
                record = json.loads(record_file.read_text())
            else:
                record = {"method": name, "error": (done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[-1][:200]}
        records.append(record)
        if args.out:
            with args.out.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
        summary = record.get("error") or f"accuracy {100 * record['accuracy']:.1f}%, peak {record['peak_memory_mb']:,.0f} MB"
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {summary} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    print(table(records, args))


if __name__ == "__main__":
    main()
