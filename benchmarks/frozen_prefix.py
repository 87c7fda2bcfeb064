"""Frozen blocks computed once (budgetft.train.frozen_prefix): what it saves for last_k.

    python benchmarks/frozen_prefix.py [JOB] [--k 2] [--steps 8] [--warmup 2] [--eval-rows 96]

Three trials of last_k on the job's model, same seed, so the same training rows in the same
order, each ending with one evaluation of the selection rows:
  1. every block runs (train.reuse_frozen_layers: false);
  2. the first trial of a run: each row's frozen states are computed and stored as it comes;
  3. a later trial of the same run (or a later epoch, or any re-evaluation): rows are served.
Prints training examples/s (the first --warmup steps untimed) and evaluation rows/s of each, the
ratios against trial 1, and the largest difference in any step's loss between trials 1 and 3.
On 2 CPU cores with SmolLM2-135M and k=2, about 2 minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def one_trial(task, k: int, steps: int, warmup: int, reuse: bool, folder: str | None):
    from budgetft import methods
    from budgetft.models.loading import load_model
    from budgetft.train.trial import TrialSettings, run_trial

    config = methods.get("last_k").config({"k": k})
    settings = TrialSettings.from_job(task, "last_k", config, steps=steps + warmup)
    settings.eval_steps, settings.class_bias = [steps + warmup], "none"
    settings.reuse_frozen_layers, settings.frozen_states = reuse, folder
    logs = []
    result, _ = run_trial(task, settings, model=load_model(task.model), on_step=logs.append)
    timed = logs[warmup:]
    train = len(timed) * settings.batch_size / sum(log.seconds for log in timed)
    return train, len(task.eval) / result.eval_seconds, [log.loss for log in logs], result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("job", nargs="?", default=None)
    parser.add_argument("--k", type=int, default=2, help="trained top blocks")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per trial")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--eval-rows", type=int, default=96, help="selection rows evaluated at the end")
    args = parser.parse_args()
    import torch

    from budgetft.quiet import quiet_libraries
    from budgetft.spec import load_job
    from budgetft.task import prepare_task

    quiet_libraries()
    torch.set_num_threads(os.cpu_count() or 1)
    task = prepare_task(load_job(args.job, [f"eval.limit={args.eval_rows}"]))
    print(f"{task.job.name}: {task.model.describe()}, last_k k={args.k}, batch {task.job.train.batch_size}, "
          f"{args.steps} timed steps after {args.warmup}, {len(task.eval)} evaluation rows; {torch.get_num_threads()} threads", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        whole = one_trial(task, args.k, args.steps, args.warmup, False, None)
        first = one_trial(task, args.k, args.steps, args.warmup, True, folder)
        later = one_trial(task, args.k, args.steps, args.warmup, True, folder)
    print("| trial | train ex/s | vs every block | eval rows/s | vs every block | rows computed / reused |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (train, rows, _, result) in (("every block runs", whole), ("first of a run (stores)", first), ("later (served)", later)):
        info = result.frozen_prefix or {}
        counts = f"{info.get('rows_computed', '-')} / {info.get('rows_reused', '-')}"
        print(f"| {name} | {train:.2f} | {train / whole[0]:.2f}x | {rows:.1f} | {rows / whole[1]:.2f}x | {counts} |", flush=True)
    gap = max(abs(a - b) for a, b in zip(whole[2], later[2]))
    print(f"largest difference in a step's loss, every block vs served: {gap:.2e} nats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
