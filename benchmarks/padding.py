#!/usr/bin/env python3
"""What padding costs a job's training batches today: the share of the tokens a step computes
that are padding, on the batches a trial draws (length-grouped: budgetft.data.batching), the same
share TrialResult.padded_share reports after a trial, here without training.

    python benchmarks/padding.py [JOB] [--rows 20000] [--batch-sizes 4,8,32]

Padding-free batching (rows packed end to end, attention kept within each row) can save at most
this share of a step's token work, and needs an attention kernel that takes packed rows
(FlashAttention's variable-length kernel on CUDA); with SDPA it takes a block-diagonal mask, which
costs more than it saves. The figure decides whether it can pay.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def padded_share(task, batch_size: int, rows: int, seed: int) -> tuple[float, int]:
    """(padding / tokens computed, batches) over the first `rows` rows the trial's batches draw."""
    from budgetft.train import steps

    label = max(len(t) for t in task.class_tokens)
    batches = steps.batches(task, batch_size, seed)
    tokens = padding = 0
    n = max(1, rows // batch_size)
    for _ in range(n):
        lengths = [len(task.train.prompts[i]) + label for i in next(batches)]
        tokens += max(lengths) * len(lengths)
        padding += max(lengths) * len(lengths) - sum(lengths)
    return padding / tokens, n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", nargs="?", default=None)
    parser.add_argument("--rows", type=int, default=20000, help="rows drawn per batch size")
    parser.add_argument("--batch-sizes", default="", help="comma-separated (default: the job's, 4 and 32)")
    args = parser.parse_args()
    from budgetft.quiet import quiet_libraries
    from budgetft.spec import load_job
    from budgetft.task import prepare_task

    quiet_libraries()
    job = load_job(args.job)
    sizes = [int(b) for b in args.batch_sizes.split(",") if b] or sorted({job.train.batch_size, 4, 32})
    for model in dict.fromkeys([job.model.name, *(m.name for m in job.models)]):
        task = prepare_task(job.variant(model))
        lengths = task.train.lengths + max(len(t) for t in task.class_tokens)
        print(f"{model}: {len(lengths):,} training rows, {lengths.mean():.0f} tokens on average (p90 {np.percentile(lengths, 90):.0f}, "
              f"max {lengths.max()})")
        for size in sizes:
            share, n = padded_share(task, size, args.rows, job.seed)
            print(f"  batch {size:>3}: {100 * share:.2f}% of the tokens a step computes are padding ({n:,} batches)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
