"""Step-level options, measured: what the optimiser's implementation and torch.compile buy here.

    python benchmarks/step_options.py [JOB] [--options full@all-MiniLM-L6-v2,lora@SmolLM2-135M-Instruct]
                                      [--steps 10] [--warmup 3]

For each (method@model) option of the job, the same training loop as a trial (budgetft.train's
forward/backward over the same length-grouped batches, the run's precision, clipping, AdamW),
in three variants on a fresh copy of the model:
  - AdamW with torch's default implementation (foreach: one kernel per group of tensors);
  - AdamW(fused=True): one fused kernel for the whole update;
  - every transformer block compiled (nn.Module.compile, the default inductor backend), AdamW
    default. Compilation happens in the untimed warm-up steps; its seconds are printed apart;
  - dropout=P: the model's own dropout set to P (train.dropout; the default variant trains with
    the job's setting), e.g. dropout=0.1 for all-MiniLM-L6-v2 as pretrained;
  - frozen_embeddings: the token-embedding matrix frozen (AdamW then skips its 11.7M entries on
    all-MiniLM-L6-v2).
--repeats N measures every variant N times, taking turns, and prints the median (a shared
machine's noise moves single runs by ±10%).
Prints examples/s per variant and the ratio to the default; what wins is kept in budgetft.trial.
On 2 CPU cores about 4 minutes for the two default options.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(task, method_name: str, variant: str, steps: int, warmup: int) -> tuple[float, float]:
    """(examples/s over the timed steps, seconds of the warm-up steps)."""
    import torch

    from budgetft import methods
    from budgetft.scoring.rows import virtual_token_offset
    from budgetft.methods.arch import transformer_blocks
    from budgetft.methods.context import context_for
    from budgetft.models.dropout import set_dropout
    from budgetft.models.loading import load_model
    from budgetft.search_space import parse_space, point
    from budgetft.telemetry.precision import apply_precision, grad_scaler, pick_device, precision_for
    from budgetft.train.steps import accumulate as _accumulate, batches as _batches

    torch.manual_seed(0)
    method = methods.get(method_name)
    config = point(parse_space(task.job.space_for(method.name)), method.defaults)
    model = load_model(task.model)
    dropout = float(variant.split("=")[1]) if variant.startswith("dropout=") else task.job.train.dropout
    if dropout is not None:
        set_dropout(model, dropout)
    model = method.apply(model, config, context_for(task.job, task.tokenizer))
    if variant == "frozen_embeddings":
        model.get_input_embeddings().weight.requires_grad_(False)
    precision = precision_for(pick_device())
    apply_precision(precision)
    model.train()
    if variant == "compiled":
        for block in transformer_blocks(model):
            block.compile()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=float(config["learning_rate"]), fused=True if variant == "fused" else None)
    scaler, offset = grad_scaler(precision), virtual_token_offset(model)
    batches = _batches(task, task.job.train.batch_size, task.job.seed)
    timed = warm = 0.0
    for step in range(warmup + steps):
        idx = next(batches)
        t0 = time.perf_counter()
        _accumulate(model, task, idx, len(idx), offset, task.job.train.loss, precision, scaler)
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - t0
        if step < warmup:
            warm += seconds
        else:
            timed += seconds
    return steps * task.job.train.batch_size / timed, warm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("job", nargs="?", default=None)
    parser.add_argument("--options", default="full@all-MiniLM-L6-v2,lora@SmolLM2-135M-Instruct")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    parser.add_argument("--variants", default="default,fused,compiled")
    parser.add_argument("--repeats", type=int, default=1, help="measure each variant this many times, in turns; print the median")
    args = parser.parse_args()
    import torch

    from budgetft.quiet import quiet_libraries
    from budgetft.spec import load_job
    from budgetft.task import prepare_task

    quiet_libraries()
    torch.set_num_threads(os.cpu_count() or 1)
    job = load_job(args.job, ["eval.limit=8"])
    print(f"{job.name}: batch {job.train.batch_size}, {args.steps} timed steps after {args.warmup}; {torch.get_num_threads()} threads", flush=True)
    print("| option | variant | ex/s | vs default | warm-up s |")
    print("|---|---|---:|---:|---:|")
    for option in [o.strip() for o in args.options.split(",") if o.strip()]:
        method, _, model = option.partition("@")
        names = {v.model.name.rsplit("/", 1)[-1]: v for v in job.variants()} | {v.model.name: v for v in job.variants()}
        if model not in names:
            sys.exit(f"no model {model!r} in the job; its models: {', '.join(sorted(names))}")
        task = prepare_task(names[model])
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        seen: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
        for _ in range(args.repeats):
            for variant in variants:
                seen[variant].append(run(task, method, variant, args.steps, args.warmup))
        base = None
        for variant in variants:
            rate = statistics.median(r for r, _ in seen[variant])
            warm = statistics.median(w for _, w in seen[variant])
            base = base or rate
            spread = f" ({min(r for r, _ in seen[variant]):.2f}-{max(r for r, _ in seen[variant]):.2f})" if args.repeats > 1 else ""
            print(f"| {option} | {variant} | {rate:.2f}{spread} | {rate / base:.2f}x | {warm:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
